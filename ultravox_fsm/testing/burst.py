"""Burst delivery: what a call sends in one event-loop iteration leaves in one socket write.

A real server under load writes a reply that runs ahead of playback in few writes; aiohttp's
``send_*`` writes every frame on its own, so a benchmark against it mostly measures receive
syscalls. Here each message is framed as it is sent (server frames are unmasked, RFC 6455
§5.2) and the frames are written together by a callback scheduled with ``call_soon``.
"""

from __future__ import annotations

import asyncio
import struct

from aiohttp import web

_TEXT, _BINARY = 0x81, 0x82  # FIN set, opcode 1 or 2


def frame(data: str | bytes) -> bytes:
    """One unmasked, unfragmented WebSocket frame carrying ``data``."""
    if isinstance(data, str):
        payload, first = data.encode(), _TEXT
    else:
        payload, first = data, _BINARY
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", first, n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", first, 126, n)
    else:
        header = struct.pack("!BBQ", first, 127, n)
    return header + payload


class BurstWriter:
    """Frames for one socket, written once per loop iteration, in the order they were put."""

    __slots__ = ("_loop", "_pending", "_ws")

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self._ws = ws
        self._loop = asyncio.get_running_loop()
        self._pending: list[bytes] = []

    def put(self, data: str | bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(frame(data))

    def flush(self) -> None:
        """Write what was put (also before the socket is closed, so nothing is lost)."""
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        transport = self._ws._req.transport if self._ws._req is not None else None
        if transport is not None and not transport.is_closing() and not self._ws.closed:
            transport.write(data)
