"""The streams of one agent message, as LiveKit consumes them, handed over once per burst.

Ultravox sends a reply ahead of playback, so its frames and deltas arrive in bursts: many read
from the socket at once. Handing each to LiveKit on its own costs an `rtc.AudioFrame`, a
channel send and a consumer wake-up per 20 ms frame; instead what arrives together is gathered
and handed over together when the `Burst` ends. Closing (the generation's end or a barge-in
cut) hands over what was gathered first, so every frame stays in the generation it arrived in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal

from livekit import rtc
from livekit.agents import llm, utils


class Burst:
    """What one read from the socket delivered, handed to LiveKit together.

    Where the read ends is known to a transport that says so (`end`, called by the lean
    socket after each chunk); aiohttp's reader does not say, so there the burst ends with a
    ``call_soon`` callback: before the loop next waits for I/O, so nothing that has arrived
    waits for anything that has not. Inputs that do not come from the socket (an API call, a
    timer) end the burst they may have added to themselves.

    ``settle`` runs first: the session's adapter feeds the engine what it held back for the
    burst (coalesced transcript deltas), which may add to the streams flushed after it.
    """

    __slots__ = ("_dirty", "_ending", "_handle", "_loop", "_settle", "ended_by_transport")

    def __init__(self, settle: Callable[[], None] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._settle = settle
        self._dirty: list[GenerationStreams] = []
        self._handle: asyncio.Handle | None = None
        self._ending = False
        self.ended_by_transport = False  # no callback needed: the transport calls `end`

    def touch(self, streams: GenerationStreams) -> None:
        """``streams`` has its first piece since its last flush."""
        self._dirty.append(streams)
        self.schedule()

    def schedule(self) -> None:
        if self._handle is None and not self._ending and not self.ended_by_transport:
            self._handle = self._loop.call_soon(self.end)

    def end(self) -> None:
        if self._handle is not None:
            self._handle.cancel()  # ended before its callback: the callback is not needed
            self._handle = None
        self._ending = True  # what the settle adds joins this hand-over
        try:
            if self._settle is not None:
                self._settle()
        finally:  # a settle that raised (a bug, a listener) does not strand what arrived
            self._ending = False
            dirty, self._dirty = self._dirty, []
            for streams in dirty:
                streams.flush()


class GenerationStreams:
    """Text, audio and function-call channels of one generation, closed exactly once."""

    __slots__ = (
        "_audio",
        "_burst",
        "_text",
        "audio_ch",
        "closed",
        "function_ch",
        "id",
        "message_ch",
        "rate",
        "text_ch",
    )

    def __init__(self, gen_id: str, rate: int, audio: bool, burst: Burst) -> None:
        self.id = gen_id
        self.rate = rate
        self.closed = False
        self._burst = burst
        self._audio: list[bytes] = []  # PCM arrived in this burst, not yet handed over
        self._text: list[str] = []
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
            if not self._audio and not self._text:
                self._burst.touch(self)
            self._audio.append(data)

    def text(self, text: str) -> None:
        if not self.closed:
            if not self._audio and not self._text:
                self._burst.touch(self)
            self._text.append(text)

    def flush(self) -> None:
        """Hand what arrived since the last flush to LiveKit: one frame, one text piece."""
        if self._audio:
            pcm = self._audio[0] if len(self._audio) == 1 else b"".join(self._audio)
            self._audio.clear()
            self.audio_ch.send_nowait(rtc.AudioFrame(pcm, self.rate, 1, len(pcm) // 2))
        if self._text:
            self.text_ch.send_nowait("".join(self._text))
            self._text.clear()

    def call(self, call: llm.FunctionCall) -> None:
        if not self.closed:
            self.flush()  # the text said before the call reaches LiveKit before it
            self.function_ch.send_nowait(call)

    def close(self) -> None:
        if not self.closed:
            self.flush()
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


def empty_generation(response_id: str) -> llm.GenerationCreatedEvent:
    """A generation with nothing in it: what a request answered by another's reply resolves
    with, so LiveKit ends that speech quietly (no error, no empty message)."""
    message_ch = utils.aio.Chan[llm.MessageGeneration]()
    function_ch = utils.aio.Chan[llm.FunctionCall]()
    message_ch.close()
    function_ch.close()
    return llm.GenerationCreatedEvent(
        message_stream=message_ch,
        function_stream=function_ch,
        user_initiated=True,
        response_id=response_id,
    )
