"""Call-creation bodies checked the way the API documents them, so a bad request gets a 400.

A compact, hand-kept reading of ``ultravox.v1.StartCallRequest`` and ``StartAgentCallRequest``
from the OpenAPI snapshot (types, enums, the duration pattern) plus the rules its descriptions
state in prose (tool name pattern, reserved ``ultravox.`` metadata keys, mutually exclusive
fields). It does not import the client's own code, so the stand-in stays an independent judge.
Unknown fields are accepted: whether the API rejects them is UNCERTAIN, so we take the tolerant
reading. Each problem reads ``<field path>: <problem>``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

DURATION = re.compile(r"^-?(?:0|[1-9][0-9]{0,11})(?:\.[0-9]{1,9})?s$")
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")

Check = Callable[[str, Any], None]


class Invalid(ValueError):
    """A request field the API would refuse; ``str()`` is the ``detail`` to send."""


def _fail(path: str, problem: str) -> None:
    raise Invalid(f"{path}: {problem}")


def _typed(kind: type | tuple[type, ...], name: str) -> Check:
    takes_bool = kind is bool

    def check(path: str, value: Any) -> None:
        if not isinstance(value, kind) or (isinstance(value, bool) and not takes_bool):
            _fail(path, f"must be {name}, not {value!r}")

    return check


_string = _typed(str, "a string")
_bool = _typed(bool, "a boolean")
_int = _typed(int, "an integer")
_anything_object = _typed(dict, "an object")


def _number(low: float, high: float) -> Check:
    def check(path: str, value: Any) -> None:
        _typed((int, float), "a number")(path, value)
        if not low <= value <= high:
            _fail(path, f"must be between {low} and {high}, not {value!r}")

    return check


def _enum(*values: str) -> Check:
    def check(path: str, value: Any) -> None:
        if value not in values:
            _fail(path, f"must be one of {', '.join(values)}, not {value!r}")

    return check


def _matching(pattern: re.Pattern[str], what: str) -> Check:
    def check(path: str, value: Any) -> None:
        _string(path, value)
        if not pattern.match(value):
            _fail(path, f"{value!r} is not {what} (must match {pattern.pattern})")

    return check


_duration = _matching(DURATION, "a duration in seconds such as '30s' or '0.5s'")


def _object(fields: Mapping[str, Check], *, one_of: tuple[str, ...] = ()) -> Check:
    """An object whose known ``fields`` are checked; at most one key of ``one_of`` may be set."""

    def check(path: str, value: Any) -> None:
        _anything_object(path, value)
        for key, sub in fields.items():
            if value.get(key) is not None:
                sub(f"{path}.{key}" if path else key, value[key])
        chosen = [k for k in one_of if value.get(k) is not None]
        if len(chosen) > 1:
            _fail(path, f"only one of {', '.join(one_of)} may be set, not {', '.join(chosen)}")

    return check


def _array(item: Check) -> Check:
    def check(path: str, value: Any) -> None:
        if not isinstance(value, list):
            _fail(path, f"must be an array, not {value!r}")
        for i, element in enumerate(value):
            item(f"{path}[{i}]", element)

    return check


def _string_map(path: str, value: Any) -> None:
    _anything_object(path, value)
    for key, element in value.items():
        _string(f"{path}.{key}", element)


def _metadata(path: str, value: Any) -> None:
    _string_map(path, value)
    for key in value:
        if key.startswith("ultravox."):
            _fail(f"{path}.{key}", "keys starting with 'ultravox.' are reserved")


_MEDIUM_ENUM = _enum("MESSAGE_MEDIUM_UNSPECIFIED", "MESSAGE_MEDIUM_VOICE", "MESSAGE_MEDIUM_TEXT")
_RETENTION = _enum(
    "CALL_RETENTION_POLICY_UNSPECIFIED",
    "CALL_RETENTION_POLICY_RETAIN",
    "CALL_RETENTION_POLICY_AUTO_DELETE",
)
# EnabledDataMessages flags and their documented defaults on a serverWebSocket.
DATA_MESSAGE_DEFAULTS = {
    "pong": True,
    "state": True,
    "transcript": True,
    "clientToolInvocation": True,
    "dataConnectionToolInvocation": False,
    "playbackClearBuffer": True,
    "callStarted": True,
    "debug": False,
    "callEvent": False,
    "toolUsed": False,
    "userStartedSpeaking": False,
    "userStoppedSpeaking": False,
    "invokingTool": False,
}
_data_messages = _object(dict.fromkeys(DATA_MESSAGE_DEFAULTS, _bool))
_MEDIA = ("webRtc", "twilio", "serverWebSocket", "telnyx", "plivo", "exotel", "sip")
_server_web_socket = _object(
    {
        "inputSampleRate": _int,
        "outputSampleRate": _int,
        "clientBufferSizeMs": _int,
        "dataMessages": _data_messages,
        "mediaIdleTimeout": _duration,
    }
)
_medium = _object(
    {**dict.fromkeys(_MEDIA, _anything_object), "serverWebSocket": _server_web_socket},
    one_of=_MEDIA,
)
_message = _object(
    {
        "role": _enum(
            "MESSAGE_ROLE_UNSPECIFIED",
            "MESSAGE_ROLE_USER",
            "MESSAGE_ROLE_AGENT",
            "MESSAGE_ROLE_TOOL_CALL",
            "MESSAGE_ROLE_TOOL_RESULT",
        ),
        "text": _string,
        "invocationId": _string,
        "toolName": _string,
        "errorDetails": _string,
        "medium": _MEDIUM_ENUM,
    }
)
_greeting_fields: dict[str, Check] = {"text": _string, "prompt": _string, "delay": _duration}
_first_speaker_settings = _object(
    {
        "agent": _object({**_greeting_fields, "uninterruptible": _bool}),
        "user": _object({"fallback": _object(_greeting_fields)}),
    },
    one_of=("agent", "user"),
)
_PROVIDERS = ("elevenLabs", "cartesia", "lmnt", "google", "inworld", "respeecher", "generic")
_external_voice = _object(dict.fromkeys(_PROVIDERS, _anything_object), one_of=_PROVIDERS)
_LOCATIONS = ("UNSPECIFIED", "QUERY", "PATH", "HEADER", "BODY")
_tool_name = _matching(_TOOL_NAME, "a valid tool name")
_temporary_tool = _object(
    {
        "modelToolName": _tool_name,
        "description": _string,
        "dynamicParameters": _array(
            _object(
                {
                    "name": _string,
                    "location": _enum(*(f"PARAMETER_LOCATION_{loc}" for loc in _LOCATIONS)),
                    "schema": _anything_object,
                    "required": _bool,
                }
            )
        ),
        "staticParameters": _array(_anything_object),
        "automaticParameters": _array(_anything_object),
        "timeout": _duration,
        "precomputable": _bool,
        "http": _anything_object,
        "client": _anything_object,
        "dataConnection": _anything_object,
        "defaultReaction": _enum(
            *(f"AGENT_REACTION_{r}" for r in ("UNSPECIFIED", "SPEAKS", "LISTENS", "SPEAKS_ONCE"))
        ),
        "staticResponse": _anything_object,
    },
    one_of=("http", "client", "dataConnection"),
)
_selected_tool = _object(
    {
        "toolId": _string,
        "toolName": _tool_name,
        "temporaryTool": _temporary_tool,
        "nameOverride": _tool_name,
        "descriptionOverride": _string,
        "authTokens": _string_map,
        "parameterOverrides": _anything_object,
    },
    one_of=("toolId", "toolName", "temporaryTool"),
)
_COMMON: dict[str, Check] = {
    "initialMessages": _array(_message),
    "metadata": _metadata,
    "medium": _medium,
    "joinTimeout": _duration,
    "maxDuration": _duration,
    "recordingEnabled": _bool,
    "initialOutputMedium": _MEDIUM_ENUM,
    "firstSpeakerSettings": _first_speaker_settings,
    "dataConnection": _anything_object,
    "experimentalSettings": _anything_object,
    "callbacks": _anything_object,
    "voice": _string,
    "voiceOverrides": _external_voice,
    "retentionPolicy": _RETENTION,
    "sharedSecrets": _array(_string),
}
_start_call = _object(
    {
        **_COMMON,
        "systemPrompt": _string,
        "temperature": _number(0, 1),
        "model": _string,
        "externalVoice": _external_voice,
        "languageHint": _string,
        "timeExceededMessage": _string,
        "inactivityMessages": _array(
            _object(
                {
                    "duration": _duration,
                    "message": _string,
                    "endBehavior": _enum(
                        "END_BEHAVIOR_UNSPECIFIED",
                        "END_BEHAVIOR_HANG_UP_SOFT",
                        "END_BEHAVIOR_HANG_UP_STRICT",
                    ),
                }
            )
        ),
        "selectedTools": _array(_selected_tool),
        "firstSpeaker": _enum(
            "FIRST_SPEAKER_UNSPECIFIED", "FIRST_SPEAKER_AGENT", "FIRST_SPEAKER_USER"
        ),
        "transcriptOptional": _bool,
        "vadSettings": _object(
            {
                "turnEndpointDelay": _duration,
                "minimumTurnDuration": _duration,
                "minimumInterruptionDuration": _duration,
                "frameActivationThreshold": _number(0.1, 1),
            }
        ),
        "initialState": _anything_object,
    }
)
_start_agent_call = _object(
    {
        **_COMMON,
        "templateContext": _anything_object,
        "agentId": _string,
        "toolOverrides": _object(
            {"remove": _array(_string), "removeAll": _bool, "add": _array(_selected_tool)},
            one_of=("remove", "removeAll"),
        ),
    }
)


def _cross_field(body: dict[str, Any], query: Mapping[str, str]) -> None:
    """The rules the schema states only in its descriptions."""
    if body.get("voice") and body.get("externalVoice"):
        _fail("externalVoice", "voice and externalVoice are mutually exclusive")
    if body.get("voiceOverrides") and not body.get("voice"):
        _fail("voiceOverrides", "only valid when voice is set")
    if query.get("priorCallId") and body.get("initialMessages"):
        _fail("initialMessages", "priorCallId and initialMessages are mutually exclusive")
    ws = (body.get("medium") or {}).get("serverWebSocket")
    if ws is not None:
        if ws.get("inputSampleRate") is None:
            _fail("medium.serverWebSocket.inputSampleRate", "is required")
        for key in ("inputSampleRate", "outputSampleRate"):
            if ws.get(key) is not None and ws[key] <= 0:
                _fail(f"medium.serverWebSocket.{key}", "must be positive")
        if (ws.get("clientBufferSizeMs") or 0) < 0:
            _fail("medium.serverWebSocket.clientBufferSizeMs", "must not be negative")
    settings = body.get("firstSpeakerSettings") or {}
    first = body.get("firstSpeaker")
    if settings and first in ("FIRST_SPEAKER_AGENT", "FIRST_SPEAKER_USER"):
        wanted = "agent" if first == "FIRST_SPEAKER_AGENT" else "user"
        if wanted not in settings:
            _fail("firstSpeaker", f"{first} does not match firstSpeakerSettings")
    tools = [(f"selectedTools[{i}]", t) for i, t in enumerate(body.get("selectedTools") or [])]
    added = (body.get("toolOverrides") or {}).get("add") or []
    tools += [(f"toolOverrides.add[{i}]", t) for i, t in enumerate(added)]
    names: set[str] = set()
    for path, tool in tools:
        temporary = tool.get("temporaryTool") or {}
        name = tool.get("nameOverride") or temporary.get("modelToolName")
        if "temporaryTool" in tool and not name:
            _fail(f"{path}.temporaryTool.modelToolName", "is required")
        if name in names:
            _fail(path, f"tool name {name!r} is used twice")
        if name:
            names.add(name)
        if temporary.get("client") is None:
            continue
        for j, parameter in enumerate(temporary.get("dynamicParameters") or []):
            if parameter.get("location", "PARAMETER_LOCATION_BODY") != "PARAMETER_LOCATION_BODY":
                _fail(
                    f"{path}.temporaryTool.dynamicParameters[{j}].location",
                    "client tools accept only PARAMETER_LOCATION_BODY",
                )


def validate_start_call(body: Any, query: Mapping[str, str]) -> str | None:
    """The 400 ``detail`` for a bad ``POST /api/calls`` body, or None if it is acceptable."""
    return _validate(_start_call, body, query)


def validate_start_agent_call(body: Any, query: Mapping[str, str]) -> str | None:
    """The 400 ``detail`` for a bad ``POST /api/agents/{id}/calls`` body, or None."""
    return _validate(_start_agent_call, body, query)


def _validate(schema: Check, body: Any, query: Mapping[str, str]) -> str | None:
    try:
        if not isinstance(body, dict):
            _fail("body", "must be a JSON object")
        schema("", body)
        _cross_field(body, query)
    except Invalid as exc:
        return str(exc)
    return None
