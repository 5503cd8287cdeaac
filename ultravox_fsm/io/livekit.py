"""LiveKit Agents adapter: `RealtimeModel` and `RealtimeSession` over the sans-I/O engine.

The session translates LiveKit calls into engine inputs and carries out the engine's commands:
it owns the call's socket, the generations' streams and the futures of `generate_reply`/`say`.
It decides nothing about turn-taking; `states.py` does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections import deque
from collections.abc import AsyncIterable
from dataclasses import dataclass, replace
from typing import Any, Literal

import aiohttp
import msgspec
from livekit import rtc
from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    APIConnectionError,
    APIConnectOptions,
    APIStatusError,
    llm,
    utils,
)
from livekit.agents.llm.realtime import (
    InputSpeechStartedEvent,
    InputSpeechStoppedEvent,
    RealtimeSessionReconnectedEvent,
)
from livekit.agents.llm.utils import compute_chat_ctx_diff
from livekit.agents.metrics.base import Metadata, RealtimeModelMetrics
from livekit.agents.types import NOT_GIVEN, NotGiven, NotGivenOr
from livekit.agents.utils import is_given

from .. import commands as cmd
from .. import events as ev
from .. import wire
from ..call import (
    CallMedium,
    InitialMessage,
    ServerWebSocketMedium,
    StartCallRequest,
    encode_start_call,
    to_duration,
)
from ..errors import ProtocolError
from ..machine import Engine, EngineOptions, Step
from ..states import State
from ..trace import TraceWriter
from .outbox import Outbox
from .tools import to_selected_tools
from .ultravox import CallRejected, CallUnreachable, create_call, open_socket

logger = logging.getLogger("ultravox_fsm")

DEFAULT_BASE_URL = "https://api.ultravox.ai/api"
DEFAULT_MODEL = "fixie-ai/ultravox"
DEFAULT_VOICE = "Mark"
RawEvents = Literal[
    "ultravox_server_event_received",
    "ultravox_client_event_queued",
    "ultravox_call_ended",
    "ultravox_state_changed",
]


@dataclass
class _Options:
    """Everything a call is created from; each session works on its own copy (D13)."""

    model: str
    voice: str
    external_voice: dict[str, Any] | None
    api_key: str
    base_url: str
    system_prompt: str
    output_medium: Literal["text", "voice"]
    input_sample_rate: int
    output_sample_rate: int
    temperature: float | None
    language_hint: str | None
    max_duration: str | None
    time_exceeded_message: str | None
    enable_greeting_prompt: bool | None
    first_speaker_settings: dict[str, Any] | None
    vad_settings: dict[str, Any] | None
    metadata: dict[str, str] | None
    extra_call_fields: dict[str, Any]
    client_buffer_size_ms: int
    tool_timeout: float | None
    conn_options: APIConnectOptions
    engine: EngineOptions
    audio_buffer_ms: int
    say_interruptible: bool
    tool_settings: dict[str, dict[str, Any]]
    trace_dir: str | None
    data_messages: dict[str, bool]


_FIRST_SPEAKER: dict[str, dict[str, Any] | None] = {
    "FIRST_SPEAKER_USER": {"user": {}},
    "FIRST_SPEAKER_AGENT": {"agent": {}},
    "FIRST_SPEAKER_UNSPECIFIED": None,
}


class RealtimeModel(llm.RealtimeModel):
    """Ultravox Realtime for LiveKit Agents; takes every parameter of livekit-plugins-ultravox.

    Differences from the seed, each deliberate: ``enable_greeting_prompt`` left unset sends
    nothing (the server's default applies); ``max_duration`` accepts ``"30m"``/``"1h"``/seconds
    and sends the API's ``"1800s"`` form; ``first_speaker`` becomes ``firstSpeakerSettings``
    (``firstSpeaker`` is deprecated); text output is requested at call creation.
    """

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        voice: str = DEFAULT_VOICE,
        external_voice: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
        api_key: str | None = None,
        base_url: str | None = None,
        system_prompt: str = "You are a helpful assistant.",
        output_medium: NotGivenOr[Literal["text", "voice"]] = NOT_GIVEN,
        input_sample_rate: int = 16000,
        output_sample_rate: int = 24000,
        temperature: NotGivenOr[float] = NOT_GIVEN,
        language_hint: NotGivenOr[str] = NOT_GIVEN,
        max_duration: NotGivenOr[str | float] = NOT_GIVEN,
        time_exceeded_message: NotGivenOr[str] = NOT_GIVEN,
        enable_greeting_prompt: NotGivenOr[bool] = NOT_GIVEN,
        first_speaker: NotGivenOr[str] = "FIRST_SPEAKER_USER",
        http_session: aiohttp.ClientSession | None = None,
        first_speaker_settings: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
        vad_settings: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
        metadata: NotGivenOr[dict[str, str]] = NOT_GIVEN,
        extra_call_fields: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
        client_buffer_size_ms: int = 30000,
        reply_timeout: float = 15.0,
        tool_timeout: NotGivenOr[float] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        audio_buffer_ms: int = 500,
        say_interruptible: bool = True,
        user_speech_events: bool = False,
        trace_dir: NotGivenOr[str] = NOT_GIVEN,
        tool_settings: NotGivenOr[dict[str, dict[str, Any]]] = NOT_GIVEN,
    ) -> None:
        medium: Literal["text", "voice"] = output_medium if is_given(output_medium) else "voice"
        if medium not in ("text", "voice"):
            raise ValueError(f"output_medium must be 'text' or 'voice', got {medium!r}")
        super().__init__(
            capabilities=llm.RealtimeCapabilities(
                message_truncation=False,
                turn_detection=True,
                user_transcription=True,
                auto_tool_reply_generation=True,
                audio_output=medium == "voice",
                manual_function_calls=False,
                supports_say=True,
            )
        )
        key = api_key or os.environ.get("ULTRAVOX_API_KEY")
        if not key:
            raise ValueError("Ultravox API key is required: pass api_key or set ULTRAVOX_API_KEY")
        if is_given(external_voice) and voice != DEFAULT_VOICE:
            raise ValueError("voice and external_voice are mutually exclusive")
        if is_given(first_speaker) and first_speaker not in _FIRST_SPEAKER:
            raise ValueError(f"first_speaker must be one of {sorted(_FIRST_SPEAKER)}")
        speaker = (
            first_speaker_settings
            if is_given(first_speaker_settings)
            else _FIRST_SPEAKER.get(first_speaker)
            if is_given(first_speaker)
            else None
        )
        self._opts = _Options(
            model=model,
            voice=voice,
            external_voice=external_voice if is_given(external_voice) else None,
            api_key=key,
            base_url=base_url or os.environ.get("ULTRAVOX_BASE_URL") or DEFAULT_BASE_URL,
            system_prompt=system_prompt,
            output_medium=medium,
            input_sample_rate=input_sample_rate,
            output_sample_rate=output_sample_rate,
            temperature=temperature if is_given(temperature) else None,
            language_hint=language_hint if is_given(language_hint) else None,
            max_duration=None if isinstance(max_duration, NotGiven) else to_duration(max_duration),
            time_exceeded_message=time_exceeded_message
            if is_given(time_exceeded_message)
            else None,
            enable_greeting_prompt=enable_greeting_prompt
            if is_given(enable_greeting_prompt)
            else None,
            first_speaker_settings=speaker,
            vad_settings=vad_settings if is_given(vad_settings) else None,
            metadata=metadata if is_given(metadata) else None,
            extra_call_fields=dict(extra_call_fields) if is_given(extra_call_fields) else {},
            client_buffer_size_ms=client_buffer_size_ms,
            tool_timeout=tool_timeout if is_given(tool_timeout) else None,
            conn_options=conn_options,
            engine=EngineOptions(
                reply_timeout=reply_timeout,
                tool_timeout=(tool_timeout + 5.0) if is_given(tool_timeout) else 45.0,
            ),
            audio_buffer_ms=audio_buffer_ms,
            say_interruptible=say_interruptible,
            tool_settings=dict(tool_settings) if is_given(tool_settings) else {},
            trace_dir=trace_dir
            if is_given(trace_dir)
            else os.environ.get("ULTRAVOX_FSM_TRACE_DIR"),
            data_messages=(
                {"userStartedSpeaking": True, "userStoppedSpeaking": True}
                if user_speech_events
                else {}
            ),
        )
        self._http_session = http_session
        self._label = f"ultravox-{model}"

    def __repr__(self) -> str:
        return f"RealtimeModel(model={self._opts.model!r}, base_url={self._opts.base_url!r})"

    @property
    def model(self) -> str:
        return self._opts.model

    @property
    def provider(self) -> str:
        return "ultravox"

    def session(self, *, turn_detection_disabled: bool = False) -> RealtimeSession:
        return RealtimeSession(self)

    def update_options(
        self, *, output_medium: NotGivenOr[Literal["text", "voice"]] = NOT_GIVEN
    ) -> None:
        """Default output medium for sessions created from now on."""
        if is_given(output_medium):
            self._opts.output_medium = output_medium
            self._capabilities.audio_output = output_medium == "voice"

    async def aclose(self) -> None:
        """The model owns nothing: sessions close their own connections (D13)."""


class _Generation:
    """The streams of one agent message, as LiveKit consumes them."""

    __slots__ = ("audio_ch", "closed", "function_ch", "id", "message_ch", "rate", "text_ch")

    def __init__(self, gen_id: str, rate: int, audio: bool) -> None:
        self.id = gen_id
        self.rate = rate
        self.closed = False
        self.message_ch = utils.aio.Chan[llm.MessageGeneration]()
        self.function_ch = utils.aio.Chan[llm.FunctionCall]()
        self.text_ch = utils.aio.Chan[str]()
        self.audio_ch = utils.aio.Chan[rtc.AudioFrame]()
        modalities: asyncio.Future[list[Literal["text", "audio"]]] = asyncio.Future()
        modalities.set_result(["audio", "text"] if audio else ["text"])
        self.message_ch.send_nowait(
            llm.MessageGeneration(
                message_id=gen_id,
                text_stream=self.text_ch,
                audio_stream=self.audio_ch,
                modalities=modalities,
            )
        )

    def audio(self, data: bytes) -> None:
        if not self.closed:
            frame = rtc.AudioFrame(data, self.rate, 1, len(data) // 2)
            self.audio_ch.send_nowait(frame)

    def text(self, text: str) -> None:
        if not self.closed:
            self.text_ch.send_nowait(text)

    def call(self, call: llm.FunctionCall) -> None:
        if not self.closed:
            self.function_ch.send_nowait(call)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            for ch in (self.text_ch, self.audio_ch, self.function_ch, self.message_ch):
                ch.close()

    def event(self, user_initiated: bool) -> llm.GenerationCreatedEvent:
        return llm.GenerationCreatedEvent(
            message_stream=self.message_ch,
            function_stream=self.function_ch,
            user_initiated=user_initiated,
            response_id=self.id,
        )


class RealtimeSession(llm.RealtimeSession[RawEvents]):
    """One conversation: one Ultravox call at a time, replaced (keeping history) when needed."""

    def __init__(self, realtime_model: RealtimeModel) -> None:
        super().__init__(realtime_model)
        self._model = realtime_model
        self._opts = replace(realtime_model._opts)
        self._loop = asyncio.get_running_loop()
        self._trace: TraceWriter | None = None
        if self._opts.trace_dir:
            path = os.path.join(self._opts.trace_dir, f"{utils.shortuuid('session_')}.jsonl")
            self._trace = TraceWriter(path)
            logger.info("recording a trace of this session to %s", path)
        self._engine = Engine(self._opts.engine, observer=self._observe)
        self._tools = llm.ToolContext.empty()
        self._tool_defs: list[dict[str, Any]] = []
        self._chat_ctx = llm.ChatContext.empty()
        self._gens: dict[str, _Generation] = {}
        self._futures: dict[str, asyncio.Future[llm.GenerationCreatedEvent]] = {}
        self._ws: aiohttp.ClientWebSocketResponse[bool] | None = None
        buffered = self._opts.input_sample_rate * 2 * self._opts.audio_buffer_ms // 1000
        self._outbox = Outbox(max_audio_bytes=buffered)
        self._audio_sink: _Generation | None = None  # the engine's audio_target, cached
        frames = max(1, self._opts.audio_buffer_ms // 10)
        self._audio_ring: deque[bytes] = deque(maxlen=frames)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._flush_scheduled = False
        self._pending_call: tuple[str, str | None] | None = None
        self._finished: str | None = None
        self._reported: set[str] = set()
        self._resampler: rtc.AudioResampler | None = None
        self._own_http: aiohttp.ClientSession | None = None
        self._say_tasks: set[asyncio.Task[None]] = set()
        self._connected_once = False
        self._failures = 0  # consecutive failures; reset once a call proves itself
        self._audio_live = False  # input audio goes to the socket (else to the ring)
        self._healthy = False
        self._closing: asyncio.Future[bool] | None = None
        self._main_task = asyncio.create_task(self._run(), name="ultravox_fsm.session")

    # --- what LiveKit reads ---------------------------------------------------------------------

    @property
    def chat_ctx(self) -> llm.ChatContext:
        return self._chat_ctx.copy()

    @property
    def tools(self) -> llm.ToolContext:
        return self._tools

    @property
    def call_id(self) -> str | None:
        """The live Ultravox call's id, once created."""
        return self._engine.call_id

    @property
    def trace_path(self) -> str | None:
        """Where this session's trace is being written, if recording."""
        return str(self._trace.path) if self._trace is not None else None

    @property
    def state(self) -> State:
        """The turn-taking state (see `ultravox_fsm.states`)."""
        return self._engine.state

    def diagram(self) -> str:
        """The state diagram as mermaid text, with the current state highlighted."""
        from ..diagram import mermaid

        return mermaid(self._engine.state)

    def _observe(
        self, now: float, event: object, steps: list[Step], commands: list[cmd.Command]
    ) -> None:
        if self._trace is not None:
            self._trace(now, event, steps, commands)
        for before, after, trigger in steps:
            self.emit("ultravox_state_changed", before, after, trigger)

    # --- LiveKit calls -> engine inputs ---------------------------------------------------------

    async def update_instructions(self, instructions: str) -> None:
        if instructions != self._opts.system_prompt:
            self._opts.system_prompt = instructions
            self._feed(ev.RestartRequested(reason="instructions changed"))

    async def update_tools(self, tools: list[llm.Tool]) -> None:
        defs = to_selected_tools(
            tools, timeout=self._opts.tool_timeout, settings=self._opts.tool_settings
        )
        self._tools = llm.ToolContext(tools)
        if defs != self._tool_defs:
            self._tool_defs = defs
            self._feed(ev.RestartRequested(reason="tools changed"))

    async def update_chat_ctx(self, chat_ctx: llm.ChatContext) -> None:
        diff = compute_chat_ctx_diff(self._chat_ctx, chat_ctx)
        for _, item_id in diff.to_create:
            item = chat_ctx.get_by_id(item_id)
            if isinstance(item, llm.ChatMessage) and item.role != "assistant":
                text = item.text_content
                if text:
                    role: Literal["user", "system"] = "user" if item.role == "user" else "system"
                    self._feed(ev.ContextAdded(role=role, text=text))
            elif isinstance(item, llm.FunctionCallOutput):
                # One for a dead invocation is refused by the engine and reported, never sent.
                self._feed(
                    ev.ToolResult(
                        invocation_id=item.call_id,
                        result=None if item.is_error else item.output,
                        error_message=item.output if item.is_error else None,
                        reply_required=item.reply_required,
                    )
                )
        self._chat_ctx = chat_ctx.copy()
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush_context)

    def update_options(
        self,
        *,
        tool_choice: NotGivenOr[llm.ToolChoice | None] = NOT_GIVEN,
        output_medium: NotGivenOr[Literal["text", "voice"]] = NOT_GIVEN,
    ) -> None:
        if is_given(output_medium) and output_medium != self._opts.output_medium:
            self._opts.output_medium = output_medium
            self._feed(ev.OutputMediumChanged(medium=output_medium))
        if is_given(tool_choice) and tool_choice not in (None, "auto"):
            self._report_once("tool_choice", "Ultravox has no per-session tool_choice; ignored")

    def push_audio(self, frame: rtc.AudioFrame) -> None:
        """Send each frame as it comes (no re-chunking); keep the last ``audio_buffer_ms`` in a
        ring while no call is live, and no more than that queued while the socket drains."""
        rate = self._opts.input_sample_rate
        if frame.sample_rate == rate and frame.num_channels == 1:
            self._push_pcm(frame.data.tobytes())
            return
        if self._resampler is None or self._resampler._input_rate != frame.sample_rate:
            self._resampler = rtc.AudioResampler(frame.sample_rate, rate, num_channels=1)
        for f in self._resampler.push(frame):
            self._push_pcm(f.data.tobytes())

    def _push_pcm(self, data: bytes) -> None:
        if self._audio_live:
            self._outbox.put(data)
        else:
            self._audio_ring.append(data)

    def push_video(self, frame: rtc.VideoFrame) -> None:
        self._report_once("video", "Ultravox takes no video; frames are dropped")

    def commit_audio(self) -> None:
        self._report_once("commit_audio", "Ultravox detects turns itself; commit_audio ignored")

    def clear_audio(self) -> None:
        self._report_once("clear_audio", "Ultravox detects turns itself; clear_audio ignored")

    def generate_reply(
        self,
        *,
        instructions: NotGivenOr[str] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        tools: NotGivenOr[list[llm.Tool]] = NOT_GIVEN,
    ) -> asyncio.Future[llm.GenerationCreatedEvent]:
        fut, request_id = self._new_request()
        text = instructions if is_given(instructions) else None
        self._feed(ev.ReplyRequested(request_id=request_id, instructions=text), fut)
        return fut

    def say(
        self, text: str | AsyncIterable[str], *, allow_interruptions: bool | None = None
    ) -> asyncio.Future[llm.GenerationCreatedEvent]:
        fut, request_id = self._new_request()
        interruptible = (
            self._opts.say_interruptible if allow_interruptions is None else allow_interruptions
        )

        async def send() -> None:
            content = text if isinstance(text, str) else "".join([c async for c in text])
            if not fut.done():
                self._feed(
                    ev.SayRequested(
                        request_id=request_id, text=content, interruptible=interruptible
                    ),
                    fut,
                )

        task = asyncio.create_task(send())
        self._say_tasks.add(task)
        task.add_done_callback(self._say_tasks.discard)
        return fut

    def interrupt(self) -> None:
        self._feed(ev.InterruptRequested())

    def truncate(
        self,
        *,
        message_id: str,
        modalities: list[Literal["text", "audio"]],
        audio_end_ms: int,
        audio_transcript: NotGivenOr[str] = NOT_GIVEN,
    ) -> None:
        """Ultravox keeps its own history; the capability flag says truncation is unsupported."""

    async def send_tool_result(self, call_id: str, result: str, *, reply: bool = True) -> None:
        """Answer a client tool invocation directly (``reply=False``: the agent listens)."""
        self._feed(ev.ToolResult(invocation_id=call_id, result=result, reply_required=reply))

    def hang_up(self, message: str | None = None) -> None:
        """Ask the agent to say ``message`` and end the call."""
        self._feed(ev.HangUpRequested(message=message))

    async def aclose(self) -> None:
        if self._finished is None:
            self._feed(ev.Close())
        for task in list(self._say_tasks):
            task.cancel()
        if self._ws is not None:
            await self._ws.close()
        await utils.aio.cancel_and_wait(self._main_task)
        if self._timer is not None:
            self._timer.cancel()
        if self._own_http is not None:
            await self._own_http.close()
        if self._trace is not None:
            self._trace.close()

    # --- plumbing ---------------------------------------------------------------------------

    def _new_request(self) -> tuple[asyncio.Future[llm.GenerationCreatedEvent], str]:
        fut: asyncio.Future[llm.GenerationCreatedEvent] = self._loop.create_future()
        request_id = utils.shortuuid("req_")
        self._futures[request_id] = fut

        def done(f: asyncio.Future[llm.GenerationCreatedEvent]) -> None:
            if self._futures.pop(request_id, None) is not None and f.cancelled():
                self._feed(ev.RequestCancelled(request_id=request_id))

        fut.add_done_callback(done)
        return fut, request_id

    def _feed(
        self,
        event: wire.ServerMessage | wire.Unknown | ev.Input,
        fut: asyncio.Future[llm.GenerationCreatedEvent] | None = None,
    ) -> None:
        try:
            commands = self._engine.handle(event, self._loop.time())
        except ProtocolError as exc:
            if self._trace is not None:
                self._trace.refused(self._loop.time(), event, exc)
            if fut is not None and not fut.done():
                fut.set_exception(llm.RealtimeError(str(exc)))
                return
            self._report_once(type(exc).__name__ + type(event).__name__, str(exc))
            return
        self._apply(commands)

    def _flush_context(self) -> None:
        self._flush_scheduled = False
        self._feed(ev.ContextFlush())

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        self._apply(self._engine.handle_timer(self._loop.time()))

    def _report_once(self, kind: str, message: str) -> None:
        if kind not in self._reported:
            self._reported.add(kind)
            logger.warning(message, extra={"call_id": self._engine.call_id})

    def _emit_error(self, error: Exception, recoverable: bool) -> None:
        self.emit(
            "error",
            llm.RealtimeModelError(
                timestamp=time.time(), label=self._model.label, error=error, recoverable=recoverable
            ),
        )

    # --- engine commands -> effects ---------------------------------------------------------

    def _apply(self, commands: list[cmd.Command]) -> None:
        for c in commands:
            handler = _COMMANDS[type(c)]
            handler(self, c)
        target = self._engine.audio_target
        self._audio_sink = None if target is None else self._gens[target]
        deadline = self._engine.next_deadline()
        if deadline != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = None if deadline is None else self._loop.call_at(deadline, self._on_timer)

    def _do_send(self, c: cmd.Send) -> None:
        data = wire.encode(c.message).decode()
        if "ultravox_client_event_queued" in self._events:
            self.emit("ultravox_client_event_queued", msgspec.to_builtins(c.message))
        self._outbox.put(data)

    def _do_open(self, c: cmd.OpenGeneration) -> None:
        audio = self._opts.output_medium == "voice"
        self._gens[c.gen_id] = _Generation(c.gen_id, self._opts.output_sample_rate, audio)

    def _do_announce(self, c: cmd.AnnounceGeneration) -> None:
        gen = self._gens[c.gen_id]
        if c.request_id is None:
            self.emit("generation_created", gen.event(user_initiated=False))
            return
        fut = self._futures.pop(c.request_id, None)
        if fut is not None and not fut.done():
            fut.set_result(gen.event(user_initiated=True))
        else:
            gen.close()

    def _do_discard(self, c: cmd.DiscardGeneration) -> None:
        logger.info("dropping a late reply to request %s", c.request_id)
        self._gens[c.gen_id].close()

    def _do_text(self, c: cmd.PushText) -> None:
        self._gens[c.gen_id].text(c.text)

    def _do_audio(self, c: cmd.PushAudio) -> None:
        self._gens[c.gen_id].audio(c.data)

    def _do_function(self, c: cmd.PushFunctionCall) -> None:
        call = llm.FunctionCall(call_id=c.call_id, name=c.name, arguments=c.arguments)
        self._gens[c.gen_id].call(call)

    def _do_close(self, c: cmd.CloseGeneration) -> None:
        gen = self._gens.pop(c.gen_id)
        gen.close()
        if c.text:
            self._chat_ctx.add_message(role="assistant", content=c.text, id=c.gen_id)
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

    def _do_fail(self, c: cmd.FailRequest) -> None:
        fut = self._futures.pop(c.request_id, None)
        if fut is not None and not fut.done():
            fut.set_exception(llm.RealtimeError(c.reason))

    def _do_transcript(self, c: cmd.UserTranscript) -> None:
        if c.final:
            self._chat_ctx.add_message(role="user", content=c.text, id=c.item_id)
        self.emit(
            "input_audio_transcription_completed",
            llm.InputTranscriptionCompleted(item_id=c.item_id, transcript=c.text, is_final=c.final),
        )

    def _do_speech_started(self, c: cmd.UserSpeechStarted) -> None:
        self.emit("input_speech_started", InputSpeechStartedEvent())

    def _do_speech_stopped(self, c: cmd.UserSpeechStopped) -> None:
        self.emit("input_speech_stopped", InputSpeechStoppedEvent(user_transcription_enabled=True))

    def _do_start_call(self, c: cmd.StartCall) -> None:
        logger.info("placing a new Ultravox call: %s", c.reason)
        self._pending_call = (c.reason, c.prior_call_id)
        self._audio_live = False
        if self._ws is not None:
            self._closing = asyncio.ensure_future(self._ws.close())

    def _do_finish(self, c: cmd.CallFinished) -> None:
        self._finished = c.reason
        self._audio_live = False
        logger.info("Ultravox session finished: %s", c.reason)
        self.emit("ultravox_call_ended", c.reason)

    def _do_report(self, c: cmd.Report) -> None:
        self._report_once(c.kind, c.message)

    # --- the connection ---------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._model._http_session is not None:
            return self._model._http_session
        if self._own_http is None:
            try:
                return utils.http_context.http_session()
            except RuntimeError:
                self._own_http = aiohttp.ClientSession()
        return self._own_http

    def _call_body(self, prior_call_id: str | None) -> tuple[bytes, dict[str, str]]:
        o = self._opts
        query: dict[str, str] = {}
        if o.enable_greeting_prompt is not None:
            query["enableGreetingPrompt"] = "true" if o.enable_greeting_prompt else "false"
        initial: list[InitialMessage] | None = None
        if prior_call_id is not None:
            query["priorCallId"] = prior_call_id
        elif self._connected_once:
            initial = _initial_messages(self._chat_ctx) or None
        request = StartCallRequest(
            system_prompt=o.system_prompt,
            model=o.model,
            voice=None if o.external_voice else o.voice,
            external_voice=o.external_voice,
            temperature=o.temperature,
            language_hint=o.language_hint,
            max_duration=o.max_duration,
            time_exceeded_message=o.time_exceeded_message,
            initial_messages=initial,
            selected_tools=self._tool_defs or None,
            medium=CallMedium(
                server_web_socket=ServerWebSocketMedium(
                    input_sample_rate=o.input_sample_rate,
                    output_sample_rate=o.output_sample_rate,
                    client_buffer_size_ms=o.client_buffer_size_ms,
                    data_messages=o.data_messages or None,
                )
            ),
            first_speaker_settings=o.first_speaker_settings,
            initial_output_medium="MESSAGE_MEDIUM_TEXT" if o.output_medium == "text" else None,
            vad_settings=o.vad_settings,
            metadata=o.metadata,
        )
        return encode_start_call(request, o.extra_call_fields), query

    async def _connect(
        self, prior_call_id: str | None
    ) -> tuple[aiohttp.ClientWebSocketResponse[bool], str]:
        """Create a call and join it, retrying what the API says is worth retrying."""
        conn = self._opts.conn_options
        while True:
            started = time.perf_counter()
            try:
                body, query = self._call_body(prior_call_id)
                call = await create_call(
                    self._http(),
                    base_url=self._opts.base_url,
                    api_key=self._opts.api_key,
                    body=body,
                    query=query,
                    timeout=conn.timeout,
                )
                assert call.join_url is not None
                ws = await open_socket(
                    self._http(), call.join_url, timeout=conn.timeout, base_url=self._opts.base_url
                )
            except CallRejected as exc:
                if prior_call_id is not None and exc.status in (400, 404, 422):
                    prior_call_id = None  # fall back to initialMessages from our own history
                    continue
                error: Exception = APIStatusError(
                    str(exc), status_code=exc.status, body=exc.body, retryable=exc.retryable
                )
                delay = exc.retry_after
                retryable = exc.retryable
            except (CallUnreachable, ValueError) as exc:
                error = APIConnectionError(str(exc), retryable=isinstance(exc, CallUnreachable))
                delay, retryable = None, isinstance(exc, CallUnreachable)
            else:
                self._report_connection_acquired(time.perf_counter() - started)
                return ws, call.call_id
            if not retryable or self._failures >= conn.max_retry:
                self._emit_error(error, recoverable=False)
                raise error
            self._emit_error(error, recoverable=True)
            if delay is None:
                base = conn._interval_for_retry(self._failures)
                delay = base * (0.5 + random.random()) if base else 0.0
            self._failures += 1
            logger.warning(
                "Ultravox call attempt %d failed (%s); retrying in %.2fs",
                self._failures,
                error,
                delay,
            )
            await asyncio.sleep(delay)

    async def _run(self) -> None:
        await asyncio.sleep(0)  # let the creator push instructions, tools and context first
        prior: str | None = None
        while self._finished is None:
            try:
                ws, call_id = await self._connect(prior)
            except (APIStatusError, APIConnectionError) as exc:
                self._feed(ev.CallEnded(reason=f"could not create a call: {exc}"))
                return
            self._ws = ws
            self._pending_call = None
            self._outbox.attach(ws)
            self._feed(ev.ToolsChanged(names=frozenset(self._tools.function_tools)))
            self._feed(ev.Connected(call_id=call_id))
            for data in self._audio_ring:
                self._outbox.put(data)
            self._audio_ring.clear()
            self._audio_live = True
            if self._connected_once:
                self.emit("session_reconnected", RealtimeSessionReconnectedEvent())
            self._connected_once = True
            self._healthy = False
            close_code = await self._serve(ws)
            self._ws = None
            self._audio_live = False
            if self._finished is not None:
                return
            if not self._healthy:
                # A socket that merely connects does not earn back the retry budget.
                self._failures += 1
                if self._failures > self._opts.conn_options.max_retry:
                    error = APIConnectionError(
                        f"Ultravox call socket closed ({close_code}) before the call started, "
                        f"{self._failures} times"
                    )
                    self._emit_error(error, recoverable=False)
                    self._feed(ev.CallEnded(reason=str(error)))
                    return
            if self._pending_call is None:
                if close_code in (1000, 1001):
                    self._feed(ev.CallEnded(reason=f"the server closed the call ({close_code})"))
                    return
                self._feed(ev.CallLost(reason=f"socket closed with code {close_code}"))
                if self._pending_call is None:  # the engine placed no new call
                    return
            prior = self._pending_call[1]

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse[bool]) -> int | None:
        try:
            while True:
                msg = await ws.receive()
                if msg.type is aiohttp.WSMsgType.BINARY:
                    self._on_audio(msg.data)
                elif msg.type is aiohttp.WSMsgType.TEXT:
                    self._on_text(msg.data)
                else:
                    break
        finally:
            self._outbox.attach(None)
            await ws.close()
        return ws.close_code

    def _on_text(self, data: str) -> None:
        if not self._healthy:
            self._healthy = True
            self._failures = 0
        try:
            message = wire.decode_server(data)
        except ProtocolError as exc:
            self._report_once("malformed", f"ignored a bad frame from Ultravox: {exc}")
            return
        if "ultravox_server_event_received" in self._events:
            self.emit("ultravox_server_event_received", msgspec.json.decode(data))
        self._feed(message)

    def _on_audio(self, data: bytes) -> None:
        if len(data) < 2:
            self._report_once("empty_audio", "ignored an empty or one-byte audio frame")
            return
        if len(data) % 2:
            self._report_once("odd_audio", "trimmed an odd-length audio frame")
            data = data[:-1]
        sink = self._audio_sink
        if sink is not None:
            sink.audio(data)
        else:
            self._feed(ev.AgentAudio(data=data))


