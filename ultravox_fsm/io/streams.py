"""The streams of one agent message, as LiveKit consumes them."""

from __future__ import annotations

import asyncio
from typing import Literal

from livekit import rtc
from livekit.agents import llm, utils


class GenerationStreams:
    """Text, audio and function-call channels of one generation, closed exactly once."""

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
