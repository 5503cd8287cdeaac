"""Call creation, saved-agent calls and call lookup (issue 14 items 1, 3, 8, 9), over raw HTTP.

Every accepted body is checked against the OpenAPI snapshot by the ``start`` fixture; here each
refused body is shown to be schema-invalid, or invalid by a rule the docs state in prose.
"""

from __future__ import annotations

from typing import Any

import pytest

from ultravox_fsm.testing.server import SavedAgent, Scenario

from .conftest import WS_16K, Start
from .schema import CALL, START_AGENT_CALL, START_CALL, errors

CLIENT_TOOL = {
    "temporaryTool": {
        "modelToolName": "lookup",
        "description": "Look a city up.",
        "dynamicParameters": [
            {
                "name": "city",
                "location": "PARAMETER_LOCATION_BODY",
                "schema": {"type": "string"},
                "required": True,
            }
        ],
        "client": {},
    }
}
FULL_BODY: dict[str, Any] = {
    "systemPrompt": "Be brief.",
    "temperature": 0.4,
    "model": "ultravox-v0.7",
    "voice": "Mark",
    "languageHint": "en-GB",
    "joinTimeout": "30s",
    "maxDuration": "1.5s",
    "timeExceededMessage": "Time is up.",
    "inactivityMessages": [
        {"duration": "30s", "message": "Still there?"},
        {"duration": "15s", "message": "Bye.", "endBehavior": "END_BEHAVIOR_HANG_UP_SOFT"},
    ],
    "selectedTools": [CLIENT_TOOL, {"toolName": "hangUp"}],
    "medium": {
        "serverWebSocket": {
            "inputSampleRate": 48000,
            "outputSampleRate": 24000,
            "clientBufferSizeMs": 30000,
            "dataMessages": {"userStartedSpeaking": True, "debug": True},
            "mediaIdleTimeout": "30s",
        }
    },
    "recordingEnabled": False,
    "firstSpeaker": "FIRST_SPEAKER_USER",
    "firstSpeakerSettings": {"user": {"fallback": {"delay": "5s", "text": "Hello?"}}},
    "initialOutputMedium": "MESSAGE_MEDIUM_VOICE",
    "vadSettings": {"turnEndpointDelay": "0.384s", "frameActivationThreshold": 0.2},
    "metadata": {"customer": "42"},
    "initialState": {"step": 1},
}

# (body, the field the 400 names, whether the JSON Schema itself rejects it)
REFUSED: list[tuple[dict[str, Any], str, bool]] = [
    ({"initialOutputMedium": "TEXT"}, "initialOutputMedium", True),
    ({"vadSettings": {"turnEndpointDelay": 0.5}}, "vadSettings.turnEndpointDelay", True),
    ({"vadSettings": {"minimumTurnDuration": "500ms"}}, "vadSettings.minimumTurnDuration", True),
    (
        {"inactivityMessages": [{"duration": "1m", "message": "Hello?"}]},
        "inactivityMessages[0].duration",
        True,
    ),
    (
        {"medium": {"serverWebSocket": {"inputSampleRate": 16000, "mediaIdleTimeout": "30"}}},
        "medium.serverWebSocket.mediaIdleTimeout",
        True,
    ),
    ({"maxDuration": "30m"}, "maxDuration", True),
    ({"firstSpeaker": "USER"}, "firstSpeaker", True),
    ({"metadata": {"n": 1}}, "metadata.n", True),
    ({"recordingEnabled": "yes"}, "recordingEnabled", True),
    ({"medium": {"serverWebSocket": {"inputSampleRate": "16000"}}}, "medium.serverWebSocket", True),
    # Rules the schema states only in its descriptions:
    (
        {"selectedTools": [{"temporaryTool": {"modelToolName": "look up", "client": {}}}]},
        "selectedTools[0].temporaryTool.modelToolName",  # "Must match ^[a-zA-Z0-9_-]{1,64}$"
        False,
    ),
    ({"metadata": {"ultravox.agent": "x"}}, "metadata.ultravox.agent", False),  # reserved
    ({"temperature": 1.5}, "temperature", False),  # "between 0 and 1"
    ({"vadSettings": {"frameActivationThreshold": 0.01}}, "vadSettings", False),  # 0.1 to 1
    (
        {"firstSpeaker": "FIRST_SPEAKER_USER", "firstSpeakerSettings": {"agent": {}}},
        "firstSpeaker",  # "If both are set, they must match."
        False,
    ),
    ({"firstSpeakerSettings": {"agent": {}, "user": {}}}, "firstSpeakerSettings", False),
    ({"voice": "Mark", "externalVoice": {"generic": {}}}, "externalVoice", False),
    ({"voiceOverrides": {"generic": {}}}, "voiceOverrides", False),  # only with voice
    ({"medium": {"webRtc": {}, "serverWebSocket": {"inputSampleRate": 1}}}, "medium", False),
    ({"medium": {"serverWebSocket": {}}}, "medium.serverWebSocket.inputSampleRate", False),
    ({"selectedTools": [CLIENT_TOOL, CLIENT_TOOL]}, "selectedTools[1]", False),  # unique names
    (
        {
            "selectedTools": [
                {
                    "temporaryTool": {
                        "modelToolName": "q",
                        "dynamicParameters": [
                            {"name": "a", "location": "PARAMETER_LOCATION_QUERY", "schema": {}}
                        ],
                        "client": {},
                    }
                }
            ]
        },
        "selectedTools[0].temporaryTool.dynamicParameters[0].location",  # client: body only
        False,
    ),
]


