"""Every call-creation body the client can produce is one the OpenAPI schema accepts.

Each constructor option, agent calls, tools of every kind and the ``initialMessages`` fallback
are built through `RealtimeModel` and judged twice: by the snapshot's JSON Schema (plus a check
that every top-level key is one the request defines, which the schema alone does not refuse)
and by the stand-in's own reading of the API.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from livekit.agents import function_tool, llm

from tests.standin.schema import START_AGENT_CALL, START_CALL, errors, validator
from ultravox_fsm import RealtimeModel
from ultravox_fsm.call import InitialMessage
from ultravox_fsm.io.options import history_of
from ultravox_fsm.io.tools import to_selected_tools
from ultravox_fsm.testing.validation import validate_start_agent_call, validate_start_call

KEY = "sk-test"
AGENT_ID = "3f0c8a0e-2b7e-4d55-9a55-1c2d3e4f5a6b"
HTTP_TOOL = {
    "temporaryTool": {
        "modelToolName": "stock_price",
        "description": "The price of a stock.",
        "dynamicParameters": [
            {
                "name": "symbol",
                "location": "PARAMETER_LOCATION_QUERY",
                "schema": {"type": "string"},
                "required": True,
            }
        ],
        "http": {"baseUrlPattern": "https://example.com/price", "httpMethod": "GET"},
    }
}
SERVER_TOOLS: list[str | dict[str, Any]] = [
    "hangUp",
    {"toolName": "queryCorpus", "parameterOverrides": {"corpus_id": "c1"}},
    {"toolId": "5e0d5e8a-1b2c-4d3e-8f90-123456789abc", "nameOverride": "lookup_order"},
    HTTP_TOOL,
]


@function_tool
async def weather(city: str) -> str:
    """The weather in a city."""
    return city


@function_tool(
    raw_schema={"name": "ping", "description": "No properties.", "parameters": {"type": "object"}}
)
async def ping(raw_arguments: dict[str, object]) -> str:
    return "pong"


TOOL_DEFS = to_selected_tools([weather, ping])

OPTIONS: list[dict[str, Any]] = [
    {},
    {"voice": "Jessica", "temperature": 0.4, "language_hint": "en", "model": "ultravox-v0.7"},
    {"external_voice": {"elevenLabs": {"voiceId": "v1"}}},
    {"output_medium": "text", "input_sample_rate": 48000, "output_sample_rate": 48000},
    {"max_duration": "30m", "join_timeout": 45, "time_exceeded_message": "Time is up."},
    {"enable_greeting_prompt": False, "first_speaker": "FIRST_SPEAKER_AGENT"},
    {"first_speaker_settings": {"agent": {"uninterruptible": True, "text": "Hi", "delay": 1.5}}},
    {"first_speaker_settings": {"user": {"fallback": {"delay": "5s", "prompt": "Say hello."}}}},
    {"first_speaker": "FIRST_SPEAKER_UNSPECIFIED"},
    {
        "vad_settings": {
            "turnEndpointDelay": 0.384,
            "minimumTurnDuration": "0s",
            "minimumInterruptionDuration": "0.09s",
            "frameActivationThreshold": 0.2,
        }
    },
    {"metadata": {"customer": "42"}, "recording_enabled": True},
    {"throttle": "outbound", "client_buffer_size_ms": 60, "user_speech_events": True},
    {"server_tools": SERVER_TOOLS},
    {"tool_timeout": 12.5, "tool_settings": {"weather": {"default_reaction": "listens"}}},
    {
        "extra_call_fields": {
            "medium": {"serverWebSocket": {"mediaIdleTimeout": "30s"}},
            "selectedTools": [{"toolName": "leaveVoicemail"}],
            "inactivityMessages": [{"duration": "8s", "message": "Still there?"}],
        }
    },
]
AGENT_OPTIONS: list[dict[str, Any]] = [
    {},
    {"template_context": {"customer": {"name": "Ada"}}, "throttle": "agents"},
    {"voice": "Jessica", "max_duration": 600, "join_timeout": "1m", "recording_enabled": False},
    {"metadata": {"ticket": "7"}, "output_medium": "text", "first_speaker": "FIRST_SPEAKER_AGENT"},
    {"server_tools": SERVER_TOOLS},
    {"extra_call_fields": {"toolOverrides": {"remove": ["hangUp"], "add": [HTTP_TOOL]}}},
]
HISTORY = [
    InitialMessage(role="MESSAGE_ROLE_USER", text="what's the weather in Paris?"),
    InitialMessage(
        role="MESSAGE_ROLE_TOOL_CALL", text='{"city": "Paris"}', invocation_id="c1", tool_name="w"
    ),
    InitialMessage(
        role="MESSAGE_ROLE_TOOL_RESULT", text="sunny", invocation_id="c1", tool_name="w"
    ),
    InitialMessage(role="MESSAGE_ROLE_AGENT", text="It is sunny."),
]


def judged(schema: str, body: bytes, query: dict[str, str]) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(body)
    assert errors(schema, decoded) == []
    defined = validator(schema).schema["$defs"][schema]["properties"]
    assert set(decoded) <= set(defined), set(decoded) - set(defined)
    judge = validate_start_call if schema == START_CALL else validate_start_agent_call
    assert judge(decoded, query) is None
    return decoded


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "defaults")
@pytest.mark.parametrize("prior", [None, "5c6e1b1e-0000-4000-8000-000000000001"])
def test_every_option_gives_a_body_the_schema_accepts(
    options: dict[str, Any], prior: str | None
) -> None:
    opts = RealtimeModel(api_key=KEY, **options)._opts
    body, query = opts.call_body(TOOL_DEFS, prior, HISTORY if prior is None else None)
    decoded = judged(START_CALL, body, query)
    names = [
        t.get("nameOverride") or t.get("toolName") or t["temporaryTool"]["modelToolName"]
        for t in decoded["selectedTools"]
    ]
    assert names[:2] == ["weather", "ping"]  # the function tools are never dropped


@pytest.mark.parametrize("options", AGENT_OPTIONS, ids=lambda o: ",".join(o) or "defaults")
@pytest.mark.parametrize("history", [None, HISTORY])
def test_every_agent_call_body_is_a_start_agent_call_request(
    options: dict[str, Any], history: list[InitialMessage] | None
) -> None:
    opts = RealtimeModel(api_key=KEY, agent_id=AGENT_ID, **options)._opts
    assert opts.calls_base.endswith(f"/api/agents/{AGENT_ID}")
    body, query = opts.call_body(TOOL_DEFS, "5c6e1b1e-0000-4000-8000-000000000001", history)
    decoded = judged(START_AGENT_CALL, body, query)
    assert "priorCallId" not in query  # the agent endpoint has no such parameter
    assert decoded.get("initialMessages") == msgspec.to_builtins(history)
    added = decoded["toolOverrides"]["add"]
    assert [t["temporaryTool"]["modelToolName"] for t in added[:2]] == ["weather", "ping"]


def test_the_throttle_is_a_query_parameter_of_both_endpoints() -> None:
    for extra in ({}, {"agent_id": AGENT_ID}):
        _, query = RealtimeModel(api_key=KEY, throttle="t1", **extra)._opts.call_body(
            [], None, None
        )
        assert query == {"throttle": "t1"}


def test_typed_fields_that_were_never_sent_are_sent() -> None:
    opts = RealtimeModel(api_key=KEY, recording_enabled=True, join_timeout=45)._opts
    decoded = json.loads(opts.call_body([], None, None)[0])
    assert (decoded["recordingEnabled"], decoded["joinTimeout"]) == (True, "45s")


def round_trip_context(with_call: bool) -> llm.ChatContext:
    ctx = llm.ChatContext.empty()
    ctx.add_message(role="user", content="weather in Paris?")
    if with_call:
        ctx.items.append(llm.FunctionCall(call_id="c1", name="weather", arguments='{"city":"P"}'))
    ctx.items.append(
        llm.FunctionCallOutput(call_id="c1", name="weather", output="sunny", is_error=False)
    )
    ctx.items.append(llm.FunctionCall(call_id="c2", name="weather", arguments="{}"))  # unanswered
    ctx.add_message(role="assistant", content="It is sunny.")
    return ctx


@pytest.mark.parametrize("with_call", [True, False])
def test_the_fallback_history_has_each_tool_call_before_its_result(with_call: bool) -> None:
    history = history_of(round_trip_context(with_call))
    assert [(m.role, m.text, m.invocation_id, m.tool_name) for m in history] == [
        ("MESSAGE_ROLE_USER", "weather in Paris?", None, None),
        ("MESSAGE_ROLE_TOOL_CALL", '{"city":"P"}' if with_call else "{}", "c1", "weather"),
        ("MESSAGE_ROLE_TOOL_RESULT", "sunny", "c1", "weather"),
        ("MESSAGE_ROLE_AGENT", "It is sunny.", None, None),
    ]
    body, query = RealtimeModel(api_key=KEY)._opts.call_body(TOOL_DEFS, None, history)
    decoded = judged(START_CALL, body, query)
    for message in decoded["initialMessages"]:
        assert errors("ultravox.v1.Message", message) == []
    tool_messages = [m for m in decoded["initialMessages"] if "TOOL" in m["role"]]
    assert all({"toolName", "invocationId", "text"} <= set(m) for m in tool_messages)


def test_a_result_of_an_unknown_tool_is_left_out() -> None:
    ctx = llm.ChatContext.empty()
    ctx.items.append(llm.FunctionCallOutput(call_id="c9", name="", output="?", is_error=False))
    assert history_of(ctx) == []
