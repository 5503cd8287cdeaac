"""The sans-I/O engine: feed it inputs with the current time, carry out the commands it returns.

`Engine` is synchronous and does no I/O: no sockets, no clock, no asyncio. Time arrives as the
``now`` argument (any monotonic seconds); `next_deadline` says when `handle_timer` is due. The
state changes come from the rows of `states.TABLE`, run by a `transitions.Machine` shared by
every engine; the effects named in the rows are methods of the private `_Turns` model, which
only mutate bookkeeping and append commands. Agent audio never goes through a trigger: the
adapter asks `audio_target` and pushes frames straight to that generation.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from transitions import EventData, Machine, MachineError

from . import commands as cmd
from . import events as ev
from . import wire
from .errors import LocalProtocolError, RemoteProtocolError
from .states import INITIAL, LIVE, LOCAL_TRIGGERS, TABLE, State, Trigger

DEFAULT_REPLY_PROMPT = "<instruction>Respond to the user now.</instruction>"
# Sent by interrupt(): an empty immediate user text that asks for no reply (both readings of
# the protocol's deferral: urgency and the legacy deferResponse).
INTERRUPT_MESSAGE = wire.UserTextMessage(text="", urgency="immediate", defer_response=True)


@dataclass(frozen=True)
class EngineOptions:
    """Timeouts, in seconds of the ``now`` clock."""

    reply_timeout: float = 15.0
    owner_grace: float = 1.0
    drain_timeout: float = 2.0
    tool_timeout: float = 45.0
    late_reply_window: float = 30.0
    max_unsent: int = 256  # control messages held while no call is live


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


@dataclass
class _Generation:
    id: str
    ordinal: int | None
    created_at: float
    opened_after_echo: frozenset[str]
    text: str = ""
    pushed: str = ""
    first_text: str | None = None
    first_output_at: float | None = None
    final_seen: bool = False
    drain_deadline: float | None = None
    decided: bool = False
    decide_by: float | None = None
    muted: bool = False


RequestStatus = Literal["queued", "sent", "resolved", "failed", "swallowing"]


@dataclass
class _Request:
    id: str
    # "interrupt": our interrupt message; a reply the server makes to it is dropped.
    kind: Literal["reply", "say", "interrupt"]
    text: str
    status: RequestStatus = "queued"
    # sent: when the reply times out; swallowing: when its late reply stops being awaited.
    deadline: float | None = None
    echo_ordinal: int | None = None
    message: wire.ClientMessage | None = None
    # A resume after a lost call: nobody asked, so its reply is announced as unsolicited.
    internal: bool = False


@dataclass
class _Turns:
    """The bookkeeping of one session; the model object the shared Machine drives."""

    options: EngineOptions
    _fsm_state: State = INITIAL  # written by the shared transitions.Machine
    outbox: list[cmd.Command] = field(default_factory=list)
    now: float = 0.0
    call_id: str | None = None
    call_seq: int = 0
    server_state: str = "idle"
    gen: _Generation | None = None
    gen_seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    request_seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    last_closed_ordinal: int = -1
    suppress_audio: bool = False
    user_speaking: bool = False
    thinking_since: float | None = None
    requests: dict[str, _Request] = field(default_factory=dict)
    echoes: deque[tuple[str, str | None]] = field(default_factory=lambda: deque(maxlen=64))
    held_context: list[tuple[str, str]] = field(default_factory=list)
    unsent: list[tuple[wire.ClientMessage, str | None]] = field(default_factory=list)
    invocations: dict[str, float] = field(default_factory=dict)
    known_tools: frozenset[str] | None = None
    restart_reason: str | None = None

    # transitions binds, with model_override=True, only names the model declares: the one
    # trigger entry point, not ~50 per-trigger partials per session.
    def trigger(self, trigger_name: str, **kwargs: Any) -> bool:
        raise RuntimeError("bound by transitions when the model is added to the machine")

    # --- conditions named in the table ------------------------------------------------------

    def final_seen(self, _: EventData) -> bool:
        return self.gen is not None and self.gen.final_seen

    def server_quiet(self, _: EventData) -> bool:
        return self.server_state not in ("thinking", "speaking")

    def generation_open(self, _: EventData) -> bool:
        return self.gen is not None

    def may_speak(self, event: EventData) -> bool:
        """Agent output may open a generation: audio is not cut, or the server began afresh."""
        return not self.suppress_audio or bool(event.kwargs["fresh"])

    def nothing_in_flight(self, _: EventData) -> bool:
        return not self.in_flight()

    def other_tools_pending(self, event: EventData) -> bool:
        return bool(self.invocations.keys() - {event.kwargs["invocation_id"]})

    # --- small helpers ----------------------------------------------------------------------

    def emit(self, command: cmd.Command) -> None:
        self.outbox.append(command)

    def report(self, kind: str, message: str) -> None:
        self.emit(cmd.Report(kind=kind, message=message))

    @property
    def live(self) -> bool:
        return self._fsm_state in LIVE

    def send(self, message: wire.ClientMessage, request_id: str | None = None) -> None:
        """Send now if the call is live, else keep it for the next call (exactly once)."""
        if self.live:
            self.put_on_wire(message, request_id)
            return
        if len(self.unsent) >= self.options.max_unsent:
            _, dropped = self.unsent.pop(0)
            reason = "too many messages were queued while no call was live"
            if dropped is not None and self.requests.pop(dropped, None) is not None:
                self.emit(cmd.FailRequest(request_id=dropped, reason=reason))
            else:
                self.report("unsent_overflow", f"oldest queued message dropped: {reason}")
        self.unsent.append((message, request_id))

    def put_on_wire(self, message: wire.ClientMessage, request_id: str | None) -> None:
        """Emit the send; typed text is expected back as an echo, which is not user speech."""
        if isinstance(message, wire.UserTextMessage):
            self.echoes.append((_norm(message.text), request_id))
        self.emit(cmd.Send(message=message))

    def item_prefix(self) -> str:
        return self.call_id or f"call{self.call_seq}"

    def in_flight(self) -> bool:
        return any(r.status == "sent" for r in self.requests.values())

    def stop_user_speaking(self) -> None:
        if self.user_speaking:
            self.user_speaking = False
            self.emit(cmd.UserSpeechStopped())

    # --- the call -----------------------------------------------------------------------------

    def on_connected(self, event: EventData) -> None:
        self.call_id = event.kwargs["call_id"]
        self.call_seq += 1
        self.server_state = "idle"
        self.last_closed_ordinal = -1
        self.suppress_audio = False
        self.echoes.clear()  # echoes of the previous call's text will never come
        unsent, self.unsent = self.unsent, []
        for message, request_id in unsent:
            self.put_on_wire(message, request_id)
        for request in self.requests.values():
            if request.status == "queued":
                request.status = "sent"
                request.deadline = self.now + self.options.reply_timeout

    def end_generation(self) -> None:
        """Close the open generation, interrupted unless its final transcript arrived."""
        if self.gen is not None:
            self.close_generation(interrupted=not self.gen.final_seen)

    def _drop_call_state(self, reason: str) -> None:
        """Everything that belonged to the call that is going away."""
        self.end_generation()
        self.stop_user_speaking()
        for request in list(self.requests.values()):
            if request.status == "sent":
                request.status = "failed"
                self.emit(cmd.FailRequest(request_id=request.id, reason=reason))
        self.requests = {k: r for k, r in self.requests.items() if r.status == "queued"}
        for invocation_id in self.invocations:
            self.report("tool_dropped", f"tool invocation {invocation_id} dropped: {reason}")
        self.invocations.clear()
        self.thinking_since = None

    def on_call_lost(self, event: EventData) -> None:
        reason = event.kwargs["reason"]
        cut = self.gen is not None and not self.gen.final_seen and not self.gen.muted
        self.end_generation()  # before carrying: an undecided generation may claim a request
        carried = self.carry_requests()
        self._drop_call_state(f"the call was lost ({reason})")
        if cut and not carried:
            resume = _Request(
                f"resume-{self.call_seq}", "reply", DEFAULT_REPLY_PROMPT, internal=True
            )
            self.requests[resume.id] = resume
            self.unsent.append((wire.UserTextMessage(text=resume.text, urgency="soon"), resume.id))
        self.emit(cmd.StartCall(reason=f"reconnect: {reason}", prior_call_id=self.call_id))

    def carry_requests(self) -> bool:
        """Unanswered requests go to the next call, sent once more. If the server echoed a
        request's text, the new call (``priorCallId``) already has it: ask for the reply only."""
        carried = False
        for request in self.requests.values():
            if request.status != "sent" or request.message is None:
                continue
            message = request.message
            if request.kind == "reply" and request.echo_ordinal is not None:
                request.text = DEFAULT_REPLY_PROMPT
                message = wire.UserTextMessage(text=request.text, urgency="soon")
            request.status, request.deadline, request.echo_ordinal = "queued", None, None
            request.message = message
            self.unsent.append((message, request.id))  # the state is still live here
            carried = True
        return carried

    def on_restart(self, event: EventData) -> None:
        reason = self.restart_reason or event.kwargs["reason"]
        self.restart_reason = None
        self._drop_call_state(f"the call was restarted ({reason})")
        self.emit(cmd.StartCall(reason=reason, prior_call_id=self.call_id))

    def defer_restart(self, event: EventData) -> None:
        self.restart_reason = event.kwargs["reason"]

    def absorb_restart(self, event: EventData) -> None:
        """Offline: the next call is created with the new configuration anyway."""

    def _finish(self, reason: str) -> None:
        self._drop_call_state(reason)
        for request in self.requests.values():
            self.emit(cmd.FailRequest(request_id=request.id, reason=reason))
        self.requests.clear()
        self.unsent.clear()
        self.held_context.clear()
        self.emit(cmd.CallFinished(reason=reason))

    def on_call_ended(self, event: EventData) -> None:
        self._finish(f"the call ended ({event.kwargs['reason']})")

    def on_close(self, event: EventData) -> None:
        self._finish("the session was closed")

    # --- server state -------------------------------------------------------------------------

    def note_server_state(self, event: EventData) -> None:
        """The server state was recorded before firing; nothing else changes."""

    def begin_utterance(self, event: EventData) -> None:
        if self.gen is not None:
            self.close_generation(interrupted=False)
        self.suppress_audio = False
        self.stop_user_speaking()
        echoed = frozenset(r.id for r in self.requests.values() if r.echo_ordinal is not None)
        gen = _Generation(
            id=f"{self.item_prefix()}-gen{next(self.gen_seq)}",
            ordinal=event.kwargs.get("ordinal"),
            created_at=self.thinking_since if self.thinking_since is not None else self.now,
            opened_after_echo=echoed,
        )
        self.thinking_since = None
        self.gen = gen
        self.emit(cmd.OpenGeneration(gen_id=gen.id))
        self.try_decide(gen, final=False)

    def complete_generation(self, event: EventData) -> None:
        if self.gen is not None:
            self.close_generation(interrupted=False)

    def start_drain(self, event: EventData) -> None:
        if self.gen is not None and self.gen.drain_deadline is None:
            self.gen.drain_deadline = self.now + self.options.drain_timeout

    def close_generation(self, *, interrupted: bool) -> None:
        gen = self.gen
        assert gen is not None
        if not gen.decided:
            self.try_decide(gen, final=True)
        self.gen = None
        if gen.ordinal is not None:
            self.last_closed_ordinal = max(self.last_closed_ordinal, gen.ordinal)
        if gen.pushed != gen.text and gen.text.startswith(gen.pushed) and not interrupted:
            self.push_text(gen, gen.text)
        self.emit(
            cmd.CloseGeneration(
                gen_id=gen.id,
                interrupted=interrupted,
                text=gen.text if not gen.muted else "",
                created_at=gen.created_at,
                first_output_at=gen.first_output_at,
                closed_at=self.now,
            )
        )

    # --- ownership ----------------------------------------------------------------------------

    def verdict(self, request: _Request, gen: _Generation) -> bool | None:
        """Does ``gen`` answer ``request``? None: not known yet."""
        echo = request.echo_ordinal
        if request.kind == "say":
            if gen.first_text is None:
                return None
            said, heard = _norm(request.text), _norm(gen.first_text)
            return said.startswith(heard) or heard.startswith(said)
        if echo is not None and gen.ordinal is not None:
            if request.kind == "interrupt":
                return gen.ordinal == echo + 1
            return gen.ordinal > echo
        if request.kind == "interrupt":
            return None  # only the ordinal tells a reply to the interrupt from a new turn
        if echo is not None and request.id in gen.opened_after_echo:
            return True
        return None

    def try_decide(self, gen: _Generation, *, final: bool) -> None:
        """Decide who receives ``gen`` once the evidence allows (see the Ownership rules):
        the oldest pending request it answers; one that clearly does not is passed over."""
        if gen.decided:
            return
        owner: _Request | None = None
        for request in [r for r in self.requests.values() if r.status in ("sent", "swallowing")]:
            verdict = self.verdict(request, gen)
            if request.kind == "interrupt" and gen.ordinal is not None and verdict is not None:
                del self.requests[request.id]  # it had its one chance
            if verdict is None and not final:
                gen.decide_by = self.now + self.options.owner_grace
                return
            if verdict is None:
                verdict = request.kind != "interrupt"  # tolerant: a server that does not echo
            if verdict:
                owner = request
                break
        gen.decided = True
        gen.decide_by = None
        if owner is None or owner.internal:
            if owner is not None:
                del self.requests[owner.id]
            self.emit(cmd.AnnounceGeneration(gen_id=gen.id, request_id=None))
            return
        self.requests.pop(owner.id, None)
        if owner.status == "swallowing":
            gen.muted = True
            self.emit(cmd.DiscardGeneration(gen_id=gen.id, request_id=owner.id))
        else:
            self.emit(cmd.AnnounceGeneration(gen_id=gen.id, request_id=owner.id))

    def decide_owner(self, event: EventData) -> None:
        if self.gen is not None:
            self.try_decide(self.gen, final=True)

    # --- agent output -------------------------------------------------------------------------

    def push_text(self, gen: _Generation, text: str) -> None:
        """Make ``text`` the generation's text, pushing only what was not pushed yet."""
        gen.text = text
        if gen.muted:
            return
        if text.startswith(gen.pushed):
            suffix = text[len(gen.pushed) :]
            if suffix:
                gen.pushed = text
                self.emit(cmd.PushText(gen_id=gen.id, text=suffix))
        else:
            self.report("text_rewrite", f"agent text was rewritten after {len(gen.pushed)} chars")

    def mark_output(self, gen: _Generation) -> None:
        if gen.first_output_at is None:
            gen.first_output_at = self.now

    # --- interruptions ------------------------------------------------------------------------

    def cut_generation(self) -> None:
        """Interrupt the open generation; drop agent audio until the server's next turn."""
        self.suppress_audio = True
        if self.gen is not None:
            self.close_generation(interrupted=True)

    def clear_playback(self, event: EventData) -> None:
        if not self.user_speaking:
            self.user_speaking = True
            self.emit(cmd.UserSpeechStarted())
        self.cut_generation()

    def stop_agent(self, event: EventData) -> None:
        # If the server reads `immediate` as "interrupt and reply", that reply is not wanted.
        interrupt = _Request(
            f"interrupt-{next(self.request_seq)}",
            "interrupt",
            "",
            "swallowing",
            self.now + self.options.late_reply_window,
        )
        self.requests[interrupt.id] = interrupt
        self.send(INTERRUPT_MESSAGE, interrupt.id)
        self.cut_generation()

    def ignore(self, event: EventData) -> None:
        """Nothing to interrupt."""

    # --- tools --------------------------------------------------------------------------------

    def register_invocation(self, event: EventData) -> None:
        message: wire.ClientToolInvocation = event.kwargs["message"]
        self.invocations[message.invocation_id] = self.now + self.options.tool_timeout
        if self.gen is None:
            self.begin_utterance(event)
        gen = self.gen
        assert gen is not None
        self.mark_output(gen)
        if not gen.muted:
            self.emit(
                cmd.PushFunctionCall(
                    gen_id=gen.id,
                    call_id=message.invocation_id,
                    name=message.tool_name,
                    arguments=bytes(message.parameters).decode(),
                )
            )
        if gen.final_seen or not gen.text:
            self.close_generation(interrupted=False)
        else:
            # The server waits for the result; LiveKit runs the tool only once the generation
            # ends. If the utterance's final never comes, the drain deadline ends it.
            self.start_drain(event)

    def send_tool_result(self, event: EventData) -> None:
        result: ev.ToolResult = event.kwargs["result"]
        del self.invocations[result.invocation_id]
        error = result.error_message is not None or result.error_type is not None
        self.send(
            wire.ClientToolResult(
                invocation_id=result.invocation_id,
                result=None if error else (result.result or ""),
                agent_reaction="speaks" if result.reply_required else "listens",
                error_type=(result.error_type or "implementation-error") if error else None,
                error_message=result.error_message if error else None,
            )
        )

    def expire_tool(self, event: EventData) -> None:
        invocation_id = event.kwargs["invocation_id"]
        del self.invocations[invocation_id]
        self.report("tool_expired", f"tool invocation {invocation_id} was not answered in time")

    # --- requests and context -----------------------------------------------------------------

    def queue_request(self, event: EventData) -> None:
        request: ev.ReplyRequested | ev.SayRequested = event.kwargs["request"]
        if request.request_id in self.requests:
            raise LocalProtocolError(f"request id {request.request_id!r} is already pending")
        status: RequestStatus = "sent" if self.live else "queued"
        deadline = self.now + self.options.reply_timeout if status == "sent" else None
        if isinstance(request, ev.SayRequested):
            self.flush_context()
            forced = wire.ForcedAgentMessage(
                content=request.text, uninterruptible=not request.interruptible
            )
            self.requests[request.request_id] = _Request(
                request.request_id, "say", request.text, status, deadline, message=forced
            )
            self.send(forced, request.request_id)
            return
        text = request.instructions and f"<instruction>{request.instructions}</instruction>"
        if text is None:
            users = [i for i, (role, _) in enumerate(self.held_context) if role == "user"]
            text = self.held_context.pop(users[-1])[1] if users else DEFAULT_REPLY_PROMPT
        self.flush_context()
        message = wire.UserTextMessage(text=text, urgency="soon")
        self.requests[request.request_id] = _Request(
            request.request_id, "reply", text, status, deadline, message=message
        )
        self.send(message, request.request_id)

    def end_request(self, event: EventData) -> None:
        request = self.requests.get(event.kwargs["request_id"])
        if request is None:
            return
        if request.status == "queued":
            del self.requests[request.id]
            self.unsent = [(m, e) for m, e in self.unsent if e != request.id]
            return
        request.status = "swallowing"
        request.deadline = self.now + self.options.late_reply_window

    def add_context(self, event: EventData) -> None:
        item: ev.ContextAdded | ev.ContextFlush = event.kwargs["item"]
        if isinstance(item, ev.ContextAdded):
            self.held_context.append((item.role, item.text))
        else:
            self.flush_context()

    def flush_context(self) -> None:
        for role, text in self.held_context:
            body = text if role == "user" else f"<instruction>{text}</instruction>"
            self.send(wire.UserTextMessage(text=body, urgency="later", defer_response=True))
        self.held_context.clear()

    def send_control(self, event: EventData) -> None:
        self.send(event.kwargs["message"])


