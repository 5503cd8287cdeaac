"""The TURN table's model, part 1: its fields, how it fires the tables, its guards.

The model is one object (transitions resolves a row's names on it) built in layers, one module
each: `turn_base` (this), `utterances` (generations), `asks` (tools, requests, context) and
`turns` (the call, the server's state, the user, interruptions).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from . import commands as cmd
from . import events as ev
from . import wire
from .connection import Connection
from .generation import Generation
from .request import Outgoing, Requests
from .runner import Core
from .states import LIVE, TURN, ReqTrigger, State, Trigger


@dataclass(eq=False)
class TurnBase:
    """The TURN model's fields, the way it fires tables, its guards and small helpers."""

    core: Core
    state: State = State.IDLE
    call_seq: int = 0
    server_state: str = "idle"
    gen: Generation | None = None
    last_closed_ordinal: int = -1
    suppress_audio: bool = False
    user_speaking: bool = False
    thinking_since: float | None = None
    held_context: list[tuple[str, str]] = field(default_factory=list)
    invocations: dict[str, float] = field(default_factory=dict)
    known_tools: frozenset[str] | None = None
    restart_reason: str | None = None
    gen_seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    request_seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    outgoing: Outgoing = field(init=False)
    requests: Requests = field(init=False)
    conn: Connection = field(init=False)

    def __post_init__(self) -> None:
        self.outgoing = Outgoing(self.core)
        self.requests = Requests(self.core)
        self.conn = Connection(self.core, self._on_live, self._on_lost, self._on_end)

    # --- firing the tables ------------------------------------------------------------------

    def fire(self, trigger: Trigger, data: Any = None) -> None:
        self.core.fire(TURN, self, trigger, data)

    def _on_live(self, call_id: str, stale: bool) -> None:
        self.fire(Trigger.CONNECT, call_id)
        if stale:  # created from the options as they were: replaced once the agent is quiet
            self.fire(Trigger.RESTART, "the options changed while the call was being created")

    def _on_lost(self, reason: str) -> None:
        self.fire(Trigger.DISCONNECT, reason)

    def _on_end(self, reason: str, failed: bool) -> None:
        self.fire(Trigger.END_CALL, (reason, failed))

    @property
    def live(self) -> bool:
        return self.state in LIVE

    @property
    def call_id(self) -> str | None:
        return self.conn.call_id

    def item_prefix(self) -> str:
        return self.conn.call_id or f"call{self.call_seq}"

    def send(self, message: wire.ClientMessage) -> None:
        """A message that is no request's: on the wire now, or held for the next call."""
        if self.live:
            self.outgoing.put_on_wire(message)
        else:
            self._evict(self.outgoing.hold(message))

    def _evict(self, request_id: str | None) -> None:
        request = self.requests.get(request_id)
        if request is not None:
            reason = "too many messages were queued while no call was live"
            self.requests.fire(request, ReqTrigger.EVICT, reason)

    def stop_user_speaking(self) -> None:
        if self.user_speaking:
            self.user_speaking = False
            self.core.emit(cmd.UserSpeechStopped())

    # --- guards -----------------------------------------------------------------------------

    def final_seen(self, data: Any) -> bool:
        return self.gen is not None and self.gen.final_seen

    def server_quiet(self, data: Any) -> bool:
        return self.server_state not in ("thinking", "speaking")

    def generation_open(self, data: Any) -> bool:
        return self.gen is not None

    def may_speak(self, data: wire.State) -> bool:
        """Agent output may open a generation: audio is not cut, or the server began afresh."""
        return not self.suppress_audio or self.server_state not in ("thinking", "speaking")

    def nothing_in_flight(self, data: Any) -> bool:
        return not self.requests.in_flight()

    def restart_deferred(self, data: Any) -> bool:
        return self.restart_reason is not None

    def stale_ordinal(self, data: wire.Transcript) -> bool:
        ordinal, gen = data.ordinal, self.gen
        if ordinal is None:
            return False
        if ordinal <= self.last_closed_ordinal:
            return True
        return gen is not None and gen.ordinal is not None and ordinal < gen.ordinal

    def final_of_the_cut_utterance(self, data: wire.Transcript) -> bool:
        return (
            data.final
            and self.suppress_audio
            and data.ordinal is not None
            and data.ordinal == self.last_closed_ordinal
        )

    def continues_generation(self, data: wire.Transcript) -> bool:
        gen = self.gen
        return gen is not None and (data.ordinal is None or gen.ordinal in (None, data.ordinal))

    def fresh_invocation(self, data: wire.ClientToolInvocation) -> bool:
        return data.invocation_id not in self.invocations

    def unknown_tool(self, data: wire.ClientToolInvocation) -> bool:
        return self.known_tools is not None and data.tool_name not in self.known_tools

    def invocation_pending(self, data: ev.ToolResult | str) -> bool:
        invocation_id = data if isinstance(data, str) else data.invocation_id
        return invocation_id in self.invocations

    def other_tools_pending(self, data: ev.ToolResult | str) -> bool:
        invocation_id = data if isinstance(data, str) else data.invocation_id
        return bool(self.invocations.keys() - {invocation_id})

    def new_request_id(self, data: ev.ReplyRequested | ev.SayRequested) -> bool:
        return data.request_id not in self.requests
