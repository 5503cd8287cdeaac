"""Per-burst hand-over of a generation's audio and text (issue 15): together, in order, exact."""

from __future__ import annotations

import asyncio

import pytest
from livekit import rtc
from livekit.agents import llm

from ultravox_fsm.io.streams import Burst, GenerationStreams


def drain(gen: GenerationStreams) -> tuple[list[bytes], list[str]]:
    frames: list[bytes] = []
    texts: list[str] = []
    while True:
        try:
            frame: rtc.AudioFrame = gen.audio_ch.recv_nowait()
        except Exception:
            break
        frames.append(frame.data.tobytes())
    while True:
        try:
            texts.append(gen.text_ch.recv_nowait())
        except Exception:
            break
    return frames, texts


async def test_what_arrives_in_one_iteration_is_one_frame_and_one_text_piece() -> None:
    gen = GenerationStreams("g", 24000, audio=True, burst=Burst())
    for i in range(5):
        gen.audio(bytes([i]) * 4)
        gen.text(f"w{i} ")
    assert drain(gen) == ([], [])  # nothing yet: still the iteration they arrived in
    await asyncio.sleep(0)  # the next iteration, before the loop waits for I/O
    frames, texts = drain(gen)
    assert frames == [b"".join(bytes([i]) * 4 for i in range(5))]
    assert texts == ["w0 w1 w2 w3 w4 "]


async def test_one_frame_per_iteration_when_frames_arrive_one_at_a_time() -> None:
    gen = GenerationStreams("g", 24000, audio=True, burst=Burst())
    got: list[bytes] = []
    for i in range(3):
        gen.audio(bytes([i]) * 2)
        await asyncio.sleep(0)
        got += drain(gen)[0]
    assert got == [b"\0\0", b"\1\1", b"\2\2"]


async def test_the_frame_has_the_generations_rate_and_all_samples() -> None:
    gen = GenerationStreams("g", 24000, audio=True, burst=Burst())
    gen.audio(b"\1\0" * 480)
    gen.audio(b"\2\0" * 480)
    await asyncio.sleep(0)
    frame: rtc.AudioFrame = gen.audio_ch.recv_nowait()
    assert (frame.sample_rate, frame.num_channels, frame.samples_per_channel) == (24000, 1, 960)


async def test_a_cut_hands_over_what_arrived_before_it_and_nothing_after() -> None:
    gen = GenerationStreams("g", 24000, audio=True, burst=Burst())
    gen.audio(b"\1\1")
    gen.text("before")
    gen.close()  # a barge-in cut or the generation's end, in the same iteration
    gen.audio(b"\2\2")
    gen.text("after")
    await asyncio.sleep(0)
    assert drain(gen) == ([b"\1\1"], ["before"])
    assert gen.audio_ch.closed and gen.text_ch.closed


async def test_next_generations_frames_stay_out_of_the_previous_one() -> None:
    first = GenerationStreams("a", 24000, audio=True, burst=Burst())
    first.audio(b"\1\1")
    first.close()
    second = GenerationStreams("b", 24000, audio=True, burst=Burst())
    second.audio(b"\2\2")
    await asyncio.sleep(0)
    assert drain(first)[0] == [b"\1\1"]
    assert drain(second)[0] == [b"\2\2"]


async def test_text_said_before_a_tool_call_is_handed_over_before_it() -> None:
    gen = GenerationStreams("g", 24000, audio=False, burst=Burst())
    gen.text("let me check")
    gen.call(llm.FunctionCall(call_id="c", name="lookup", arguments="{}"))
    assert gen.text_ch.recv_nowait() == "let me check"
    assert gen.function_ch.recv_nowait().name == "lookup"


async def test_a_burst_the_transport_ends_is_handed_over_at_once_and_only_once() -> None:
    burst = Burst()
    gen = GenerationStreams("g", 24000, audio=True, burst=burst)
    gen.audio(b"\1\1")
    gen.text("a")
    burst.end()  # the transport read all it had: no need to wait for the iteration's end
    assert drain(gen) == ([b"\1\1"], ["a"])
    await asyncio.sleep(0)
    assert drain(gen) == ([], [])


async def test_what_the_settle_adds_is_handed_over_with_the_burst() -> None:
    late: list[GenerationStreams] = []
    burst = Burst(settle=lambda: late[0].text(" held"))
    gen = GenerationStreams("g", 24000, audio=True, burst=burst)
    late.append(gen)
    gen.text("said")
    await asyncio.sleep(0)
    assert drain(gen) == ([], ["said held"])


async def test_a_transport_that_ends_its_bursts_needs_no_callback() -> None:
    burst = Burst()
    burst.ended_by_transport = True  # the lean socket calls `end` after every chunk it read
    gen = GenerationStreams("g", 24000, audio=True, burst=burst)
    gen.audio(b"\1\1")
    gen.audio(b"\2\2")
    burst.end()
    assert drain(gen) == ([b"\1\1\2\2"], [])
    gen.text("next")
    burst.end()
    assert drain(gen) == ([], ["next"])


async def test_a_settle_that_raises_does_not_strand_what_arrived() -> None:
    def broken() -> None:
        raise RuntimeError("a listener raised")

    burst = Burst(settle=broken)
    gen = GenerationStreams("g", 24000, audio=True, burst=burst)
    gen.audio(b"\1\1")
    with pytest.raises(RuntimeError):
        burst.end()
    assert drain(gen) == ([b"\1\1"], [])