_MACHINE = Machine(
    model=None,
    states=State,
    initial=INITIAL,
    auto_transitions=False,
    send_event=True,
    model_attribute="_fsm_state",
    model_override=True,
)
for _row in TABLE:
    _MACHINE.add_transition(
        _row.trigger.value,
        list(_row.source),
        _row.dest,
        conditions=list(_row.when),
        before=_row.effect,
    )


# After the end, requests fail loudly; anything else (interrupts, flushes, late frames) is moot.
_REFUSED_WHEN_CLOSED = (
    ev.ReplyRequested,
    ev.SayRequested,
    ev.ToolResult,
    ev.ContextAdded,
    ev.HangUpRequested,
    ev.OutputMediumChanged,
    ev.RestartRequested,
)

Step = tuple[State, State, Trigger]
Observer = Callable[[float, object, list[Step], list[cmd.Command]], None]
"""Called after each input with (now, input or "timer", the transitions it made, commands)."""


class Engine:
    """One session's turn-taking core. Not thread-safe; one event loop drives it."""

    def __init__(
        self, options: EngineOptions | None = None, observer: Observer | None = None
    ) -> None:
        self._turns = _Turns(options or EngineOptions())
        self._observer = observer
        self._steps: list[Step] = []
        _MACHINE.add_model(self._turns, initial=INITIAL)

    # --- what adapters read -------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._turns._fsm_state

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
        best: float | None = None
        gen = t.gen
        if gen is not None:
            best = gen.drain_deadline
            if gen.decide_by is not None and (best is None or gen.decide_by < best):
                best = gen.decide_by
        for deadline in t.invocations.values():
            if best is None or deadline < best:
                best = deadline
        for request in t.requests.values():
            if request.deadline is not None and (best is None or request.deadline < best):
                best = request.deadline
        return best

    # --- inputs -------------------------------------------------------------------------------

    def handle(
        self, event: wire.ServerMessage | wire.Unknown | ev.Input, now: float
    ) -> list[cmd.Command]:
        """Apply one input; returns the commands to carry out, in order."""
        t = self._turns
        t.now = now
        t.outbox = []
        if t._fsm_state is State.CLOSED:
            if isinstance(event, _REFUSED_WHEN_CLOSED):
                raise LocalProtocolError(f"the session is closed; {type(event).__name__} refused")
            return []
        handler = _HANDLERS.get(type(event))
        if handler is None:
            raise LocalProtocolError(f"unknown input {type(event).__name__}")
        self._steps = []
        handler(self, event)
        self._after()
        if self.state is State.CLOSED:
            # The shared machine holds its models strongly: a finished session lets go.
            _MACHINE.remove_model(self._turns)
        if self._observer is not None:
            self._observer(now, event, self._steps, t.outbox)
        return t.outbox

    def handle_timer(self, now: float) -> list[cmd.Command]:
        """Fire every deadline that is due at ``now``."""
        t = self._turns
        t.now = now
        t.outbox = []
        self._steps = []
        if self.state is State.CLOSED:
            return []
        for invocation_id, deadline in list(t.invocations.items()):
            if deadline <= now and invocation_id in t.invocations:
                self._fire(Trigger.TOOL_EXPIRED, invocation_id=invocation_id)
        for request in list(t.requests.values()):
            if request.deadline is None or request.deadline > now:
                continue
            if request.status == "sent":
                t.emit(
                    cmd.FailRequest(request_id=request.id, reason="timed out waiting for the reply")
                )
                self._fire(Trigger.REQUEST_ENDED, request_id=request.id)
            else:  # swallowing: its late reply is no longer awaited
                del t.requests[request.id]
        gen = t.gen
        if gen is not None and gen.decide_by is not None and gen.decide_by <= now:
            self._fire(Trigger.OWNER_DECIDED)
        gen = t.gen
        if gen is not None and gen.drain_deadline is not None and gen.drain_deadline <= now:
            self._fire(Trigger.DRAIN_EXPIRED)
        self._after()
        if self._observer is not None:
            self._observer(now, "timer", self._steps, t.outbox)
        return t.outbox

    # --- dispatch -----------------------------------------------------------------------------

    def _fire(self, trigger: Trigger, **kwargs: Any) -> None:
        t = self._turns
        mark = len(t.outbox)
        before = self.state
        try:
            done = t.trigger(trigger.value, **kwargs)
        except MachineError:
            error = LocalProtocolError if trigger in LOCAL_TRIGGERS else RemoteProtocolError
            del t.outbox[mark:]
            raise error(f"{trigger.value!r} is not allowed in state {self.state.value!r}") from None
        except Exception:
            del t.outbox[mark:]
            raise
        assert done, f"no row matched {trigger.value} in {self.state.value}"
        if self.state is not before:
            self._steps.append((before, self.state, trigger))

    def _after(self) -> None:
        """Run what became due after a transition: a deferred restart once the agent is quiet."""
        t = self._turns
        if t.restart_reason is not None and self.state is State.LISTENING and not t.in_flight():
            self._fire(Trigger.RESTART, reason=t.restart_reason)

    def _on_state(self, message: wire.State) -> None:
        t = self._turns
        previous, t.server_state = t.server_state, message.state
        fresh = previous not in ("thinking", "speaking")
        if message.state == "thinking":
            t.stop_user_speaking()
            if fresh:
                t.suppress_audio = False
                t.thinking_since = t.now
            self._fire(Trigger.SERVER_THINKING)
        elif message.state == "speaking":
            t.stop_user_speaking()
            self._fire(Trigger.SERVER_SPEAKING, ordinal=None, fresh=fresh)
            if t.gen is not None:
                t.mark_output(t.gen)
        elif message.state in ("listening", "idle"):
            # `idle` is listed by the docs without saying when it comes: read it as listening.
            self._fire(Trigger.SERVER_LISTENING)
        else:
            t.report("unknown_state", f"unknown server state {message.state!r}")

    def _on_transcript(self, message: wire.Transcript) -> None:
        if message.role == "user":
            self._on_user_transcript(message)
        else:
            self._on_agent_transcript(message)

    def _on_user_transcript(self, message: wire.Transcript) -> None:
        t = self._turns
        if self.state not in LIVE:
            raise RemoteProtocolError(f"user transcript in state {self.state.value!r}")
        text = message.text if message.text is not None else (message.delta or "")
        if not message.final:
            partial = _norm(text)
            if partial and not any(echo.startswith(partial) for echo, _ in t.echoes):
                t.emit(cmd.UserTranscript(item_id=self._user_item(message), text=text, final=False))
            return
        norm = _norm(text)
        t.stop_user_speaking()  # a final user transcript, echo or not, ends the user's turn
        for i, (echo, request_id) in enumerate(t.echoes):
            if echo == norm:
                del t.echoes[i]
                request = t.requests.get(request_id) if request_id else None
                if request is not None and message.ordinal is not None:
                    request.echo_ordinal = message.ordinal
                    if t.gen is not None:
                        t.try_decide(t.gen, final=False)
                return
        if text.strip():
            t.emit(cmd.UserTranscript(item_id=self._user_item(message), text=text, final=True))

    def _user_item(self, message: wire.Transcript) -> str:
        return f"{self._turns.item_prefix()}:user:{message.ordinal}"

    def _on_agent_transcript(self, message: wire.Transcript) -> None:
        t = self._turns
        if self.state not in LIVE:
            raise RemoteProtocolError(f"agent transcript in state {self.state.value!r}")
        ordinal, gen = message.ordinal, t.gen
        same = gen is not None and (ordinal is None or gen.ordinal in (None, ordinal))
        if ordinal is not None and ordinal <= t.last_closed_ordinal:
            t.report("stale_transcript", f"agent transcript for closed ordinal {ordinal} ignored")
            return
        if gen is not None and same:
            if gen.ordinal is None and ordinal is not None:
                gen.ordinal = ordinal
        elif (
            gen is not None
            and ordinal is not None
            and gen.ordinal is not None
            and ordinal < gen.ordinal
        ):
            t.report("stale_transcript", f"agent transcript for old ordinal {ordinal} ignored")
            return
        else:
            self._fire(Trigger.AGENT_OUTPUT, ordinal=ordinal)
        gen = t.gen
        assert gen is not None
        if message.delta is not None:
            text = gen.text + message.delta
        elif message.text is not None:
            text = message.text
        else:
            text = gen.text
        if text:
            t.mark_output(gen)
            if gen.first_text is None:
                gen.first_text = text
            t.push_text(gen, text)
        if not gen.decided:
            t.try_decide(gen, final=False)
        if message.final:
            gen.final_seen = True
            self._fire(Trigger.AGENT_FINAL)

    def _on_audio(self, event: ev.AgentAudio) -> None:
        t = self._turns
        if self.state not in LIVE or t.suppress_audio:
            return
        if t.gen is None:
            self._fire(Trigger.AGENT_OUTPUT, ordinal=None)
        gen = t.gen
        assert gen is not None
        t.mark_output(gen)
        if not gen.muted:
            t.emit(cmd.PushAudio(gen_id=gen.id, data=event.data))

    def _on_invocation(self, message: wire.ClientToolInvocation) -> None:
        t = self._turns
        if message.invocation_id in t.invocations:
            raise RemoteProtocolError(f"tool invocation {message.invocation_id} repeated")
        if t.known_tools is not None and message.tool_name not in t.known_tools:
            if not t.live:
                raise RemoteProtocolError(f"tool invocation in state {self.state.value!r}")
            t.report("unknown_tool", f"the server invoked unknown tool {message.tool_name!r}")
            t.send(
                wire.ClientToolResult(
                    invocation_id=message.invocation_id,
                    error_type="undefined",
                    error_message=f"no tool named {message.tool_name!r}",
                )
            )
            return
        self._fire(Trigger.TOOL_INVOCATION, message=message, ordinal=None)

    def _on_tool_result(self, result: ev.ToolResult) -> None:
        if result.invocation_id not in self._turns.invocations:
            raise LocalProtocolError(
                f"tool result for {result.invocation_id!r} refused: no such invocation is pending "
                "on the live call (answered already, expired, or from an earlier call)"
            )
        self._fire(Trigger.TOOL_RESULT, result=result, invocation_id=result.invocation_id)

    def _on_call_started(self, message: wire.CallStarted) -> None:
        if message.call_id:
            self._turns.call_id = message.call_id

    def _on_unknown(self, message: wire.Unknown) -> None:
        self._turns.report(f"unknown_type:{message.type}", f"unknown message type {message.type!r}")

    def _on_other_call_channel(self, message: wire.DataConnectionToolInvocation) -> None:
        self._turns.report("data_connection", "data connection tool invocation on the call socket")

    def _on_ignored(self, message: wire.ServerMessage) -> None:
        """Pong, debug and thread messages carry nothing the turn-taking needs."""

    def _on_user_started(self, message: wire.UserStartedSpeaking) -> None:
        t = self._turns
        if not t.user_speaking:
            t.user_speaking = True
            t.emit(cmd.UserSpeechStarted())

    def _on_tools(self, event: ev.ToolsChanged) -> None:
        self._turns.known_tools = event.names


