"""The TURN table's model, complete: the call, the server's state, the user, interruptions.

Effects only mutate bookkeeping and emit commands; guards are pure. Which effect runs when is
decided by the rows of `states.TURN`; the layers below (`turn_base`, `utterances`, `asks`) and
this module hold what each one does.
"""

from __future__ import annotations

from typing import Any, Literal

from . import commands as cmd
from . import wire
from .asks import Asks
from .request import DEFAULT_REPLY_PROMPT, INTERRUPT_MESSAGE, Request, norm
from .states import CONNECTION, ConnTrigger, Req, ReqTrigger


class Turns(Asks):
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
            self.requests.add(resume)
            self._evict(self.outgoing.hold(message, resume.id))

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

    def _finish(self, reason: str, outcome: Literal["closed", "ended", "failed"]) -> None:
        self._drop_call_state(reason)
        self._fail_requests(reason, all_of_them=True)
        self.outgoing.unsent.clear()
        self.held_context.clear()
        self.restart_reason = None
        self.core.emit(cmd.CallFinished(reason=reason, outcome=outcome))

    def on_call_ended(self, data: tuple[str, bool]) -> None:
        reason, failed = data
        if failed:
            self._finish(reason, "failed")
        else:
            self._finish(f"the call ended ({reason})", "ended")

    def on_close(self, data: Any) -> None:
        self._finish("the session was closed", "closed")
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
