"""A stand-in Ultravox server on 127.0.0.1, for your tests and for the demo.

It follows the protocol reference (§2-§4, §7) and the OpenAPI snapshot: ``POST /api/calls`` and
``POST /api/agents/{agent_id}/calls`` answer 201 with a full `Call` (400 ``{"detail": "<field>:
<problem>"}`` for a body the API would refuse, 404 for an unknown agent, 401 without a key);
``GET /api/calls/{id}`` reports ``joined``/``ended``/``endReason``. The call socket is run by
`CallSession`: greeting when the agent speaks first, transcripts, audio paced against the
client's playback position, barge-in, tools, ``dataMessages`` switches.

Replies are deterministic: `Scenario.reply` maps each user turn to a `Reply` (text and an optional
tool call). Faults are switched on per test: `fail_next_calls`, `create_delay`,
`drop_after_audio_frames`, `raw_frames`, `reject_sockets` (close that many joins at
once with 1011), `close_sockets(code)`, `stall_reads()`.

    async with StandInServer() as server:
        model = RealtimeModel(base_url=server.base_url, api_key="test-key")
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from .calls import agent_call_body, call_object, now
from .scenario import CallRecord, Reply, SavedAgent, Scenario, default_reply
from .session import CallSession
from .validation import validate_start_agent_call, validate_start_call

__all__ = ["CallRecord", "Reply", "SavedAgent", "Scenario", "StandInServer", "default_reply"]


class StandInServer:
    def __init__(
        self, scenario: Scenario | None = None, *, api_key: str | None = None, port: int = 0
    ) -> None:
        self.scenario = scenario or Scenario()
        self.api_key = api_key
        self.calls: dict[str, CallRecord] = {}
        self.fail_next_calls: list[tuple[int, str | None]] = []
        # The `detail` of those failures; ``{key}`` is replaced by the caller's API key (a
        # server that echoes secrets into error bodies).
        self.error_detail = "try later"
        self.create_delay = 0.0
        self.drop_after_audio_frames: int | None = None
        self.reject_sockets = 0
        self.raw_frames: list[str | bytes] = []
        # The first exception a scenario callback (`Scenario.reply`) raised.
        self.callback_error: Exception | None = None
        self.background: set[asyncio.Task[bool]] = set()  # closes under way
        self.create_attempts = 0
        self._runner: web.AppRunner | None = None
        self._port = port
        self._sockets: dict[web.WebSocketResponse, CallRecord] = {}
        self._reading = asyncio.Event()
        self._reading.set()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/api"

    async def start(self) -> StandInServer:
        app = web.Application()
        app.router.add_post("/api/calls", self._create_call)
        app.router.add_post("/api/agents/{agent_id}/calls", self._create_agent_call)
        app.router.add_get("/api/calls/{call_id}", self._get_call)
        app.router.add_get("/calls/{call_id}/server_web_socket", self._socket)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port)
        await site.start()
        server = site._server
        assert server is not None
        self._port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> StandInServer:
        return await self.start()

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        """Stops; then, if the test itself passed, raises what a scenario callback raised."""
        await self.stop()
        if self.callback_error is not None and exc_type is None:
            raise self.callback_error

    def stall_reads(self) -> None:
        """Stop reading what clients send, as a congested server would: their sockets fill up
        and their writes must wait (backpressure)."""
        self._reading.clear()

    def resume_reads(self) -> None:
        self._reading.set()

    async def close_sockets(self, code: int) -> None:
        """Close every live call socket with ``code`` (1000: the agent ended the call; others:
        faults, reported as ``system_error``)."""
        for ws, record in list(self._sockets.items()):
            record.end_reason = record.end_reason or (
                "agent_hangup" if code == 1000 else "system_error"
            )
            await ws.close(code=code)

    def messages(self, kind: str) -> list[dict[str, Any]]:
        """Every client message of type ``kind`` received, over all calls, in order."""
        return [m for c in self.calls.values() for m in c.messages if m.get("type") == kind]

    # --- REST ---------------------------------------------------------------------------------

    async def _admit(self, request: web.Request) -> web.Response | None:
        """The answer to a call creation refused before its body is read, or None."""
        self.create_attempts += 1
        if self.create_delay:
            await asyncio.sleep(self.create_delay)
        unauthorized = self._unauthorized(request)
        if unauthorized is not None:
            return unauthorized
        if self.fail_next_calls:
            status, retry_after = self.fail_next_calls.pop(0)
            headers = {"Retry-After": retry_after} if retry_after else {}
            detail = self.error_detail.replace("{key}", request.headers.get("X-API-Key", ""))
            return web.json_response({"detail": detail}, status=status, headers=headers)
        return None

    def _unauthorized(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("X-API-Key")
        if not key or (self.api_key is not None and key != self.api_key):
            return web.json_response({"detail": "Invalid API key."}, status=401)
        return None

    async def _create_call(self, request: web.Request) -> web.Response:
        refused = await self._admit(request)
        if refused is not None:
            return refused
        body = await _valid_body(request, validate_start_call)
        if isinstance(body, web.Response):
            return body
        return self._created(request, CallRecord(str(uuid.uuid4()), body, dict(request.query)))

    async def _create_agent_call(self, request: web.Request) -> web.Response:
        refused = await self._admit(request)
        if refused is not None:
            return refused
        agent_id = request.match_info["agent_id"]
        agent = self.scenario.agents.get(agent_id)
        if agent is None:
            return web.json_response({"detail": "No Agent matches the given query."}, status=404)
        body = await _valid_body(request, validate_start_agent_call)
        if isinstance(body, web.Response):
            return body
        record = CallRecord(
            str(uuid.uuid4()),
            agent_call_body(agent, body),
            dict(request.query),
            agent_id=agent_id,
            agent_name=agent.name,
        )
        return self._created(request, record, received=body)

    def _created(
        self, request: web.Request, record: CallRecord, received: dict[str, Any] | None = None
    ) -> web.Response:
        record.request = record.body if received is None else received
        record.created = now()
        self.calls[record.call_id] = record
        return web.json_response(call_object(record, self._join_url(request, record)), status=201)

    async def _get_call(self, request: web.Request) -> web.Response:
        unauthorized = self._unauthorized(request)
        if unauthorized is not None:
            return unauthorized
        record = self.calls.get(request.match_info["call_id"])
        if record is None:
            return web.json_response({"detail": "Not found."}, status=404)
        return web.json_response(call_object(record, self._join_url(request, record)))

    @staticmethod
    def _join_url(request: web.Request, record: CallRecord) -> str:
        return f"ws://{request.host}/calls/{record.call_id}/server_web_socket"

    # --- the call socket ----------------------------------------------------------------------

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        record = self.calls.get(request.match_info["call_id"])
        if record is None:
            raise web.HTTPNotFound()
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        record.client_version = request.query.get("clientVersion")
        if self.reject_sockets:
            self.reject_sockets -= 1
            record.ended, record.end_reason = now(), "system_error"
            await ws.close(code=1011)
            return ws
        self._sockets[ws] = record
        try:
            await CallSession(self, record, ws, request.query).run()
        finally:
            record.closed = True
            self._sockets.pop(ws, None)
        return ws


async def _valid_body(
    request: web.Request, validate: Callable[[Any, Mapping[str, str]], str | None]
) -> dict[str, Any] | web.Response:
    """The request's JSON body, or the 400 the API would answer instead."""
    try:
        body = await request.json()
    except json.JSONDecodeError:
        return web.json_response({"detail": "body: not JSON"}, status=400)
    problem = validate(body, request.query)
    if problem:
        return web.json_response({"detail": problem}, status=400)
    assert isinstance(body, dict)  # validate refuses anything else
    return body
