"""Real-time load, side by side: ultravox_fsm (on both transports) vs livekit-plugins-ultravox 1.8.9
vs an aiohttp floor.

`paced_server.py` runs in its own process and streams every call as a speaking agent would: one
24 kHz audio frame per 20 ms and an agent transcript delta every 200 ms, each stamped with the
time it was written. Each client process holds N sessions, pushes 16 kHz input frames every
20 ms per session (spread over the period, like independent calls) and consumes every
generation as LiveKit would. Measured per client, medians of alternating rounds:

- client CPU per received audio frame and per data message (steady streams of one kind each);
- socket-to-event latency, p50 and p99: from the server's write to the consumer receiving the
  text delta or `rtc.AudioFrame` (the floor: to `ws.receive()` returning), at 1 and 100 sessions;
- the most concurrent real-time sessions one process keeps, with 20 ms input frames (the
  protocol's advice) and 50 ms ones (what an `AgentSession`'s room input pushes by default):
  sessions double until a level fails, then the interval is halved three times. A level keeps
  up when, after the start-up backlog has drained, the median lag stays under one frame
  (20 ms) and at least 99% of the frames due arrive. A client that cannot keep up falls ever
  further behind, so its median lag grows without bound; the p99 is printed beside it, as it is
  set by garbage-collection pauses (a full collection with 700 sessions took 140 ms here, in
  any client) that the server's audio lead (`clientBufferSizeMs`) absorbs.

    python benchmarks/realtime.py [--rounds 3] [--seconds 3] [--many 100] [--input-ms 20 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import struct
import subprocess
import sys
import time
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from livekit import rtc
from livekit.agents import llm
from session import free_port

SLOT = 0.001


class Meter:
    """Counts received frames and keeps their socket-to-event latencies."""

    def __init__(self) -> None:
        self.latency = array("d")
        self.audio = 0
        self.texts = 0
        self.generations = 0

    def reset(self) -> None:
        self.latency = array("d")
        self.audio = self.texts = 0

    def on_audio(self, data: Any) -> None:
        self.latency.append(time.monotonic() - struct.unpack_from("<d", data)[0])
        self.audio += 1

    def on_text(self, delta: str) -> None:
        for word in delta.split():
            self.latency.append(time.monotonic() - float(word))
            self.texts += 1


class Client:
    """N sessions of one kind; pushes input audio on a shared 1 ms-slotted ticker."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def open(self, n: int) -> None:
        raise NotImplementedError

    def prepare_input(self, ms: int) -> None:
        """Build the 16 kHz input frame of ``ms`` milliseconds that `push` sends."""
        raise NotImplementedError

    async def push(self, index: int) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def pace_input(self, n: int, ms: int) -> None:
        """Each session pushes an ``ms`` frame every ``ms``, sessions spread 1 ms apart."""
        self.prepare_input(ms)
        loop = asyncio.get_running_loop()
        start, step = loop.time(), 0
        while True:
            step += 1
            await asyncio.sleep(max(0.0, start + step * SLOT - loop.time()))
            for index in range(step % ms, n, ms):
                await self.push(index)


class LiveKitClient(Client):
    """Sessions of a LiveKit `RealtimeModel`, drained like an `AgentSession` drains them."""

    def __init__(self, meter: Meter, model: llm.RealtimeModel) -> None:
        super().__init__(meter)
        self.model = model
        self.sessions: list[llm.RealtimeSession] = []
        self.frame = rtc.AudioFrame(b"", 16000, 1, 0)

    async def open(self, n: int) -> None:
        for _ in range(n):
            session = self.model.session()
            session.on("generation_created", lambda gen: self.spawn(self.drain(gen)))
            self.sessions.append(session)

    def prepare_input(self, ms: int) -> None:
        self.frame = rtc.AudioFrame(bytes(32 * ms), 16000, 1, 16 * ms)

    async def push(self, index: int) -> None:
        self.sessions[index].push_audio(self.frame)

    async def drain(self, gen: llm.GenerationCreatedEvent) -> None:
        self.meter.generations += 1
        async for message in gen.message_stream:
            self.spawn(self.text(message.text_stream))
            async for frame in message.audio_stream:
                self.meter.on_audio(frame.data)

    async def text(self, stream: AsyncIterator[str]) -> None:
        async for delta in stream:
            self.meter.on_text(delta)

    async def close(self) -> None:
        await asyncio.gather(*(s.aclose() for s in self.sessions))