@pytest.mark.parametrize(("body", "field", "schema_invalid"), REFUSED)
async def test_a_body_the_api_would_refuse_gets_400_naming_the_field(
    start: Start, body: dict[str, Any], field: str, schema_invalid: bool
) -> None:
    server, raw = await start()
    status, answer = await raw.post(body)
    assert status == 400
    assert answer["detail"].startswith(f"{field}")
    assert bool(errors(START_CALL, body)) is schema_invalid
    assert server.calls == {}


async def test_priorcallid_with_initial_messages_is_refused(start: Start) -> None:
    _, raw = await start()
    body = {"initialMessages": [{"role": "MESSAGE_ROLE_USER", "text": "hi"}]}
    status, answer = await raw.post(body, query={"priorCallId": "x"})
    assert (status, answer["detail"].split(":")[0]) == (400, "initialMessages")


@pytest.mark.parametrize(
    "body",
    [{}, {"medium": WS_16K}, FULL_BODY],
    ids=["empty", "websocket", "full"],
)
async def test_valid_bodies_get_a_201_call_that_matches_the_schema(
    start: Start, body: dict[str, Any]
) -> None:
    _, raw = await start()
    assert errors(START_CALL, body) == []
    status, call = await raw.post(body)
    assert status == 201
    assert errors(CALL, call) == []
    assert call["joinUrl"].endswith(f"/calls/{call['callId']}/server_web_socket")
    assert (call["joined"], call["ended"], call["endReason"]) == (None, None, None)
    assert call["billingStatus"] == "BILLING_STATUS_PENDING"
    assert "selectedTools" not in call and "initialMessages" not in call


async def test_the_call_echoes_normalised_durations_and_the_effective_first_speaker(
    start: Start,
) -> None:
    _, raw = await start()
    _, call = await raw.post(FULL_BODY)
    assert (call["maxDuration"], call["joinTimeout"]) == ("1.500s", "30s")
    assert call["firstSpeaker"] == "FIRST_SPEAKER_USER"
    _, call = await raw.post({"firstSpeaker": "FIRST_SPEAKER_USER"})
    assert call["firstSpeakerSettings"] == {"user": {}}
    _, call = await raw.post({})
    assert (call["firstSpeaker"], call["firstSpeakerSettings"]) == (
        "FIRST_SPEAKER_AGENT",
        {"agent": {}},
    )
    assert call["maxDuration"] == "3600s"


