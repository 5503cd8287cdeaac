"""A raw HTTP/WebSocket client for the stand-in, independent of this library's own client.

Every stand-in started through `start` checks at teardown that each request body it accepted
is valid against the OpenAPI snapshot.
"""

from __future__ import annotations

import asyncio
import math
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from ultravox_fsm.testing.server import Scenario, StandInServer

from .schema import START_AGENT_CALL, START_CALL, errors

KEY = {"X-API-Key": "k"}
WS_16K = {"serverWebSocket": {"inputSampleRate": 16000}}


def tone(ms: int, *, loud: bool = True, rate: int = 16000) -> bytes:
    n = rate * ms // 1000
    amplitude = 4000 if loud else 0
    return struct.pack(f"<{n}h", *(int(amplitude * math.sin(i / 5)) for i in range(n)))


class Raw:
    """A bare client: REST calls and one socket, with every frame kept and timed."""

    def __init__(self, server: StandInServer, http: aiohttp.ClientSession) -> None:
        self.server = server
        self.http = http
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.frames: list[tuple[float, dict[str, Any] | bytes]] = []
        self._reader: asyncio.Task[None] | None = None

    async def post(
        self, body: Any, *, path: str = "/calls", query: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        async with self.http.post(
            self.server.base_url + path, json=body, params=query or {}, headers=KEY
        ) as r:
            return r.status, await r.json()

    async def get(self, call_id: str) -> tuple[int, dict[str, Any]]:
        async with self.http.get(f"{self.server.base_url}/calls/{call_id}", headers=KEY) as r:
            return r.status, await r.json()

    async def start(
        self, body: dict[str, Any] | None = None, *, join_query: str = ""
    ) -> dict[str, Any]:
        """Create a call (serverWebSocket at 16 kHz unless ``body`` says otherwise) and join."""
        status, call = await self.post({"medium": WS_16K, **(body or {})})
        assert status == 201, call
        await self.join(call, join_query)
        return call

    async def join(self, call: dict[str, Any], join_query: str = "") -> None:
        self.ws = await self.http.ws_connect(call["joinUrl"] + join_query)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            data = msg.json() if msg.type is aiohttp.WSMsgType.TEXT else msg.data
            self.frames.append((time.monotonic(), data))

    async def send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send_json(message)

    async def speak(self, loud_ms: int, quiet_ms: int = 0) -> None:
        """Stream 20 ms frames in real time: speech, then silence."""
        assert self.ws is not None
        for i in range((loud_ms + quiet_ms) // 20):
            await self.ws.send_bytes(tone(20, loud=i * 20 < loud_ms))
            await asyncio.sleep(0.02)

    def messages(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [f for _, f in self.frames if isinstance(f, dict) and kind in (None, f.get("type"))]

    def finals(self, role: str = "agent") -> list[str]:
        return [m["text"] for m in self.messages("transcript") if m["final"] and m["role"] == role]

    def first(self, predicate: Callable[[dict[str, Any] | bytes], bool]) -> float:
        return next(t for t, f in self.frames if predicate(f))

    async def until(self, predicate: Callable[[], bool], timeout: float = 5) -> None:
        async def wait() -> None:
            while not predicate():
                await asyncio.sleep(0.01)

        await asyncio.wait_for(wait(), timeout)

    async def closed(self) -> int | None:
        assert self.ws is not None and self._reader is not None
        await asyncio.wait_for(self._reader, 5)
        return self.ws.close_code


Start = Callable[..., Awaitable[tuple[StandInServer, Raw]]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    servers: list[StandInServer] = []
    async with aiohttp.ClientSession() as http:

        async def make(scenario: Scenario | None = None) -> tuple[StandInServer, Raw]:
            server = await StandInServer(scenario or Scenario()).start()
            servers.append(server)
            return server, Raw(server, http)

        yield make
        for server in servers:
            await server.stop()
    for server in servers:
        for record in server.calls.values():
            schema = START_AGENT_CALL if record.agent_id else START_CALL
            assert errors(schema, record.request) == [], record.request
