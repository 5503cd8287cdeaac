"""Bad options fail the constructor, naming the option; ``extra_call_fields`` merge deeply."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ultravox_fsm import RealtimeModel

KEY = "sk-test"
AGENT_ID = "3f0c8a0e-2b7e-4d55-9a55-1c2d3e4f5a6b"


def body(**options: Any) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(
        RealtimeModel(api_key=KEY, **options)._opts.call_body([], None, None)[0]
    )
    return decoded


def test_seconds_are_sent_as_the_api_duration_strings() -> None:
    sent = body(
        vad_settings={"turnEndpointDelay": 1.5, "minimumTurnDuration": "0.1s"},
        first_speaker_settings={"agent": {"delay": 2}},
        join_timeout="1m",
    )
    assert sent["vadSettings"] == {"turnEndpointDelay": "1.5s", "minimumTurnDuration": "0.1s"}
    assert sent["firstSpeakerSettings"] == {"agent": {"delay": "2s"}}
    assert sent["joinTimeout"] == "60s"


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"vad_settings": {"turnEndpointDelay": "-1s"}}, "vad_settings.turnEndpointDelay"),
        ({"vad_settings": {"turnEndpointDelay": -0.5}}, "vad_settings.turnEndpointDelay"),
        ({"vad_settings": {"turnEndpointDelay": [1]}}, "vad_settings.turnEndpointDelay"),
        ({"vad_settings": {"turn_endpoint_delay": "1s"}}, "vad_settings: unknown key"),
        ({"vad_settings": {"frameActivationThreshold": 3}}, "frameActivationThreshold"),
        ({"first_speaker_settings": {"agent": {"delay": "soon"}}}, "agent.delay"),
        ({"first_speaker_settings": {"agent": {}, "user": {}}}, "exactly one"),
        ({"first_speaker_settings": {"user": {"fallback": {"delay": "-2s"}}}}, "fallback.delay"),
        ({"metadata": {"customer": 42}}, r"metadata\['customer'\]"),
        ({"metadata": {"ultravox.call": "x"}}, "reserved"),
        ({"max_duration": "-10s"}, "max_duration"),
        ({"join_timeout": "later"}, "join_timeout"),
        ({"temperature": 1.5}, "temperature"),
        ({"recording_enabled": "yes"}, "recording_enabled"),
        ({"input_sample_rate": 0}, "input_sample_rate"),
        ({"client_buffer_size_ms": -1}, "client_buffer_size_ms"),
        ({"throttle": ""}, "throttle"),
        ({"template_context": {"a": 1}}, "template_context needs agent_id"),
        ({"server_tools": [{"toolName": "hangUp", "toolId": "x"}]}, r"server_tools\[0\]"),
        ({"server_tools": ["bad name!"]}, r"server_tools\[0\]"),
        ({"server_tools": [{"temporaryTool": {"modelToolName": "t", "client": {}}}]}, "HTTP"),
        ({"server_tools": ["hangUp", "hangUp"]}, "used twice"),
        ({"server_tools": [{"toolName": "x", "extra": 1}]}, "unknown key 'extra'"),
        ({"transport": "websockets"}, "transport must be 'aiohttp' or 'lean'"),
        ({"transport": None}, "transport must be"),
    ],
)
def test_bad_options_fail_the_constructor_naming_the_option(
    options: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        RealtimeModel(api_key=KEY, **options)


@pytest.mark.parametrize(
    "options",
    [
        {"system_prompt": "Be brief."},
        {"temperature": 0.2},
        {"vad_settings": {}},
        {"enable_greeting_prompt": True},
        {"model": "ultravox-v0.7"},
    ],
)
def test_an_agent_call_refuses_what_the_agents_template_sets(options: dict[str, Any]) -> None:
    [name] = options
    with pytest.raises(ValueError, match=f"{name} cannot be sent with agent_id"):
        RealtimeModel(api_key=KEY, agent_id=AGENT_ID, **options)


def test_extra_medium_fields_keep_the_library_s_sample_rates() -> None:
    extra = {"medium": {"serverWebSocket": {"mediaIdleTimeout": "30s"}}}
    assert body(extra_call_fields=extra)["medium"] == {
        "serverWebSocket": {
            "inputSampleRate": 16000,
            "outputSampleRate": 24000,
            "clientBufferSizeMs": 30000,
            "mediaIdleTimeout": "30s",
        }
    }


def test_extra_tools_are_added_to_the_function_tools() -> None:
    opts = RealtimeModel(
        api_key=KEY, extra_call_fields={"selectedTools": [{"toolName": "hangUp"}]}
    )._opts
    function_tool = {"temporaryTool": {"modelToolName": "weather", "client": {}}}
    sent = json.loads(opts.call_body([function_tool], None, None)[0])
    assert sent["selectedTools"] == [function_tool, {"toolName": "hangUp"}]


def test_an_equal_value_is_no_conflict() -> None:
    extra = {"medium": {"serverWebSocket": {"inputSampleRate": 16000}}, "voice": "Mark"}
    assert body(extra_call_fields=extra)["medium"]["serverWebSocket"]["inputSampleRate"] == 16000


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ({"medium": {"serverWebSocket": {"inputSampleRate": 8000}}}, "medium.serverWebSocket"),
        ({"voice": "Jessica"}, "extra_call_fields.voice"),
        ({"medium": "websocket"}, "extra_call_fields.medium"),
        ({"systemPrompt": "Be brief."}, "extra_call_fields.systemPrompt"),
        ({"initialOutputMedium": "MESSAGE_MEDIUM_VOICE"}, "initialOutputMedium"),
    ],
)
def test_a_conflicting_extra_field_fails_the_constructor_naming_its_path(
    extra: dict[str, Any], path: str
) -> None:
    with pytest.raises(ValueError, match=path):
        RealtimeModel(api_key=KEY, extra_call_fields=extra)


@pytest.mark.parametrize("transport", ["aiohttp", "lean"])
def test_the_transport_is_kept_for_the_sessions(transport: str) -> None:
    assert RealtimeModel(api_key=KEY)._opts.transport == "aiohttp"
    assert RealtimeModel(api_key=KEY, transport=transport)._opts.transport == transport  # type: ignore[arg-type]
