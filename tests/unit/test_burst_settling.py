"""The adapter holds a burst's deltas back and feeds them as one (issue 15): nothing is lost or
reordered by that, whatever comes next in the same burst."""

from __future__ import annotations

import asyncio
import logging

import msgspec
import pytest
from livekit.agents import llm

from ultravox_fsm import RealtimeModel, wire
from ultravox_fsm import events as ev
from ultravox_fsm.io.session import RealtimeSession
from ultravox_fsm.io.supervisor import CallSupervisor
from ultravox_fsm.states import State

_encode = msgspec.json.Encoder().encode


def text(message: wire.ServerMessage) -> str:
    return _encode(message).decode()


def greeting(rt: RealtimeSession, *deltas: str) -> list[llm.GenerationCreatedEvent]:
    """The agent starts speaking unprompted, then streams ``deltas``, all in one burst."""
    made: list[llm.GenerationCreatedEvent] = []
    rt.on("generation_created", made.append)
    rt.feed_network(ev.Connected(call_id="c1"))
    rt.on_text(text(wire.State(state="thinking")))
    rt.on_text(text(wire.Transcript(role="agent", text="Hello", ordinal=1)))
    rt.on_text(text(wire.State(state="speaking")))
    for delta in deltas:
        rt.on_text(text(wire.Transcript(role="agent", delta=delta, ordinal=1)))
    return made


async def texts_of(gen: llm.GenerationCreatedEvent) -> list[str]:
    pieces: list[str] = []
    async for message in gen.message_stream:
        async for piece in message.text_stream:
            pieces.append(piece)
    return pieces


async def test_a_burst_reaches_livekit_as_one_text_piece_and_the_end_closes_it_whole() -> None:
    rt = RealtimeModel(base_url="http://127.0.0.1:9/api", api_key="k").session()
    try:
        made = greeting(rt, " big", " wide", " world")
        rt.on_text(text(wire.Transcript(role="agent", delta="!", ordinal=1)))
        await asyncio.sleep(0)  # the burst ends
        rt.on_text(text(wire.Transcript(role="agent", text="Hello big wide world!", final=True)))
        rt.on_text(text(wire.State(state="listening")))
        assert len(made) == 1
        assert await asyncio.wait_for(texts_of(made[0]), 2) == ["Hello big wide world!"]
    finally:
        await rt.aclose()


async def test_an_interrupt_in_the_same_burst_sees_the_held_deltas_first() -> None:
    rt = RealtimeModel(base_url="http://127.0.0.1:9/api", api_key="k").session()
    try:
        made = greeting(rt, " big", " wide")
        rt.interrupt()  # before the burst ends: the held deltas are fed to the engine first
        assert await asyncio.wait_for(texts_of(made[0]), 2) == ["Hello big wide"]
        said = [m.text_content for m in rt.chat_ctx.items if isinstance(m, llm.ChatMessage)]
        assert said == ["Hello big wide"]
    finally:
        await rt.aclose()


async def test_a_delta_of_the_next_utterance_in_the_same_burst_opens_its_own_generation() -> None:
    rt = RealtimeModel(base_url="http://127.0.0.1:9/api", api_key="k").session()
    try:
        made = greeting(rt, " there")
        rt.on_text(text(wire.Transcript(role="agent", text="Hello there", ordinal=1, final=True)))
        rt.on_text(text(wire.State(state="listening")))
        rt.on_text(text(wire.State(state="speaking")))
        rt.on_text(text(wire.Transcript(role="agent", delta="Again", ordinal=3)))
        rt.on_text(text(wire.Transcript(role="agent", delta=" now", ordinal=3)))
        await asyncio.sleep(0)
        assert len(made) == 2
        assert await asyncio.wait_for(texts_of(made[0]), 2) == ["Hello there"]
        rt.on_text(text(wire.State(state="listening")))
        rt.on_text(text(wire.Transcript(role="agent", text="Again now", ordinal=3, final=True)))
        assert "".join(await asyncio.wait_for(texts_of(made[1]), 2)) == "Again now"
    finally:
        await rt.aclose()


def engine_inputs(rt: RealtimeSession) -> list[object]:
    """Every input the engine takes from now on, in order (through its observer)."""
    seen: list[object] = []
    observe = rt._engine._observer
    assert observe is not None

    def spy(now: float, event: object, steps: list[object], commands: list[object]) -> None:
        seen.append(event)
        observe(now, event, steps, commands)  # type: ignore[arg-type]

    rt._engine._observer = spy  # type: ignore[assignment]
    return seen


async def test_whether_a_delta_of_another_ordinal_merges_is_asked_after_the_run_before_it() -> None:
    """A run of ordinal 1 joining a generation without an ordinal gives it ordinal 1: a delta
    of ordinal 2 then opens a generation, undecided while a reply is asked for, and must not be
    merged on the word of an engine that had not seen the run yet."""
    rt = RealtimeModel(base_url="http://127.0.0.1:9/api", api_key="k").session()
    try:
        rt.feed_network(ev.Connected(call_id="c1"))
        rt.on_text(text(wire.State(state="thinking")))
        rt.on_text(text(wire.Transcript(role="agent", text="Hi", ordinal=None)))
        rt.on_text(text(wire.State(state="speaking")))
        rt.generate_reply()
        seen = engine_inputs(rt)
        for ordinal in (1, 2, 2):
            rt.on_text(text(wire.Transcript(role="agent", delta=" a", ordinal=ordinal)))
        await asyncio.sleep(0)  # the burst ends
        deltas = [(e.ordinal, e.delta) for e in seen if isinstance(e, wire.Transcript)]
        assert deltas == [(1, " a"), (2, " a"), (2, " a")]  # each weighed as evidence
    finally:
        await rt.aclose()


async def test_a_tool_result_sent_directly_sees_the_held_deltas_first() -> None:
    rt = RealtimeModel(base_url="http://127.0.0.1:9/api", api_key="k").session()
    try:
        greeting(rt, " one")
        invocation = wire.ClientToolInvocation(tool_name="lookup", invocation_id="i1")
        rt.on_text(text(invocation))
        seen = engine_inputs(rt)
        rt.on_text(text(wire.Transcript(role="agent", delta=" moment", ordinal=1)))
        await rt.send_tool_result("i1", "42")  # in the same burst: the delta came first
        kinds = [type(e).__name__ for e in seen]
        assert kinds[:2] == ["Transcript", "ToolResult"]
    finally:
        await rt.aclose()


async def test_late_frames_of_the_call_being_replaced_are_not_warned_about(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restart starts the new call a loop turn later; the old socket's frames of that turn
    (its current chunk, aiohttp's queue, until its close completes) reach a session that is
    restarting. They are moot, not the server's fault: no WARNING for them."""
    monkeypatch.setattr(CallSupervisor, "start", lambda self, prior_call_id: None)  # no I/O
    rt = RealtimeModel(base_url="http://127.0.0.1:9/api", api_key="k").session()
    try:
        rt.feed_network(ev.Connected(call_id="c1"))
        rt._request(ev.RestartRequested(reason="instructions changed"))
        assert rt.state is State.RESTARTING
        rt.on_text(text(wire.State(state="speaking")))
        rt.on_text(text(wire.Transcript(role="agent", text="Late", ordinal=4)))
        rt.on_text(text(wire.PlaybackClearBuffer()))
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    finally:
        await rt.aclose()
