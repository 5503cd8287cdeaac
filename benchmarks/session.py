"""Side-by-side client CPU: ultravox_fsm vs livekit-plugins-ultravox 1.8.9 vs a bare aiohttp floor.

The stand-in server runs in a separate process (`ultravox-fsm serve`), so only client CPU
(`time.process_time`) is counted. Each turn asks for a reply of ~120 words: as many transcript
deltas and ~360 agent audio frames (24 kHz, 20 ms). Then 16 kHz input audio is pushed in 20 ms
frames. Clients run in alternating order, ROUNDS times; medians and ratios are printed. Both
delivery modes are measured in one run: the stand-in writing every frame on its own, and
``serve --burst``, which writes what a loop iteration sends in one socket write, as a real server
does with a reply that runs ahead of playback (issue 15).

    python benchmarks/session.py [--turns 20] [--rounds 3] [--frames 2000]

Ours runs on both of its transports, aiohttp (the default) and ``transport="lean"``; the floor
is bare aiohttp.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from livekit import rtc
from livekit.agents import llm

WORDS = " ".join(f"word{i}" for i in range(120))
EXPECTED = f"You said: <instruction>{WORDS}</instruction>"
SILENCE = rtc.AudioFrame(b"\0" * 640, 16000, 1, 320)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Collector:
    """Drains every generation a session hands out; counts text characters and audio frames."""

    def __init__(self) -> None:
        self.chars = 0
        self.frames = 0
        self.target = 0
        self.reached = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()

    def take(self, gen: llm.GenerationCreatedEvent) -> None:
        task = asyncio.ensure_future(self.drain(gen))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def drain(self, gen: llm.GenerationCreatedEvent) -> None:
        async for message in gen.message_stream:
            await asyncio.gather(self.text(message), self.audio(message))

    async def text(self, message: llm.MessageGeneration) -> None:
        async for t in message.text_stream:
            self.chars += len(t)
            if self.chars >= self.target:
                self.reached.set()

    async def audio(self, message: llm.MessageGeneration) -> None:
        async for _ in message.audio_stream:
            self.frames += 1

    async def until(self, chars: int) -> None:
        self.target = chars
        if self.chars < chars:
            self.reached.clear()
            await self.reached.wait()


async def run_livekit(model: llm.RealtimeModel, turns: int, frames: int) -> tuple[float, float]:
    session = model.session()
    collect = Collector()
    session.on("generation_created", collect.take)
    cpu0 = time.process_time()
    for turn in range(turns):
        fut = session.generate_reply(instructions=WORDS)
        fut.add_done_callback(
            lambda f: None if f.cancelled() or f.exception() else collect.take(f.result())
        )
        await asyncio.wait_for(collect.until((turn + 1) * len(EXPECTED)), 30)
    cpu_turns = time.process_time() - cpu0
    cpu0 = time.process_time()
    for _ in range(frames):
        session.push_audio(SILENCE)
    await asyncio.sleep(0.2)
    cpu_frames = time.process_time() - cpu0
    await session.aclose()
    return cpu_turns / turns, cpu_frames / frames


async def idle_memory(model: llm.RealtimeModel, sessions: int) -> float:
    """Bytes allocated per connected, idle session (tracemalloc, after a warm-up session)."""
    warm = model.session()
    await asyncio.sleep(0.3)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    live = [model.session() for _ in range(sessions)]
    await asyncio.sleep(1.0)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    for rt in [warm, *live]:
        await rt.aclose()
    return (after - before) / sessions


async def run_floor(base_url: str, turns: int, frames: int) -> tuple[float, float]:
    """Receives and discards the same frames with aiohttp alone."""
    async with aiohttp.ClientSession() as http:
        body = {
            "medium": {
                "serverWebSocket": {
                    "inputSampleRate": 16000,
                    "outputSampleRate": 24000,
                    "clientBufferSizeMs": 30000,
                }
            }
        }
        async with http.post(f"{base_url}/calls", json=body, headers={"X-API-Key": "k"}) as resp:
            join = (await resp.json())["joinUrl"]
        async with http.ws_connect(join) as ws:
            cpu0 = time.process_time()
            for _ in range(turns):
                await ws.send_str(
                    '{"type":"user_text_message","text":"<instruction>' + WORDS + '</instruction>"}'
                )
                while True:
                    msg = await ws.receive()
                    if (
                        msg.type is aiohttp.WSMsgType.TEXT
                        and '"final": true' in msg.data
                        and '"agent"' in msg.data
                    ):
                        break
            cpu_turns = time.process_time() - cpu0
            cpu0 = time.process_time()
            data = bytes(640)
            for _ in range(frames):
                await ws.send_bytes(data)
            cpu_frames = time.process_time() - cpu0
    return cpu_turns / turns, cpu_frames / frames


async def measure(
    base_url: str, turns: int, rounds: int, frames: int, memory: bool
) -> dict[str, Any]:
    """Alternating rounds of the four clients, then (if asked) idle memory of the libraries."""
    from livekit.plugins import ultravox as seed

    import ultravox_fsm

    async with aiohttp.ClientSession() as http:
        models: dict[str, Callable[[], llm.RealtimeModel]] = {
            "ultravox_fsm": lambda: ultravox_fsm.RealtimeModel(
                base_url=base_url, api_key="k", http_session=http
            ),
            "ultravox_fsm lean": lambda: ultravox_fsm.RealtimeModel(
                base_url=base_url, api_key="k", http_session=http, transport="lean"
            ),
            "seed 1.8.9": lambda: seed.RealtimeModel(
                base_url=base_url, api_key="k", http_session=http
            ),
        }
        clients: dict[str, Callable[[], Awaitable[tuple[float, float]]]] = {
            name: (lambda make=make: run_livekit(make(), turns, frames))
            for name, make in models.items()
        }
        clients["floor (aiohttp)"] = lambda: run_floor(base_url, turns, frames)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
        names = list(clients)
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                results[name].append(await clients[name]())
        kept = (
            {name: await idle_memory(make(), 20) for name, make in models.items()} if memory else {}
        )
    return {"results": results, "memory": kept}


async def serve_and_measure(burst: bool, turns: int, rounds: int, frames: int) -> dict[str, Any]:
    """Runs the stand-in in its own process (``--burst`` or not) and measures against it."""
    port = free_port()
    command = [sys.executable, "-m", "ultravox_fsm", "serve", "--port", str(port)]
    command += ["--playback-speed", "1000"] + (["--burst"] if burst else [])
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert server.stdout is not None
        server.stdout.readline()
        base_url = f"http://127.0.0.1:{port}/api"
        return await measure(base_url, turns, rounds, frames, memory=not burst)
    finally:
        server.terminate()
        server.wait()


async def main(turns: int, rounds: int, frames: int) -> None:
    print(
        f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
        f"{turns} turns x {rounds} rounds, {frames} pushed frames"
    )
    for burst in (False, True):
        measured = await serve_and_measure(burst, turns, rounds, frames)
        mode = "burst delivery (serve --burst)" if burst else "frame-by-frame delivery"
        report(mode, measured)


def report(mode: str, measured: dict[str, Any]) -> None:
    results, memory = measured["results"], measured["memory"]
    med: dict[str, tuple[float, float]] = {
        name: (statistics.median(t for t, _ in rs), statistics.median(f for _, f in rs))
        for name, rs in results.items()
    }
    print(f"\n== {mode}")
    print(f"{'client':18} {'CPU ms / turn':>14} {'CPU us / pushed frame':>22}")
    for name, (turn, frame) in med.items():
        print(f"{name:18} {turn * 1e3:14.2f} {frame * 1e6:22.2f}")
    theirs, floor = med["seed 1.8.9"], med["floor (aiohttp)"]
    for name in ("ultravox_fsm", "ultravox_fsm lean"):
        ours = med[name]
        print(f"{name}: per turn seed/ours {theirs[0] / ours[0]:.2f}x", end=", ")
        print(f"ours/floor {ours[0] / floor[0]:.2f}x", end="; ")
        print(f"per pushed frame seed/ours {theirs[1] / ours[1]:.2f}x", end=", ")
        print(f"ours/floor {ours[1] / floor[1]:.2f}x")
    if memory:
        ours_kib, seed_kib = memory["ultravox_fsm"] / 1024, memory["seed 1.8.9"] / 1024
        print(
            f"memory per idle connected session: ours {ours_kib:.1f} KiB, seed {seed_kib:.1f} KiB"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(main(args.turns, args.rounds, args.frames))