async def test_get_call_reports_joined_ended_and_end_reason(start: Start) -> None:
    server, raw = await start(Scenario(greeting=None))
    call = await raw.start(join_query="?clientVersion=raw_1")
    await raw.until(lambda: bool(raw.messages("call_started")))
    status, joined = await raw.get(call["callId"])
    assert status == 200 and errors(CALL, joined) == []
    assert joined["joined"] is not None and joined["ended"] is None
    assert joined["clientVersion"] == "raw_1"
    assert raw.ws is not None
    await raw.ws.close()
    await raw.until(lambda: server.calls[call["callId"]].closed)
    _, ended = await raw.get(call["callId"])
    assert errors(CALL, ended) == []
    assert ended["ended"] is not None and ended["endReason"] == "hangup"
    status, missing = await raw.get("00000000-0000-0000-0000-000000000000")
    assert status == 404 and "detail" in missing


AGENT_ID = "3f0c8a0e-2b7e-4d55-9a55-1c2d3e4f5a6b"
AGENT = SavedAgent(
    name="concierge",
    call_template={
        "systemPrompt": "You help {{customer.name}} at {{hotel}}.",
        "selectedTools": [CLIENT_TOOL, {"toolName": "hangUp"}],
        "firstSpeakerSettings": {"agent": {"text": "Welcome to {{hotel}}."}},
    },
)


async def test_an_agent_call_fills_the_template_and_applies_overrides(start: Start) -> None:
    server, raw = await start(Scenario(agents={AGENT_ID: AGENT}))
    request = {
        "templateContext": {"customer": {"name": "Ada"}, "hotel": "the Ritz"},
        "medium": WS_16K,
        "maxDuration": "600s",
        "metadata": {"booking": "7"},
        "toolOverrides": {"remove": ["hangUp"]},
    }
    assert errors(START_AGENT_CALL, request) == []
    status, call = await raw.post(request, path=f"/agents/{AGENT_ID}/calls")
    assert status == 201 and errors(CALL, call) == []
    assert call["agent"] == {"agentId": AGENT_ID, "name": "concierge"}
    assert call["agentId"] == AGENT_ID
    assert call["systemPrompt"] == "You help Ada at the Ritz."
    assert call["firstSpeakerSettings"] == {"agent": {"text": "Welcome to the Ritz."}}
    assert (call["maxDuration"], call["metadata"]) == ("600s", {"booking": "7"})
    record = server.calls[call["callId"]]
    assert [
        t.get("toolName") or t["temporaryTool"]["modelToolName"]
        for t in record.body["selectedTools"]
    ] == ["lookup"]
    assert record.request == request


async def test_an_agent_call_greets_with_the_filled_template_text(start: Start) -> None:
    _, raw = await start(Scenario(agents={AGENT_ID: AGENT}))
    status, call = await raw.post(
        {"templateContext": {"hotel": "the Ritz"}, "medium": WS_16K},
        path=f"/agents/{AGENT_ID}/calls",
    )
    assert status == 201
    await raw.join(call)
    await raw.until(lambda: bool(raw.finals()))
    assert raw.finals() == ["Welcome to the Ritz."]


async def test_unknown_agent_and_bad_agent_bodies_are_refused(start: Start) -> None:
    _, raw = await start(Scenario(agents={AGENT_ID: AGENT}))
    status, answer = await raw.post({}, path="/agents/00000000-0000-0000-0000-000000000000/calls")
    assert status == 404 and answer["detail"]
    body = {"toolOverrides": {"remove": ["x"], "removeAll": True}}
    status, answer = await raw.post(body, path=f"/agents/{AGENT_ID}/calls")
    assert (status, answer["detail"].split(":")[0]) == (400, "toolOverrides")
    body = {"maxDuration": "10m"}
    status, answer = await raw.post(body, path=f"/agents/{AGENT_ID}/calls")
    assert (status, answer["detail"].split(":")[0]) == (400, "maxDuration")
    assert errors(START_AGENT_CALL, body)
