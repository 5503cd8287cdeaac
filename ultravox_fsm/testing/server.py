"""A stand-in Ultravox server on 127.0.0.1, for your tests and for the demo.

It follows the protocol reference (§2-§4, §7): ``POST /api/calls`` answers 201 with a join URL
(400 for invalid durations, ``voice`` with ``externalVoice``, ``priorCallId`` with
``initialMessages``; 401 without a key); the socket sends ``call_started`` first, then states,
transcripts with one shared ordinal counter (tools leave gaps), agent text as first ``text``,
``delta``s and a final ``text``, and s16le audio at the output rate. Typed user text is echoed as a
user transcript; ``urgency`` ``later`` (or legacy ``deferResponse``) adds context without a reply.

Replies are deterministic: `Scenario.reply` maps each user turn to a `Reply` (text and an optional
tool call). Faults are switched on per test: `fail_next_calls`, `create_delay`,
`drop_after_audio_frames`, `raw_frames`, `reject_sockets` (close that many joins at
once with 1011), `close_sockets(code)`.

    async with StandInServer() as server:
        model = RealtimeModel(base_url=server.base_url, api_key="test-key")
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import re
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from ..call import WIRE_DURATION

_DURATION_FIELDS = ("maxDuration", "joinTimeout")


@dataclass(frozen=True)
class Reply:
    """What the agent answers: ``text`` spoken (or written), after calling ``tool`` if set."""

    text: str
    tool: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)


def default_reply(user_text: str, tools: list[str]) -> Reply:
    """Call a tool named in the text (``use <tool> key=value``), else say ``You said: ...``."""
    match = re.search(r"\buse (\w+)((?:\s+\w+=\S+)*)", user_text)
    if match and match.group(1) in tools:
        arguments = dict(pair.split("=", 1) for pair in match.group(2).split())
        return Reply(
            text="Here is what I found: {result}", tool=match.group(1), arguments=arguments
        )
    return Reply(text=f"You said: {user_text.strip()}")


@dataclass
class Scenario:
    reply: Callable[[str, list[str]], Reply] = default_reply
    greeting: str | None = None
    voice_transcript: str = "Hello from the microphone"
    user_final_after_agent_audio: bool = False
    send_thinking: bool = True
    omit_medium: bool = False
    words_per_delta: int = 1
    # deferResponse on user_text_message is UNCERTAIN (protocol §3.1): both readings are offered.
    honour_defer_response: bool = True
    audio_ms_per_word: int = 60


@dataclass
class CallRecord:
    """What one call received, for assertions."""

    call_id: str
    body: dict[str, Any]
    query: dict[str, str]
    messages: list[dict[str, Any]] = field(default_factory=list)
    audio_bytes: int = 0
    closed: bool = False


class StandInServer:
    def __init__(
        self, scenario: Scenario | None = None, *, api_key: str | None = None, port: int = 0
    ) -> None:
        self.scenario = scenario or Scenario()
        self.api_key = api_key
        self.calls: dict[str, CallRecord] = {}
        self.fail_next_calls: list[tuple[int, str | None]] = []
        self.create_delay = 0.0
        self.drop_after_audio_frames: int | None = None
        self.reject_sockets = 0
        self.raw_frames: list[str | bytes] = []
        self.create_attempts = 0
        self._runner: web.AppRunner | None = None
        self._port = port
        self._sockets: set[web.WebSocketResponse] = set()
        self._reading = asyncio.Event()
        self._reading.set()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/api"

    async def start(self) -> StandInServer:
        app = web.Application()
        app.router.add_post("/api/calls", self._create_call)
        app.router.add_get("/calls/{call_id}/server_web_socket", self._socket)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port)
        await site.start()
        server = site._server
        assert server is not None
        self._port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> StandInServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def stall_reads(self) -> None:
        """Stop reading what clients send, as a congested server would: their sockets fill up
        and their writes must wait (backpressure)."""
        self._reading.clear()

    def resume_reads(self) -> None:
        self._reading.set()

    async def close_sockets(self, code: int) -> None:
        """Close every live call socket with ``code`` (1000: the call ended; others: faults)."""
        for ws in list(self._sockets):
            await ws.close(code=code)

    def messages(self, kind: str) -> list[dict[str, Any]]:
        """Every client message of type ``kind`` received, over all calls, in order."""
        return [m for c in self.calls.values() for m in c.messages if m.get("type") == kind]

    # --- REST ---------------------------------------------------------------------------------

    async def _create_call(self, request: web.Request) -> web.Response:
        self.create_attempts += 1
        if self.create_delay:
            await asyncio.sleep(self.create_delay)
        key = request.headers.get("X-API-Key")
        if not key or (self.api_key is not None and key != self.api_key):
            return web.json_response({"detail": "Invalid API key."}, status=401)
        if self.fail_next_calls:
            status, retry_after = self.fail_next_calls.pop(0)
            headers = {"Retry-After": retry_after} if retry_after else {}
            return web.json_response({"detail": "try later"}, status=status, headers=headers)
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return web.json_response({"detail": "body is not JSON"}, status=400)
        problem = _validate(body, dict(request.query))
        if problem:
            return web.json_response({"detail": problem}, status=400)
        call_id = str(uuid.uuid4())
        self.calls[call_id] = CallRecord(call_id, body, dict(request.query))
        host = request.host
        return web.json_response(
            {
                **body,
                "callId": call_id,
                "joinUrl": f"ws://{host}/calls/{call_id}/server_web_socket",
                "created": "2026-01-01T00:00:00Z",
                "joined": None,
                "ended": None,
                "endReason": None,
            },
            status=201,
        )

    # --- the call socket ----------------------------------------------------------------------

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        record = self.calls.get(request.match_info["call_id"])
        if record is None:
            raise web.HTTPNotFound()
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if self.reject_sockets:
            self.reject_sockets -= 1
            await ws.close(code=1011)
            return ws
        self._sockets.add(ws)
        call = _Call(self, record, ws)
        try:
            await call.run()
        finally:
            record.closed = True
            self._sockets.discard(ws)
        return ws


def _validate(body: dict[str, Any], query: dict[str, str]) -> str | None:
    for name in _DURATION_FIELDS:
        value = body.get(name)
        if value is not None and not (isinstance(value, str) and WIRE_DURATION.match(value)):
            return f"{name}: invalid duration {value!r}"
    if body.get("voice") and body.get("externalVoice"):
        return "voice and externalVoice are mutually exclusive"
    if query.get("priorCallId") and body.get("initialMessages"):
        return "priorCallId and initialMessages are mutually exclusive"
    ws = (body.get("medium") or {}).get("serverWebSocket")
    if ws is not None and not isinstance(ws.get("inputSampleRate"), int):
        return "medium.serverWebSocket.inputSampleRate is required"
    return None


def _tone(ms: int, rate: int) -> bytes:
    n = rate * ms // 1000
    return struct.pack(f"<{n}h", *(int(3000 * math.sin(i / 8)) for i in range(n)))


class _Call:
    """One live call: a tiny deterministic agent behind the documented wire behaviour."""

    def __init__(self, server: StandInServer, record: CallRecord, ws: web.WebSocketResponse):
        self.server = server
        self.scenario = server.scenario
        self.record = record
        self.ws = ws
        medium = record.body.get("medium", {}).get("serverWebSocket", {})
        self.in_rate = int(medium.get("inputSampleRate", 16000))
        self.out_rate = int(medium.get("outputSampleRate", self.in_rate))
        self.buffer_ms = int(medium.get("clientBufferSizeMs", 60))
        self.loop = asyncio.get_running_loop()
        self.audio_start, self.audio_sent_ms = self.loop.time(), 0
        self.text_mode = record.body.get("initialOutputMedium") == "MESSAGE_MEDIUM_TEXT"
        self.tools = [
            t["temporaryTool"]["modelToolName"]
            for t in record.body.get("selectedTools") or []
            if "temporaryTool" in t
        ]
        self.ordinals = itertools.count()
        self.speaking: asyncio.Task[None] | None = None
        self.pending_tool: tuple[str, Reply] | None = None
        self.sent_audio_frames = 0
        self.voice_ms = 0
        self.silence_ms = 0
        self.queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

    async def send(self, message: dict[str, Any]) -> None:
        if not self.ws.closed:
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

    async def run(self) -> None:
        await self.send({"type": "call_started", "callId": self.record.call_id})
        await self.state("listening")
        for frame in self.server.raw_frames:
            await (
                self.ws.send_bytes(frame) if isinstance(frame, bytes) else self.ws.send_str(frame)
            )
        user_first = "user" in (self.record.body.get("firstSpeakerSettings") or {})
        carried = self.record.query.get("priorCallId") or self.record.body.get("initialMessages")
        if self.scenario.greeting and not user_first and not carried:
            self.start_reply(Reply(text=self.scenario.greeting))
        worker = asyncio.create_task(self.work())
        try:
            async for msg in self.ws:
                await self.server._reading.wait()
                if msg.type is WSMsgType.BINARY:
                    await self.on_audio(msg.data)
                elif msg.type is WSMsgType.TEXT:
                    await self.on_text(json.loads(msg.data))
        finally:
            worker.cancel()
            if self.speaking:
                self.speaking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    async def work(self) -> None:
        """Turns that want a reply wait here until the agent is quiet (urgency ``soon``)."""
        while True:
            kind, text = await self.queue.get()
            while self.speaking is not None and not self.speaking.done():
                await asyncio.sleep(0.01)
            if kind == "say":
                self.start_reply(Reply(text=text), generated=False)
            elif kind == "hang_up":
                if text:
                    self.start_reply(Reply(text=text), generated=False)
                    assert self.speaking is not None
                    await self.speaking
                await self.ws.close(code=1000)
                return
            else:
                self.start_reply(self.scenario.reply(text, self.tools))

    async def on_text(self, message: dict[str, Any]) -> None:
        self.record.messages.append(message)
        kind = message.get("type")
        if kind == "ping":
            await self.send({"type": "pong", "timestamp": message.get("timestamp")})
        elif kind in ("user_text_message", "input_text_message"):
            await self.on_user_text(message)
        elif kind == "forced_agent_message":
            await self.queue.put(("say", str(message.get("content", ""))))
        elif kind == "client_tool_result":
            await self.on_tool_result(message)
        elif kind == "set_output_medium":
            self.text_mode = message.get("medium") == "text"
        elif kind == "hang_up":
            await self.queue.put(("hang_up", str(message.get("message") or "")))

    async def on_user_text(self, message: dict[str, Any]) -> None:
        text = str(message.get("text", ""))
        urgency = message.get("urgency") or "soon"
        defer = bool(message.get("deferResponse"))
        await self.transcript("user", "text", next(self.ordinals), True, text=text)
        if urgency == "immediate" and self.speaking is not None and not self.speaking.done():
            await self.barge_in()
        if urgency == "later" or (defer and self.scenario.honour_defer_response):
            return
        await self.queue.put(("reply", text))

    async def on_tool_result(self, message: dict[str, Any]) -> None:
        pending = self.pending_tool
        if pending is None or pending[0] != message.get("invocationId"):
            return
        self.pending_tool = None
        _, reply = pending
        next(self.ordinals)  # the tool result's ordinal
        if message.get("agentReaction") == "listens":
            return
        result = message.get("result") or message.get("errorMessage") or ""
        self.start_reply(Reply(text=reply.text.replace("{result}", result)), generated=False)

    async def on_audio(self, data: bytes) -> None:
        self.record.audio_bytes += len(data)
        samples = struct.unpack(f"<{len(data) // 2}h", data[: len(data) // 2 * 2])
        loud = bool(samples) and max(abs(s) for s in samples) > 500
        ms = len(samples) * 1000 // self.in_rate
        if loud:
            self.voice_ms += ms
            self.silence_ms = 0
            if self.voice_ms >= 90 and self.speaking is not None and not self.speaking.done():
                await self.barge_in()
        elif self.voice_ms:
            self.silence_ms += ms
            if self.silence_ms >= 384:
                self.voice_ms = self.silence_ms = 0
                await self.on_voice_turn()

    async def on_voice_turn(self) -> None:
        ordinal = next(self.ordinals)
        text = self.scenario.voice_transcript
        if self.scenario.user_final_after_agent_audio:
            self.start_reply(self.scenario.reply(text, self.tools), user_final=(ordinal, text))
        else:
            await self.transcript("user", "voice", ordinal, True, text=text)
            self.start_reply(self.scenario.reply(text, self.tools))

    async def barge_in(self) -> None:
        if self.speaking is not None:
            self.speaking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.speaking
        await self.send({"type": "playback_clear_buffer"})
        await self.state("listening")

    def start_reply(
        self, reply: Reply, *, generated: bool = True, user_final: tuple[int, str] | None = None
    ) -> None:
        self.speaking = asyncio.create_task(self.speak(reply, generated, user_final))

    async def speak(
        self, reply: Reply, generated: bool, user_final: tuple[int, str] | None
    ) -> None:
        if generated and self.scenario.send_thinking:
            await self.state("thinking")
        if reply.tool is not None:
            invocation = f"call_{uuid.uuid4().hex[:8]}"
            next(self.ordinals)  # the tool call's ordinal
            self.pending_tool = (invocation, reply)
            await self.send(
                {
                    "type": "client_tool_invocation",
                    "toolName": reply.tool,
                    "invocationId": invocation,
                    "parameters": reply.arguments,
                }
            )
            return
        ordinal = next(self.ordinals)
        medium = "text" if self.text_mode else "voice"
        words = reply.text.split(" ")
        step = self.scenario.words_per_delta
        chunks = [" ".join(words[i : i + step]) for i in range(0, len(words), step)]
        final_text = reply.text
        self.audio_start, self.audio_sent_ms = self.loop.time(), 0
        try:
            for i, chunk in enumerate(chunks):
                if not self.text_mode:
                    await self.audio(
                        _tone(self.scenario.audio_ms_per_word * len(chunk.split()), self.out_rate)
                    )
                if i == 0:
                    await self.state("speaking")
                    if user_final is not None:
                        await self.transcript(
                            "user", "voice", user_final[0], True, text=user_final[1]
                        )
                    await self.transcript("agent", medium, ordinal, False, text=chunk)
                else:
                    await self.transcript("agent", medium, ordinal, False, delta=" " + chunk)
            await self.transcript("agent", medium, ordinal, True, text=final_text)
            await self.state("listening")
        except asyncio.CancelledError:
            spoken = " ".join(chunks[: max(1, len(chunks) // 2)])
            with contextlib.suppress(Exception):
                await self.transcript("agent", medium, ordinal, True, text=spoken)
            raise

    async def audio(self, pcm: bytes) -> None:
        """Send 20 ms frames, at most ``clientBufferSizeMs`` ahead of real time."""
        frame = self.out_rate * 2 * 20 // 1000
        for i in range(0, len(pcm), frame):
            lead = self.audio_sent_ms - (self.loop.time() - self.audio_start) * 1000
            if lead > self.buffer_ms:
                await asyncio.sleep((lead - self.buffer_ms) / 1000)
            self.audio_sent_ms += 20
            if self.ws.closed:
                return
            await self.ws.send_bytes(pcm[i : i + frame])
            self.sent_audio_frames += 1
            limit = self.server.drop_after_audio_frames
            if limit is not None and self.sent_audio_frames >= limit:
                self.server.drop_after_audio_frames = None
                transport = self.ws._req.transport if self.ws._req else None
                if transport is not None:
                    transport.abort()
                raise asyncio.CancelledError
            await asyncio.sleep(0)
