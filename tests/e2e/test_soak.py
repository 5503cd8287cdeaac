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
