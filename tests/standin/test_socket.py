"""The call socket (issue 14 items 2-7), driven by a raw aiohttp client."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from ultravox_fsm.testing.scenario import DEFAULT_GREETING
from ultravox_fsm.testing.server import Reply, Scenario

from .conftest import Raw, Start

TOOL = {"temporaryTool": {"modelToolName": "lookup", "client": {}}}
STAGE_TOOL = {"temporaryTool": {"modelToolName": "book", "client": {}}}


def is_audio(frame: object) -> bool:
    return isinstance(frame, bytes)


def long_reply(words: int) -> Scenario:
    text = " ".join(f"w{i}" for i in range(words))
    return Scenario(greeting=None, reply=lambda _text, _tools: Reply(text=text))


# --- 2, 3: who speaks first ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "greeting"),
    [
        ({}, DEFAULT_GREETING),
        ({"firstSpeaker": "FIRST_SPEAKER_AGENT"}, DEFAULT_GREETING),
        ({"firstSpeakerSettings": {"agent": {"text": "Hi, Ada."}}}, "Hi, Ada."),
        ({"firstSpeakerSettings": {"agent": {"delay": "0.1s"}}}, DEFAULT_GREETING),
        ({"firstSpeakerSettings": {"user": {"fallback": {"delay": "0.1s", "text": "Hi?"}}}}, "Hi?"),
    ],
    ids=["default", "firstSpeaker-agent", "agent-text", "agent-delay", "user-fallback"],
)
async def test_the_agent_greets_when_it_speaks_first(
    start: Start, body: dict[str, object], greeting: str
) -> None:
    _, raw = await start()
    await raw.start(body)
    await raw.until(lambda: bool(raw.finals()))
    assert raw.finals() == [greeting]
    states = [m["state"] for m in raw.messages("state")]
    assert ("thinking" in states) is ("text" not in json.dumps(body))  # verbatim text: no thinking


@pytest.mark.parametrize(
    "body",
    [
        {"firstSpeaker": "FIRST_SPEAKER_USER"},  # the deprecated field, as the seed sends it
        {"firstSpeakerSettings": {"user": {}}},
        {"firstSpeakerSettings": {"user": {"fallback": {"delay": "0.3s"}}}},  # user speaks first
    ],
    ids=["firstSpeaker-user", "settings-user", "fallback-not-needed"],
)
async def test_no_greeting_when_the_user_speaks_first(
    start: Start, body: dict[str, object]
) -> None:
    _, raw = await start()
    await raw.start(body)
    await raw.send({"type": "user_text_message", "text": "hi", "urgency": "later"})
    await asyncio.sleep(0.4)
    assert raw.finals() == []


async def test_a_scenario_without_greeting_never_greets(start: Start) -> None:
    _, raw = await start(Scenario(greeting=None))
    await raw.start()
    await asyncio.sleep(0.2)
    assert raw.finals() == []


# --- 4: barge-in against a large client buffer --------------------------------------------------


async def test_barge_in_while_the_client_still_plays_clears_its_buffer(start: Start) -> None:
    server, raw = await start(long_reply(12))  # 12 words x 200 ms = 2.4 s of audio
    server.scenario.audio_ms_per_word = 200
    medium = {"serverWebSocket": {"inputSampleRate": 16000, "clientBufferSizeMs": 30000}}
    await raw.start({"medium": medium})
    await raw.send({"type": "user_text_message", "text": "tell me"})
    await raw.until(lambda: len(raw.messages("transcript")) >= 13)  # echo, first text, 11 deltas
    first_audio = raw.first(is_audio)
    audio = [f for _, f in raw.frames if isinstance(f, bytes)]
    assert sum(map(len, audio)) == 16000 * 2 * 12 * 200 // 1000  # all sent at once
    assert raw.frames[-1][0] - first_audio < 0.5
    assert (raw.finals("user"), raw.finals()) == (["tell me"], [])  # the agent is still speaking
    await asyncio.sleep(max(0.0, first_audio + 0.4 - time.monotonic()))  # 0.4 s into playback
    await raw.speak(loud_ms=140)
    await raw.until(lambda: bool(raw.messages("playback_clear_buffer")))
    await raw.until(lambda: bool(raw.finals()))
    [cut] = raw.finals()
    played = cut.split()
    assert 1 <= len(played) <= 4 and cut == " ".join(f"w{i}" for i in range(len(played)))
    kinds = [m["type"] for m in raw.messages()]
    clear = kinds.index("playback_clear_buffer")
    after = raw.messages()[clear + 1 : clear + 3]  # the client clears first, then the cut final
    assert after[0]["type"] == "transcript" and after[0]["text"] == cut
    assert after[1] == {"type": "state", "state": "listening"}


async def test_without_barge_in_the_final_waits_for_playback(start: Start) -> None:
    _, raw = await start(long_reply(5))  # 5 x 60 ms
    medium = {"serverWebSocket": {"inputSampleRate": 16000, "clientBufferSizeMs": 30000}}
    await raw.start({"medium": medium})
    await raw.send({"type": "user_text_message", "text": "go"})
    await raw.until(lambda: bool(raw.finals()))
    final_at = raw.first(
        lambda f: isinstance(f, dict) and f.get("final") is True and f.get("role") == "agent"
    )
    assert final_at - raw.first(is_audio) >= 0.25
    assert raw.finals() == ["w0 w1 w2 w3 w4"]
    assert raw.messages("playback_clear_buffer") == []


# --- 5: forced_agent_message urgency ------------------------------------------------------------


@pytest.mark.parametrize("urgency", ["immediate", "soon"])
async def test_forced_message_urgency(start: Start, urgency: str) -> None:
    server, raw = await start(long_reply(10))
    server.scenario.audio_ms_per_word = 40
    await raw.start()
    await raw.send({"type": "user_text_message", "text": "go"})
    await raw.until(lambda: any(is_audio(f) for _, f in raw.frames))
    await raw.send(
        {"type": "forced_agent_message", "content": "Sorry, one moment.", "urgency": urgency}
    )
    await raw.until(lambda: len(raw.finals()) == 2)
    first, forced = raw.finals()
    assert forced == "Sorry, one moment."
    if urgency == "immediate":
        assert first != "w0 w1 w2 w3 w4 w5 w6 w7 w8 w9"
        assert raw.messages("playback_clear_buffer")
    else:
        assert first == "w0 w1 w2 w3 w4 w5 w6 w7 w8 w9"
        assert raw.messages("playback_clear_buffer") == []


# --- 6: client_tool_result responseType ---------------------------------------------------------


async def invoke(raw: Raw, text: str = "use lookup city=Oslo") -> str:
    await raw.send({"type": "user_text_message", "text": text})
    count = len(raw.messages("client_tool_invocation"))
    await raw.until(lambda: len(raw.messages("client_tool_invocation")) > count)
    return str(raw.messages("client_tool_invocation")[-1]["invocationId"])


async def test_hang_up_result_ends_the_call_without_reading_the_payload(start: Start) -> None:
    _, raw = await start(Scenario(greeting=None))
    call = await raw.start({"selectedTools": [TOOL]})
    invocation = await invoke(raw)
    await raw.send(
        {
            "type": "client_tool_result",
            "invocationId": invocation,
            "result": '{"strict": true}',
            "responseType": "hang-up",
        }
    )
    assert await raw.closed() == 1000
    assert raw.finals() == []
    _, ended = await raw.get(call["callId"])
    assert ended["endReason"] == "agent_hangup"


async def test_new_stage_result_changes_tools_and_answers_with_tool_result_text(
    start: Start,
) -> None:
    server, raw = await start(Scenario(greeting=None))
    call = await raw.start({"selectedTools": [TOOL], "initialOutputMedium": "MESSAGE_MEDIUM_TEXT"})
    stage = {"systemPrompt": "Now book.", "selectedTools": [STAGE_TOOL], "toolResultText": "Moved"}
    invocation = await invoke(raw)
    await raw.send(
        {
            "type": "client_tool_result",
            "invocationId": invocation,
            "result": json.dumps(stage),
            "responseType": "new-stage",
        }
    )
    await raw.until(lambda: bool(raw.finals()))
    assert raw.finals() == ["Here is what I found: Moved"]
    assert server.calls[call["callId"]].stages == [stage]
    await invoke(raw, "use book day=Monday")
    assert raw.messages("client_tool_invocation")[-1]["toolName"] == "book"


async def test_a_malformed_new_stage_ends_the_call_with_an_error(start: Start) -> None:
    _, raw = await start(Scenario(greeting=None))
    call = await raw.start({"selectedTools": [TOOL]})
    invocation = await invoke(raw)
    bad = {
        "type": "client_tool_result",
        "invocationId": invocation,
        "result": '{"maxDuration": "1h"}',
    }
    await raw.send({**bad, "responseType": "new-stage"})
    assert await raw.closed() == 1011
    _, ended = await raw.get(call["callId"])
    assert ended["endReason"] == "system_error"


# --- 7: dataMessages --------------------------------------------------------------------------


async def test_data_messages_switch_transcripts_off_and_speech_events_on(start: Start) -> None:
    _, raw = await start(Scenario(greeting=None))
    data = {"transcript": False, "userStartedSpeaking": True, "userStoppedSpeaking": True}
    await raw.start(
        {"medium": {"serverWebSocket": {"inputSampleRate": 16000, "dataMessages": data}}}
    )
    await raw.speak(loud_ms=200, quiet_ms=420)
    await raw.until(lambda: bool(raw.messages("user_stopped_speaking")))
    kinds = [m["type"] for m in raw.messages()]
    assert kinds.index("user_started_speaking") < kinds.index("user_stopped_speaking")
    await raw.until(lambda: any(is_audio(f) for _, f in raw.frames))  # the reply is spoken...
    assert raw.messages("transcript") == []  # ...but not transcribed


async def test_speech_events_and_debug_are_off_by_default(start: Start) -> None:
    _, raw = await start(Scenario(greeting=None))
    await raw.start({"selectedTools": [TOOL]})
    await raw.speak(loud_ms=200, quiet_ms=420)
    await raw.until(lambda: bool(raw.finals("user")))
    await invoke(raw)
    assert raw.messages("user_started_speaking") == raw.messages("debug") == []


@pytest.mark.parametrize("how", ["dataMessages", "experimentalMessages"])
async def test_debug_messages_on_request(start: Start, how: str) -> None:
    _, raw = await start(Scenario(greeting=None))
    medium = {"serverWebSocket": {"inputSampleRate": 16000}}
    if how == "dataMessages":
        medium["serverWebSocket"]["dataMessages"] = {"debug": True}  # type: ignore[index]
    query = "?experimentalMessages=debug" if how == "experimentalMessages" else ""
    await raw.start({"selectedTools": [TOOL], "medium": medium}, join_query=query)
    await invoke(raw)
    assert "lookup" in raw.messages("debug")[0]["message"]