def _initial_messages(chat_ctx: llm.ChatContext) -> list[InitialMessage]:
    """The conversation so far, for a new call that cannot use ``priorCallId``."""
    out: list[InitialMessage] = []
    for item in chat_ctx.items:
        if isinstance(item, llm.ChatMessage) and item.role in ("user", "assistant"):
            text = item.text_content
            if text:
                out.append(
                    InitialMessage(
                        role="MESSAGE_ROLE_USER" if item.role == "user" else "MESSAGE_ROLE_AGENT",
                        text=text,
                    )
                )
        elif isinstance(item, (llm.FunctionCall, llm.FunctionCallOutput)):
            call = isinstance(item, llm.FunctionCall)
            out.append(
                InitialMessage(
                    role="MESSAGE_ROLE_TOOL_CALL" if call else "MESSAGE_ROLE_TOOL_RESULT",
                    text=item.arguments if isinstance(item, llm.FunctionCall) else item.output,
                    invocation_id=item.call_id,
                    tool_name=item.name or None,
                )
            )
    return out


_COMMANDS: dict[type[cmd.Command], Any] = {
    cmd.Send: RealtimeSession._do_send,
    cmd.OpenGeneration: RealtimeSession._do_open,
    cmd.AnnounceGeneration: RealtimeSession._do_announce,
    cmd.DiscardGeneration: RealtimeSession._do_discard,
    cmd.PushText: RealtimeSession._do_text,
    cmd.PushAudio: RealtimeSession._do_audio,
    cmd.PushFunctionCall: RealtimeSession._do_function,
    cmd.CloseGeneration: RealtimeSession._do_close,
    cmd.FailRequest: RealtimeSession._do_fail,
    cmd.UserTranscript: RealtimeSession._do_transcript,
    cmd.UserSpeechStarted: RealtimeSession._do_speech_started,
    cmd.UserSpeechStopped: RealtimeSession._do_speech_stopped,
    cmd.StartCall: RealtimeSession._do_start_call,
    cmd.CallFinished: RealtimeSession._do_finish,
    cmd.Report: RealtimeSession._do_report,
}
