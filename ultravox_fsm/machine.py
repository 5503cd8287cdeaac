"""The sans-I/O engine: feed it inputs with the current time, carry out the commands it returns.

`Engine` is synchronous and does no I/O: no sockets, no clock, no asyncio. Time arrives as the
``now`` argument (any monotonic seconds); `next_deadline` says when `handle_timer` is due.
There are two entry points, as in h11: `receive` for what the server and the network say
(a refusal is a `RemoteProtocolError`) and `request` for what our caller asks (a
`LocalProtocolError`). Either way a refused input changes nothing. The rules are the tables of
`states.py`; the models that carry them out are in `turns.py` and the modules it composes.
Agent audio never goes through a trigger: the adapter asks `audio_target` and pushes frames
straight to that generation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar, cast, get_args

from typing_extensions import assert_never

from . import commands as cmd
from . import events as ev
from . import wire
from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from .request import Expiry
from .runner import Core, EngineOptions, Refused, Step
from .states import (
    CONNECTION,
    GENERATING,
    LIVE,
    Conn,
    ConnTrigger,
    Gen,
    Req,
    ReqTrigger,
    State,
    Trigger,
)
from .turns import Turns

if TYPE_CHECKING:  # mypy checks that each model implements its table's effects and guards
    from .connection import Connection
    from .generation import Generation
    from .request import Request
    from .states import ConnectionModel, GenerationModel, RequestModel, TurnModel

    _TURN: type[TurnModel] = Turns
    _CONNECTION: type[ConnectionModel] = Connection
    _REQUEST: type[RequestModel] = Request
    _GENERATION: type[GenerationModel] = Generation

__all__ = ["Engine", "EngineOptions", "Observer", "Step"]

ServerInput = wire.ServerMessage | wire.Unknown | ev.Connected | ev.CallFailed | ev.SocketClosed
"""What `receive` takes: the server's messages and the network's facts."""
ClientInput = (
    ev.ReplyRequested
    | ev.SayRequested
    | ev.RequestCancelled
    | ev.ContextAdded
    | ev.ContextFlush
    | ev.ToolResult
    | ev.ToolsChanged
    | ev.InterruptRequested
    | ev.OutputMediumChanged
    | ev.HangUpRequested
    | ev.RestartRequested
    | ev.Close
)
"""What `request` takes: our caller's requests."""
_CLIENT_TYPES = get_args(ClientInput)

E = TypeVar("E")
Observer = Callable[[float, object, list[Step], list[cmd.Command]], None]
"""Called after each input with (now, input or "timer", the state changes, the commands)."""

_SERVER_STATES = {
    "thinking": Trigger.SERVER_THINKING,
    "speaking": Trigger.SERVER_SPEAKING,
    "listening": Trigger.SERVER_LISTENING,
    # `idle` is listed by the docs without saying when it comes: read it as listening.
    "idle": Trigger.SERVER_LISTENING,
}


