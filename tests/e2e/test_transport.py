"""What the supervisor promises on either transport (this file runs in both passes of the suite,
``ULTRAVOX_FSM_TEST_TRANSPORT`` unset and ``=lean``)."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from ultravox_fsm import RealtimeModel
from ultravox_fsm.io.host import CallHost
from ultravox_fsm.io.lean_socket import LeanSocket
from ultravox_fsm.io.session import RealtimeSession
from ultravox_fsm.testing.server import Reply, Scenario, StandInServer

from .conftest import TRANSPORT

KEY = "transport-key"


async def reply_text(rt: RealtimeSession, instructions: str) -> str:
    gen = await asyncio.wait_for(rt.generate_reply(instructions=instructions), 5)
    message = await anext(aiter(gen.message_stream))
    return "".join([t async for t in message.text_stream])


async def test_the_call_socket_is_the_transport_the_suite_runs_on(server: StandInServer) -> None:
    rt = RealtimeModel(base_url=server.base_url, api_key=KEY, output_medium="text").session()
    try:
        await reply_text(rt, "hello")
        socket = rt._outbox._ws
        expected = LeanSocket if TRANSPORT == "lean" else aiohttp.ClientWebSocketResponse
        assert isinstance(socket, expected)
    finally:
        await rt.aclose()


async def test_a_raising_frame_handler_is_reported_once_and_the_reader_goes_on(
    server: StandInServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.raw_frames = ['{"type":"boom"}', b"\x00\x00boom", '{"type":"boom"}', b"\x00\x00boom"]
    on_text, on_audio = CallHost.on_text, CallHost.on_audio

    def text(self: CallHost, data: str) -> None:
        if "boom" in data:
            raise RuntimeError("text handler")
        on_text(self, data)

    def audio(self: CallHost, data: bytes) -> None:
        if data.endswith(b"boom"):
            raise KeyError("audio handler")
        on_audio(self, data)

    monkeypatch.setattr(CallHost, "on_text", text)
    monkeypatch.setattr(CallHost, "on_audio", audio)
    rt = RealtimeModel(base_url=server.base_url, api_key=KEY, output_medium="text").session()
    try:
        with caplog.at_level(logging.WARNING, "ultravox_fsm"):
            said = await reply_text(rt, "still there?")
    finally:
        await rt.aclose()
    assert said == "You said: <instruction>still there?</instruction>"
    dropped = [r.getMessage() for r in caplog.records if "dropped a frame" in r.getMessage()]
    assert dropped == [
        "dropped a frame that could not be handled: RuntimeError: text handler",
        "dropped a frame that could not be handled: KeyError: 'audio handler'",
    ]


async def test_burst_ends_are_reported_by_the_lean_transport_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ends: list[None] = []
    monkeypatch.setattr(CallHost, "on_burst_end", lambda self: ends.append(None))
    scenario = Scenario(
        greeting=None,
        reply=lambda _t, _tools: Reply(text=" ".join(["word"] * 30)),
        playback_speed=1000,
        burst=True,
    )
    async with StandInServer(scenario) as server:
        rt = RealtimeModel(base_url=server.base_url, api_key=KEY).session()
        try:
            gen = await asyncio.wait_for(rt.generate_reply(instructions="hi"), 5)
            message = await anext(aiter(gen.message_stream))
            frames = [f async for f in message.audio_stream]
        finally:
            await rt.aclose()
    assert frames
    if TRANSPORT == "lean":
        assert 0 < len(ends) < 30 * 3 / 4  # a few per reply, not one per 20 ms frame
    else:
        assert ends == []  # aiohttp's reader hands over frame by frame, as before
