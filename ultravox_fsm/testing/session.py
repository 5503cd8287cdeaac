"""One live stand-in call on its socket: a tiny deterministic agent behind the wire protocol.

Agent audio goes out as 20 ms s16le frames, at most ``clientBufferSizeMs`` ahead of the
client's playback position (`Playback`). The agent counts as speaking until the client has
played everything sent, so barge-in works however large the buffer: it sends
``playback_clear_buffer`` and cuts the final transcript to the words played.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import WSMsgType, web

from .burst import BurstWriter
from .calls import first_speaker_settings, now, seconds
from .playback import FRAME_MS, Playback, tone
from .scenario import CallRecord, Reply
from .validation import DATA_MESSAGE_DEFAULTS, validate_start_call

if TYPE_CHECKING:
    from .server import StandInServer


def _snake(flag: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", flag).lower()


@dataclass(frozen=True)
class _Turn:
    """Work that waits for the agent to be quiet (``soon``): a reply, a verbatim line, a hang-up."""

    kind: Literal["reply", "say", "hang_up"]
    text: str
    uninterruptible: bool = False


class CallSession:
    def __init__(
        self,
        server: StandInServer,
        record: CallRecord,
        ws: web.WebSocketResponse,
        join_query: Mapping[str, str],
    ) -> None:
        self.server = server
        self.scenario = server.scenario
        self.record = record
        self.ws = ws
        body = record.body
        medium = (body.get("medium") or {}).get("serverWebSocket") or {}
        self.in_rate = int(medium.get("inputSampleRate") or 16000)
        self.out_rate = int(medium.get("outputSampleRate") or self.in_rate)
        self.buffer_ms = int(medium.get("clientBufferSizeMs") or 60)
        enabled = {**DATA_MESSAGE_DEFAULTS, **(medium.get("dataMessages") or {})}
        if "debug" in join_query.get("experimentalMessages", "").split(","):
            enabled["debug"] = True
        self.enabled = {_snake(flag) for flag, on in enabled.items() if on}
        vad = body.get("vadSettings") or {}
        self.end_of_turn_ms = seconds(vad.get("turnEndpointDelay") or "0.384s") * 1000
        self.min_turn_ms = seconds(vad.get("minimumTurnDuration") or "0s") * 1000
        self.min_barge_in_ms = max(
            self.min_turn_ms, seconds(vad.get("minimumInterruptionDuration") or "0.09s") * 1000
        )
        self.loop = asyncio.get_running_loop()
        self.playback = Playback(self.loop.time, self.scenario.playback_speed)
        self.text_mode = body.get("initialOutputMedium") == "MESSAGE_MEDIUM_TEXT"
        self.tools = self._tool_names(body)
        self.ordinals = itertools.count()
        self.speaking: asyncio.Task[None] | None = None
        self.uninterruptible = False
        self.pending_tool: tuple[str, Reply] | None = None
        self.heard_user = False
        self.sent_audio_frames = 0
        self.voice_ms = 0
        self.silence_ms = 0
        self.queue: asyncio.Queue[_Turn] = asyncio.Queue()
        self.burst = BurstWriter(ws) if self.scenario.burst else None

    @staticmethod
    def _tool_names(body: dict[str, Any]) -> list[str]:
        return [
            t.get("nameOverride") or t["temporaryTool"].get("modelToolName", "")
            for t in body.get("selectedTools") or []
            if "temporaryTool" in t
        ]

    # --- sending ------------------------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        """Send a data message unless ``medium.serverWebSocket.dataMessages`` turned it off."""
        if message["type"] in self.enabled and not self.ws.closed:
            if self.burst is not None:
                self.burst.put(json.dumps(message))
            else:
                await self.ws.send_str(json.dumps(message))

    async def state(self, state: str) -> None:
        await self.send({"type": "state", "state": state})

    async def transcript(
        self, role: str, medium: str, ordinal: int, final: bool, **text: str
    ) -> None:
        message: dict[str, Any] = {
            "type": "transcript",
            "role": role,
            "final": final,
            "ordinal": ordinal,
        }
        if not self.scenario.omit_medium:
            message["medium"] = medium
        await self.send({**message, **text})

    async def debug(self, message: str) -> None:
        await self.send({"type": "debug", "message": message})

    async def end(self, reason: str, code: int = 1000) -> None:
        self.record.end_reason = self.record.end_reason or reason
        if self.burst is not None:
            self.burst.flush()
        await self.ws.close(code=code)

    # --- the call -----------------------------------------------------------------------------

    async def run(self) -> None:
        self.record.joined = now()
        await self.send({"type": "call_started", "callId": self.record.call_id})
        await self.state("listening")
        for frame in self.server.raw_frames:
            await (
                self.ws.send_bytes(frame) if isinstance(frame, bytes) else self.ws.send_str(frame)
            )
        opener = asyncio.create_task(self.open_conversation())
        worker = asyncio.create_task(self.work())
        try:
            async for msg in self.ws:
                await self.server._reading.wait()
                if msg.type is WSMsgType.BINARY:
                    await self.on_audio(msg.data)
                elif msg.type is WSMsgType.TEXT:
                    await self.on_text(json.loads(msg.data))
        except ConnectionError:
            pass  # the client went away mid-answer: the call ends, as a hang-up
        finally:
            for task in (opener, worker, self.speaking):
                if task is not None:
                    task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(opener, worker)
            self.record.ended = now()
            self.record.end_reason = self.record.end_reason or "hangup"

    async def open_conversation(self) -> None:
        """Greet when the agent speaks first (the API default), after ``delay`` if set; when the
        user speaks first, greet only after ``fallback.delay`` of silence from the user. A call
        that carries a conversation over (``priorCallId``/``initialMessages``) is not greeted."""
        settings = first_speaker_settings(self.record.body)
        if self.record.query.get("priorCallId") or self.record.body.get("initialMessages"):
            return
        greeting = settings.get("agent")
        if greeting is None:
            greeting = (settings.get("user") or {}).get("fallback")
            if greeting is None:
                return
        if greeting.get("delay"):
            await asyncio.sleep(seconds(greeting["delay"]))
        if "user" in settings and self.heard_user:
            return
        text = greeting.get("text") or self.scenario.greeting
        if text is not None:
            self.start_reply(
                Reply(text=text),
                generated="text" not in greeting,
                uninterruptible=bool(greeting.get("uninterruptible")),
            )

    async def work(self) -> None:
        """Turns that want a reply wait here until the agent is quiet (urgency ``soon``)."""
        while True:
            turn = await self.queue.get()
            while self.speaking is not None and not self.speaking.done():
                await asyncio.sleep(0.01)
            if turn.kind == "say":
                self.start_reply(
                    Reply(text=turn.text), generated=False, uninterruptible=turn.uninterruptible
                )
            elif turn.kind == "hang_up":
                if turn.text:
                    self.start_reply(Reply(text=turn.text), generated=False)
                    assert self.speaking is not None
                    await self.speaking
                await self.end("hangup")
                return
            else:
                reply = self.reply_for(turn.text)
                if reply is not None:
                    self.start_reply(reply)

    # --- what the client sends ----------------------------------------------------------------

    async def on_text(self, message: dict[str, Any]) -> None:
        self.record.messages.append(message)
        kind = message.get("type")
        if kind == "ping":
            await self.send({"type": "pong", "timestamp": message.get("timestamp")})
        elif kind in ("user_text_message", "input_text_message"):
            await self.on_user_text(message)
        elif kind == "forced_agent_message":
            await self.on_forced(message)
        elif kind == "client_tool_result":
            await self.on_tool_result(message)
        elif kind == "set_output_medium":
            self.text_mode = message.get("medium") == "text"
        elif kind == "hang_up":
            await self.queue.put(_Turn("hang_up", str(message.get("message") or "")))

    async def on_user_text(self, message: dict[str, Any]) -> None:
        self.heard_user = True
        text = str(message.get("text", ""))
        urgency = message.get("urgency") or "soon"
        defer = bool(message.get("deferResponse"))
        await self.transcript("user", "text", next(self.ordinals), True, text=text)
        if urgency == "immediate" and self.is_speaking():
            await self.barge_in()
        if urgency == "later" or (defer and self.scenario.honour_defer_response):
            return
        await self.queue.put(_Turn("reply", text))

    async def on_forced(self, message: dict[str, Any]) -> None:
        """``immediate`` interrupts the current reply and speaks now; ``soon`` waits its turn."""
        content = str(message.get("content") or "")
        uninterruptible = bool(message.get("uninterruptible"))
        if message.get("urgency") != "immediate":
            await self.queue.put(_Turn("say", content, uninterruptible))
            return
        if self.is_speaking():
            await self.barge_in()
        self.start_reply(Reply(text=content), generated=False, uninterruptible=uninterruptible)

    async def on_tool_result(self, message: dict[str, Any]) -> None:
        pending = self.pending_tool
        if pending is None or pending[0] != message.get("invocationId"):
            return
        self.pending_tool = None
        _, reply = pending
        next(self.ordinals)  # the tool result's ordinal
        result = str(message.get("result") or message.get("errorMessage") or "")
        await self.debug(f"Tool call complete. Result: {result}")
        response_type = message.get("responseType") or "tool-response"
        if response_type == "hang-up":
            await self.end("agent_hangup")
            return
        if response_type == "new-stage":
            stage = self.new_stage(result)
            if stage is None:
                await self.end("system_error", code=1011)
                return
            result = str(stage.get("toolResultText") or "OK")
        if message.get("agentReaction") == "listens":
            return
        self.start_reply(Reply(text=reply.text.replace("{result}", result)), generated=False)

    def new_stage(self, result: str) -> dict[str, Any] | None:
        """Apply a ``new-stage`` body (a JSON `StartCallRequest` subset, plus ``toolResultText``).
        What the API does with a malformed one is UNCERTAIN; the stand-in ends the call 1011 so
        the bug shows. Returns the stage, or None if it is malformed."""
        try:
            stage = json.loads(result)
        except json.JSONDecodeError:
            return None
        if not isinstance(stage, dict) or validate_start_call(stage, {}) is not None:
            return None
        self.record.stages.append(stage)
        if "selectedTools" in stage:
            self.tools = self._tool_names(stage)
        return stage

    async def on_audio(self, data: bytes) -> None:
        """An energy VAD: speech past ``minimumInterruptionDuration`` barges in, silence past
        ``turnEndpointDelay`` ends a turn of at least ``minimumTurnDuration``."""
        self.record.audio_bytes += len(data)
        samples = struct.unpack(f"<{len(data) // 2}h", data[: len(data) // 2 * 2])
        loud = bool(samples) and max(abs(s) for s in samples) > 500
        ms = len(samples) * 1000 // self.in_rate
        if loud:
            if not self.voice_ms:
                self.heard_user = True
                await self.send({"type": "user_started_speaking"})
            self.voice_ms += ms
            self.silence_ms = 0
            interrupting = self.voice_ms >= self.min_barge_in_ms and not self.uninterruptible
            if interrupting and self.is_speaking():
                await self.barge_in()
        elif self.voice_ms:
            self.silence_ms += ms
            if self.silence_ms >= self.end_of_turn_ms:
                long_enough = self.voice_ms >= self.min_turn_ms
                self.voice_ms = self.silence_ms = 0
                await self.send({"type": "user_stopped_speaking"})
                if long_enough:
                    await self.on_voice_turn()

    async def on_voice_turn(self) -> None:
        ordinal = next(self.ordinals)
        text = self.scenario.voice_transcript
        reply = self.reply_for(text)
        if reply is None:
            return
        if self.scenario.user_final_after_agent_audio:
            self.start_reply(reply, user_final=(ordinal, text))
        else:
            await self.transcript("user", "voice", ordinal, True, text=text)
            self.start_reply(reply)

    def reply_for(self, text: str) -> Reply | None:
        """The scenario's reply; if the test's callback raises, the error is kept for the test
        (`StandInServer` raises it on exit) and the call ends at once (1011), so the client
        fails fast instead of waiting for a reply that will never come."""
        try:
            return self.scenario.reply(text, self.tools)
        except Exception as exc:
            if self.server.callback_error is None:
                self.server.callback_error = exc
            if self.burst is not None:
                self.burst.flush()
            task = asyncio.ensure_future(self.ws.close(code=1011))
            self.server.background.add(task)
            task.add_done_callback(self.server.background.discard)
            return None

    # --- the agent speaking -------------------------------------------------------------------

    def is_speaking(self) -> bool:
        """Generating, or the client still playing what was generated."""
        return self.speaking is not None and not self.speaking.done()

    async def barge_in(self) -> None:
        """Tell the client to drop what it has not played, then cut the reply's transcript to
        what it did play (its final), then listen."""
        await self.send({"type": "playback_clear_buffer"})
        if self.speaking is not None:
            self.speaking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.speaking
        self.playback.clear()
        await self.state("listening")

    def start_reply(
        self,
        reply: Reply,
        *,
        generated: bool = True,
        uninterruptible: bool = False,
        user_final: tuple[int, str] | None = None,
    ) -> None:
        self.uninterruptible = uninterruptible
        self.speaking = asyncio.create_task(self.speak(reply, generated, user_final))

    async def speak(
        self, reply: Reply, generated: bool, user_final: tuple[int, str] | None
    ) -> None:
        if generated and self.scenario.send_thinking:
            await self.state("thinking")
        if reply.tool is not None:
            await self.invoke(reply)
            return
        ordinal = next(self.ordinals)
        medium = "text" if self.text_mode else "voice"
        words = reply.text.split(" ")
        step = self.scenario.words_per_delta
        chunks = [words[i : i + step] for i in range(0, len(words), step)]
        sent_words, sent_ms = 0, 0.0
        try:
            for i, chunk in enumerate(chunks):
                if not self.text_mode:
                    ms_per_word = self.scenario.audio_ms_per_word
                    sent_ms += await self.audio(tone(ms_per_word * len(chunk), self.out_rate))
                sent_words += len(chunk)
                if i == 0:
                    await self.state("speaking")
                    if user_final is not None:
                        await self.transcript(
                            "user", "voice", user_final[0], True, text=user_final[1]
                        )
                    await self.transcript("agent", medium, ordinal, False, text=" ".join(chunk))
                else:
                    await self.transcript(
                        "agent", medium, ordinal, False, delta=" " + " ".join(chunk)
                    )
            while self.playback.unplayed_ms() > 0:
                await asyncio.sleep(self.playback.seconds_left())
            await self.transcript("agent", medium, ordinal, True, text=reply.text)
            await self.state("listening")
        except asyncio.CancelledError:
            if sent_ms:
                played_ms = sent_ms - self.playback.unplayed_ms()
                sent_words = int(played_ms // self.scenario.audio_ms_per_word)
            with contextlib.suppress(Exception):
                spoken = " ".join(words[:sent_words])
                await self.transcript("agent", medium, ordinal, True, text=spoken)
            raise

    async def invoke(self, reply: Reply) -> None:
        assert reply.tool is not None
        invocation = f"call_{uuid.uuid4().hex[:8]}"
        next(self.ordinals)  # the tool call's ordinal
        self.pending_tool = (invocation, reply)
        await self.debug(
            f"LLM response: \nTool calls: [FunctionCall(name='{reply.tool}', "
            f"args={reply.arguments!r}, invocation_id='{invocation}')]"
        )
        await self.send(
            {
                "type": "client_tool_invocation",
                "toolName": reply.tool,
                "invocationId": invocation,
                "parameters": reply.arguments,
            }
        )

    async def audio(self, pcm: bytes) -> float:
        """Send 20 ms frames, at most ``clientBufferSizeMs`` ahead of the client's playback;
        returns the milliseconds sent."""
        frame = self.out_rate * 2 * FRAME_MS // 1000
        sent = 0.0
        for i in range(0, len(pcm), frame):
            lead = self.playback.unplayed_ms()
            if lead > self.buffer_ms:
                await asyncio.sleep((lead - self.buffer_ms) / 1000)
            if self.ws.closed:
                return sent
            chunk = pcm[i : i + frame]
            if self.burst is not None:
                self.burst.put(chunk)
            else:
                await self.ws.send_bytes(chunk)
            ms = len(chunk) / 2 * 1000 / self.out_rate
            self.playback.sent(ms)
            sent += ms
            self.sent_audio_frames += 1
            limit = self.server.drop_after_audio_frames
            if limit is not None and self.sent_audio_frames >= limit:
                self.server.drop_after_audio_frames = None
                self.record.end_reason = "connection_error"
                transport = self.ws._req.transport if self.ws._req else None
                if transport is not None:
                    transport.abort()
                raise asyncio.CancelledError
            if self.burst is None:
                await asyncio.sleep(0)
        return sent
