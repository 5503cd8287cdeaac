"""The session's bookkeeping: the TURN table's model, which composes the other tables' models.

Effects only mutate bookkeeping and emit commands; guards are pure. Which effect runs when is
decided by the rows of `states.TURN`; this module holds what each one does.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Literal

from . import commands as cmd
from . import events as ev
from . import wire
from .connection import Connection
from .generation import Generation
from .request import DEFAULT_REPLY_PROMPT, INTERRUPT_MESSAGE, Outgoing, Request, Requests, norm
from .runner import Core
from .states import (
    CONNECTION,
    LIVE,
    TURN,
    ConnTrigger,
    Req,
    ReqTrigger,
    State,
    Trigger,
)


@dataclass(eq=False)
class Turns:
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

    def _on_live(self, call_id: str) -> None:
        self.fire(Trigger.CONNECT, call_id)
        if self.conn.restart_after_join:
            self.conn.restart_after_join = False
            self.restart_reason = "the configuration changed while the call was being created"

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

    # --- the call ---------------------------------------------------------------------------

    def on_connected(self, data: str) -> None:
        self.call_seq += 1
        self.server_state = "idle"
        self.last_closed_ordinal = -1
        self.suppress_audio = False
        self.outgoing.live = True
        self.outgoing.echoes.clear()  # echoes of the previous call's text will never come
        unsent, self.outgoing.unsent = self.outgoing.unsent, []
        for message, request_id in unsent:
            request = self.requests.get(request_id)
            if request is None:
                self.outgoing.put_on_wire(message)
            elif request.state is Req.QUEUED:
                self.requests.fire(request, ReqTrigger.SEND)

    def end_generation(self) -> None:
        """Close the open generation, interrupted unless its final transcript arrived."""
        if self.gen is not None:
            self.close_generation(interrupted=not self.gen.final_seen)

    def _drop_call_state(self, reason: str) -> None:
        """Everything that belonged to the call that is going away."""
        self.end_generation()
        self.stop_user_speaking()
        self.outgoing.live = False
        for invocation_id in self.invocations:
            self.core.report("tool_dropped", f"tool invocation {invocation_id} dropped: {reason}")
        self.invocations.clear()
        self.thinking_since = None

    def on_call_lost(self, data: str) -> None:
        gen = self.gen
        cut = gen is not None and not gen.final_seen and not gen.muted
        self.end_generation()  # before carrying: an undecided generation may claim a request
        carried = False
        for request in self.requests:
            if request.state in (Req.SENT, Req.ECHOED, Req.SWALLOWING):
                carried |= request.state is not Req.SWALLOWING
                self.requests.fire(request, ReqTrigger.CARRY)
        self._drop_call_state(f"the call was lost ({data})")
        if cut and not carried:
            message = wire.UserTextMessage(text=DEFAULT_REPLY_PROMPT, urgency="soon")
            resume = Request(
                f"resume-{self.call_seq}", "reply", message, self.core, self.outgoing, internal=True
            )
            resume.deadline = self.core.now + self.core.options.reply_timeout
            self.requests.add(resume)
            self.outgoing.unsent.append((message, resume.id))

    def _fail_requests(self, reason: str, *, all_of_them: bool) -> None:
        for request in self.requests:
            if all_of_them or request.state is not Req.QUEUED:
                self.requests.fire(request, ReqTrigger.FAIL, reason)

    def on_restart(self, data: str) -> None:
        reason = self.restart_reason or data
        self.restart_reason = None
        self._fail_requests(f"the call was restarted ({reason})", all_of_them=False)
        self._drop_call_state(f"the call was restarted ({reason})")
        self.core.fire(CONNECTION, self.conn, ConnTrigger.REPLACE, reason)

    def defer_restart(self, data: str) -> None:
        self.restart_reason = data

    def restart_offline(self, data: str) -> None:
        """No call is live: the connection decides (the next call has the new configuration,
        or the one being created is replaced once live)."""
        self.core.fire(CONNECTION, self.conn, ConnTrigger.REPLACE, data)

    def _finish(self, reason: str, failed: bool) -> None:
        self._drop_call_state(reason)
        self._fail_requests(reason, all_of_them=True)
        self.outgoing.unsent.clear()
        self.held_context.clear()
        self.restart_reason = None
        self.core.emit(cmd.CallFinished(reason=reason, failed=failed))

    def on_call_ended(self, data: tuple[str, bool]) -> None:
        reason, failed = data
        self._finish(reason if failed else f"the call ended ({reason})", failed)

    def on_close(self, data: Any) -> None:
        self._finish("the session was closed", False)
        self.core.fire(CONNECTION, self.conn, ConnTrigger.CLOSE)

    # --- server state -----------------------------------------------------------------------

    def note_server_state(self, data: wire.State) -> None:
        fresh = self.server_state not in ("thinking", "speaking")
        self.server_state = data.state
        if data.state in ("thinking", "speaking"):
            self.stop_user_speaking()
        if data.state == "thinking" and fresh:
            self.suppress_audio = False
            self.thinking_since = self.core.now
        if data.state == "speaking" and self.gen is not None:
            self.mark_output(self.gen)

    def report_state(self, data: wire.State) -> None:
        self.core.report("unknown_state", f"unknown server state {data.state!r}")

    # --- generations ------------------------------------------------------------------------

    def begin_utterance(self, data: Any) -> None:
        if self.gen is not None:
            self.close_generation(interrupted=False)
        self.suppress_audio = False
        self.stop_user_speaking()
        echoed = frozenset(r.id for r in self.requests if r.echo_ordinal is not None)
        ordinal = data.ordinal if isinstance(data, wire.Transcript) else None
        gen = Generation(
            id=f"{self.item_prefix()}-gen{next(self.gen_seq)}",
            ordinal=ordinal,
            created_at=self.thinking_since if self.thinking_since is not None else self.core.now,
            opened_after_echo=echoed,
            core=self.core,
            requests=self.requests,
        )
        self.thinking_since = None
        self.gen = gen
        self.core.emit(cmd.OpenGeneration(gen_id=gen.id))
        if self.server_state == "speaking":
            self.mark_output(gen)
        gen.consider(final=False)

    def complete_generation(self, data: Any) -> None:
        if self.gen is not None:
            self.close_generation(interrupted=False)

    def start_drain(self, data: Any) -> None:
        if self.gen is not None and self.gen.drain_deadline is None:
            self.gen.drain_deadline = self.core.now + self.core.options.drain_timeout

    def close_generation(self, *, interrupted: bool) -> None:
        gen = self.gen
        assert gen is not None
        gen.consider(final=True)
        self.gen = None
        if gen.ordinal is not None:
            self.last_closed_ordinal = max(self.last_closed_ordinal, gen.ordinal)
        if gen.pushed != gen.text and gen.text.startswith(gen.pushed) and not interrupted:
            self.push_text(gen, gen.text)
        if not interrupted and not gen.muted:
            self.core.fire(CONNECTION, self.conn, ConnTrigger.PROVED)
        self.core.emit(
            cmd.CloseGeneration(
                gen_id=gen.id,
                interrupted=interrupted,
                text=gen.text if not gen.muted else "",
                created_at=gen.created_at,
                first_output_at=gen.first_output_at,
                closed_at=self.core.now,
            )
        )

    def open_with_text(self, data: wire.Transcript) -> None:
        self.begin_utterance(data)
        self.continue_text(data)

    def continue_text(self, data: wire.Transcript) -> None:
        gen = self.gen
        assert gen is not None
        if gen.ordinal is None and data.ordinal is not None:
            gen.ordinal = data.ordinal
        if data.delta is not None:
            text = gen.text + data.delta
        elif data.text is not None:
            text = data.text
        else:
            text = gen.text
        if text:
            self.mark_output(gen)
            if gen.first_text is None:
                gen.first_text = text
            self.push_text(gen, text)
        gen.consider(final=False)
        if data.final:
            gen.final_seen = True

    def end_if_final(self, data: wire.Transcript) -> None:
        if data.final:
            self.fire(Trigger.AGENT_FINAL)

    def report_stale(self, data: wire.Transcript) -> None:
        self.core.report(
            "stale_transcript", f"agent transcript for closed or old ordinal {data.ordinal} ignored"
        )

    def push_text(self, gen: Generation, text: str) -> None:
        """Make ``text`` the generation's text, pushing only what was not pushed yet."""
        gen.text = text
        if gen.muted:
            return
        if text.startswith(gen.pushed):
            suffix = text[len(gen.pushed) :]
            if suffix:
                gen.pushed = text
                self.core.emit(cmd.PushText(gen_id=gen.id, text=suffix))
        else:
            self.core.report(
                "text_rewrite", f"agent text was rewritten after {len(gen.pushed)} chars"
            )

    def mark_output(self, gen: Generation) -> None:
        if gen.first_output_at is None:
            gen.first_output_at = self.core.now

    # --- the user ---------------------------------------------------------------------------

    def on_user_text(self, data: wire.Transcript) -> None:
        text = data.text if data.text is not None else (data.delta or "")
        item_id = f"{self.item_prefix()}:user:{data.ordinal}"
        if not data.final:
            partial = norm(text)
            if partial and not any(echo.startswith(partial) for echo, _ in self.outgoing.echoes):
                self.core.emit(cmd.UserTranscript(item_id=item_id, text=text, final=False))
            return
        said = norm(text)
        self.stop_user_speaking()  # a final user transcript, echo or not, ends the user's turn
        for i, (echo, request_id) in enumerate(self.outgoing.echoes):
            if echo == said:
                del self.outgoing.echoes[i]
                request = self.requests.get(request_id)
                if request is not None and data.ordinal is not None:
                    self.requests.fire(request, ReqTrigger.ECHO, data.ordinal)
                    if self.gen is not None:
                        self.gen.consider(final=False)
                return
        for request in self.requests:  # a new user turn: our interrupt's moment has passed
            if request.kind == "interrupt":
                self.requests.fire(request, ReqTrigger.MERGE, "")
        if text.strip():
            self.core.emit(cmd.UserTranscript(item_id=item_id, text=text, final=True))

    def on_user_speech(self, data: bool) -> None:
        if data and not self.user_speaking:
            self.user_speaking = True
            self.core.emit(cmd.UserSpeechStarted())
        elif not data:
            self.stop_user_speaking()

    # --- interruptions ----------------------------------------------------------------------

    def cut_generation(self) -> None:
        """Interrupt the open generation; drop agent audio until the server's next turn."""
        self.suppress_audio = True
        if self.gen is not None:
            self.close_generation(interrupted=True)

    def clear_playback(self, data: Any) -> None:
        self.on_user_speech(True)
        self.cut_generation()

    def stop_agent(self, data: Any) -> None:
        # If the server reads `immediate` as "interrupt and reply", that reply is not wanted.
        interrupt = Request(
            f"interrupt-{next(self.request_seq)}",
            "interrupt",
            INTERRUPT_MESSAGE,
            self.core,
            self.outgoing,
        )
        self.requests.add(interrupt)
        self.requests.fire(interrupt, ReqTrigger.SEND)
        self.cut_generation()

    def ignore(self, data: Any) -> None:
        """Nothing to do."""

    # --- tools ------------------------------------------------------------------------------

    def register_invocation(self, data: wire.ClientToolInvocation) -> None:
        self.invocations[data.invocation_id] = self.core.now + self.core.options.tool_timeout
        if self.gen is None:
            self.begin_utterance(data)
        gen = self.gen
        assert gen is not None
        self.mark_output(gen)
        if not gen.muted:
            self.core.emit(
                cmd.PushFunctionCall(
                    gen_id=gen.id,
                    call_id=data.invocation_id,
                    name=data.tool_name,
                    arguments=bytes(data.parameters).decode(errors="replace"),
                )
            )
        if gen.final_seen or not gen.text:
            self.close_generation(interrupted=False)
        else:
            # The server waits for the result; LiveKit runs the tool only once the generation
            # ends. If the utterance's final never comes, the drain deadline ends it.
            self.start_drain(data)

    def answer_unknown_tool(self, data: wire.ClientToolInvocation) -> None:
        self.core.report("unknown_tool", f"the server invoked unknown tool {data.tool_name!r}")
        self.send(
            wire.ClientToolResult(
                invocation_id=data.invocation_id,
                error_type="undefined",
                error_message=f"no tool named {data.tool_name!r}",
            )
        )

    def send_tool_result(self, data: ev.ToolResult) -> None:
        del self.invocations[data.invocation_id]
        error = data.error_message is not None or data.error_type is not None
        self.send(
            wire.ClientToolResult(
                invocation_id=data.invocation_id,
                result=None if error else (data.result or ""),
                agent_reaction="speaks" if data.reply_required else "listens",
                error_type=(data.error_type or "implementation-error") if error else None,
                error_message=data.error_message if error else None,
            )
        )

    def expire_tool(self, data: str) -> None:
        del self.invocations[data]
        self.core.report("tool_expired", f"tool invocation {data} was not answered in time")

    # --- requests and context ---------------------------------------------------------------

    def queue_request(self, data: ev.ReplyRequested | ev.SayRequested) -> None:
        words = False
        message: wire.ClientMessage
        kind: Literal["reply", "say"]
        if isinstance(data, ev.SayRequested):
            self.flush_context()
            kind = "say"
            message = wire.ForcedAgentMessage(
                content=data.text, uninterruptible=not data.interruptible
            )
        else:
            kind = "reply"
            text = data.instructions and f"<instruction>{data.instructions}</instruction>"
            if text is None:
                users = [i for i, (role, _) in enumerate(self.held_context) if role == "user"]
                words = bool(users)
                text = self.held_context.pop(users[-1])[1] if users else DEFAULT_REPLY_PROMPT
            self.flush_context()
            message = wire.UserTextMessage(text=text, urgency="soon")
        request = Request(data.request_id, kind, message, self.core, self.outgoing, words=words)
        request.deadline = self.core.now + self.core.options.reply_timeout
        self.requests.add(request)
        if self.live:
            self.requests.fire(request, ReqTrigger.SEND)
        else:
            self._evict(self.outgoing.hold(message, request.id))

    def cancel_request(self, data: str) -> None:
        request = self.requests.get(data)
        if request is not None:
            self.requests.fire(request, ReqTrigger.CANCEL)

    def add_context(self, data: ev.ContextAdded | ev.ContextFlush) -> None:
        if isinstance(data, ev.ContextAdded):
            self.held_context.append((data.role, data.text))
        else:
            self.flush_context()

    def flush_context(self) -> None:
        for role, text in self.held_context:
            body = text if role == "user" else f"<instruction>{text}</instruction>"
            self.send(wire.UserTextMessage(text=body, urgency="later", defer_response=True))
        self.held_context.clear()

    def send_control(self, data: wire.ClientMessage) -> None:
        self.send(data)
