"""Soak: 20 sessions x 10 turns at once, with random socket drops and 503s on call creation.

Asserts what a caller relies on: every turn's request is answered (never failed or lost); each
turn's text reaches Ultravox at least once, and again only when the call it went to died before
echoing it (at most one repeat per dropped call: delivery is at-least-once by design); every tool
invocation gets exactly one result.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

from livekit.agents import APIConnectOptions, llm

from ultravox_fsm import RealtimeModel, RealtimeSession, State
from ultravox_fsm.testing.server import Scenario, StandInServer

SESSIONS, TURNS = 20, 10
FAST = APIConnectOptions(max_retry=5, retry_interval=0.05, timeout=5.0)


async def drain(rt: RealtimeSession, gen: llm.GenerationCreatedEvent) -> None:
    async def messages() -> None:
        async for message in gen.message_stream:
            async for _ in message.text_stream:
                pass
            async for _ in message.audio_stream:
                pass

    async def calls() -> None:
        async for call in gen.function_stream:
            await rt.send_tool_result(call.call_id, f"result for {call.call_id}")

    await asyncio.gather(messages(), calls())


async def quiet(rt: RealtimeSession) -> None:
    while rt.state is not State.LISTENING:  # LISTENING has no open generation (invariant)
        await asyncio.sleep(0.01)


async def one_session(seed: int) -> tuple[StandInServer, int]:
    rng = random.Random(seed)
    server = await StandInServer(Scenario(audio_ms_per_word=20)).start()
    model = RealtimeModel(base_url=server.base_url, api_key="soak", conn_options=FAST)
    rt = model.session()
    background: list[asyncio.Task[None]] = []
    rt.on("generation_created", lambda g: background.append(asyncio.create_task(drain(rt, g))))
    answered = 0
    try:
        for turn in range(TURNS):
            if rng.random() < 0.25:
                server.drop_after_audio_frames = rng.randint(1, 4)
            if rng.random() < 0.2:
                server.fail_next_calls = [(503, "0")]
            text = f"use lookup turn={turn}" if turn % 3 == 2 else f"turn {turn}"
            gen = await asyncio.wait_for(rt.generate_reply(instructions=text), 20)
            answered += 1
            await drain(rt, gen)
            await asyncio.wait_for(quiet(rt), 20)
        await asyncio.wait_for(asyncio.gather(*background), 20)
    finally:
        await rt.aclose()
        await server.stop()
    return server, answered


async def test_soak_with_drops_and_503s_loses_nothing() -> None:
    results = await asyncio.gather(*(one_session(seed) for seed in range(SESSIONS)))
    drops = 0
    for server, answered in results:
        assert answered == TURNS
        texts = Counter(m["text"] for m in server.messages("user_text_message"))
        repeats = 0
        for turn in range(TURNS):
            body = f"use lookup turn={turn}" if turn % 3 == 2 else f"turn {turn}"
            assert texts[f"<instruction>{body}</instruction>"] >= 1, (turn, texts)
            repeats += texts[f"<instruction>{body}</instruction>"] - 1
        assert repeats <= len(server.calls) - 1
        invoked = Counter(m["invocationId"] for m in server.messages("client_tool_result"))
        assert all(n == 1 for n in invoked.values()), invoked
        drops += len(server.calls) - 1
    assert drops > 0  # the faults really happened


HOSTILE_FRAMES: list[str | bytes] = [
    '{"type":"transcript","role":"agent","x":' + "[" * 5000 + "]" * 5000 + "}",
    '{"type":"state","state":"\\ud800"}',
    '{"type":"transcript","role":"agent","ordinal":1e400}',
    '{"type":"brand_new_message"}',
    b"\x01",
]
POISON = "x" * (5 * 1024 * 1024)  # its echo exceeds the client's frame limit: every call dies


async def hostile_session(seed: int, errors: list[object]) -> dict[str, int]:
    """One session meeting hostile frames, a poison request, a bad option and, for some, a
    server that ends the call. Every turn must end (answered or failed) within its deadline."""
    rng = random.Random(seed)
    server = await StandInServer(Scenario(audio_ms_per_word=5)).start()
    server.raw_frames = HOSTILE_FRAMES
    model = RealtimeModel(
        base_url=server.base_url, api_key="soak", conn_options=FAST, reply_timeout=5.0
    )
    rt = model.session()
    rt.on("generation_created", lambda g: asyncio.create_task(drain(rt, g)))
    outcome = Counter[str]()
    ends_at = rng.randint(3, 8) if seed % 4 == 0 else None
    try:
        for turn in range(TURNS):
            if turn == ends_at:
                await asyncio.wait_for(quiet(rt), 20)  # a live call, then the server ends it
                await server.close_sockets(1000)
            elif ends_at is None and rng.random() < 0.2:
                server.drop_after_audio_frames = rng.randint(1, 4)
            if turn == 1:
                try:
                    await rt.update_tools([bad_tool()])
                except ValueError:
                    outcome["bad option refused"] += 1
            text = POISON if (turn == 2 and seed % 5 == 1) else f"turn {turn}"
            try:
                gen = await asyncio.wait_for(rt.generate_reply(instructions=text), 20)
            except llm.RealtimeError:
                outcome["failed"] += 1
                continue
            except asyncio.TimeoutError:
                outcome["hung"] += 1
                continue
            outcome["answered"] += 1
            await asyncio.wait_for(drain(rt, gen), 20)
        outcome["zombie"] += int(ends_at is not None and rt.state is not State.CLOSED)
    finally:
        await rt.aclose()
        await server.stop()
    outcome["pending after close"] += sum(not f.done() for f in rt._futures.values())
    return outcome


def bad_tool() -> llm.Tool:
    schema = {"type": "object", "properties": {"a": {"type": "string", "enum": [object()]}}}

    @llm.function_tool(raw_schema={"name": "bad", "parameters": schema})
    async def bad(raw_arguments: dict[str, object]) -> str:
        return ""

    return bad


async def test_soak_with_hostile_frames_poison_bad_options_and_call_ends() -> None:
    errors: list[object] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    outcomes = await asyncio.gather(*(hostile_session(seed, errors) for seed in range(SESSIONS)))
    total = sum(outcomes, Counter[str]())
    assert total["hung"] == 0
    assert total["zombie"] == 0
    assert total["pending after close"] == 0
    assert total["bad option refused"] == SESSIONS
    assert total["answered"] > SESSIONS * TURNS // 2
    assert total["failed"] > 0  # the poison requests and the turns after a call ended
    assert errors == []  # no exception escaped into the event loop
    print(dict(total))
