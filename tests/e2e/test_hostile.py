"""Issue 12: no frame, option or call end leaves a session dead or hung (each reproduced first)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import numpy as np
import pytest
from livekit import rtc
from livekit.agents import AgentSession, CloseEvent, llm

from ultravox_fsm import RealtimeModel
from ultravox_fsm.errors import LocalProtocolError
from ultravox_fsm.testing.server import StandInServer

from .test_agent_session import KEY, Assistant

pytestmark = pytest.mark.filterwarnings("ignore")
DEEP = '{"type":"transcript","role":"agent","x":' + "[" * 5000 + "]" * 5000 + "}"
HOSTILE: list[str | bytes] = [
    DEEP,
    "[" * 100_000,
    '{"type":"state","state":"\\ud800"}',
    '{"type":"transcript","role":"agent","ordinal":1' + "0" * 5000 + "}",
    '{"type":"transcript","role":"agent","text":"' + "x" * 2_000_000 + '","ordinal":1e400}',
    '{"type":"' + "t" * 10_000 + '"}',
    "\u00ff not even json",
    b"\x01",  # a one-byte audio frame
]


def text_model(server: StandInServer, **kwargs: object) -> RealtimeModel:
    return RealtimeModel(base_url=server.base_url, api_key=KEY, output_medium="text", **kwargs)  # type: ignore[arg-type]


async def test_hostile_frames_are_dropped_and_the_session_goes_on(
    server: StandInServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.raw_frames = HOSTILE
    rt = text_model(server).session()
    event = await asyncio.wait_for(rt.generate_reply(instructions="still there?"), 10)
    assert event.user_initiated
    assert [c.closed for c in server.calls.values()] == [False]  # the same call, never dropped
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    await rt.aclose()


async def test_a_call_the_server_ends_shuts_the_agent_session_down_quietly(
    server: StandInServer, caplog: pytest.LogCaptureFixture
) -> None:
    session: AgentSession = AgentSession(llm=text_model(server))
    closed: asyncio.Future[CloseEvent] = asyncio.get_running_loop().create_future()
    session.on("close", lambda e: closed.done() or closed.set_result(e))
    await session.start(Assistant())
    ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    rt = session.current_agent.realtime_llm_session
    rt.on("ultravox_call_ended", ended.set_result)
    await asyncio.wait_for(session.run(user_input="hello"), 10)
    await server.close_sockets(1000)  # a hang-up or maxDuration on the server's side
    event = await asyncio.wait_for(closed, 5)
    assert event.error is None  # a normal end, not an error
    assert "closed by the server, code 1000" in ended.result()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    await session.aclose()


async def test_an_unencodable_option_is_refused_where_it_is_given(server: StandInServer) -> None:
    with pytest.raises(ValueError, match="metadata"):
        text_model(server, metadata={"when": object()})
    with pytest.raises(ValueError, match="extra_call_fields"):
        text_model(server, extra_call_fields={"x": {"y": object()}})
    rt = text_model(server).session()

    schema = {"type": "object", "properties": {"a": {"type": "string", "enum": [object()]}}}

    @llm.function_tool(raw_schema={"name": "bad", "parameters": schema})
    async def bad(raw_arguments: dict[str, object]) -> str:
        return ""

    with pytest.raises(ValueError, match="schema"):
        await rt.update_tools([bad])
    await asyncio.wait_for(rt.generate_reply(instructions="fine"), 10)
    await rt.aclose()


async def test_an_unexpected_failure_creating_the_call_ends_the_session_once(
    server: StandInServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = text_model(server).session()
    monkeypatch.setattr(rt, "call_request", lambda prior: 1 / 0)
    errors: list[llm.RealtimeModelError] = []
    rt.on("error", errors.append)
    with pytest.raises(llm.RealtimeError, match="ZeroDivisionError"):
        await asyncio.wait_for(rt.generate_reply(instructions="hi"), 5)
    assert [e.recoverable for e in errors] == [False]
    await rt.aclose()


async def test_say_futures_always_end(server: StandInServer) -> None:
    rt = text_model(server).session()

    async def broken() -> AsyncIterator[str]:
        yield "Hello"
        raise RuntimeError("the text source broke")

    with pytest.raises(llm.RealtimeError, match="the text source broke"):
        await asyncio.wait_for(rt.say(broken()), 5)

    async def endless() -> AsyncIterator[str]:
        yield "Hello"
        await asyncio.Event().wait()

    pending = rt.say(endless())
    await asyncio.sleep(0.05)
    await rt.aclose()
    assert pending.done()
    with pytest.raises((llm.RealtimeError, asyncio.CancelledError)):
        pending.result()


@pytest.mark.parametrize("channels", [2, 6])
async def test_multi_channel_input_is_downmixed(server: StandInServer, channels: int) -> None:
    rt = RealtimeModel(base_url=server.base_url, api_key=KEY, input_sample_rate=16000).session()
    await asyncio.wait_for(rt.generate_reply(instructions="ready?"), 10)  # a live call
    samples = np.full((320, channels), 1000, dtype=np.int16)
    for _ in range(10):
        rt.push_audio(rtc.AudioFrame(samples.tobytes(), 16000, channels, 320))
    await asyncio.sleep(0.2)
    [call] = server.calls.values()
    assert call.audio_bytes == 10 * 320 * 2  # mono, not 2x or 6x the bytes
    await rt.aclose()


async def test_after_the_end_calls_are_refused_or_documented_no_ops(server: StandInServer) -> None:
    rt = text_model(server).session()
    await asyncio.wait_for(rt.generate_reply(instructions="hi"), 10)
    await rt.aclose()
    for call in (
        rt.update_instructions("x"),
        rt.update_tools([]),
        rt.update_chat_ctx(llm.ChatContext.empty()),
        rt.send_tool_result("c1", "x"),
    ):
        with pytest.raises(LocalProtocolError, match="ended"):
            await call
    rt.push_audio(rtc.AudioFrame(b"\0\0" * 160, 16000, 1, 160))  # documented no-op
    with pytest.raises(llm.RealtimeError, match="closed"):
        await rt.generate_reply()


async def test_unknown_message_types_are_bounded_and_error_bodies_redacted(
    server: StandInServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.raw_frames = [f'{{"type":"kind_{i}"}}' for i in range(1000)]
    server.fail_next_calls = [(503, None)]
    server.error_detail = "no capacity for {key} " + "x" * 5000
    errors: list[llm.RealtimeModelError] = []
    rt = text_model(server).session()
    rt.on("error", errors.append)
    await asyncio.wait_for(rt.generate_reply(instructions="hi"), 10)
    assert len(rt._reported) <= 256
    [error] = errors
    assert KEY not in str(error.error) and len(str(error.error)) < 1000
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) <= 10
    assert KEY not in caplog.text
    await rt.aclose()


async def test_audio_in_flight_to_a_server_that_stops_reading_is_bounded(
    server: StandInServer,
) -> None:
    rt = RealtimeModel(
        base_url=server.base_url, api_key=KEY, output_medium="text", audio_buffer_ms=200
    ).session()
    await asyncio.wait_for(rt.generate_reply(instructions="ready?"), 5)
    frame = rtc.AudioFrame(bytes(640), 16000, 1, 320)  # 20 ms
    for _ in range(20):  # the server answers pings: it is now held to the bound
        rt.push_audio(frame)
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.1)
    [call] = server.calls.values()
    before = call.audio_bytes
    server.stall_reads()
    for _ in range(250):  # 5 s of speech the server does not read
        rt.push_audio(frame)
        await asyncio.sleep(0)
    server.resume_reads()
    await asyncio.wait_for(rt.generate_reply(instructions="still there?"), 10)
    await asyncio.sleep(0.2)
    bound = 16000 * 2 * 200 // 1000  # audio_buffer_ms of 16 kHz s16le
    late = call.audio_bytes - before
    assert 0 < late <= 2 * bound + 640  # in flight (stale) + the newest held, not 5 s
    await rt.aclose()


async def test_an_exception_in_a_scenario_callback_fails_the_test_with_it() -> None:
    from ultravox_fsm.testing.server import Scenario

    def reply(text: str, tools: list[str]) -> object:
        raise KeyError("no reply written for this question")

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(KeyError, match="no reply written"):
        async with StandInServer(Scenario(reply=reply)) as server:  # type: ignore[arg-type]
            rt = text_model(server).session()
            with pytest.raises(llm.RealtimeError):
                await asyncio.wait_for(rt.generate_reply(instructions="hi"), 10)
            await rt.aclose()
    assert loop.time() - started < 5  # fast, not a 15 s reply timeout


async def test_a_session_logs_nothing_from_transitions(
    server: StandInServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    session: AgentSession = AgentSession(llm=text_model(server))
    await session.start(Assistant())
    await asyncio.wait_for(session.run(user_input="hello"), 10)
    await session.aclose()
    noisy = [r for r in caplog.records if r.name.startswith("transitions")]
    assert not [r for r in noisy if r.levelno >= logging.INFO]
    ours = [r for r in caplog.records if r.name.startswith("ultravox_fsm")]
    assert all(r.levelno == logging.DEBUG for r in ours)  # per-event records: DEBUG
    assert any("turn: listening -> thinking" in r.getMessage() for r in ours)


async def test_a_careless_caller_never_leaves_a_future_pending(server: StandInServer) -> None:
    server.create_delay = 0.2
    rt = text_model(server, reply_timeout=3.0).session()
    futures = [rt.generate_reply(instructions=f"q{i}") for i in range(30)]
    futures += [rt.say(f"line {i}") for i in range(5)]
    for _ in range(20):
        rt.interrupt()
    await rt.aclose()  # while the first call is still being created
    await rt.aclose()  # twice is fine
    assert all(f.done() for f in futures)
    for f in futures:
        if not f.cancelled():
            with pytest.raises(llm.RealtimeError):
                f.result()


async def test_many_requests_at_once_all_end(server: StandInServer) -> None:
    rt = text_model(server, reply_timeout=5.0).session()
    results = await asyncio.gather(
        *(asyncio.wait_for(rt.generate_reply(instructions=f"q{i}"), 15) for i in range(40)),
        return_exceptions=True,
    )
    assert not [r for r in results if isinstance(r, asyncio.TimeoutError)]  # none hung
    assert sum(isinstance(r, llm.GenerationCreatedEvent) for r in results) >= 1
    await rt.aclose()


async def test_a_server_that_speaks_without_end_is_bounded_by_the_drain(
    server: StandInServer,
) -> None:
    server.raw_frames = [
        '{"type":"state","state":"speaking"}',
        '{"type":"transcript","role":"agent","text":"never finished","ordinal":0}',
        '{"type":"state","state":"listening"}',
    ]
    rt = text_model(server).session()
    created: list[llm.GenerationCreatedEvent] = []
    rt.on("generation_created", created.append)
    await asyncio.wait_for(rt.generate_reply(instructions="after that"), 10)
    [orphan] = created  # the unfinished utterance was announced, then closed by the drain
    message = await anext(aiter(orphan.message_stream))
    assert "".join([t async for t in message.text_stream]) == "never finished"
    await rt.aclose()
