"""Faults from the stand-in's switches: what the session does and what it tells the user."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import pytest
from livekit import rtc
from livekit.agents import APIConnectOptions, llm

from ultravox_fsm import RealtimeModel
from ultravox_fsm.errors import LocalProtocolError
from ultravox_fsm.io import supervisor
from ultravox_fsm.io.ultravox import check_join_url
from ultravox_fsm.testing.server import StandInServer

KEY = "fault-test-key"
FAST = APIConnectOptions(max_retry=3, retry_interval=0.05, timeout=0.5)


async def test_server_close_1000_ends_the_call_cleanly_without_an_error(
    server: StandInServer,
) -> None:
    rt = RealtimeModel(base_url=server.base_url, api_key=KEY, output_medium="text").session()
    errors: list[llm.RealtimeModelError] = []
    ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    rt.on("error", errors.append)
    rt.on("ultravox_call_ended", ended.set_result)
    await asyncio.wait_for(rt.generate_reply(instructions="hi"), 5)
    await server.close_sockets(1000)
    assert "1000" in await asyncio.wait_for(ended, 5)
    assert errors == []
    with pytest.raises(llm.RealtimeError, match="closed"):
        await rt.generate_reply(instructions="after the end")
    assert len(server.calls) == 1  # not a silent new call
    await rt.aclose()
    assert all(call.closed for call in server.calls.values())


async def test_three_500s_then_success(server: StandInServer) -> None:
    server.fail_next_calls = [(500, None)] * 3
    model = RealtimeModel(
        base_url=server.base_url, api_key=KEY, output_medium="text", conn_options=FAST
    )
    rt = model.session()
    errors: list[llm.RealtimeModelError] = []
    rt.on("error", errors.append)
    await asyncio.wait_for(rt.generate_reply(instructions="hi"), 5)
    assert server.create_attempts == 4
    assert [e.recoverable for e in errors] == [True, True, True]
    await rt.aclose()


async def test_slow_call_creation_times_out_and_gives_up_after_the_budget(
    server: StandInServer,
) -> None:
    server.create_delay = 1.0
    model = RealtimeModel(
        base_url=server.base_url,
        api_key=KEY,
        output_medium="text",
        conn_options=APIConnectOptions(max_retry=1, retry_interval=0.0, timeout=0.2),
    )
    rt = model.session()
    errors: list[llm.RealtimeModelError] = []
    rt.on("error", errors.append)
    with pytest.raises(llm.RealtimeError):
        await asyncio.wait_for(rt.generate_reply(instructions="hi"), 5)
    assert [e.recoverable for e in errors] == [True, False]
    assert "unreachable" in str(errors[-1].error)
    await rt.aclose()


async def test_a_tool_result_for_the_previous_call_is_not_sent_into_the_new_one(
    server: StandInServer,
) -> None:
    rt = RealtimeModel(base_url=server.base_url, api_key=KEY, output_medium="text").session()
    await asyncio.wait_for(rt.generate_reply(instructions="hi"), 5)
    await server.close_sockets(4000)  # an unexpected close: a new call follows
    await asyncio.sleep(0.2)
    with pytest.raises(LocalProtocolError, match="no such invocation"):
        await rt.send_tool_result("call_from_the_old_call", "late")
    await asyncio.sleep(0.1)
    assert server.messages("client_tool_result") == []
    assert len(server.calls) == 2
    await rt.aclose()


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("wss://voice.ultravox.ai/calls/x/server_web_socket", True),
        ("ws://127.0.0.1:8080/calls/x", True),
        ("ws://localhost/calls/x", True),
        ("ws://voice.example.com/calls/x", False),
        ("ws://standin.test:8080/calls/x", True),  # same host as the plain-http base URL
        ("http://127.0.0.1/calls/x", False),
    ],
)
def test_join_url_must_be_wss_except_on_loopback(url: str, ok: bool) -> None:
    base = "http://standin.test:8080/api"
    if ok:
        check_join_url(url, base)
    else:
        with pytest.raises(ValueError):
            check_join_url(url, base)


async def test_sockets_that_merely_connect_do_not_reset_the_retry_budget(
    server: StandInServer,
) -> None:
    server.reject_sockets = 100
    model = RealtimeModel(
        base_url=server.base_url, api_key=KEY, output_medium="text", conn_options=FAST
    )
    rt = model.session()
    errors: list[llm.RealtimeModelError] = []
    rt.on("error", errors.append)
    ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    rt.on("ultravox_call_ended", ended.set_result)
    with pytest.raises(llm.RealtimeError, match="lost before it was answered"):
        await asyncio.wait_for(rt.generate_reply(instructions="hi"), 5)
    reason = await asyncio.wait_for(ended, 5)
    assert len(server.calls) == FAST.max_retry + 1  # bounded, not forever
    assert "before a turn completed" in reason
    assert [e.recoverable for e in errors] == [False]  # one error, naming the cause
    assert "1011" in str(errors[0].error)
    await rt.aclose()


async def test_bad_frames_are_survived_and_the_session_keeps_working(
    server: StandInServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.raw_frames = [
        "{not json",
        '{"type":"transcript","role":"robot","final":true}',
        '{"type":"brand_new"}',
        '{"type":"transcript","role":"agent","text":"stale","final":true,"ordinal":-5}',
        b"",
        b"\x01",
        b"\x01\x00\x02",
    ]
    rt = RealtimeModel(base_url=server.base_url, api_key=KEY, output_medium="text").session()
    metrics: list[object] = []
    rt.on("metrics_collected", metrics.append)
    gen = await asyncio.wait_for(rt.generate_reply(instructions="still there?"), 5)
    message = await anext(aiter(gen.message_stream))
    text = "".join([t async for t in message.text_stream])
    assert text == "You said: <instruction>still there?</instruction>"
    for kind in ("malformed", "unknown message type 'brand_new'", "one-byte", "odd-length"):
        assert kind in caplog.text
    turn = [m for m in metrics if getattr(m, "request_id", "")]
    assert turn and all(not m.cancelled and m.ttft >= 0 for m in turn)  # type: ignore[attr-defined]
    await rt.aclose()


async def test_a_server_that_stops_reading_holds_back_bounded_audio_and_the_call_goes_on(
    server: StandInServer, caplog: pytest.LogCaptureFixture
) -> None:
    rt = RealtimeModel(
        base_url=server.base_url, api_key=KEY, output_medium="text", audio_buffer_ms=200
    ).session()
    await asyncio.wait_for(rt.generate_reply(instructions="ready?"), 5)
    server.stall_reads()
    frame = rtc.AudioFrame(bytes(640), 16000, 1, 320)
    pushed = 0
    while "dropping the oldest input audio" not in caplog.text and pushed < 200_000:
        for _ in range(500):
            rt.push_audio(frame)
        pushed += 500
        await asyncio.sleep(0)  # let the transport flush into the socket until it is full
    assert "dropping the oldest input audio" in caplog.text
    server.resume_reads()
    gen = await asyncio.wait_for(rt.generate_reply(instructions="still there?"), 10)
    message = await anext(aiter(gen.message_stream))
    assert "still there?" in "".join([t async for t in message.text_stream])
    received = sum(call.audio_bytes for call in server.calls.values())
    assert 0 < received < pushed * 640  # the oldest of the backlog was dropped, not all of it
    await rt.aclose()


async def test_aclose_ends_a_call_task_that_swallowed_its_cancellation(
    server: StandInServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Before 3.12, `asyncio.wait_for` returns the result instead of raising when the cancel
    comes as the awaited thing completes (both transports open the socket under it): the call
    task then joins a socket after aclose. It must close it, not serve it forever."""
    real = supervisor.open_socket
    opening = asyncio.Event()

    async def stubborn(*args: Any, **kwargs: Any) -> Any:
        opening.set()
        with contextlib.suppress(asyncio.CancelledError):  # the race: answer and cancel at once
            await asyncio.sleep(10)
        return await real(*args, **kwargs)

    monkeypatch.setattr(supervisor, "open_socket", stubborn)
    rt = RealtimeModel(base_url=server.base_url, api_key=KEY, output_medium="text").session()
    await asyncio.wait_for(opening.wait(), 5)
    await asyncio.wait_for(rt.aclose(), 5)
    await asyncio.sleep(0.1)
    assert all(call.closed for call in server.calls.values())
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
