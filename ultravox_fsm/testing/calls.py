"""The REST side of a stand-in call: saved-agent calls merged from templates, and `Call` bodies.

A `Call` body carries every property the OpenAPI ``Call`` schema requires (most are null until
the call has run), with durations in the normalised form the API echoes (``"1.500s"``).
"""

from __future__ import annotations

import copy
import re
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from .scenario import CallRecord, SavedAgent

_AGENT_CALL_OVERRIDES = (
    "initialMessages",
    "metadata",
    "medium",
    "joinTimeout",
    "maxDuration",
    "recordingEnabled",
    "initialOutputMedium",
    "firstSpeakerSettings",
    "dataConnection",
    "experimentalSettings",
    "callbacks",
    "voice",
    "voiceOverrides",
    "retentionPolicy",
)
_PLACEHOLDER = re.compile(r"\{\{\s*([\w.]+)\s*\}\}")
_RETENTION = {
    "CALL_RETENTION_POLICY_RETAIN": "retain",
    "CALL_RETENTION_POLICY_AUTO_DELETE": "auto_delete",
}


def now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def first_speaker_settings(body: dict[str, Any]) -> dict[str, Any]:
    """The effective settings: ``firstSpeakerSettings``, else the deprecated ``firstSpeaker``,
    else the API default ``agent: {}`` (an empty object is read as the default too)."""
    settings = body.get("firstSpeakerSettings")
    if settings:
        return dict(settings)
    return {"user": {}} if body.get("firstSpeaker") == "FIRST_SPEAKER_USER" else {"agent": {}}


def seconds(duration: str) -> float:
    return float(duration[:-1])


def normalize_duration(duration: str) -> str:
    """Protobuf-JSON output form: 0, 3, 6 or 9 fractional digits (``"1.5s"`` -> ``"1.500s"``)."""
    value = Decimal(duration[:-1])
    nanos = abs(int(value * 1_000_000_000)) % 1_000_000_000
    digits = next(d for d in (0, 3, 6, 9) if nanos % 10 ** (9 - d) == 0)
    return f"{value:.{digits}f}s"


def _fill(value: Any, context: dict[str, Any]) -> Any:
    """Mustache-style ``{{name}}`` / ``{{a.b}}`` substitution; a missing name renders empty, as
    in mustache (what the API does then is UNCERTAIN; we take the tolerant reading)."""
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: str(_lookup(context, m.group(1))), value)
    if isinstance(value, list):
        return [_fill(v, context) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, context) for k, v in value.items()}
    return value


def _lookup(context: dict[str, Any], dotted: str) -> Any:
    value: Any = context
    for part in dotted.split("."):
        value = value.get(part, "") if isinstance(value, dict) else ""
    return value


def _tool_name(tool: dict[str, Any]) -> str | None:
    name = tool.get("nameOverride") or tool.get("toolName")
    return name or (tool.get("temporaryTool") or {}).get("modelToolName")


def agent_call_body(agent: SavedAgent, request: dict[str, Any]) -> dict[str, Any]:
    """The call configuration of a saved-agent call: the agent's template, its placeholders
    filled from ``templateContext``, then the request's overrides and ``toolOverrides``."""
    body: dict[str, Any] = _fill(
        copy.deepcopy(agent.call_template), request.get("templateContext") or {}
    )
    for key in _AGENT_CALL_OVERRIDES:
        if request.get(key) is not None:
            body[key] = request[key]
    if request.get("firstSpeakerSettings") is not None:
        body.pop("firstSpeaker", None)  # the override wins over the template's deprecated field
    overrides = request.get("toolOverrides") or {}
    if overrides:
        removed = set(overrides.get("remove") or [])
        kept = [] if overrides.get("removeAll") else body.get("selectedTools") or []
        kept = [t for t in kept if _tool_name(t) not in removed]
        body["selectedTools"] = kept + list(overrides.get("add") or [])
    return body


def call_object(record: CallRecord, join_url: str) -> dict[str, Any]:
    """The `Call` the API returns on create (201) and ``GET /api/calls/{id}`` (200)."""
    body = record.body
    settings = first_speaker_settings(body)
    text = body.get("initialOutputMedium") == "MESSAGE_MEDIUM_TEXT"
    call: dict[str, Any] = {
        "callId": record.call_id,
        "clientVersion": record.client_version,
        "created": record.created,
        "joined": record.joined,
        "ended": record.ended,
        "endReason": record.end_reason,
        "billedDuration": None,
        "billedSideInputTokens": None,
        "billedSideOutputTokens": None,
        "billingStatus": "BILLING_STATUS_PENDING",
        "firstSpeaker": "FIRST_SPEAKER_USER" if "user" in settings else "FIRST_SPEAKER_AGENT",
        "firstSpeakerSettings": settings,
        "inactivityMessages": [
            {**m, "duration": normalize_duration(m["duration"])} if m.get("duration") else m
            for m in body.get("inactivityMessages") or []
        ],
        "initialOutputMedium": "MESSAGE_MEDIUM_TEXT" if text else "MESSAGE_MEDIUM_VOICE",
        "joinTimeout": normalize_duration(body.get("joinTimeout") or "30s"),
        "joinUrl": join_url,
        "languageHint": body.get("languageHint"),
        "maxDuration": normalize_duration(body.get("maxDuration") or "3600s"),
        "medium": body.get("medium"),
        "model": body.get("model") or "ultravox-v0.7",
        "recordingEnabled": bool(body.get("recordingEnabled")),
        "retentionPolicy": _RETENTION.get(body.get("retentionPolicy") or ""),
        "systemPrompt": body.get("systemPrompt"),
        "temperature": body.get("temperature") or 0.0,
        "timeExceededMessage": body.get("timeExceededMessage"),
        "voice": body.get("voice"),
        "transcriptOptional": body.get("transcriptOptional", True),
        "vadSettings": _vad(body.get("vadSettings")),
        "shortSummary": None,
        "summary": None,
        # The schema requires ``agent`` without marking it nullable; for a call without an
        # agent the API (Django REST Framework) serialises it as null, and so do we.
        "agent": {"agentId": record.agent_id, "name": record.agent_name}
        if record.agent_id
        else None,
        "agentId": record.agent_id,
        "experimentalSettings": body.get("experimentalSettings"),
        "metadata": body.get("metadata") or {},
        "initialState": body.get("initialState") or {},
        "requestContext": None,
        "sipDetails": None,
    }
    for field, source in (
        ("externalVoice", "externalVoice"),
        ("voiceOverrides", "voiceOverrides"),
        ("dataConnectionConfig", "dataConnection"),
        ("callbacks", "callbacks"),
    ):
        if body.get(source) is not None:
            call[field] = body[source]
    return call


def _vad(settings: dict[str, Any] | None) -> dict[str, Any] | None:
    if settings is None:
        return None
    return {k: normalize_duration(v) if isinstance(v, str) else v for k, v in settings.items()}
