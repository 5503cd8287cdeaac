"""Option values checked against what the API takes, before any call is made.

A bad value must fail the constructor with the option's name in the message, not come back as
a 400 that ends a session mid-call. Durations are the one conversion: the API wants
protobuf-JSON strings (``"1.5s"``), and a number of seconds or ``"30m"`` is unambiguous, so
they are accepted and sent in the API's form rather than refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from ..call import to_duration


def check_json(name: str, value: Any) -> None:
    """Refuse a value the call body cannot carry, naming the option (and the bad part)."""
    try:
        msgspec.json.encode(value)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise ValueError(f"{name} cannot be sent to Ultravox as JSON: {exc}") from None


def duration(name: str, value: Any) -> str:
    """The API's duration string for ``value``, or a ValueError naming the option."""
    try:
        return to_duration(value)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def number(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value!r}")
    return float(value)


def positive_int(name: str, value: Any, *, zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if zero else 1):
        raise ValueError(f"{name} must be a {'non-negative' if zero else 'positive'} integer")
    return value


def text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {value!r}")
    return value


def flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def string_map(name: str, value: Any) -> dict[str, str]:
    """A string-to-string object (``metadata``, ``authTokens``)."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a dict of strings, got {type(value).__name__}")
    for key, element in value.items():
        if not isinstance(key, str) or not isinstance(element, str):
            raise ValueError(f"{name}[{key!r}] must be a string (the API takes only strings)")
    return dict(value)


def metadata(value: Any) -> dict[str, str]:
    checked = string_map("metadata", value)
    for key in checked:
        if key.startswith("ultravox."):
            raise ValueError(f"metadata[{key!r}]: keys starting with 'ultravox.' are reserved")
    return checked


Field = Callable[[str, Any], Any]


def fields(name: str, value: Any, known: Mapping[str, Field]) -> dict[str, Any]:
    """An object whose keys must be ``known`` (API names); each value checked and converted."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a dict, got {type(value).__name__}")
    out: dict[str, Any] = {}
    for key, element in value.items():
        check = known.get(key)
        if check is None:
            raise ValueError(f"{name}: unknown key {key!r}; expected one of {sorted(known)}")
        out[key] = check(f"{name}.{key}", element)
    return out


def _threshold(name: str, value: Any) -> float:
    return number(name, value, 0.1, 1.0)


_VAD: dict[str, Field] = {
    "turnEndpointDelay": duration,
    "minimumTurnDuration": duration,
    "minimumInterruptionDuration": duration,
    "frameActivationThreshold": _threshold,
}
_GREETING: dict[str, Field] = {"text": text, "prompt": text, "delay": duration}


def vad_settings(value: Any) -> dict[str, Any]:
    return fields("vad_settings", value, _VAD)


def _agent_greeting(name: str, value: Any) -> dict[str, Any]:
    return fields(name, value, {**_GREETING, "uninterruptible": flag})


def _user_greeting(name: str, value: Any) -> dict[str, Any]:
    return fields(name, value, {"fallback": lambda n, v: fields(n, v, _GREETING)})


def first_speaker_settings(value: Any) -> dict[str, Any]:
    checked = fields(
        "first_speaker_settings", value, {"agent": _agent_greeting, "user": _user_greeting}
    )
    if len(checked) != 1:
        raise ValueError("first_speaker_settings must set exactly one of 'agent' or 'user'")
    return checked


def check_forced_tools(
    tool_calls: list[dict[str, Any]] | None, known_tool_results: list[dict[str, Any]] | None
) -> None:
    """Refuse, where they are given, tool calls the server would refuse."""
    for i, call in enumerate(tool_calls or ()):
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            raise ValueError(f"say(tool_calls[{i}]) needs a tool 'name', got {call!r}")
        if not isinstance(call.get("arguments", {}), dict):
            raise ValueError(f"say(tool_calls[{i}]['arguments']) must be an object")
    for i, result in enumerate(known_tool_results or ()):
        if not isinstance(result, dict) or not isinstance(result.get("invocationId"), str):
            raise ValueError(f"say(known_tool_results[{i}]) needs an 'invocationId'")
    for name, value in (("tool_calls", tool_calls), ("known_tool_results", known_tool_results)):
        check_json(f"say({name})", value)