class FloorClient(Client):
    """Bare aiohttp sockets that only read the stamp of each frame."""

    def __init__(self, meter: Meter, base_url: str, http: aiohttp.ClientSession) -> None:
        super().__init__(meter)
        self.base_url = base_url
        self.http = http
        self.sockets: list[aiohttp.ClientWebSocketResponse] = []
        self.input = b""

    async def open(self, n: int) -> None:
        for _ in range(n):
            async with self.http.post(f"{self.base_url}/calls", json={}) as resp:
                join = (await resp.json())["joinUrl"]
            ws = await self.http.ws_connect(join)
            self.sockets.append(ws)
            self.spawn(self.read(ws))

    async def read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        meter = self.meter
        started = False
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.BINARY:
                meter.on_audio(msg.data)
            elif '"delta":"' in msg.data:
                meter.on_text(msg.data.split('"delta":"', 1)[1].split('"', 1)[0])
            elif not started and '"speaking"' in msg.data:
                started = True
                meter.generations += 1

    def prepare_input(self, ms: int) -> None:
        self.input = bytes(32 * ms)

    async def push(self, index: int) -> None:
        await self.sockets[index].send_bytes(self.input)

    async def close(self) -> None:
        await asyncio.gather(*(ws.close() for ws in self.sockets))


