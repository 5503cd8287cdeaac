"""Our own processing per voice turn, without the socket: a recorded burst-mode turn replayed.

`session.py` measures whole clients against a server in another process, so its figures carry
the socket reads (the floor's share) and move with the machine. Here one turn is recorded from
`ultravox-fsm serve --burst` (the frames our session's reader handed over), then fed straight to
a live session's frame handlers, one burst per turn, `turns` times per round (ordinals shifted so
each turn is a new utterance), while a consumer drains every generation as LiveKit would. What is
timed is the library's work per turn: decoding, the engine, the hand-over to LiveKit, and the
`generate_reply` that asks for the turn (its socket write included). The call's socket is a local
aiohttp server that reads and discards.

    python benchmarks/replay_turn.py [--turns 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time

import aiohttp
import msgspec
from aiohttp import web
from session import WORDS, Collector, free_port, run_livekit

import ultravox_fsm
from ultravox_fsm.io.session import RealtimeSession

Frame = tuple[str, str | bytes]


async def record() -> list[Frame]:
    """One turn's frames, as the session's reader handed them over, from `serve --burst`."""
    port = free_port()
    command = [sys.executable, "-m", "ultravox_fsm", "serve", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--playback-speed", "1000", "--burst"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    frames: list[Frame] = []
    text, audio = RealtimeSession.on_text, RealtimeSession.on_audio

    def on_text(self: RealtimeSession, data: str) -> None:
        frames.append(("t", data))
        text(self, data)

    def on_audio(self: RealtimeSession, data: bytes) -> None:
        frames.append(("a", data))
        audio(self, data)

    try:
        assert server.stdout is not None
        server.stdout.readline()
        base = f"http://127.0.0.1:{port}/api"
        async with aiohttp.ClientSession() as http:
            model = ultravox_fsm.RealtimeModel(base_url=base, api_key="k", http_session=http)
            await run_livekit(model, 2, 1)  # the greeting and a first turn pass unrecorded
            RealtimeSession.on_text, RealtimeSession.on_audio = on_text, on_audio
            try:
                await run_livekit(model, 1, 1)
            finally:
                RealtimeSession.on_text, RealtimeSession.on_audio = text, audio
    finally:
        server.terminate()
        server.wait()
    return frames


def shifted(frames: list[Frame], by: int) -> list[Frame]:
    """The turn as a later utterance: every ordinal moved on by ``by``."""
    out: list[Frame] = []
    for kind, data in frames:
        if kind == "t":
            message = msgspec.json.decode(data)
            if isinstance(message.get("ordinal"), int):
                message["ordinal"] += by
            data = msgspec.json.encode(message).decode()
        out.append((kind, data))
    return out


async def replay(frames: list[Frame], turns: int, rounds: int) -> list[float]:
    port = free_port()

    async def calls(_: web.Request) -> web.Response:
        join = f"ws://127.0.0.1:{port}/ws"
        return web.json_response({"callId": "c1", "joinUrl": join}, status=201)

    async def socket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for _ in ws:
            pass
        return ws

    app = web.Application()
    app.router.add_post("/api/calls", calls)
    app.router.add_get("/ws", socket)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    per_turn: list[float] = []
    try:
        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{port}/api"
            model = ultravox_fsm.RealtimeModel(base_url=base, api_key="k", http_session=http)
            session = model.session()
            while session.call_id is None or not session._audio_live:
                await asyncio.sleep(0.01)
            collect = Collector()
            session.on("generation_created", collect.take)
            for r in range(rounds):
                plan = [shifted(frames, 10 * (r * turns + t + 1)) for t in range(turns)]
                cpu0 = time.process_time()
                for turn in plan:
                    fut = session.generate_reply(instructions=WORDS)
                    fut.add_done_callback(
                        lambda f: (
                            None if f.cancelled() or f.exception() else collect.take(f.result())
                        )
                    )
                    for kind, data in turn:
                        if kind == "t":
                            session.on_text(str(data))
                        else:
                            session.on_audio(bytes(data))
                    for _ in range(3):  # the burst ends; the consumer drains the turn
                        await asyncio.sleep(0)
                per_turn.append((time.process_time() - cpu0) / turns)
            await session.aclose()
    finally:
        await runner.cleanup()
    return per_turn


async def main(turns: int, rounds: int) -> None:
    frames = await record()
    texts = sum(1 for kind, _ in frames if kind == "t")
    per_turn = await replay(frames, turns, rounds)
    print(
        f"one recorded burst-mode turn: {texts} data messages, {len(frames) - texts} audio frames"
    )
    shown = ", ".join(f"{t * 1e3:.3f}" for t in per_turn)
    print(f"our processing per turn, no socket: min {min(per_turn) * 1e3:.3f} ms ({shown})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.turns, args.rounds))
