"""The socket side of `RealtimeSession`: what `CallSupervisor` needs from the session.

A layer between the command effects (`effects.py`) and the LiveKit API (`session.py`): call
bodies from the options, frames and network facts into the engine.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

import aiohttp
import msgspec
from livekit.agents import APIConnectionError, APIStatusError, llm, utils
from livekit.agents.llm.realtime import RealtimeSessionReconnectedEvent

from .. import events as ev
from .. import wire
from ..errors import ProtocolError
from ..machine import ClientInput, ServerInput
from ..trace import TraceWriter
from .effects import CommandEffects
from .options import history_of
from .supervisor import Socket

logger = logging.getLogger("ultravox_fsm")


class CallHost(CommandEffects):
    """Frames in, network facts in, call bodies out (set up by `RealtimeSession.__init__`)."""

    _own_http: aiohttp.ClientSession | None
    _connected_once: bool
    _body_built: bool
    _tools: llm.ToolContext
    _tool_defs: list[dict[str, Any]]
    _trace: TraceWriter | None
    _audio_ring: deque[bytes]
    _deltas: list[str]  # a burst's agent deltas held back, fed to the engine as one
    _delta_ordinal: int | None

    def http(self) -> aiohttp.ClientSession:
        if self._model._http_session is not None:
            return self._model._http_session
        if self._own_http is None:
            try:
                return utils.http_context.http_session()
            except RuntimeError:
                self._own_http = aiohttp.ClientSession()
        return self._own_http

    def call_request(self, prior_call_id: str | None) -> tuple[bytes, dict[str, str]]:
        self._body_built = True
        history = history_of(self._chat_ctx) if self._connected_once else None
        return self._opts.call_body(self._tool_defs, prior_call_id, history)

    def feed_network(self, event: ev.Connected | ev.CallFailed | ev.SocketClosed) -> None:
        self._receive(event)
        self._burst.end()
        if isinstance(event, ev.CallFailed) and self._finished is None:
            logger.debug("Ultravox call creation failed, retrying: %s", event.detail)
            error: Exception = (
                APIStatusError(event.detail, status_code=event.status, retryable=event.retryable)
                if event.status is not None
                else APIConnectionError(event.detail, retryable=event.retryable)
            )
            self._emit_error(error, recoverable=True)
        if isinstance(event, ev.Connected) and self._engine.call_id == event.call_id:
            for data in self._audio_ring:
                self._outbox.put(data)
            self._audio_ring.clear()
            self._audio_live = True
            if self._connected_once:
                self.emit("session_reconnected", RealtimeSessionReconnectedEvent())
            self._connected_once = True

    def joined(self, ws: Socket, seconds: float) -> None:
        self._report_connection_acquired(seconds)
        self._outbox.attach(ws)
        self._request(ev.ToolsChanged(names=frozenset(self._tools.function_tools)))

    def left(self) -> None:
        self._outbox.attach(None)
        self._audio_live = False
        self._burst.ended_by_transport = False
        self._burst.end()

    def on_text(self, data: str) -> None:
        try:
            message = wire.decode_server(data)
        except ProtocolError as exc:
            self._report_once("malformed", f"ignored a bad frame from Ultravox: {exc}")
            return
        if "ultravox_server_event_received" in self._events:
            self.emit("ultravox_server_event_received", msgspec.json.decode(data))
        if type(message) is wire.Pong:  # transport flow control; nothing for the engine
            self._outbox.confirm(message.timestamp)
            return
        if type(message) is wire.Transcript:
            delta = wire.agent_delta(message)
            if delta is not None:
                if self._deltas:
                    if message.ordinal == self._delta_ordinal:
                        self._deltas.append(delta)  # the run goes on; the engine has not moved
                        return
                    self._settle()  # a run of another ordinal: `merges` must see it first
                if self._engine.merges(message):
                    self._hold(message.ordinal, delta)
                    return
        self._receive(message)

    def _hold(self, ordinal: int | None, delta: str) -> None:
        """Keep a delta that only appends text until the burst ends or another input comes:
        120 deltas of a reply then cost one engine input instead of 120."""
        self._delta_ordinal = ordinal
        self._deltas.append(delta)
        self._burst.schedule()

    def _settle(self) -> None:
        """Feed the engine the held deltas, before any other input and at the burst's end."""
        if self._deltas:
            text = "".join(self._deltas)
            self._deltas.clear()
            self._receive(wire.Transcript(role="agent", delta=text, ordinal=self._delta_ordinal))

    def on_audio(self, data: bytes) -> None:
        if len(data) < 2:
            self._report_once("empty_audio", "ignored an empty or one-byte audio frame")
            return
        if len(data) & 1:
            self._report_once("odd_audio", "trimmed an odd-length audio frame")
            data = data[:-1]
        sink = self._audio_sink
        if sink is not None:
            sink.audio(data)
        else:
            self._receive(ev.AgentAudio(data=data))

    def _on_timer(self) -> None:
        if self._deltas:
            self._settle()
        super()._on_timer()
        self._burst.end()

    def on_burst_end(self) -> None:
        """The transport delivered all it had read: hand the burst over now. A transport
        that says where one burst ends says it for every one (until the socket is left)."""
        self._burst.ended_by_transport = True
        self._burst.end()

    def report_once(self, kind: str, message: str) -> None:
        self._report_once(kind, message)

    def _receive(self, event: ServerInput | ev.AgentAudio) -> None:
        if self._deltas:
            self._settle()
        try:
            if isinstance(event, ev.AgentAudio):
                commands = self._engine.agent_audio(event, self._loop.time())
            else:
                commands = self._engine.receive(event, self._loop.time())
        except ProtocolError as exc:
            self._refused(event, exc)
            self._report_once(f"refused:{type(event).__name__}", str(exc))
            return
        self._apply(commands)

    def _refused(self, event: object, exc: ProtocolError) -> None:
        if self._trace is not None:
            self._trace.refused(self._loop.time(), event, exc)

    def _request(
        self,
        event: ClientInput,
        fut: asyncio.Future[llm.GenerationCreatedEvent] | None = None,
        *,
        raising: bool = False,
    ) -> None:
        """Feed the engine a caller's request, after what arrived before it. A refusal fails
        ``fut``, or is raised (``raising``: the caller awaits the outcome), or is reported."""
        if self._deltas:
            self._settle()
        try:
            commands = self._engine.request(event, self._loop.time())
        except ProtocolError as exc:
            self._refused(event, exc)
            if raising:
                raise
            if fut is not None and not fut.done():
                fut.set_exception(llm.RealtimeError(str(exc)))
            else:
                self._report_once(f"refused:{type(event).__name__}", str(exc))
            return
        self._apply(commands)
        self._burst.end()
