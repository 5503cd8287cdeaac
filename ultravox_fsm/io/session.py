"""`RealtimeSession`: LiveKit calls in as engine inputs, engine commands out as LiveKit effects.

It decides nothing about turn-taking or the connection (`states.py` does): it translates, owns
the generations' streams and the futures of `generate_reply`/`say`, and lets `CallSupervisor`
carry out `StartCall`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import AsyncIterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
import numpy as np
from livekit import rtc
from livekit.agents import llm, utils
from livekit.agents.types import NOT_GIVEN, NotGivenOr
from livekit.agents.utils import is_given

from .. import commands as cmd
from .. import events as ev
from ..errors import LocalProtocolError
from ..machine import Engine, Step
from ..states import State, Trigger
from ..trace import TraceWriter
from .checks import check_forced_tools, check_json
from .host import CallHost
from .outbox import Outbox
from .streams import Burst, GenerationStreams
from .supervisor import CallSupervisor
from .tools import to_selected_tools

if TYPE_CHECKING:
    from .livekit import RealtimeModel

logger = logging.getLogger("ultravox_fsm")


class RealtimeSession(CallHost):
    """One conversation: one Ultravox call at a time, replaced (keeping history) when needed."""

    def __init__(self, realtime_model: RealtimeModel) -> None:
        super().__init__(realtime_model)
        self._model = realtime_model
        self._opts = replace(realtime_model._opts)
        self._loop = asyncio.get_running_loop()
        options = replace(self._opts.engine, seed=int.from_bytes(os.urandom(4), "big"))
        self._trace: TraceWriter | None = None
        if self._opts.trace_dir:
            path = os.path.join(self._opts.trace_dir, f"{utils.shortuuid('session_')}.jsonl")
            self._trace = TraceWriter(path, options=options)
            logger.debug("recording a trace of this session to %s", path)
        self._engine = Engine(options, observer=self._observe)
        self._tools = llm.ToolContext.empty()
        self._tool_defs: list[dict[str, Any]] = []
        self._chat_ctx = llm.ChatContext.empty()
        self._known_ids: set[str] = set()
        self._gens: dict[str, GenerationStreams] = {}
        self._burst = Burst(self._settle)
        self._deltas: list[str] = []
        self._delta_ordinal: int | None = None
        self._futures: dict[str, asyncio.Future[llm.GenerationCreatedEvent]] = {}
        buffered = self._opts.input_sample_rate * 2 * self._opts.audio_buffer_ms // 1000
        self._outbox = Outbox(max_audio_bytes=buffered)
        self._audio_sink: GenerationStreams | None = None  # the engine's audio_target, cached
        self._audio_ring: deque[bytes] = deque(maxlen=max(1, self._opts.audio_buffer_ms // 10))
        self._audio_live = False  # input audio goes to the socket (else to the ring)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._flush_scheduled = False
        self._finished: str | None = None
        self._reported: set[str] = set()
        self._resampler: rtc.AudioResampler | None = None
        self._own_http: aiohttp.ClientSession | None = None
        self._say_tasks: set[asyncio.Task[None]] = set()
        self._connected_once = False
        self._body_built = False  # a call was created from the options as they are now
        self._calls = CallSupervisor(
            self,
            base_url=self._opts.base_url,
            calls_base=self._opts.calls_base,
            api_key=self._opts.api_key,
            timeout=self._opts.conn_options.timeout,
            transport=self._opts.transport,
        )
        # One loop turn first: the creator pushes instructions, tools and context before the
        # first call is created from them.
        self._loop.call_soon(self._calls.start, None)

    # --- what LiveKit reads ---------------------------------------------------------------------

    @property
    def chat_ctx(self) -> llm.ChatContext:
        """A copy of the call's history (the same items in a new list: LiveKit copies it again
        before changing anything, so a filtering `ChatContext.copy` here would be paid twice)."""
        return llm.ChatContext(list(self._chat_ctx.items))

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
        """The turn diagram as mermaid text, with the current state highlighted."""
        from ..diagram import mermaid

        return mermaid(self._engine.state)

    def _observe(
        self, now: float, event: object, steps: list[Step], commands: list[cmd.Command]
    ) -> None:
        if self._trace is not None:
            self._trace(now, event, steps, commands)
        for table, before, after, trigger in steps:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("%s: %s -> %s (%s)", table, before, after, trigger)
            if table == "turn":
                self.emit("ultravox_state_changed", State(before), State(after), Trigger(trigger))

    # --- LiveKit calls -> engine inputs ---------------------------------------------------------

    def _check_open(self, what: str) -> None:
        if self._finished is not None:
            raise LocalProtocolError(f"{what} refused: the session has ended ({self._finished})")

    async def update_instructions(self, instructions: str) -> None:
        self._check_open("update_instructions")
        if self._opts.agent_id is not None:
            if instructions:
                self._report_once(
                    "agent_instructions",
                    "calls from a saved Ultravox agent take the agent's own prompt; the "
                    "instructions given here are not sent",
                )
            return
        if instructions != self._opts.system_prompt:
            self._opts.system_prompt = instructions
            self._config_changed("instructions changed")

    def _config_changed(self, reason: str) -> None:
        """A call made from the old options must be replaced; before any is made, nothing to do."""
        if self._body_built:
            self._body_built = False
            self._request(ev.RestartRequested(reason=reason))

    async def update_tools(self, tools: list[llm.Tool]) -> None:
        self._check_open("update_tools")
        defs = to_selected_tools(
            tools, timeout=self._opts.tool_timeout, settings=self._opts.tool_settings
        )
        check_json("a tool's schema", defs)
        self._tools = llm.ToolContext(tools)
        if defs != self._tool_defs:
            self._tool_defs = defs
            self._config_changed("tools changed")

    async def update_chat_ctx(self, chat_ctx: llm.ChatContext) -> None:
        """Send what is new since the last update: the items after the newest one we know.
        Ultravox's history is append-only, so the cost is per new item, not per history
        length (an item inserted before one we already know is not sent)."""
        self._check_open("update_chat_ctx")
        new: list[llm.ChatItem] = []
        for item in reversed(chat_ctx.items):
            if item.id in self._known_ids:
                break
            new.append(item)
        for item in reversed(new):
            self._remember(item)
            if isinstance(item, llm.ChatMessage) and item.role != "assistant":
                text = item.text_content
                if text:
                    role: Literal["user", "system"] = "user" if item.role == "user" else "system"
                    self._request(ev.ContextAdded(role=role, text=text))
            elif isinstance(item, llm.FunctionCallOutput):
                # One for a dead invocation is refused by the engine and reported, never sent.
                self._request(
                    ev.ToolResult(
                        invocation_id=item.call_id,
                        result=None if item.is_error else item.output,
                        error_message=item.output if item.is_error else None,
                        reply_required=item.reply_required,
                    )
                )
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
            if output_medium not in ("text", "voice"):
                raise ValueError(f"output_medium must be 'text' or 'voice', got {output_medium!r}")
            self._opts.output_medium = output_medium
            self._request(ev.OutputMediumChanged(medium=output_medium))
        if is_given(tool_choice) and tool_choice not in (None, "auto"):
            self._report_once("tool_choice", "Ultravox has no per-session tool_choice; ignored")

    def push_audio(self, frame: rtc.AudioFrame) -> None:
        """Send each frame as it comes (no re-chunking; several channels are averaged to one);
        keep the last ``audio_buffer_ms`` in a ring while no call is live."""
        if self._finished is not None:
            return
        rate = self._opts.input_sample_rate
        if frame.num_channels > 1:
            samples = np.frombuffer(frame.data, dtype=np.int16).reshape(-1, frame.num_channels)
            mono = samples.mean(axis=1).astype(np.int16).tobytes()
            frame = rtc.AudioFrame(mono, frame.sample_rate, 1, frame.samples_per_channel)
        if frame.sample_rate == rate:
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
        self._request(ev.ReplyRequested(request_id=request_id, instructions=text), fut)
        return fut

    def say(
        self,
        text: str | AsyncIterable[str],
        *,
        allow_interruptions: bool | None = None,
        tool_calls: list[dict[str, Any]] | None = None,
        known_tool_results: list[dict[str, Any]] | None = None,
    ) -> asyncio.Future[llm.GenerationCreatedEvent]:
        """The agent says ``text`` verbatim (``forced_agent_message``). ``tool_calls``
        (``{"name": ..., "arguments": {...}, "id"?: ...}``) make it invoke tools as it speaks,
        with ``known_tool_results`` (client-tool-result objects) already answered; the server
        plays tool calls uninterruptibly."""
        check_forced_tools(tool_calls, known_tool_results)
        fut, request_id = self._new_request()
        interruptible = (
            self._opts.say_interruptible if allow_interruptions is None else allow_interruptions
        )

        async def send() -> None:
            try:
                content = text if isinstance(text, str) else "".join([c async for c in text])
            except Exception as exc:
                if not fut.done():
                    fut.set_exception(llm.RealtimeError(f"say(): the text source failed: {exc}"))
                return
            if not fut.done():
                self._request(
                    ev.SayRequested(
                        request_id=request_id,
                        text=content,
                        interruptible=interruptible,
                        tool_calls=tool_calls,
                        known_tool_results=known_tool_results,
                    ),
                    fut,
                )

        task = asyncio.create_task(send())
        self._say_tasks.add(task)
        task.add_done_callback(self._say_tasks.discard)
        return fut

    def interrupt(self) -> None:
        self._request(ev.InterruptRequested())

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
        """Answer a client tool invocation directly (``reply=False``: the agent listens).
        Raises `LocalProtocolError` if no such invocation is pending on the live call."""
        self._check_open("send_tool_result")
        self._request(
            ev.ToolResult(invocation_id=call_id, result=result, reply_required=reply), raising=True
        )

    def hang_up(self, message: str | None = None) -> None:
        """Ask the agent to say ``message`` and end the call."""
        self._request(ev.HangUpRequested(message=message))

    async def aclose(self) -> None:
        if self._finished is None:
            self._request(ev.Close())
        for task in list(self._say_tasks):
            task.cancel()
        await self._calls.aclose()  # first: a call being created must not join an ended session
        await asyncio.gather(*self._say_tasks, return_exceptions=True)
        for fut in list(self._futures.values()):
            if not fut.done():
                fut.set_exception(llm.RealtimeError("the session was closed"))
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
                self._request(ev.RequestCancelled(request_id=request_id))

        fut.add_done_callback(done)
        return fut, request_id

    def _flush_context(self) -> None:
        self._flush_scheduled = False
        if self._finished is None:
            self._request(ev.ContextFlush())
