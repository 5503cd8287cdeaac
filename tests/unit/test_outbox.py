"""The outbox writes frames in order, at once when it can, and keeps backpressure when not."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from ultravox_fsm.io.outbox import Outbox


class FakeSocket:
    """Records writes; a write waits on ``drain`` while it is set, like a paused transport."""

    def __init__(self) -> None:
        self.written: list[str | bytes] = []
        self.drain: asyncio.Future[None] | None = None
        self.broken = False

    async def send_bytes(self, data: bytes) -> None:
        await self._write(data)

    async def send_str(self, data: str) -> None:
        await self._write(data)

    async def _write(self, frame: str | bytes) -> None:
        if self.broken:
            raise aiohttp.ClientConnectionResetError("Cannot write to closing transport")
        self.written.append(frame)
        if self.drain is not None:
            await self.drain


def frames(ws: FakeSocket) -> list[str | bytes]:
    """What was written, without the outbox's own pings."""
    return [f for f in ws.written if not (isinstance(f, str) and '"timestamp"' in f)]


def pings(ws: FakeSocket) -> list[float]:
    return [
        json.loads(f)["timestamp"] for f in ws.written if isinstance(f, str) and "timestamp" in f
    ]


def outbox_on(ws: FakeSocket, max_audio_bytes: int = 1_000_000) -> Outbox:
    box = Outbox(max_audio_bytes)
    box.attach(ws)  # type: ignore[arg-type]
    return box


async def test_frames_are_written_before_put_returns() -> None:
    ws = FakeSocket()
    box = outbox_on(ws)
    box.put(b"a")
    box.put('{"type":"ping"}')
    box.put(b"b")
    assert ws.written == [b"a", '{"type":"ping"}', b"b"]


async def test_a_draining_socket_queues_later_frames_in_order() -> None:
    ws = FakeSocket()
    box = outbox_on(ws)
    ws.drain = asyncio.get_running_loop().create_future()
    box.put(b"1")
    ws_drain = ws.drain
    ws.drain = None
    box.put(b"2")
    box.put("3")
    assert ws.written == [b"1"]  # nothing jumps the frame that waits
    ws_drain.set_result(None)
    for _ in range(5):
        await asyncio.sleep(0)
    assert ws.written == [b"1", b"2", "3"]
    box.put(b"4")  # the queue is empty again: written at once
    assert ws.written[-1] == b"4"


async def test_a_drain_that_fails_reaches_the_suspended_send() -> None:
    ws = FakeSocket()
    box = outbox_on(ws)
    seen: list[BaseException] = []

    async def send_bytes(data: bytes) -> None:
        ws.written.append(data)
        try:
            await drain
        except ConnectionResetError as exc:
            seen.append(exc)
            raise

    drain: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    ws.send_bytes = send_bytes  # type: ignore[method-assign]
    box.put(b"1")
    box.put(b"2")
    drain.set_exception(ConnectionResetError("gone"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(seen) == 1
    assert ws.written == [b"1"]  # the socket is gone: what waited behind is dropped, quietly
    box.put(b"3")
    assert ws.written == [b"1", b"3"]  # nothing stale is left to jump behind


async def test_detaching_drops_queued_frames_and_later_puts() -> None:
    ws = FakeSocket()
    box = outbox_on(ws)
    ws.drain = asyncio.get_running_loop().create_future()
    box.put(b"1")
    ws.drain = None
    box.put(b"2")
    box.attach(None)
    box.put(b"3")
    await asyncio.sleep(0)
    assert ws.written == [b"1"]


async def test_a_socket_that_keeps_draining_loses_the_oldest_audio_not_messages(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ws = FakeSocket()
    box = outbox_on(ws, max_audio_bytes=4)
    ws.drain = asyncio.get_running_loop().create_future()
    box.put(b"00")
    held = ws.drain
    ws.drain = None
    for frame in (b"a1", '{"type":"ping"}', b"a2", b"a3", b"a4"):
        box.put(frame)
    assert "dropping the oldest input audio" in caplog.text
    held.set_result(None)
    for _ in range(8):
        await asyncio.sleep(0)
    assert frames(ws) == [b"00", '{"type":"ping"}', b"a3", b"a4"]


@pytest.mark.parametrize("frame", [b"audio", "text"])
async def test_a_closing_socket_drops_the_frame_without_raising(frame: Any) -> None:
    ws = FakeSocket()
    ws.broken = True
    box = outbox_on(ws)
    box.put(frame)
    assert ws.written == []


async def test_audio_in_flight_is_bounded_once_the_server_confirms_reads() -> None:
    ws = FakeSocket()
    box = outbox_on(ws, max_audio_bytes=8)
    for i in range(6):
        box.put(b"%d%d" % (i, i))  # no pong yet: a server that may never answer is not held
    assert len(frames(ws)) == 6
    box.confirm(pings(ws)[-2])  # it read everything up to that ping (8 of 12 bytes)
    for i in range(6, 14):
        box.put(b"%d%d" % (i % 10, i % 10))
    written = frames(ws)
    assert written[6:8] == [b"66", b"77"]  # 4 in flight + 4 more reach the 8-byte bound
    assert len(written) == 8  # the rest waits; only the newest 8 bytes are kept
    box.confirm(pings(ws)[-1])
    assert frames(ws)[8:] == [b"00", b"11", b"22", b"33"]  # the newest, in order


async def test_a_stale_pong_releases_nothing_and_pings_are_bounded() -> None:
    ws = FakeSocket()
    box = outbox_on(ws, max_audio_bytes=4)
    box.put(b"aa")
    box.confirm(pings(ws)[0])
    for _ in range(500):
        box.put(b"bb")
    box.confirm(0.0)  # older than any ping
    assert len(frames(ws)) <= 4
    assert len(box._pings) <= 64


async def test_lost_pongs_do_not_stall_input_audio_for_the_rest_of_the_call() -> None:
    ws = FakeSocket()
    box = outbox_on(ws, max_audio_bytes=6400)
    answered = lost = 0
    for _ in range(400):
        box.put(b"\0" * 640)
        stamps = pings(ws)
        while answered < len(stamps) - 1:  # a slow server: one pong behind
            answered += 1
            if answered == 5:
                lost += 1  # this pong is lost in transit
                continue
            box.confirm(stamps[answered - 1])
        await asyncio.sleep(0)
    assert lost == 1
    assert len([f for f in frames(ws) if isinstance(f, bytes)]) > 300