@dataclass
class Level:
    """What one client kind did with N sessions for the measured seconds."""

    sessions: int
    cpu: float
    seconds: float
    audio: int
    texts: int
    p50_ms: float
    p99_ms: float
    server_cpu: float

    def delivered(self) -> float:
        """Audio frames that arrived, as a share of those due (one per session per 20 ms)."""
        return self.audio / (self.sessions * self.seconds / 0.020)

    def keeps_up(self) -> bool:
        return self.p50_ms < 20.0 and self.delivered() >= 0.99


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@asynccontextmanager
async def paced_server(*args: str) -> AsyncIterator[tuple[str, int]]:
    port = free_port()
    script = Path(__file__).with_name("paced_server.py")
    proc = subprocess.Popen(
        [sys.executable, str(script), "--port", str(port), *args], stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        yield f"http://127.0.0.1:{port}/api", proc.pid
    finally:
        proc.terminate()
        proc.wait()


Factory = Callable[[Meter, str, aiohttp.ClientSession], Client]
OURS = ("ultravox_fsm", "ultravox_fsm lean")
SEED, FLOOR = "seed 1.8.9", "floor (aiohttp)"


def factories() -> dict[str, Factory]:
    from livekit.plugins import ultravox as seed

    import ultravox_fsm

    return {
        "ultravox_fsm": lambda meter, url, http: LiveKitClient(
            meter, ultravox_fsm.RealtimeModel(base_url=url, api_key="k", http_session=http)
        ),
        "ultravox_fsm lean": lambda meter, url, http: LiveKitClient(
            meter,
            ultravox_fsm.RealtimeModel(
                base_url=url, api_key="k", http_session=http, transport="lean"
            ),
        ),
        "seed 1.8.9": lambda meter, url, http: LiveKitClient(
            meter, seed.RealtimeModel(base_url=url, api_key="k", http_session=http)
        ),
        "floor (aiohttp)": lambda meter, url, http: FloorClient(meter, url, http),
    }


def percentiles_ms(latency: array[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    ordered = sorted(latency) or [float("nan")]
    return ordered[len(ordered) // 2] * 1e3, ordered[int(len(ordered) * 0.99)] * 1e3


async def settle(meter: Meter, window: float, limit: float = 10.0) -> None:
    """Waits out the backlog that connecting N sessions leaves: until one window's median lag is
    under a frame, or ``limit`` seconds; a level is judged on its steady state, not its start."""
    deadline = time.monotonic() + limit
    while True:
        meter.reset()
        await asyncio.sleep(window)
        if percentiles_ms(meter.latency)[0] < 20.0 or time.monotonic() > deadline:
            return


async def run_level(
    make: Factory, base_url: str, server_pid: int, n: int, seconds: float, input_ms: int
) -> Level:
    meter = Meter()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        client = make(meter, base_url, http)
        await client.open(n)
        deadline = time.monotonic() + 60
        while meter.generations < n and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if input_ms:
            client.spawn(client.pace_input(n, input_ms))
        await settle(meter, min(0.5, seconds))
        meter.reset()
        cpu0, server0, wall0 = time.process_time(), cpu_seconds(server_pid), time.monotonic()
        await asyncio.sleep(seconds)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        server_cpu = cpu_seconds(server_pid) - server0
        p50, p99 = percentiles_ms(meter.latency)
        level = Level(
            sessions=n,
            cpu=cpu,
            seconds=wall,
            audio=meter.audio,
            texts=meter.texts,
            p50_ms=p50,
            p99_ms=p99,
            server_cpu=server_cpu / wall,
        )
        for task in list(client.tasks):
            task.cancel()
        await client.close()
    return level


async def alternate(
    server_args: tuple[str, ...], n: int, seconds: float, rounds: int, input_ms: int
) -> dict[str, list[Level]]:
    makers = factories()
    names = list(makers)
    out: dict[str, list[Level]] = {name: [] for name in names}
    async with paced_server(*server_args) as (url, pid):
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                out[name].append(await run_level(makers[name], url, pid, n, seconds, input_ms))
    return out


def per_session_at_common_level(found: dict[str, list[Level]]) -> None:
    """Client CPU per real-time session at the largest level every client kept up at: where the
    paced server saturates before the clients do, this compares what each session costs."""
    kept = [{lv.sessions: lv for lv in levels if lv.keeps_up()} for levels in found.values()]
    common = set.intersection(*(set(k) for k in kept)) if kept else set()
    if not common:
        return
    n = max(common)
    cost = {name: k[n].cpu / k[n].seconds / n * 1e3 for name, k in zip(found, kept, strict=True)}
    shown = ", ".join(f"{name} {ms:.2f}" for name, ms in cost.items())
    print(f"client CPU per session at {n} sessions (ms per second): {shown}")
    for name in OURS:
        print(f"{name}: {cost[name] / cost[SEED]:.2f}x the seed's per-session CPU")


def median(levels: list[Level], key: Callable[[Level], float]) -> float:
    return statistics.median(key(level) for level in levels)


async def capacity(
    name: str, seconds: float, start: int, top: int, input_ms: int
) -> tuple[int, list[Level]]:
    """Largest N that keeps up: doubling from ``start``, then three halvings of the interval."""
    make = factories()[name]
    tried: list[Level] = []
    async with paced_server() as (url, pid):

        async def ok(n: int) -> bool:
            level = await run_level(make, url, pid, n, seconds, input_ms)
            tried.append(level)
            return level.keeps_up()

        good, bad = 0, 0
        n = start
        while n <= top:
            if not await ok(n):
                bad = n
                break
            good, n = n, n * 2
        for _ in range(3 if bad else 0):
            mid = (good + bad) // 2
            if mid in (good, bad):
                break
            if await ok(mid):
                good = mid
            else:
                bad = mid
    return good, tried


async def main(args: argparse.Namespace) -> None:
    rounds, seconds, many = args.rounds, args.seconds, args.many
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; medians of {rounds}")
    mix = min(50, many)
    audio = await alternate(("--text-every", "0"), mix, seconds, rounds, 0)
    texts = await alternate(("--no-audio", "--text-every", "1"), mix, seconds, rounds, 0)
    print(f"\nclient CPU per received message ({mix} paced sessions, one kind at a time)")
    print(f"{'client':18} {'us / audio frame':>17} {'us / data message':>18}")
    per_audio: dict[str, float] = {}
    for name in audio:
        per_audio[name] = median(audio[name], lambda lv: lv.cpu / lv.audio) * 1e6
        per_text = median(texts[name], lambda lv: lv.cpu / lv.texts) * 1e6
        print(f"{name:18} {per_audio[name]:17.2f} {per_text:18.2f}")
    for name in OURS:
        ours, seed, floor = (per_audio[n] for n in (name, SEED, FLOOR))
        print(
            f"{name}: per audio frame ours/floor {ours / floor:.2f}x, seed/ours {seed / ours:.2f}x"
        )

    print("\nsocket-to-event latency, calls with audio, deltas and pushed input")
    print(f"{'client':18} {'sessions':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU %':>6}")
    for n in (1, many):
        levels = await alternate((), n, seconds, rounds, 20)
        p99: dict[str, float] = {}
        for name, lv in levels.items():
            p50, p99[name] = median(lv, lambda x: x.p50_ms), median(lv, lambda x: x.p99_ms)
            busy = median(lv, lambda x: x.cpu / x.seconds) * 100
            print(f"{name:18} {n:8} {p50:8.3f} {p99[name]:8.3f} {busy:6.1f}")
        added = ", ".join(f"{name} {p99[name] - p99[FLOOR]:.3f} ms" for name in (*OURS, SEED))
        print(f"{'':18} p99 added over the floor: {added}")

    for ms in args.input_ms:
        print(f"\nconcurrent real-time sessions in one process, {ms} ms input frames")
        print("(a level keeps up while the median lag < 20 ms and >= 99% of frames arrive)")
        print(f"{'client':18} {'sessions':>8}   levels tried (N: p50/p99 ms, client/server CPU %)")
        found: dict[str, list[Level]] = {}
        for name in factories():
            best, found[name] = await capacity(name, seconds, args.start, args.max_sessions, ms)
            trail = ", ".join(
                f"{lv.sessions}: {lv.p50_ms:.1f}/{lv.p99_ms:.0f}, "
                f"{100 * lv.cpu / lv.seconds:.0f}/{100 * lv.server_cpu:.0f}"
                for lv in found[name]
            )
            print(f"{name:18} {best:8}   {trail}")
        per_session_at_common_level(found)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="measured per level")
    parser.add_argument("--many", type=int, default=100, help="sessions for the loaded latency")
    parser.add_argument("--start", type=int, default=100, help="first capacity level")
    parser.add_argument("--max-sessions", type=int, default=3200)
    parser.add_argument(
        "--input-ms",
        type=int,
        nargs="+",
        default=[20, 50],
        help="input frame sizes for the capacity runs (20: the protocol's advice; "
        "50: what an AgentSession's room input pushes by default)",
    )
    asyncio.run(main(parser.parse_args()))
