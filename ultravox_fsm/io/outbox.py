"""Frames for the call's socket, written in order without a task switch per frame.

Input audio leaves every 20 ms per call. Handing each frame to a writer task costs a wake-up
per frame; instead a frame is written at once when nothing is queued ahead of it. aiohttp's
``send_*`` coroutines complete without suspending unless the transport must drain, so the
coroutine is stepped directly; only when it does suspend is the rest of it, and every frame
put meanwhile, finished by a task, keeping order and the transport's backpressure.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Coroutine
from typing import Any

import aiohttp

logger = logging.getLogger("ultravox_fsm")

Frame = str | bytes
Socket = aiohttp.ClientWebSocketResponse[bool]
Send = Coroutine[Any, Any, None]


class Outbox:
    """Writes to one socket at a time; frames put while no socket is attached are dropped
    (the engine re-sends what a lost call never echoed; audio waits in the session's ring)."""

    __slots__ = ("_queue", "_task", "_ws")

    def __init__(self) -> None:
        self._ws: Socket | None = None
        self._queue: deque[Frame] = deque()
        self._task: asyncio.Task[None] | None = None

    def attach(self, ws: Socket | None) -> None:
        """Writes go to ``ws`` from now on (None: nowhere); frames still queued are dropped."""
        self._ws = ws
        self._queue.clear()
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def put(self, frame: Frame) -> None:
        ws = self._ws
        if ws is None:
            return
        if self._task is not None:
            self._queue.append(frame)
            return
        send = ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_str(frame)
        try:
            waiting = send.send(None)
        except StopIteration:
            return
        except (ConnectionError, aiohttp.ClientError) as exc:
            logger.debug("a frame for a closing socket is dropped: %s", exc)
            return
        self._task = asyncio.ensure_future(self._finish(ws, send, waiting))

    async def _finish(
        self,
        ws: aiohttp.ClientWebSocketResponse[bool],
        send: Coroutine[Any, Any, None],
        waiting: Any,
    ) -> None:
        """Completes the suspended ``send``, then whatever was queued behind it."""
        try:
            await _resume(send, waiting)
            while self._queue:
                frame = self._queue.popleft()
                await (ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_str(frame))
        except (ConnectionError, aiohttp.ClientError) as exc:
            logger.debug("frames for a closing socket are dropped: %s", exc)
            self._queue.clear()
        finally:
            if self._task is asyncio.current_task():
                self._task = None


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
