"""A reply that arrives as a burst reaches LiveKit per burst, whole and in its own generation."""

from __future__ import annotations

import asyncio

from livekit.agents import llm

import ultravox_fsm
from ultravox_fsm.testing.server import Reply, Scenario, StandInServer


async def read(gen: llm.GenerationCreatedEvent) -> tuple[int, int, str]:
    """(audio frames, audio bytes, text) of a generation's one message."""
    frames = size = 0
    text = ""
    async for message in gen.message_stream:

        async def audio(m: llm.MessageGeneration = message) -> None:
            nonlocal frames, size
            async for frame in m.audio_stream:
                frames += 1
                size += len(frame.data.tobytes())

        async def texts(m: llm.MessageGeneration = message) -> None:
            nonlocal text
            async for t in m.text_stream:
                text += t

        await asyncio.gather(audio(), texts())
    return frames, size, text


async def test_each_reply_of_a_burst_lands_whole_in_its_own_generation() -> None:
    replies = iter(["one two three four five", "six seven eight"])
    scenario = Scenario(
        greeting=None,
        reply=lambda _t, _tools: Reply(text=next(replies)),
        playback_speed=1000,
        burst=True,
    )
    async with StandInServer(scenario) as server:
        model = ultravox_fsm.RealtimeModel(base_url=server.base_url, api_key="k")
        session = model.session()
        try:
            got = []
            for words in (5, 3):
                gen = await asyncio.wait_for(session.generate_reply(instructions="hi"), 5)
                got.append((words, await asyncio.wait_for(read(gen), 5)))
        finally:
            await session.aclose()
    for words, (frames, size, _) in got:
        assert size == words * 60 * 24 * 2  # 60 ms a word at 24 kHz, nothing lost or moved
        assert frames < words * 3  # fewer LiveKit frames than the server's 20 ms frames
    assert [text for _, (_, _, text) in got] == ["one two three four five", "six seven eight"]
