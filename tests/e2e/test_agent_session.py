"""The library inside a real livekit.agents AgentSession (no room), against the stand-in."""

from __future__ import annotations

import asyncio
import logging
import math
import struct

import pytest
from livekit import rtc
from livekit.agents import Agent, AgentSession, ChatContext, function_tool, llm

from ultravox_fsm import RealtimeModel
from ultravox_fsm.testing.server import Scenario, StandInServer

pytestmark = pytest.mark.filterwarnings("ignore")
KEY = "sk-test.0123456789abcdefghijklmnopqrstuv"


class Assistant(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="You are terse.")
        self.lookups: list[str] = []

    @function_tool
    async def weather(self, city: str) -> str:
        """The weather in a city."""
        self.lookups.append(city)
        return f"sunny in {city}"


async def start(server: StandInServer, **kwargs: object) -> tuple[AgentSession, Assistant]:
    model = RealtimeModel(base_url=server.base_url, api_key=KEY, output_medium="text", **kwargs)  # type: ignore[arg-type]
    session: AgentSession = AgentSession(llm=model)
    agent = Assistant()
    await session.start(agent)
    return session, agent


async def test_text_turn_gives_one_assistant_message_and_one_speech(server: StandInServer) -> None:
    session, _ = await start(server)
    speeches: list[object] = []
    session.on("speech_created", speeches.append)
    result = await asyncio.wait_for(session.run(user_input="hello there"), 10)
    result.expect.next_event().is_message(role="assistant")
    result.expect.no_more_events()
    assert [e.item.text_content for e in result.events] == ["You said: hello there"]  # type: ignore[union-attr]
    assert len(speeches) == 1
    [message] = server.messages("user_text_message")
    assert message == {"type": "user_text_message", "text": "hello there", "urgency": "soon"}
    await session.aclose()


async def test_tool_round_trip_has_one_result_on_the_wire(server: StandInServer) -> None:
    session, agent = await start(server)
    result = await asyncio.wait_for(session.run(user_input="please use weather city=Paris"), 10)
    result.expect.next_event().is_function_call(name="weather", arguments={"city": "Paris"})
    result.expect.next_event().is_function_call_output(output="sunny in Paris")
    result.expect.next_event().is_message(role="assistant")
    result.expect.no_more_events()
    assert agent.lookups == ["Paris"]
    [tool_result] = server.messages("client_tool_result")
    assert tool_result["result"] == "sunny in Paris"
    assert tool_result["agentReaction"] == "speaks"
    await session.aclose()


async def test_say_speaks_verbatim_and_interruptibly(server: StandInServer) -> None:
    session, _ = await start(server)
    handle = session.say("Thanks for calling.")
    await asyncio.wait_for(handle.wait_for_playout(), 10)
    assert [i.text_content for i in handle.chat_items if isinstance(i, llm.ChatMessage)] == [
        "Thanks for calling."
    ]
    [forced] = server.messages("forced_agent_message")
    assert forced == {
        "type": "forced_agent_message",
        "content": "Thanks for calling.",
        "uninterruptible": False,
    }
    await session.aclose()


async def test_generate_reply_with_instructions(server: StandInServer) -> None:
    session, _ = await start(server)
    handle = session.generate_reply(instructions="greet the user")
    await asyncio.wait_for(handle.wait_for_playout(), 10)
    texts = [i.text_content for i in handle.chat_items if isinstance(i, llm.ChatMessage)]
    assert texts == ["You said: <instruction>greet the user</instruction>"]
    user_items = [i for i in session.history.items if getattr(i, "role", None) == "user"]
    assert user_items == []  # our own instruction is not reported as user speech
    await session.aclose()


async def test_context_injection_does_not_cause_a_reply(server: StandInServer) -> None:
    session, agent = await start(server)
    await asyncio.wait_for(session.run(user_input="hi"), 10)
    ctx = agent.chat_ctx.copy()
    ctx.add_message(role="system", content="The caller is a VIP.")
    await agent.update_chat_ctx(ctx)
    await asyncio.sleep(0.3)
    later = [m for m in server.messages("user_text_message") if m.get("urgency") == "later"]
    assert later == [
        {
            "type": "user_text_message",
            "text": "<instruction>The caller is a VIP.</instruction>",
            "urgency": "later",
            "deferResponse": True,
        }
    ]
    assistant = [i for i in session.history.items if getattr(i, "role", None) == "assistant"]
    assert len(assistant) == 1
    await session.aclose()


