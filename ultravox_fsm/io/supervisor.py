"""Carries out the engine's `StartCall`: create a call, join its socket, read it until it ends.

It decides nothing: every outcome goes back to the engine as an input (`Connected`,
`CallFailed`, `SocketClosed`), whose CONNECTION table says what happens next (retry, back off,
give up, end). Whatever a frame contains, the reader survives it: a handler that raises is
reported once and the frame dropped. The socket is aiohttp's, or with ``transport="lean"`` a
`lean_socket.LeanSocket`, which hands over whole bursts and says when each ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Literal, Protocol, cast

import aiohttp

from .. import events as ev
from .lean_socket import LeanSocket
from .outbox import Socket
from .ultravox import CallRejected, CallUnreachable, create_call, open_socket

__all__ = ["CallSupervisor", "Host", "Socket"]

logger = logging.getLogger("ultravox_fsm")


class Host(Protocol):
    """What the supervisor needs from the session it works for."""

    def http(self) -> aiohttp.ClientSession: ...
    def call_request(self, prior_call_id: str | None) -> tuple[bytes, dict[str, str]]: ...
    def feed_network(self, event: ev.Connected | ev.CallFailed | ev.SocketClosed) -> None: ...
    def joined(self, ws: Socket, seconds: float) -> None: ...
    def on_text(self, data: str) -> None: ...
    def on_audio(self, data: bytes) -> None: ...
    def on_burst_end(self) -> None: ...
    def left(self) -> None: ...
    def report_once(self, kind: str, message: str) -> None: ...


class CallSupervisor:
    """At most one call at a time; starting another closes the current one's socket."""

    def __init__(
        self,
        host: Host,
        *,
        base_url: str,
        calls_base: str,
        api_key: str,
        timeout: float,
        transport: Literal["aiohttp", "lean"] = "aiohttp",
    ) -> None:
        self._host = host
        self._transport: Literal["aiohttp", "lean"] = transport
        self._base_url = base_url
        self._calls_base = calls_base
        self._api_key = api_key
        self._timeout = timeout
        self._task: asyncio.Task[None] | None = None
        self._ws: Socket | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False  # aclose() was called: nothing more reaches the host

    def start(self, prior_call_id: str | None) -> None:
        previous = self._task
        self._task = asyncio.create_task(
            self._call(prior_call_id, previous), name="ultravox_fsm.call"
        )

    def stop(self) -> None:
        """Close the live socket (its close is reported as stale, or ignored after the end)."""
        if self._ws is not None:
            ws, self._ws = self._ws, None
            task = asyncio.create_task(self._close(ws))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _close(ws: Socket) -> None:
        await ws.close()

    async def aclose(self) -> None:
        self._closed = True
        if self._ws is not None:
            await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _call(self, prior_call_id: str | None, previous: asyncio.Task[None] | None) -> None:
        self.stop()
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        host = self._host
        started = time.perf_counter()
        try:
            body, query = host.call_request(prior_call_id)
            call = await create_call(
                host.http(),
                base_url=self._calls_base,
                api_key=self._api_key,
                body=body,
                query=query,
                timeout=self._timeout,
            )
            if call.join_url is None:
                raise CallUnreachable("the call was created without a joinUrl")
            ws: Socket = await open_socket(
                host.http(),
                call.join_url,
                timeout=self._timeout,
                base_url=self._base_url,
                transport=self._transport,
            )
        except CallRejected as exc:
            self._failed(
                ev.CallFailed(
                    detail=str(exc),
                    retryable=exc.retryable,
                    status=exc.status,
                    retry_after=exc.retry_after,
                )
            )
            return
        except CallUnreachable as exc:
            self._failed(ev.CallFailed(detail=str(exc), retryable=True))
            return
        except Exception as exc:  # a bug or a bad option: the session ends, with the cause
            logger.debug("call creation raised", exc_info=True)
            self._failed(
                ev.CallFailed(detail=f"unexpected {type(exc).__name__}: {exc}", retryable=False)
            )
            return
        if self._closed:  # a cancel swallowed by wait_for (Python < 3.12) as the socket opened
            await ws.close()
            return
        self._ws = ws
        host.joined(ws, time.perf_counter() - started)
        host.feed_network(ev.Connected(call_id=call.call_id))
        code = await self._serve(ws)
        if self._ws is ws:
            self._ws = None
        host.left()
        host.feed_network(ev.SocketClosed(call_id=call.call_id, code=code))

    async def _serve(self, ws: Socket) -> int | None:
        host = self._host
        if isinstance(ws, LeanSocket):
            try:
                await ws.serve(
                    host.on_text, host.on_audio, host.on_burst_end, on_error=self._dropped
                )
            finally:
                await ws.close()
            return ws.close_code
        aio = cast(aiohttp.ClientWebSocketResponse[bool], ws)
        on_audio, on_text = host.on_audio, host.on_text  # looked up once, not per message
        binary, text = aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT
        try:
            while True:
                msg = await aio.receive()
                try:
                    if msg.type is binary:
                        on_audio(msg.data)
                    elif msg.type is text:
                        on_text(msg.data)
                    else:
                        break
                except Exception as exc:
                    self._dropped(exc)
        finally:
            await ws.close()
        return ws.close_code

    def _failed(self, event: ev.CallFailed) -> None:
        if not self._closed:  # after aclose (a swallowed cancel) the session wants no news
            self._host.feed_network(event)

    def _dropped(self, exc: Exception) -> None:
        """A frame handler raised: the frame is dropped, the kind reported once."""
        logger.debug("frame handler raised", exc_info=exc)
        self._host.report_once(
            f"frame_error:{type(exc).__name__}",
            f"dropped a frame that could not be handled: {type(exc).__name__}: {exc}",
        )
