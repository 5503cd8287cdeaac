"""Frames for the call's socket, written in order without a task switch per frame.

Input audio leaves every 20 ms per call. Handing each frame to a writer task costs a wake-up
per frame; instead a frame is written at once when nothing is queued ahead of it. aiohttp's
``send_*`` coroutines (and those of the lean transport, `lean_socket`) complete without
suspending unless the transport must drain, so the coroutine is stepped directly; only when it
does suspend is the rest of it, and every frame put meanwhile, finished by a task, keeping
order and the transport's backpressure.

Kernel buffers hold megabytes: a server that stops reading would get seconds of stale speech
when it resumes. So input audio in flight is bounded too: after every half of the bound a
``ping`` goes out, and the server's ``pong`` confirms it read everything before it. Audio
beyond the bound waits in the same bounded queue (oldest dropped) until a pong makes room.
A server that has never answered a ping is not held to this (it may not answer at all).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any, Protocol

import aiohttp

logger = logging.getLogger("ultravox_fsm")

Frame = str | bytes
Send = Coroutine[Any, Any, None]


class Socket(Protocol):
    """What the outbox and the supervisor use of a call socket; aiohttp's
    ``ClientWebSocketResponse`` and `lean_socket.LeanSocket` both are one."""

    @property
    def close_code(self) -> int | None: ...
    async def send_bytes(self, data: bytes) -> None: ...
    async def send_str(self, data: str) -> None: ...
    async def close(self) -> object: ...


class Outbox:
    """Writes to one socket at a time.

    Frames put while no socket is attached are dropped: the engine re-sends what a lost call
    never echoed, and input audio waits in the session's ring. While the socket drains, audio
    queued beyond ``max_audio_bytes`` is dropped oldest first (stale speech is worse than a
    gap); data messages are never dropped while the socket lives.
    """

    __slots__ = (
        "_audio_bytes",
        "_confirmed",
        "_held",
        "_max_audio_bytes",
        "_pings",
        "_queue",
        "_since_ping",
        "_task",
        "_warned",
        "_written",
        "_ws",
    )

    def __init__(self, max_audio_bytes: int) -> None:
        self._ws: Socket | None = None
        self._queue: deque[Frame] = deque()
        self._task: asyncio.Task[None] | None = None
        self._max_audio_bytes = max_audio_bytes
        self._audio_bytes = 0
        self._warned = False
        self._held: deque[bytes] = deque()  # audio waiting for the server to confirm reads
        self._written = 0  # audio bytes handed to the socket
        self._confirmed: int | None = None  # audio bytes the server confirmed reading
        self._since_ping = 0  # audio bytes put (written or held) since the last ping
        self._pings: deque[tuple[float, int]] = deque()  # (timestamp, _written) per ping

    def attach(self, ws: Socket | None) -> None:
        """Writes go to ``ws`` from now on (None: nowhere); frames still queued are dropped."""
        self._ws = ws
        self._clear()
        self._warned = False
        self._written = self._since_ping = 0
        self._confirmed = None
        self._pings.clear()
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def put(self, frame: Frame) -> None:
        if type(frame) is not bytes:
            self._write(frame)
            return
        confirmed = self._confirmed
        if self._held or (
            confirmed is not None and self._written - confirmed >= self._max_audio_bytes
        ):
            self._held.append(frame)
            self._audio_bytes += len(frame)
            self._bound()
        else:
            self._written += len(frame)
            self._write(frame)
        # Pings go on while audio is held too: a lost pong must not hold it for good.
        self._since_ping += len(frame)
        if self._since_ping >= self._max_audio_bytes // 2:
            self._ping()

    def confirm(self, timestamp: float) -> None:
        """The server answered the ping sent at ``timestamp``: it read all audio before it."""
        while self._pings and self._pings[0][0] <= timestamp + 1e-6:
            self._confirmed = self._pings.popleft()[1]
        confirmed = self._confirmed
        while self._held and confirmed is not None:
            if self._written - confirmed >= self._max_audio_bytes:
                break
            frame = self._held.popleft()
            self._audio_bytes -= len(frame)
            self._written += len(frame)
            self._write(frame)

    def _ping(self) -> None:
        last = self._pings[-1][0] if self._pings else 0.0
        stamp = max(round(time.time(), 3), last + 0.001)
        self._since_ping = 0
        self._pings.append((stamp, self._written))
        if len(self._pings) > 64:  # a server that never answers: forget the oldest
            self._pings.popleft()
        self._write(f'{{"type":"ping","timestamp":{stamp:.3f}}}')

    def _write(self, frame: Frame) -> None:
        ws = self._ws
        if ws is None:
            return
        if self._task is not None:
            self._enqueue(frame)
            return
        send = _send(ws, frame)
        try:
            waiting = send.send(None)
        except StopIteration:
            return
        except (ConnectionError, aiohttp.ClientError) as exc:
            logger.debug("a frame for a closing socket is dropped: %s", exc)
            return
        if isinstance(waiting, asyncio.Future):
            # A socket that dies mid-write fails this future; if the task finishing the write
            # was cancelled first (the call was replaced), nobody else would ever look at it.
            waiting.add_done_callback(_observe)
        self._task = asyncio.ensure_future(self._finish(ws, send, waiting))
        self._task.add_done_callback(lambda _: send.close())

    def _enqueue(self, frame: Frame) -> None:
        self._queue.append(frame)
        if not isinstance(frame, bytes):
            return
        self._audio_bytes += len(frame)
        self._bound()

    def _bound(self) -> None:
        """Queued and held audio beyond the bound: the oldest goes (queued before held)."""
        while self._audio_bytes > self._max_audio_bytes:
            oldest = next((i for i, f in enumerate(self._queue) if isinstance(f, bytes)), None)
            if oldest is None:
                self._audio_bytes -= len(self._held.popleft())
            else:
                self._audio_bytes -= len(self._queue[oldest])
                del self._queue[oldest]
            if not self._warned:
                self._warned = True
                logger.warning(
                    "the call's socket is not keeping up; dropping the oldest input audio"
                )

    def _clear(self) -> None:
        self._queue.clear()
        self._held.clear()
        self._audio_bytes = 0

    async def _finish(self, ws: Socket, send: Send, waiting: Any) -> None:
        """Completes the suspended ``send``, then whatever was queued behind it."""
        try:
            await _resume(send, waiting)
            while self._queue:
                frame = self._queue.popleft()
                if isinstance(frame, bytes):
                    self._audio_bytes -= len(frame)
                await _send(ws, frame)
        except (ConnectionError, aiohttp.ClientError) as exc:
            logger.debug("frames for a closing socket are dropped: %s", exc)
            self._clear()
        finally:
            if self._task is asyncio.current_task():
                self._task = None


def _observe(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _send(ws: Socket, frame: Frame) -> Send:
    return ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_str(frame)


async def _resume(coro: Send, waiting: Any) -> None:
    """Drives a coroutine that was started outside any task and suspended on ``waiting``.

    It cannot simply be awaited (it is already awaiting something), so it is stepped the way a
    task steps it: wait for what it waits on, then send it ``None``.
    """
    try:
        while True:
            if isinstance(waiting, asyncio.Future):
                await asyncio.wait((waiting,))
            else:
                await asyncio.sleep(0)
            try:
                waiting = coro.send(None)
            except StopIteration:
                return
    finally:
        coro.close()
