"""Every lifecycle of one Ultravox session, as tables: the single source of the rules.

Four tables, each run by `transitions` (`runner.py`), drawn by `diagram.py` and walked by the
exhaustive tests: the session's **turn**, its **connection**, each **request**
(`generate_reply`/`say`/our interrupt) and each **generation** (what LiveKit plays as one agent
message). A row names its effects and guards as methods of the table's model protocol below, so
mypy checks every name; guards are pure, effects run before the state changes. A (state,
trigger) pair with no row, or whose rows' guards all fail, is *refused*: the input that caused it
raises `LocalProtocolError` (our caller's input) or `RemoteProtocolError` (the server's, or the
network's) and changes nothing. This module imports nothing but the standard library and the
core's own message types.

Turn states
===========

    IDLE          no call yet; requests are queued until the call is live.
    LISTENING     the call is live and the agent is quiet.
    THINKING      the server said it is producing a reply; no agent output has arrived yet.
    SPEAKING      a generation is open: agent text and audio flow into it.
    TOOL_PENDING  at least one client tool invocation is unanswered.
    RESTARTING    the call is being replaced (lost, or instructions/tools changed).
    CLOSED        terminal: the session was closed or the call ended.

Rules
=====

Generations
  * At most one generation is open. It opens on the first agent output of an utterance (an
    agent transcript with a new ordinal, an audio frame, or the server's ``speaking``), never on
    ``thinking``. It closes *completed* once its final transcript has arrived and the server is
    no longer speaking, in either order; if only one arrives, a drain deadline closes it. A tool
    invocation closes it at its final transcript (or at the drain deadline).
  * It closes *interrupted* on barge-in (``playback_clear_buffer``), on `interrupt()`, or when
    the call is lost. Audio is then dropped until the server starts a fresh turn.
  * Ordinal gating: a transcript whose ordinal is not newer than a closed generation's, or older
    than the open one's, is stale and never reopens anything (guard ``stale_ordinal``).

Ownership (table GENERATION): who receives a generation
  * Every generation is decided exactly once: owned by a request (its future resolves),
    unsolicited (``generation_created``), or discarded (a late reply to an abandoned request).
  * Evidence is ordinals: a reply request whose text the server echoed with ordinal N is
    answered by a generation with an ordinal above N; a `say` by the generation whose first words
    match; our interrupt by the generation right after its echo. Among the requests a generation
    answers, the newest wins, and a user's request always wins over an internal one (the resume
    of a cut reply); the older ones it also answers end at once, *merged*, without an error.
  * A request that timed out or was cancelled swallows its late reply only when the ordinals say
    the reply answers it; without its echo it claims nothing and delays nothing.
  * Without evidence a generation waits, buffered, until the owner-grace deadline (set once when
    it opens); then it goes to the oldest live request not ruled out (servers that never echo),
    else it is unsolicited.

Requests (table REQUEST)
  * Made while no call is live, a request is queued (bounded; an evicted request fails) and sent
    on connect. Every request has a deadline: ``reply_timeout`` from when it was made while
    queued, and from each send once sent.
  * A call lost while a request is in flight puts it back in the queue (if the server echoed a
    reply request, only a prompt for the reply is re-sent: the new call has the history).
    A request is sent at most ``max_sends`` times: one that every call dies on fails.
  * Cancelling a queued reply request keeps the user's words: they go out as context.
  * Echoes of text we sent are never reported as user speech.

Tools
  * TOOL_PENDING holds exactly while an invocation of the live call is unanswered. A repeated
    invocation id is refused; results for unknown or answered invocations are refused.
  * An invocation unanswered past its deadline is dropped.

The connection (table CONNECTION)
  * A socket closed 1000/1001 ends the call normally. Any other close, or a failed call
    creation that the API says is worth retrying, costs one unit of the retry budget unless the
    call had *proved* itself (a turn completed on it, or it stayed up ``proven_after`` seconds);
    then the session backs off (exponential, jittered, Retry-After honoured but capped at
    ``max_backoff``) and creates a new call with ``priorCallId``. A refused ``priorCallId``
    (400/404/422) is retried at once with the history as ``initialMessages``. When the budget is
    spent, or the API refuses for good, the session gives up: one failure, every request ends.
  * A restart (instructions or tools changed) waits until LISTENING with nothing in flight;
    several make one. One asked for while a call is being created happens once it is live.

What the tables do not hold
===========================
  * Data, not triggers: agent audio frames and non-final text for the open generation go to it
    by a state check (`Engine.audio_target`; for text, `Engine._receive` runs the effect of the
    AGENT_TEXT row that stays in the state, ``continue_text``, when that row's guards hold).
    Deltas that only append to a decided generation (`Engine.merges`) may arrive joined: the
    adapter feeds a burst's run of them as one input, which has the same effect.
  * The evidence itself: `ownership.evaluate` turns requests and a generation into a `Verdict`
    (a pure function); the GENERATION rows decide on its fields.
  * Pong, debug, thread and side-generation messages carry nothing for turn-taking; the engine
    drops them before the tables. Unknown message types are reported once per type.
  * A deferred restart is re-checked after each input only while one is pending (the SETTLED
    trigger), to keep the per-message cost flat.
  * Timers: `Engine.handle_timer` fires the triggers whose deadlines are due (TOOL_EXPIRED,
    DRAIN_EXPIRED, DECIDE, TIME_OUT, WINDOW_CLOSED, BACKOFF_EXPIRED).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from . import events as ev
from . import wire

if TYPE_CHECKING:
    from .request import Expiry

S_ = TypeVar("S_", bound=enum.Enum)
T_ = TypeVar("T_", bound=enum.Enum)


@dataclass(frozen=True)
class Row(Generic[S_, T_]):
    """One transition: in any of ``source``, ``trigger`` moves to ``dest`` (None: stay) when
    every guard in ``when`` holds; the ``effect`` methods run first, in order, and ``then``
    methods after the state changed (to fire what follows from the new state)."""

    trigger: T_
    source: tuple[S_, ...]
    dest: S_ | None
    effect: tuple[Callable[..., None], ...]
    when: tuple[Callable[..., bool], ...] = ()
    then: tuple[Callable[..., None], ...] = ()

    @property
    def effect_names(self) -> list[str]:
        return [f.__name__ for f in self.effect]

    @property
    def guard_names(self) -> list[str]:
        return [f.__name__ for f in self.when]

    @property
    def then_names(self) -> list[str]:
        return [f.__name__ for f in self.then]


@dataclass(frozen=True)
class Table(Generic[S_, T_]):
    """A lifecycle: its states, triggers and rows, in the order rows are tried."""

    name: str
    states: type[S_]
    triggers: type[T_]
    initial: S_
    terminal: frozenset[S_]
    rows: tuple[Row[S_, T_], ...]
    # Triggers that only keep books: left off the default diagrams.
    bookkeeping: frozenset[T_] = frozenset()
    # Why a trigger is refused, for the error message (default: the state forbids it).
    refusals: tuple[tuple[T_, str], ...] = ()

    def why_refused(self, trigger: T_, state: S_) -> str:
        reason = dict(self.refusals).get(trigger)
        if reason is None or state in self.terminal:
            return f"{trigger.value!r} is not allowed in {self.name} state {state.value!r}"
        return f"{trigger.value!r} refused in {self.name} state {state.value!r}: {reason}"

    def rows_for(self, state: S_, trigger: T_) -> tuple[Row[S_, T_], ...]:
        """The rows that apply to ``trigger`` in ``state``, in table order."""
        return tuple(r for r in self.rows if r.trigger is trigger and state in r.source)


def _row(
    trigger: T_,
    source: tuple[S_, ...],
    dest: S_ | None,
    *effect: Callable[..., None],
    when: tuple[Callable[..., bool], ...] = (),
    then: tuple[Callable[..., None], ...] = (),
) -> Row[S_, T_]:
    return Row(trigger, source, dest, effect, when, then)


# --- the turn ---------------------------------------------------------------------------------


class State(enum.Enum):
    IDLE = "idle"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"
    TOOL_PENDING = "tool_pending"
    RESTARTING = "restarting"
    CLOSED = "closed"


class Trigger(enum.Enum):
    CONNECT = "connect"
    DISCONNECT = "disconnect"
    RESTART = "restart"
    SETTLED = "settled"
    END_CALL = "end_call"
    CLOSE = "close"
    SERVER_THINKING = "server_thinking"
    SERVER_SPEAKING = "server_speaking"
    SERVER_LISTENING = "server_listening"
    SERVER_OTHER = "server_other"
    AGENT_TEXT = "agent_text"
    AGENT_OUTPUT = "agent_output"
    AGENT_FINAL = "agent_final"
    DRAIN_EXPIRED = "drain_expired"
    USER_TEXT = "user_text"
    USER_SPEECH = "user_speech"
    BARGE_IN = "barge_in"
    INTERRUPT = "interrupt"
    TOOL_INVOCATION = "tool_invocation"
    TOOL_RESULT = "tool_result"
    TOOL_EXPIRED = "tool_expired"
    REQUEST = "request"
    CANCEL = "cancel"
    CONTEXT = "context"
    CONTROL = "control"


class TurnModel(Protocol):
    """Effects and guards of the TURN table (implemented by `turns.Turns`)."""

    # guards
    def final_seen(self, data: Any) -> bool: ...
    def server_quiet(self, data: Any) -> bool: ...
    def generation_open(self, data: Any) -> bool: ...
    def may_speak(self, data: wire.State) -> bool: ...
    def nothing_in_flight(self, data: Any) -> bool: ...
    def restart_deferred(self, data: Any) -> bool: ...
    def stale_ordinal(self, data: wire.Transcript) -> bool: ...
    def final_of_the_cut_utterance(self, data: wire.Transcript) -> bool: ...
    def continues_generation(self, data: wire.Transcript) -> bool: ...
    def fresh_invocation(self, data: wire.ClientToolInvocation) -> bool: ...
    def unknown_tool(self, data: wire.ClientToolInvocation) -> bool: ...
    def invocation_pending(self, data: ev.ToolResult | str) -> bool: ...
    def other_tools_pending(self, data: ev.ToolResult | str) -> bool: ...
    def new_request_id(self, data: ev.ReplyRequested | ev.SayRequested) -> bool: ...

    # effects
    def on_connected(self, data: str) -> None: ...
    def on_call_lost(self, data: str) -> None: ...
    def on_restart(self, data: str) -> None: ...
    def defer_restart(self, data: str) -> None: ...
    def restart_offline(self, data: str) -> None: ...
    def on_call_ended(self, data: tuple[str, bool]) -> None: ...
    def on_close(self, data: Any) -> None: ...
    def note_server_state(self, data: wire.State) -> None: ...
    def report_state(self, data: wire.State) -> None: ...
    def begin_utterance(self, data: Any) -> None: ...
    def complete_generation(self, data: Any) -> None: ...
    def start_drain(self, data: Any) -> None: ...
    def open_with_text(self, data: wire.Transcript) -> None: ...
    def continue_text(self, data: wire.Transcript) -> None: ...
    def report_stale(self, data: wire.Transcript) -> None: ...
    def end_if_final(self, data: wire.Transcript) -> None: ...
    def on_user_text(self, data: wire.Transcript) -> None: ...
    def on_user_speech(self, data: bool) -> None: ...
    def clear_playback(self, data: Any) -> None: ...
    def stop_agent(self, data: Any) -> None: ...
    def register_invocation(self, data: wire.ClientToolInvocation) -> None: ...
    def answer_unknown_tool(self, data: wire.ClientToolInvocation) -> None: ...
    def send_tool_result(self, data: ev.ToolResult) -> None: ...
    def expire_tool(self, data: str) -> None: ...
    def queue_request(self, data: ev.ReplyRequested | ev.SayRequested) -> None: ...
    def cancel_request(self, data: str) -> None: ...
    def add_context(self, data: ev.ContextAdded | ev.ContextFlush) -> None: ...
    def send_control(self, data: wire.ClientMessage) -> None: ...
    def ignore(self, data: Any) -> None: ...


S = State
T = Trigger
M = TurnModel
LIVE = (S.LISTENING, S.THINKING, S.SPEAKING, S.TOOL_PENDING)
OFFLINE = (S.IDLE, S.RESTARTING)
OPEN = LIVE + OFFLINE  # every state but CLOSED
BUSY = (S.THINKING, S.SPEAKING, S.TOOL_PENDING)
GENERATING = (S.SPEAKING, S.TOOL_PENDING)
# What a call's socket may deliver. From the call being replaced, while its successor is created
# (its socket closes a loop turn after the restart), it is moot: ignored in RESTARTING, not
# refused. The new call's frames come only after CONNECT has left RESTARTING.
FROM_THE_SERVER = (
    T.SERVER_THINKING,
    T.SERVER_SPEAKING,
    T.SERVER_LISTENING,
    T.SERVER_OTHER,
    T.AGENT_TEXT,
    T.AGENT_OUTPUT,
    T.USER_TEXT,
    T.USER_SPEECH,
    T.BARGE_IN,
    T.TOOL_INVOCATION,
)
# What the server or a late client call may still send after the end: ignored, not refused.
AFTER_THE_END = (
    T.CLOSE,
    T.DISCONNECT,
    *FROM_THE_SERVER,
    T.INTERRUPT,
    T.CANCEL,
    T.CONTEXT,
    T.CONTROL,
)

TURN: Table[State, Trigger] = Table(
    name="turn",
    states=State,
    triggers=Trigger,
    initial=S.IDLE,
    terminal=frozenset({S.CLOSED}),
    bookkeeping=frozenset(
        {T.REQUEST, T.CANCEL, T.CONTEXT, T.CONTROL, T.USER_TEXT, T.USER_SPEECH, T.SERVER_OTHER}
    ),
    refusals=(
        (
            T.TOOL_RESULT,
            "no such invocation is pending on the live call (answered already, expired, or "
            "from an earlier call)",
        ),
        (T.TOOL_INVOCATION, "its invocation id is already pending, or no call is live"),
        (T.REQUEST, "a request with this id is already pending"),
    ),
    rows=(
        # --- the call -----------------------------------------------------------------------
        _row(T.CONNECT, OFFLINE, S.LISTENING, M.on_connected),
        _row(T.DISCONNECT, LIVE, S.RESTARTING, M.on_call_lost),
        _row(T.RESTART, (S.LISTENING,), S.RESTARTING, M.on_restart, when=(M.nothing_in_flight,)),
        _row(T.RESTART, (S.LISTENING, *BUSY), None, M.defer_restart),
        _row(T.RESTART, OFFLINE, None, M.restart_offline),
        _row(
            T.SETTLED,
            (S.LISTENING,),
            S.RESTARTING,
            M.on_restart,
            when=(M.restart_deferred, M.nothing_in_flight),
        ),
        _row(T.SETTLED, OPEN, None, M.ignore),
        _row(T.END_CALL, OPEN, S.CLOSED, M.on_call_ended),
        _row(T.CLOSE, OPEN, S.CLOSED, M.on_close),
        # --- what the server says about itself ----------------------------------------------
        _row(T.SERVER_THINKING, (S.LISTENING,), S.THINKING, M.note_server_state),
        _row(
            T.SERVER_THINKING,
            (S.SPEAKING,),
            S.THINKING,
            M.note_server_state,
            M.complete_generation,
            when=(M.final_seen,),
        ),
        _row(T.SERVER_THINKING, BUSY, None, M.note_server_state),
        _row(
            T.SERVER_SPEAKING,
            (S.LISTENING, S.THINKING),
            S.SPEAKING,
            M.note_server_state,
            M.begin_utterance,
            when=(M.may_speak,),
        ),
        # A `speaking` still about the utterance we interrupted (no `listening` since): nothing.
        _row(T.SERVER_SPEAKING, (S.LISTENING, S.THINKING), None, M.note_server_state),
        _row(T.SERVER_SPEAKING, GENERATING, None, M.note_server_state),
        _row(
            T.SERVER_LISTENING,
            (S.SPEAKING,),
            S.LISTENING,
            M.note_server_state,
            M.complete_generation,
            when=(M.final_seen,),
        ),
        _row(T.SERVER_LISTENING, (S.SPEAKING,), None, M.note_server_state, M.start_drain),
        _row(T.SERVER_LISTENING, (S.THINKING,), S.LISTENING, M.note_server_state),
        _row(T.SERVER_LISTENING, (S.LISTENING, S.TOOL_PENDING), None, M.note_server_state),
        _row(T.SERVER_OTHER, LIVE, None, M.report_state),
        # --- the agent's output -------------------------------------------------------------
        # The final of an utterance we cut (barge-in, interrupt) comes after the cut: expected.
        _row(T.AGENT_TEXT, LIVE, None, M.ignore, when=(M.final_of_the_cut_utterance,)),
        _row(T.AGENT_TEXT, LIVE, None, M.report_stale, when=(M.stale_ordinal,)),
        _row(
            T.AGENT_TEXT,
            GENERATING,
            None,
            M.continue_text,
            when=(M.continues_generation,),
            then=(M.end_if_final,),
        ),
        _row(
            T.AGENT_TEXT,
            (S.LISTENING, S.THINKING),
            S.SPEAKING,
            M.open_with_text,
            then=(M.end_if_final,),
        ),
        _row(T.AGENT_TEXT, GENERATING, None, M.open_with_text, then=(M.end_if_final,)),
        _row(T.AGENT_OUTPUT, (S.LISTENING, S.THINKING), S.SPEAKING, M.begin_utterance),
        _row(T.AGENT_OUTPUT, GENERATING, None, M.begin_utterance),
        _row(
            T.AGENT_FINAL, (S.SPEAKING,), S.LISTENING, M.complete_generation, when=(M.server_quiet,)
        ),
        _row(T.AGENT_FINAL, (S.SPEAKING,), None, M.start_drain),
        _row(T.AGENT_FINAL, (S.TOOL_PENDING,), None, M.complete_generation),
        _row(T.DRAIN_EXPIRED, (S.SPEAKING,), S.LISTENING, M.complete_generation),
        _row(T.DRAIN_EXPIRED, (S.TOOL_PENDING,), None, M.complete_generation),
        # --- the user -----------------------------------------------------------------------
        _row(T.USER_TEXT, LIVE, None, M.on_user_text),
        _row(T.USER_SPEECH, LIVE, None, M.on_user_speech),
        # --- interruptions ------------------------------------------------------------------
        _row(T.BARGE_IN, (S.SPEAKING,), S.LISTENING, M.clear_playback),
        _row(T.BARGE_IN, (S.LISTENING, S.THINKING, S.TOOL_PENDING), None, M.clear_playback),
        _row(T.INTERRUPT, (S.SPEAKING,), S.LISTENING, M.stop_agent),
        _row(T.INTERRUPT, (S.THINKING, S.TOOL_PENDING), None, M.stop_agent),
        _row(T.INTERRUPT, (S.LISTENING, *OFFLINE), None, M.ignore),
        # --- tools --------------------------------------------------------------------------
        _row(
            T.TOOL_INVOCATION,
            LIVE,
            None,
            M.answer_unknown_tool,
            when=(M.fresh_invocation, M.unknown_tool),
        ),
        _row(
            T.TOOL_INVOCATION,
            LIVE,
            S.TOOL_PENDING,
            M.register_invocation,
            when=(M.fresh_invocation,),
        ),
        _row(
            T.TOOL_RESULT,
            (S.TOOL_PENDING,),
            None,
            M.send_tool_result,
            when=(M.invocation_pending, M.other_tools_pending),
        ),
        _row(
            T.TOOL_RESULT,
            (S.TOOL_PENDING,),
            S.SPEAKING,
            M.send_tool_result,
            when=(M.invocation_pending, M.generation_open),
        ),
        _row(
            T.TOOL_RESULT,
            (S.TOOL_PENDING,),
            S.LISTENING,
            M.send_tool_result,
            when=(M.invocation_pending,),
        ),
        _row(
            T.TOOL_EXPIRED,
            (S.TOOL_PENDING,),
            None,
            M.expire_tool,
            when=(M.invocation_pending, M.other_tools_pending),
        ),
        _row(
            T.TOOL_EXPIRED,
            (S.TOOL_PENDING,),
            S.SPEAKING,
            M.expire_tool,
            when=(M.invocation_pending, M.generation_open),
        ),
        _row(
            T.TOOL_EXPIRED,
            (S.TOOL_PENDING,),
            S.LISTENING,
            M.expire_tool,
            when=(M.invocation_pending,),
        ),
        # --- requests, context and control messages never move the state --------------------
        _row(T.REQUEST, OPEN, None, M.queue_request, when=(M.new_request_id,)),
        _row(T.CANCEL, OPEN, None, M.cancel_request),
        _row(T.CONTEXT, OPEN, None, M.add_context),
        _row(T.CONTROL, OPEN, None, M.send_control),
        # --- the replaced call's last frames, and after the end: they change nothing ---------
        *(_row(trigger, (S.RESTARTING,), None, M.ignore) for trigger in FROM_THE_SERVER),
        *(_row(trigger, (S.CLOSED,), None, M.ignore) for trigger in AFTER_THE_END),
    ),
)

INITIAL = TURN.initial
TABLE = TURN.rows
BOOKKEEPING = TURN.bookkeeping
# A generation may be open only in these states (checked by the property tests).
GENERATION_STATES = frozenset(GENERATING)


def rows_for(state: State, trigger: Trigger) -> tuple[Row[State, Trigger], ...]:
    """The TURN rows that apply to ``trigger`` in ``state``, in table order."""
    return TURN.rows_for(state, trigger)


# --- the connection ---------------------------------------------------------------------------


class Conn(enum.Enum):
    CREATING = "creating"
    LIVE = "live"
    BACKING_OFF = "backing_off"
    ENDED = "ended"
    GIVEN_UP = "given_up"


class ConnTrigger(enum.Enum):
    JOINED = "joined"
    CREATE_FAILED = "create_failed"
    SOCKET_CLOSED = "socket_closed"
    BACKOFF_EXPIRED = "backoff_expired"
    REPLACE = "replace"
    PROVED = "proved"
    CLOSE = "close"


class ConnectionModel(Protocol):
    """Effects and guards of the CONNECTION table (implemented by `connection.Connection`)."""

    def prior_refused(self, data: ev.CallFailed) -> bool: ...
    def retryable(self, data: ev.CallFailed) -> bool: ...
    def budget_left(self, data: Any) -> bool: ...
    def stale_socket(self, data: ev.SocketClosed) -> bool: ...
    def normal_close(self, data: ev.SocketClosed) -> bool: ...

    def went_live(self, data: ev.Connected) -> None: ...
    def announce_live(self, data: ev.Connected) -> None: ...
    def retry_without_prior(self, data: ev.CallFailed) -> None: ...
    def back_off(self, data: ev.CallFailed) -> None: ...
    def give_up(self, data: ev.CallFailed | ev.SocketClosed) -> None: ...
    def call_ended(self, data: ev.SocketClosed) -> None: ...
    def call_lost(self, data: ev.SocketClosed) -> None: ...
    def start_call(self, data: Any) -> None: ...
    def replace_call(self, data: str) -> None: ...
    def mark_stale(self, data: str) -> None: ...
    def prove(self, data: Any) -> None: ...
    def stop(self, data: Any) -> None: ...
    def ignore(self, data: Any) -> None: ...


C = Conn
CT = ConnTrigger
CM = ConnectionModel
CONN_OPEN = (C.CREATING, C.LIVE, C.BACKING_OFF)

CONNECTION: Table[Conn, ConnTrigger] = Table(
    name="connection",
    states=Conn,
    triggers=ConnTrigger,
    initial=C.CREATING,
    terminal=frozenset({C.ENDED, C.GIVEN_UP}),
    bookkeeping=frozenset({CT.PROVED}),
    rows=(
        _row(CT.JOINED, (C.CREATING,), C.LIVE, CM.went_live, then=(CM.announce_live,)),
        _row(
            CT.CREATE_FAILED,
            (C.CREATING,),
            None,
            CM.retry_without_prior,
            when=(CM.prior_refused,),
        ),
        _row(
            CT.CREATE_FAILED,
            (C.CREATING,),
            C.BACKING_OFF,
            CM.back_off,
            when=(CM.retryable, CM.budget_left),
        ),
        _row(CT.CREATE_FAILED, (C.CREATING,), C.GIVEN_UP, CM.give_up),
        _row(CT.SOCKET_CLOSED, (C.LIVE,), None, CM.ignore, when=(CM.stale_socket,)),
        _row(CT.SOCKET_CLOSED, (C.LIVE,), C.ENDED, CM.call_ended, when=(CM.normal_close,)),
        _row(CT.SOCKET_CLOSED, (C.LIVE,), C.BACKING_OFF, CM.call_lost, when=(CM.budget_left,)),
        _row(CT.SOCKET_CLOSED, (C.LIVE,), C.GIVEN_UP, CM.give_up),
        # The socket we replaced or gave up on closing late: nothing to do.
        _row(CT.SOCKET_CLOSED, (C.CREATING, C.BACKING_OFF, C.ENDED, C.GIVEN_UP), None, CM.ignore),
        # A call creation that the session's end overtook: its outcome is moot (the adapter
        # closes a socket that joins after the end).
        _row(CT.JOINED, (C.ENDED,), None, CM.ignore),
        _row(CT.CREATE_FAILED, (C.ENDED,), None, CM.ignore),
        _row(CT.BACKOFF_EXPIRED, (C.BACKING_OFF,), C.CREATING, CM.start_call),
        _row(CT.REPLACE, (C.LIVE,), C.CREATING, CM.replace_call),
        _row(CT.REPLACE, (C.CREATING,), None, CM.mark_stale),
        _row(CT.REPLACE, (C.BACKING_OFF,), None, CM.ignore),
        _row(CT.PROVED, (C.LIVE,), None, CM.prove),
        _row(CT.PROVED, (C.CREATING, C.BACKING_OFF, C.ENDED, C.GIVEN_UP), None, CM.ignore),
        _row(CT.CLOSE, CONN_OPEN, C.ENDED, CM.stop),
        _row(CT.CLOSE, (C.ENDED, C.GIVEN_UP), None, CM.ignore),
    ),
)


# --- a request --------------------------------------------------------------------------------


class Req(enum.Enum):
    QUEUED = "queued"
    SENT = "sent"
    ECHOED = "echoed"
    ANSWERED = "answered"
    SWALLOWING = "swallowing"
    ENDED = "ended"


class ReqTrigger(enum.Enum):
    SEND = "send"
    ECHO = "echo"
    ANSWER = "answer"
    MERGE = "merge"
    LATE_REPLY = "late_reply"
    TIME_OUT = "time_out"
    CANCEL = "cancel"
    CARRY = "carry"
    FAIL = "fail"
    EVICT = "evict"
    WINDOW_CLOSED = "window_closed"


class RequestModel(Protocol):
    """Effects and guards of the REQUEST table (implemented by `request.Request`)."""

    def is_interrupt(self, data: Any) -> bool: ...
    def sent_too_often(self, data: Any) -> bool: ...
    def carries_words(self, data: Any) -> bool: ...
    def answer_may_be_open(self, data: Expiry) -> bool: ...

    def put_on_wire(self, data: Any) -> None: ...
    def fail_poisoned(self, data: Any) -> None: ...
    def note_echo(self, data: int) -> None: ...
    def announce(self, data: str) -> None: ...
    def end_merged(self, data: str) -> None: ...
    def discard_reply(self, data: str) -> None: ...
    def fail(self, data: str) -> None: ...
    def swallow(self, data: Any) -> None: ...
    def fail_and_swallow(self, data: Expiry) -> None: ...
    def expire(self, data: Expiry) -> None: ...
    def postpone(self, data: Expiry) -> None: ...
    def requeue(self, data: Any) -> None: ...
    def keep_words_as_context(self, data: Any) -> None: ...
    def withdraw(self, data: Any) -> None: ...
    def forget(self, data: Any) -> None: ...


R = Req
RT = ReqTrigger
RM = RequestModel
PENDING = (R.SENT, R.ECHOED)

REQUEST: Table[Req, ReqTrigger] = Table(
    name="request",
    states=Req,
    triggers=ReqTrigger,
    initial=R.QUEUED,
    terminal=frozenset({R.ANSWERED, R.ENDED}),
    rows=(
        _row(RT.SEND, (R.QUEUED,), R.ENDED, RM.fail_poisoned, when=(RM.sent_too_often,)),
        _row(
            RT.SEND, (R.QUEUED,), R.SWALLOWING, RM.put_on_wire, RM.swallow, when=(RM.is_interrupt,)
        ),
        _row(RT.SEND, (R.QUEUED,), R.SENT, RM.put_on_wire),
        _row(RT.ECHO, (R.SENT,), R.ECHOED, RM.note_echo),
        _row(RT.ECHO, (R.SWALLOWING,), None, RM.note_echo),
        _row(RT.ANSWER, PENDING, R.ANSWERED, RM.announce),
        _row(RT.LATE_REPLY, (R.SWALLOWING,), R.ENDED, RM.discard_reply),
        _row(RT.MERGE, PENDING, R.ENDED, RM.end_merged),
        _row(RT.MERGE, (R.SWALLOWING,), R.ENDED, RM.forget),
        _row(RT.TIME_OUT, (R.QUEUED,), R.ENDED, RM.withdraw, RM.expire),
        # Its reply may already be playing, undecided: the decision comes first.
        _row(RT.TIME_OUT, PENDING, None, RM.postpone, when=(RM.answer_may_be_open,)),
        _row(RT.TIME_OUT, PENDING, R.SWALLOWING, RM.fail_and_swallow),
        _row(RT.CANCEL, (R.QUEUED,), R.ENDED, RM.keep_words_as_context, when=(RM.carries_words,)),
        _row(RT.CANCEL, (R.QUEUED,), R.ENDED, RM.withdraw),
        _row(RT.CANCEL, PENDING, R.SWALLOWING, RM.swallow),
        _row(RT.CANCEL, (R.SWALLOWING,), None, RM.forget),
        _row(RT.CARRY, PENDING, R.QUEUED, RM.requeue),
        _row(RT.CARRY, (R.SWALLOWING,), R.ENDED, RM.forget),
        _row(RT.FAIL, (R.QUEUED, *PENDING), R.ENDED, RM.withdraw, RM.fail),
        _row(RT.FAIL, (R.SWALLOWING,), R.ENDED, RM.forget),
        _row(RT.EVICT, (R.QUEUED,), R.ENDED, RM.fail),
        _row(RT.WINDOW_CLOSED, (R.SWALLOWING,), R.ENDED, RM.forget),
    ),
)


# --- a generation -----------------------------------------------------------------------------


class Gen(enum.Enum):
    UNDECIDED = "undecided"
    OWNED = "owned"
    UNSOLICITED = "unsolicited"
    DISCARDED = "discarded"


class GenTrigger(enum.Enum):
    EVIDENCE = "evidence"
    DECIDE = "decide"


class GenerationModel(Protocol):
    """Effects and guards of the GENERATION table (implemented by `generation.Generation`).
    Each trigger carries the `ownership.Verdict` computed from the evidence at that moment."""

    def answers_user_request(self, verdict: Any) -> bool: ...
    def answers_abandoned_request(self, verdict: Any) -> bool: ...
    def answers_no_request(self, verdict: Any) -> bool: ...

    def hand_to_owner(self, verdict: Any) -> None: ...
    def discard(self, verdict: Any) -> None: ...
    def announce_unsolicited(self, verdict: Any) -> None: ...
    def wait_for_evidence(self, verdict: Any) -> None: ...


G = Gen
GT = GenTrigger
GM = GenerationModel
DECIDED = (G.OWNED, G.UNSOLICITED, G.DISCARDED)

GENERATION: Table[Gen, GenTrigger] = Table(
    name="generation",
    states=Gen,
    triggers=GenTrigger,
    initial=G.UNDECIDED,
    terminal=frozenset(DECIDED),
    rows=(
        *(
            row
            for trigger in GT
            for row in (
                _row(
                    trigger,
                    (G.UNDECIDED,),
                    G.OWNED,
                    GM.hand_to_owner,
                    when=(GM.answers_user_request,),
                ),
                _row(
                    trigger,
                    (G.UNDECIDED,),
                    G.DISCARDED,
                    GM.discard,
                    when=(GM.answers_abandoned_request,),
                ),
                _row(
                    trigger,
                    (G.UNDECIDED,),
                    G.UNSOLICITED,
                    GM.announce_unsolicited,
                    when=(GM.answers_no_request,),
                ),
            )
        ),
        # Evidence still missing: wait (at most until the owner-grace deadline).
        _row(GT.EVIDENCE, (G.UNDECIDED,), None, GM.wait_for_evidence),
    ),
)

TABLES: tuple[Table[Any, Any], ...] = (TURN, CONNECTION, REQUEST, GENERATION)