class Engine:
    """One session's turn-taking core. Not thread-safe; one event loop drives it."""

    def __init__(
        self, options: EngineOptions | None = None, observer: Observer | None = None
    ) -> None:
        self._core = Core(options or EngineOptions())
        self._turns = Turns(self._core)
        self._observer = observer

    # --- what adapters read -------------------------------------------------------------------

    @property
    def options(self) -> EngineOptions:
        return self._core.options

    @property
    def state(self) -> State:
        return self._turns.state

    @property
    def connection(self) -> Conn:
        return self._turns.conn.state

    @property
    def call_id(self) -> str | None:
        return self._turns.call_id

    @property
    def audio_target(self) -> str | None:
        """The generation that takes agent audio without going through `handle`, if any."""
        gen = self._turns.gen
        if gen is None or gen.first_output_at is None or gen.muted or self._turns.suppress_audio:
            return None
        return gen.id

    def merges(self, message: wire.Transcript) -> bool:
        """Whether ``message`` only appends text to the open generation, which is decided: such
        deltas in a row (same ordinal) may reach `receive` as one delta with the same effect
        (the data path below; an undecided generation weighs each delta as evidence)."""
        gen = self._turns.gen
        return (
            wire.agent_delta(message) is not None
            and gen is not None
            and gen.state is not Gen.UNDECIDED
            and self._continues(message)
        )

    def _continues(self, message: wire.Transcript) -> bool:
        """The guards of the AGENT_TEXT row that stays in the state (the data path's)."""
        t = self._turns
        return (
            t.state in GENERATING
            and not t.stale_ordinal(message)
            and t.continues_generation(message)
        )

    @property
    def pending_invocations(self) -> frozenset[str]:
        return frozenset(self._turns.invocations)

    @property
    def open_generation(self) -> str | None:
        return self._turns.gen.id if self._turns.gen is not None else None

    def next_deadline(self) -> float | None:
        """The earliest moment `handle_timer` has work to do; asked after every input, so it
        builds nothing (mid-reply there is usually no deadline at all)."""
        t = self._turns
        best = t.conn.deadline
        gen = t.gen
        if gen is not None:
            for deadline in (gen.drain_deadline, gen.decide_by):
                if deadline is not None and (best is None or deadline < best):
                    best = deadline
        for deadline in t.invocations.values():
            if best is None or deadline < best:
                best = deadline
        for request in t.requests.by_id.values():
            if request.deadline is not None and (best is None or request.deadline < best):
                best = request.deadline
        return best

    # --- inputs -------------------------------------------------------------------------------

    def receive(self, message: ServerInput, now: float) -> list[cmd.Command]:
        """Apply what the server or the network says; `RemoteProtocolError` if refused."""
        return self._run(now, message, self._receive, RemoteProtocolError)

    def request(self, event: ClientInput, now: float) -> list[cmd.Command]:
        """Apply what our caller asks; `LocalProtocolError` if refused."""
        return self._run(now, event, self._request, LocalProtocolError)

    def handle(
        self, event: ServerInput | ClientInput | ev.AgentAudio, now: float
    ) -> list[cmd.Command]:
        """Either entry point, by the input's type (for traces and tests)."""
        if isinstance(event, ev.AgentAudio):
            return self.agent_audio(event, now)
        if isinstance(event, _CLIENT_TYPES):
            return self.request(cast(ClientInput, event), now)
        return self.receive(cast(ServerInput, event), now)

    def agent_audio(self, event: ev.AgentAudio, now: float) -> list[cmd.Command]:
        """A frame of agent audio that the adapter's fast path could not place: gated by a
        state check, it opens a generation when it is the first output of an utterance."""
        return self._run(now, event, self._audio, RemoteProtocolError)

    def handle_timer(self, now: float) -> list[cmd.Command]:
        """Fire every deadline that is due at ``now``."""
        return self._run(now, "timer", self._timers, RemoteProtocolError)

    # --- dispatch -----------------------------------------------------------------------------

    def _run(
        self,
        now: float,
        event: E,
        apply: Callable[[E], None],
        error: type[ProtocolError],
    ) -> list[cmd.Command]:
        core, t = self._core, self._turns
        core.now = now
        core.out = []
        core.steps = []
        try:
            apply(event)
        except Refused as exc:
            raise error(f"{type(event).__name__}: {exc}") from None
        if t.restart_reason is not None and t.state is State.LISTENING:
            t.fire(Trigger.SETTLED)
        if self._observer is not None:
            self._observer(now, event, core.steps, core.out)
        return core.out

    def _receive(self, message: ServerInput) -> None:
        t = self._turns
        match message:
            case wire.State():
                t.fire(_SERVER_STATES.get(message.state, Trigger.SERVER_OTHER), message)
            case wire.Transcript():
                if message.role == "agent" and not message.final and self._continues(message):
                    # The data path: exactly the AGENT_TEXT row that stays in the state and
                    # runs `continue_text`, without the trigger's cost on every delta.
                    t.continue_text(message)
                else:
                    trigger = Trigger.USER_TEXT if message.role == "user" else Trigger.AGENT_TEXT
                    t.fire(trigger, message)
            case wire.ClientToolInvocation():
                t.fire(Trigger.TOOL_INVOCATION, message)
            case wire.PlaybackClearBuffer():
                t.fire(Trigger.BARGE_IN)
            case wire.UserStartedSpeaking():
                t.fire(Trigger.USER_SPEECH, True)
            case wire.UserStoppedSpeaking():
                t.fire(Trigger.USER_SPEECH, False)
            case ev.Connected():
                self._core.fire(CONNECTION, t.conn, ConnTrigger.JOINED, message)
            case ev.CallFailed():
                self._core.fire(CONNECTION, t.conn, ConnTrigger.CREATE_FAILED, message)
            case ev.SocketClosed():
                self._core.fire(CONNECTION, t.conn, ConnTrigger.SOCKET_CLOSED, message)
            case wire.Unknown():
                kind = message.type[:100]
                self._core.report("unknown_type", f"unknown message type {kind!r} ignored")
            case wire.DataConnectionToolInvocation():
                self._core.report(
                    "data_connection", "data connection tool invocation on the call socket"
                )
            case (
                wire.CallStarted()
                | wire.Pong()
                | wire.Debug()
                | wire.ThreadSpawned()
                | wire.ThreadRejected()
                | wire.ThreadTerminated()
                | wire.SideGenerationDelta()
                | wire.SideGenerationCompleted()
            ):
                pass  # nothing the turn-taking needs (the call id comes from its creation)
            case _:
                assert_never(message)

    def _request(self, event: ClientInput) -> None:
        t = self._turns
        match event:
            case ev.ReplyRequested() | ev.SayRequested():
                t.fire(Trigger.REQUEST, event)
            case ev.RequestCancelled():
                t.fire(Trigger.CANCEL, event.request_id)
            case ev.ContextAdded() | ev.ContextFlush():
                t.fire(Trigger.CONTEXT, event)
            case ev.ToolResult():
                t.fire(Trigger.TOOL_RESULT, event)
            case ev.InterruptRequested():
                t.fire(Trigger.INTERRUPT)
            case ev.OutputMediumChanged():
                t.fire(Trigger.CONTROL, wire.SetOutputMedium(medium=event.medium))
            case ev.HangUpRequested():
                t.fire(Trigger.CONTROL, wire.HangUp(message=event.message))
            case ev.RestartRequested():
                t.fire(Trigger.RESTART, event.reason)
            case ev.Close():
                t.fire(Trigger.CLOSE)
            case ev.ToolsChanged():
                t.known_tools = event.names
            case _:
                assert_never(event)

    def _audio(self, event: ev.AgentAudio) -> None:
        t = self._turns
        if t.state not in LIVE or t.suppress_audio:
            return
        if t.gen is None:
            t.fire(Trigger.AGENT_OUTPUT)
        gen = t.gen
        assert gen is not None
        t.mark_output(gen)
        if not gen.muted:
            self._core.emit(cmd.PushAudio(gen_id=gen.id, data=event.data))

    def _timers(self, _: str) -> None:
        t, now = self._turns, self._core.now
        if t.state is State.CLOSED:
            return
        for invocation_id, deadline in list(t.invocations.items()):
            if deadline <= now and invocation_id in t.invocations:
                t.fire(Trigger.TOOL_EXPIRED, invocation_id)
        for request in t.requests:
            if request.deadline is None or request.deadline > now:
                continue
            if request.state is Req.SWALLOWING:
                t.requests.fire(request, ReqTrigger.WINDOW_CLOSED)
            elif request.state is Req.QUEUED:
                t.requests.fire(request, ReqTrigger.TIME_OUT, Expiry("no call became live in time"))
            else:
                gen = t.gen
                undecided = gen is not None and gen.state is Gen.UNDECIDED
                open_until = None
                if gen is not None and undecided:
                    open_until = gen.decide_by if gen.decide_by is not None else now
                expiry = Expiry("timed out waiting for the reply", open_until)
                t.requests.fire(request, ReqTrigger.TIME_OUT, expiry)
        gen = t.gen
        if gen is not None and gen.decide_by is not None and gen.decide_by <= now:
            gen.consider(final=True)
        gen = t.gen
        if gen is not None and gen.drain_deadline is not None and gen.drain_deadline <= now:
            t.fire(Trigger.DRAIN_EXPIRED)
        conn = t.conn
        if conn.state is Conn.BACKING_OFF and conn.deadline is not None and conn.deadline <= now:
            self._core.fire(CONNECTION, conn, ConnTrigger.BACKOFF_EXPIRED)