async def test_instruction_change_restarts_with_the_prior_call(server: StandInServer) -> None:
    session, agent = await start(server)
    await asyncio.wait_for(session.run(user_input="first"), 10)
    await agent.update_instructions("Now speak like a pirate.")
    result = await asyncio.wait_for(session.run(user_input="second"), 10)
    assert [e.item.text_content for e in result.events] == ["You said: second"]  # type: ignore[union-attr]
    first, second = server.calls.values()
    assert second.query["priorCallId"] == first.call_id
    assert second.body["systemPrompt"] == "Now speak like a pirate."
    await session.aclose()


async def test_call_options_are_sent_in_the_api_format(server: StandInServer) -> None:
    session, _ = await start(server, max_duration="30m", vad_settings={"turnEndpointDelay": "0.5s"})
    await asyncio.wait_for(session.run(user_input="hi"), 10)
    [call] = server.calls.values()
    assert call.body["maxDuration"] == "1800s"
    assert call.body["initialOutputMedium"] == "MESSAGE_MEDIUM_TEXT"
    assert call.body["firstSpeakerSettings"] == {"user": {}}
    assert call.body["vadSettings"] == {"turnEndpointDelay": "0.5s"}
    assert "enableGreetingPrompt" not in call.query
    [tool] = call.body["selectedTools"]
    assert tool["temporaryTool"]["dynamicParameters"] == [
        {
            "name": "city",
            "location": "PARAMETER_LOCATION_BODY",
            "schema": {"type": "string"},
            "required": True,
        }
    ]
    await session.aclose()


async def test_invalid_key_is_one_non_recoverable_error_and_the_key_is_never_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with StandInServer(api_key="the-right-key") as server:
        model = RealtimeModel(base_url=server.base_url, api_key=KEY, output_medium="text")
        rt = model.session()
        errors: list[llm.RealtimeModelError] = []
        rt.on("error", errors.append)
        with pytest.raises(llm.RealtimeError):
            await asyncio.wait_for(rt.generate_reply(instructions="hi"), 10)
        assert [e.recoverable for e in errors] == [False]
        assert "401" in str(errors[0].error) and "invalid Ultravox API key" in str(errors[0].error)
        await rt.aclose()
    assert KEY not in caplog.text
    assert all(KEY not in repr(e.error) for e in errors)


async def test_429_with_retry_after_is_honoured(server: StandInServer) -> None:
    server.fail_next_calls = [(429, "1")]
    model = RealtimeModel(base_url=server.base_url, api_key=KEY, output_medium="text")
    rt = model.session()
    errors: list[llm.RealtimeModelError] = []
    rt.on("error", errors.append)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(rt.generate_reply(instructions="hi"), 10)
    assert loop.time() - started >= 1.0
    assert [e.recoverable for e in errors] == [True]
    await rt.aclose()


def tone(rate: int, ms: int, loud: bool) -> rtc.AudioFrame:
    n = rate * ms // 1000
    amp = 8000 if loud else 0
    data = struct.pack(f"<{n}h", *(int(amp * math.sin(i / 5)) for i in range(n)))
    return rtc.AudioFrame(data, rate, 1, n)


async def speak(rt: llm.RealtimeSession, rate: int = 48000) -> None:
    for i in range(60):
        rt.push_audio(tone(rate, 20, loud=i < 20))
        await asyncio.sleep(0)


async def test_voice_turn_from_pushed_48k_audio_through_the_bare_session() -> None:
    async with StandInServer(Scenario(voice_transcript="what's up")) as server:
        model = RealtimeModel(base_url=server.base_url, api_key=KEY)
        rt = model.session()
        created: asyncio.Queue[llm.GenerationCreatedEvent] = asyncio.Queue()
        transcripts: list[str] = []
        rt.on("generation_created", created.put_nowait)
        rt.on("input_audio_transcription_completed", lambda e: transcripts.append(e.transcript))
        await asyncio.sleep(0.1)
        await speak(rt)
        gen = await asyncio.wait_for(created.get(), 10)
        assert gen.user_initiated is False
        message = await anext(aiter(gen.message_stream))
        text = "".join([t async for t in message.text_stream])
        frames = [f async for f in message.audio_stream]
        assert text == "You said: what's up"
        assert frames and all(f.sample_rate == 24000 for f in frames)
        assert transcripts == ["what's up"]
        [call] = server.calls.values()
        assert call.audio_bytes >= 16000 * 2 * 1.1  # resampled to 16 kHz, nothing held back
        await rt.aclose()


