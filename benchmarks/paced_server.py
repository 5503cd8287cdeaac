"""A load-generating Ultravox stand-in that streams replies in real time, for `realtime.py`.

Every call's socket gets, each 20 ms, one 24 kHz output audio frame and, every few ticks, an
agent transcript delta, as a speaking agent would send them. Replies of ``--reply-frames``
frames end with a final transcript and ``listening``; the next reply starts at once. Calls are
spread over the 20 ms period (one 1 ms bucket each, round robin) so frames reach the client as
they would from independent calls, not in one burst.

Each frame carries the server's ``time.monotonic()`` at the moment it is written (the first 8
bytes of the audio, the delta text of a transcript), so a client on the same machine can
measure socket-to-event latency. To keep the server's cost per frame low (it must not be what
limits the client), frames are written pre-framed straight to the transport, and after the
handshake a `Discard` protocol takes the socket over: it skips the client's frames by their
headers and answers only a close.

    python benchmarks/paced_server.py --port 8765 [--no-audio] [--text-every 10]
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import time
import uuid
from collections.abc import Callable

from aiohttp import web

TICK = 0.020
BUCKETS = 20
AUDIO_BYTES = 960  # 20 ms of 24 kHz 16-bit mono
SILENCE = bytes(AUDIO_BYTES)


def frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, unfragmented server-to-client WebSocket frame."""
    size = len(payload)
    if size < 126:
        return bytes((0x80 | opcode, size)) + payload
    return bytes((0x80 | opcode, 126)) + size.to_bytes(2, "big") + payload


def text(message: str) -> bytes:
    return frame(0x1, message.encode())


class Call:
    """One call's reply stream; ``tick`` writes what is due in this 20 ms slot."""

    def __init__(self, write: Callable[[bytes], None], settings: argparse.Namespace) -> None:
        self.write = write
        self.settings = settings
        self.ordinal = 0
        self.frame = 0
        self.reply_text: list[str] = []

    def tick(self) -> None:
        s = self.settings
        if self.frame == 0:
            self.write(text('{"type":"state","state":"speaking"}'))
        if s.audio:
            stamp = struct.pack("<d", time.monotonic())
            self.write(frame(0x2, stamp + SILENCE[8:]))
        if s.text_every and self.frame % s.text_every == 0:
            delta = f" {time.monotonic():.6f}"
            self.reply_text.append(delta)
            self.write(
                text(
                    f'{{"type":"transcript","role":"agent","medium":"voice",'
                    f'"ordinal":{self.ordinal},"delta":"{delta}","final":false}}'
                )
            )
        self.frame += 1
        if self.frame == s.reply_frames:
            self.write(
                text(
                    f'{{"type":"transcript","role":"agent","medium":"voice",'
                    f'"ordinal":{self.ordinal},"text":"{"".join(self.reply_text)}","final":true}}'
                )
            )
            self.write(text('{"type":"state","state":"listening"}'))
            self.ordinal += 1
            self.frame = 0
            self.reply_text = []


class Discard(asyncio.Protocol):
    """Skips client frames without unmasking them; echoes a close frame, then hangs up."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.buffer = bytearray()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        at = 0
        while len(buf) - at >= 6:
            size, head = buf[at + 1] & 0x7F, 6
            if size == 126:
                if len(buf) - at < 8:
                    break
                size, head = int.from_bytes(buf[at + 2 : at + 4], "big"), 8
            elif size == 127:
                if len(buf) - at < 14:
                    break
                size, head = int.from_bytes(buf[at + 2 : at + 10], "big"), 14
            if len(buf) - at < head + size:
                break
            if buf[at] & 0x0F == 0x8:
                self.transport.write(frame(0x8, b"\x03\xe8"))
                self.transport.close()
            at += head + size
        del buf[:at]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class PacedServer:
    def __init__(self, settings: argparse.Namespace) -> None:
        self.settings = settings
        self.buckets: list[list[Call]] = [[] for _ in range(BUCKETS)]
        self.joined = 0
        self.app = web.Application()
        self.app.router.add_post("/api/calls", self.create_call)
        self.app.router.add_get("/calls/{call_id}/ws", self.socket)

    async def create_call(self, request: web.Request) -> web.Response:
        await request.read()
        call_id = str(uuid.uuid4())
        join = f"ws://{request.host}/calls/{call_id}/ws"
        return web.json_response({"callId": call_id, "joinUrl": join}, status=201)

    async def socket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        transport = request.transport
        assert isinstance(transport, asyncio.Transport)
        transport.write(text('{"type":"state","state":"listening"}'))
        call = Call(transport.write, self.settings)
        bucket = self.buckets[self.joined % BUCKETS]
        self.joined += 1
        bucket.append(call)
        discard = Discard(transport)
        transport.set_protocol(discard)
        try:
            await discard.closed
        finally:
            bucket.remove(call)
        return ws

    async def pace(self) -> None:
        """Runs the buckets 1 ms apart; time is read, not slept, so lateness never accumulates."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        step = 0
        while True:
            step += 1
            await asyncio.sleep(max(0.0, start + step * TICK / BUCKETS - loop.time()))
            for call in self.buckets[step % BUCKETS]:
                call.tick()


async def main(settings: argparse.Namespace) -> None:
    server = PacedServer(settings)
    runner = web.AppRunner(server.app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.port).start()
    print("ready", flush=True)
    await server.pace()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--no-audio", dest="audio", action="store_false")
    parser.add_argument("--text-every", type=int, default=10, help="ticks per delta; 0: none")
    parser.add_argument("--reply-frames", type=int, default=250)
    asyncio.run(main(parser.parse_args()))
