"""The REST call-creation request and response (protocol reference §1), and duration strings.

The API takes protobuf-JSON durations (``"1800s"``); the seed documented and sent ``"30m"``,
which the API's own pattern rejects. `to_duration` accepts what users write and produces the
wire form, or raises a ValueError that says what is accepted. `merge_fields` lays the user's raw
``extra_call_fields`` over the body the library builds without losing either.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

WIRE_DURATION = re.compile(r"^-?(0|[1-9][0-9]{0,11})(\.[0-9]{1,9})?s$")
_HUMAN_DURATION = re.compile(
    r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?$"
)
_UNITS = (3600.0, 60.0, 1.0)


def to_duration(value: str | float | int) -> str:
    """Return the API's duration string for seconds, ``"90s"``, ``"30m"``, ``"1h30m"`` etc."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"invalid duration {value!r}: use seconds or a string such as '30m'")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = value.strip().replace(" ", "")
        if WIRE_DURATION.match(text):
            if text.startswith("-"):
                raise ValueError(f"invalid duration {value!r}: must not be negative")
            return text
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            return to_duration(float(text))
        match = _HUMAN_DURATION.match(text) if text else None
        if match is None or not any(match.groups()):
            raise ValueError(
                f"invalid duration {value!r}: use seconds (1800 or '1800s') or h/m/s units "
                "such as '30m' or '1h30m'"
            )
        seconds = sum(float(g) * u for g, u in zip(match.groups(), _UNITS, strict=True) if g)
    if seconds < 0:
        raise ValueError(f"invalid duration {value!r}: must not be negative")
    return f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"


class _Body(msgspec.Struct, rename="camel", omit_defaults=True):
    pass


class ServerWebSocketMedium(_Body, kw_only=True):
    input_sample_rate: int
    output_sample_rate: int | None = None
    client_buffer_size_ms: int | None = None
    data_messages: dict[str, bool] | None = None


class CallMedium(_Body, kw_only=True):
    server_web_socket: ServerWebSocketMedium


class InitialMessage(_Body, kw_only=True):
    """One message of a conversation to start from (``initialMessages``)."""

    role: Literal[
        "MESSAGE_ROLE_USER",
        "MESSAGE_ROLE_AGENT",
        "MESSAGE_ROLE_TOOL_CALL",
        "MESSAGE_ROLE_TOOL_RESULT",
    ]
    text: str
    invocation_id: str | None = None
    tool_name: str | None = None
    medium: Literal["MESSAGE_MEDIUM_VOICE", "MESSAGE_MEDIUM_TEXT"] | None = None


class StartCallRequest(_Body, kw_only=True):
    """Body of ``POST /calls``; ``extra`` fields are merged in by `encode_start_call`."""

    system_prompt: str | None = None
    model: str | None = None
    voice: str | None = None
    external_voice: dict[str, Any] | None = None
    temperature: float | None = None
    language_hint: str | None = None
    max_duration: str | None = None
    join_timeout: str | None = None
    time_exceeded_message: str | None = None
    initial_messages: list[InitialMessage] | None = None
    selected_tools: list[dict[str, Any]] | None = None
    medium: CallMedium | None = None
    first_speaker_settings: dict[str, Any] | None = None
    initial_output_medium: Literal["MESSAGE_MEDIUM_VOICE", "MESSAGE_MEDIUM_TEXT"] | None = None
    vad_settings: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    recording_enabled: bool | None = None


class StartAgentCallRequest(_Body, kw_only=True):
    """Body of ``POST /agents/{id}/calls``: the saved agent's template supplies the prompt,
    model and tools; a request may only override these fields and add tools."""

    template_context: dict[str, Any] | None = None
    initial_messages: list[InitialMessage] | None = None
    metadata: dict[str, str] | None = None
    medium: CallMedium | None = None
    join_timeout: str | None = None
    max_duration: str | None = None
    recording_enabled: bool | None = None
    initial_output_medium: Literal["MESSAGE_MEDIUM_VOICE", "MESSAGE_MEDIUM_TEXT"] | None = None
    first_speaker_settings: dict[str, Any] | None = None
    voice: str | None = None
    tool_overrides: dict[str, Any] | None = None


class CallResponse(msgspec.Struct, rename="camel", kw_only=True):
    """The fields of the 201 `Call` object this library reads; the rest are ignored."""

    call_id: str
    join_url: str | None = None
    ended: str | None = None
    end_reason: str | None = None


_encoder = msgspec.json.Encoder()
_response_decoder = msgspec.json.Decoder(CallResponse)


# Lists the user extends rather than replaces: the library's tools stay, the user's are added.
APPENDED = frozenset({("selectedTools",), ("toolOverrides", "add")})


def merge_fields(
    base: Mapping[str, Any], extra: Mapping[str, Any], path: tuple[str, ...] = ()
) -> dict[str, Any]:
    """``base`` with ``extra`` laid over it: objects merged key by key, tool lists appended.

    A leaf both set to different values is a conflict, not an override: silently replacing
    what the library sends (a sample rate, say) breaks the call in ways seen only later.
    """
    out = dict(base)
    for key, value in extra.items():
        here = (*path, key)
        mine = out.get(key)
        if mine is None:
            out[key] = value
        elif isinstance(mine, dict) and isinstance(value, Mapping):
            out[key] = merge_fields(mine, value, here)
        elif here in APPENDED and isinstance(mine, list) and isinstance(value, list):
            out[key] = [*mine, *value]
        elif mine != value:
            raise ValueError(
                f"extra_call_fields.{'.'.join(here)} = {value!r} conflicts with {mine!r}, "
                "which the library sets from its own options; set that option instead"
            )
    return out


def encode_start_call(
    request: StartCallRequest | StartAgentCallRequest, extra: Mapping[str, Any] | None = None
) -> bytes:
    """JSON body for call creation; ``extra`` (raw API names) is merged by `merge_fields`."""
    if not extra:
        return _encoder.encode(request)
    return _encoder.encode(merge_fields(msgspec.to_builtins(request), extra))


def decode_call_response(data: bytes) -> CallResponse:
    """Decode a 201 body; raises msgspec errors for the caller to wrap."""
    return _response_decoder.decode(data)