async def test_socket_drop_mid_utterance_reconnects_and_finishes_the_reply() -> None:
    async with StandInServer() as server:
        server.drop_after_audio_frames = 2
        model = RealtimeModel(base_url=server.base_url, api_key=KEY)
        rt = model.session()
        reconnected: list[object] = []
        resumed: asyncio.Queue[llm.GenerationCreatedEvent] = asyncio.Queue()
        rt.on("session_reconnected", reconnected.append)
        rt.on("generation_created", resumed.put_nowait)
        gen = await asyncio.wait_for(rt.generate_reply(instructions="tell a long story"), 10)
        message = await anext(aiter(gen.message_stream))
        cut = "".join([t async for t in message.text_stream])  # ends when the socket drops
        assert cut != "You said: <instruction>tell a long story</instruction>"
        gen = await asyncio.wait_for(resumed.get(), 10)
        message = await anext(aiter(gen.message_stream))
        assert "".join([t async for t in message.text_stream]).startswith("You said:")
        assert len(reconnected) == 1
        first, second = server.calls.values()
        assert second.query["priorCallId"] == first.call_id
        await rt.aclose()


@pytest.mark.parametrize("honoured", [True, False], ids=["defer-honoured", "defer-ignored"])
async def test_interrupt_stops_the_agent_without_a_new_reply(honoured: bool) -> None:
    long_reply = Scenario(audio_ms_per_word=400, honour_defer_response=honoured)
    async with StandInServer(long_reply) as server:
        model = RealtimeModel(base_url=server.base_url, api_key=KEY, client_buffer_size_ms=60)
        rt = model.session()
        created: list[llm.GenerationCreatedEvent] = []
        rt.on("generation_created", created.append)
        gen = await asyncio.wait_for(rt.generate_reply(instructions="talk for a while"), 10)
        message = await anext(aiter(gen.message_stream))
        await anext(aiter(message.text_stream))
        rt.interrupt()
        rest = [t async for t in message.text_stream]
        assert "You said: <instruction>talk for a while</instruction>" not in "".join(rest)
        await asyncio.sleep(0.5)
        assert created == []
        assert server.messages("user_text_message")[-1] == {
            "type": "user_text_message",
            "text": "",
            "urgency": "immediate",
            "deferResponse": True,
        }
        await rt.aclose()


async def test_chat_ctx_and_options_are_per_session(server: StandInServer) -> None:
    model = RealtimeModel(base_url=server.base_url, api_key=KEY, output_medium="text")
    a, b = model.session(), model.session()
    await a.update_instructions("only for a")
    assert b._opts.system_prompt == "You are a helpful assistant."
    assert model._opts.system_prompt == "You are a helpful assistant."
    assert isinstance(a.chat_ctx, ChatContext)
    await a.aclose()
    await b.aclose()


@pytest.mark.parametrize("honoured", [True, False], ids=["defer-honoured", "defer-ignored"])
async def test_after_interrupt_the_servers_history_holds_what_was_played(honoured: bool) -> None:
    """The default 30 s client buffer: the whole reply arrives at once, yet the server knows
    what the client played, so its final transcript (its history) is cut there."""
    words = Scenario(audio_ms_per_word=200, honour_defer_response=honoured)
    async with StandInServer(words) as server:
        rt = RealtimeModel(base_url=server.base_url, api_key=KEY).session()
        finals: list[str] = []
        rt.on(
            "ultravox_server_event_received",
            lambda m: (
                finals.append(m["text"])
                if m.get("type") == "transcript" and m.get("role") == "agent" and m.get("final")
                else None
            ),
        )
        instruction = " ".join(f"w{i}" for i in range(20))
        gen = await asyncio.wait_for(rt.generate_reply(instructions=instruction), 10)
        message = await anext(aiter(gen.message_stream))
        await anext(aiter(message.audio_stream))
        await asyncio.sleep(0.5)  # about 2 of the reply's 23 words played
        rt.interrupt()
        for _ in range(100):
            if finals:
                break
            await asyncio.sleep(0.02)
        [final] = finals
        full = f"You said: <instruction>{instruction}</instruction>"
        assert 0 < len(final.split()) < len(full.split()) // 2
        assert full.startswith(final)
        await rt.aclose()


async def test_generate_reply_then_interrupt_does_not_swallow_later_replies(
    server: StandInServer,
) -> None:
    session, _ = await start(server, reply_timeout=3.0)
    session.generate_reply(instructions="about to be interrupted")
    session.interrupt()
    for question in ("first after", "second after", "third after"):
        result = await asyncio.wait_for(session.run(user_input=question), 10)
        texts = [e.item.text_content for e in result.events]  # type: ignore[union-attr]
        assert texts == [f"You said: {question}"], texts
    await session.aclose()
