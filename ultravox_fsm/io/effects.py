"""Carrying out the engine's commands: streams, futures, events and the next timer.

The layer of `RealtimeSession` that turns each `commands.Command` into its LiveKit effect, and
nothing else; the session itself translates LiveKit's calls into engine inputs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from livekit.agents import AgentSession, APIConnectionError, llm
from livekit.agents.llm.realtime import InputSpeechStartedEvent, InputSpeechStoppedEvent
from livekit.agents.metrics.base import Metadata, RealtimeModelMetrics
from livekit.agents.voice.agent_activity import AgentActivity

from .. import commands as cmd
from .. import wire
from ..machine import Engine
from .options import Options
from .outbox import Outbox
from .streams import Burst, GenerationStreams, empty_generation
from .supervisor import CallSupervisor

if TYPE_CHECKING:
    from .livekit import RealtimeModel

logger = logging.getLogger("ultravox_fsm")


RawEvents = Literal[
    "ultravox_server_event_received",
    "ultravox_client_event_queued",
    "ultravox_call_ended",
    "ultravox_state_changed",
]
_MAX_REPORT_KINDS = 256  # distinct log-once kinds remembered; a hostile server can mint more


class CommandEffects(llm.RealtimeSession[RawEvents]):
    """The effects of the engine's commands (set up by `RealtimeSession.__init__`)."""

    _model: RealtimeModel
    _opts: Options
    _loop: asyncio.AbstractEventLoop
    _engine: Engine
    _calls: CallSupervisor
    _outbox: Outbox
    _chat_ctx: llm.ChatContext
    _known_ids: set[str]
    _gens: dict[str, GenerationStreams]
    _burst: Burst
    _futures: dict[str, asyncio.Future[llm.GenerationCreatedEvent]]
    _audio_sink: GenerationStreams | None
    _audio_live: bool
    _timer: asyncio.TimerHandle | None
    _timer_at: float | None
    _finished: str | None
    _reported: set[str]

    def _apply(self, commands: list[cmd.Command]) -> None:
        for c in commands:
            self._carry_out(c)
        target = self._engine.audio_target
        self._audio_sink = None if target is None else self._gens[target]
        deadline = self._engine.next_deadline()
        if deadline != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = None if deadline is None else self._loop.call_at(deadline, self._on_timer)

    def _carry_out(self, c: cmd.Command) -> None:
        match c:
            case cmd.Send():
                if "ultravox_client_event_queued" in self._events:
                    self.emit("ultravox_client_event_queued", msgspec.to_builtins(c.message))
                self._outbox.put(wire.encode(c.message).decode())
            case cmd.OpenGeneration():
                audio = self._opts.output_medium == "voice"
                self._gens[c.gen_id] = GenerationStreams(
                    c.gen_id, self._opts.output_sample_rate, audio, self._burst
                )
            case cmd.AnnounceGeneration():
                self._announce(c)
            case cmd.DiscardGeneration():
                logger.debug("dropping a late reply to request %s", c.request_id)
                self._gens[c.gen_id].close()
            case cmd.PushText():
                self._gens[c.gen_id].text(c.text)
            case cmd.PushAudio():
                self._gens[c.gen_id].audio(c.data)
            case cmd.PushFunctionCall():
                call = llm.FunctionCall(call_id=c.call_id, name=c.name, arguments=c.arguments)
                self._remember(call)  # a call that must start over replays it with its result
                self._gens[c.gen_id].call(call)
            case cmd.CloseGeneration():
                self._close_generation(c)
            case cmd.EndRequest():
                fut = self._waiting(c.request_id)
                if fut is not None:
                    fut.set_result(empty_generation(f"{c.answered_by}-merged-{c.request_id}"))
            case cmd.FailRequest():
                fut = self._waiting(c.request_id)
                if fut is not None:
                    fut.set_exception(llm.RealtimeError(c.reason))
            case cmd.UserTranscript():
                if c.final:
                    self._remember(llm.ChatMessage(role="user", content=[c.text], id=c.item_id))
                self.emit(
                    "input_audio_transcription_completed",
                    llm.InputTranscriptionCompleted(
                        item_id=c.item_id, transcript=c.text, is_final=c.final
                    ),
                )
            case cmd.UserSpeechStarted():
                self.emit("input_speech_started", InputSpeechStartedEvent())
            case cmd.UserSpeechStopped():
                self.emit(
                    "input_speech_stopped", InputSpeechStoppedEvent(user_transcription_enabled=True)
                )
            case cmd.StartCall():
                logger.debug("placing a new Ultravox call: %s", c.reason)
                self._audio_live = False
                self._calls.start(c.prior_call_id)
            case cmd.CallFinished():
                self._finish(c)
            case cmd.Report():
                self._report_once(c.kind, c.message)
            case _:
                raise AssertionError(f"unknown command {c!r}")

    def _announce(self, c: cmd.AnnounceGeneration) -> None:
        gen = self._gens[c.gen_id]
        if c.request_id is None:
            self.emit("generation_created", gen.event(user_initiated=False))
            return
        fut = self._waiting(c.request_id)
        if fut is not None:
            fut.set_result(gen.event(user_initiated=True))
        else:
            gen.close()

    def _close_generation(self, c: cmd.CloseGeneration) -> None:
        gen = self._gens.pop(c.gen_id)
        gen.close()
        if c.text:
            self._remember(llm.ChatMessage(role="assistant", content=[c.text], id=c.gen_id))
        wall = time.time() - (self._loop.time() - c.created_at)
        self.emit(
            "metrics_collected",
            RealtimeModelMetrics(
                label=self._model.label,
                request_id=c.gen_id,
                timestamp=wall,
                duration=c.closed_at - c.created_at,
                ttft=-1 if c.first_output_at is None else c.first_output_at - c.created_at,
                cancelled=c.interrupted,
                input_token_details=RealtimeModelMetrics.InputTokenDetails(),
                output_token_details=RealtimeModelMetrics.OutputTokenDetails(),
                metadata=Metadata(model_name=self._model.model, model_provider="ultravox"),
            ),
        )

    def _agent_sessions(self) -> list[AgentSession[Any]]:
        """The AgentSessions driving this session (through their activities' listeners)."""
        found: list[AgentSession[Any]] = []
        for listeners in self._events.values():
            for listener in listeners:
                owner = getattr(listener, "__self__", None)
                if isinstance(owner, AgentActivity) and owner.session not in found:
                    found.append(owner.session)
        return found

    def _waiting(self, request_id: str) -> asyncio.Future[llm.GenerationCreatedEvent] | None:
        """The caller's future for ``request_id``, taken, if it still waits for an outcome."""
        fut = self._futures.pop(request_id, None)
        return fut if fut is not None and not fut.done() else None

    def _remember(self, item: llm.ChatItem) -> None:
        """What the call's history holds, for `chat_ctx` and a call that must start over."""
        if item.id not in self._known_ids:
            self._known_ids.add(item.id)
            self._chat_ctx.items.append(item)

    def _finish(self, c: cmd.CallFinished) -> None:
        self._finished = c.reason
        self._audio_live = False
        self._calls.stop()
        if c.outcome == "failed":  # LiveKit's way for a model that cannot go on: it closes
            self._emit_error(APIConnectionError(c.reason, retryable=False), recoverable=False)
        elif c.outcome == "ended":  # a normal end is no error: the AgentSession shuts down
            for session in self._agent_sessions():
                logger.debug(
                    "the Ultravox call ended (%s); shutting the AgentSession down", c.reason
                )
                session.shutdown(drain=True)  # let the goodbye play out
        logger.debug("Ultravox session finished: %s", c.reason)
        self.emit("ultravox_call_ended", c.reason)

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        self._apply(self._engine.handle_timer(self._loop.time()))

    def _report_once(self, kind: str, message: str) -> None:
        if kind not in self._reported and len(self._reported) < _MAX_REPORT_KINDS:
            self._reported.add(kind)
            logger.warning(message, extra={"call_id": self._engine.call_id})
        else:
            logger.debug(message, extra={"call_id": self._engine.call_id})

    def _emit_error(self, error: Exception, recoverable: bool) -> None:
        self.emit(
            "error",
            llm.RealtimeModelError(
                timestamp=time.time(), label=self._model.label, error=error, recoverable=recoverable
            ),
        )