_HANDLERS: dict[type, Any] = {
    wire.State: Engine._on_state,
    wire.Transcript: Engine._on_transcript,
    wire.ClientToolInvocation: Engine._on_invocation,
    wire.PlaybackClearBuffer: lambda e, m: e._fire(Trigger.BARGE_IN),
    wire.CallStarted: Engine._on_call_started,
    wire.DataConnectionToolInvocation: Engine._on_other_call_channel,
    wire.Unknown: Engine._on_unknown,
    wire.UserStartedSpeaking: Engine._on_user_started,
    wire.UserStoppedSpeaking: lambda e, m: e._turns.stop_user_speaking(),
    wire.Pong: Engine._on_ignored,
    wire.Debug: Engine._on_ignored,
    wire.ThreadSpawned: Engine._on_ignored,
    wire.ThreadRejected: Engine._on_ignored,
    wire.ThreadTerminated: Engine._on_ignored,
    wire.SideGenerationDelta: Engine._on_ignored,
    wire.SideGenerationCompleted: Engine._on_ignored,
    ev.AgentAudio: Engine._on_audio,
    ev.ToolResult: Engine._on_tool_result,
    ev.ToolsChanged: Engine._on_tools,
    ev.Connected: lambda e, m: e._fire(Trigger.CONNECT, call_id=m.call_id),
    ev.CallLost: lambda e, m: (
        e._fire(Trigger.DISCONNECT, reason=m.reason) if e.state in LIVE else None
    ),
    ev.CallEnded: lambda e, m: e._fire(Trigger.END_CALL, reason=m.reason),
    ev.Close: lambda e, m: e._fire(Trigger.CLOSE),
    ev.RestartRequested: lambda e, m: e._fire(Trigger.RESTART, reason=m.reason),
    ev.ReplyRequested: lambda e, m: e._fire(Trigger.REQUEST, request=m),
    ev.SayRequested: lambda e, m: e._fire(Trigger.REQUEST, request=m),
    ev.RequestCancelled: lambda e, m: e._fire(Trigger.REQUEST_ENDED, request_id=m.request_id),
    ev.ContextAdded: lambda e, m: e._fire(Trigger.CONTEXT, item=m),
    ev.ContextFlush: lambda e, m: e._fire(Trigger.CONTEXT, item=m),
    ev.InterruptRequested: lambda e, m: e._fire(Trigger.INTERRUPT),
    ev.OutputMediumChanged: lambda e, m: e._fire(
        Trigger.CONTROL, message=wire.SetOutputMedium(medium=m.medium)
    ),
    ev.HangUpRequested: lambda e, m: e._fire(
        Trigger.CONTROL, message=wire.HangUp(message=m.message)
    ),
}
