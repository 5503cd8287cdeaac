"""The lean WebSocket client's parser and writer on a fake transport (issue 15).

Any split of a valid frame stream yields the same messages; every protocol violation a hostile
server can commit fails the connection with RFC 6455's close code and ends `serve`, without an
exception reaching the event loop; writes complete without suspending unless they must drain.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ultravox_fsm.io import lean_socket
from ultravox_fsm.io.lean_socket import LeanSocket
from ultravox_fsm.io.outbox import Outbox

from .lean_wire import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    Consumer,
    FakeTransport,
    client_frames,
    close_frame,
    frame,
    serving,
)


async def ended(task: asyncio.Task[None]) -> None:
    await asyncio.wait_for(task, 1)


# --- delivery ---------------------------------------------------------------------------------


async def test_each_chunk_is_delivered_whole_then_one_burst_end() -> None:
    sock, _, got, task = await serving()
    sock.data_received(frame(TEXT, b"one") + frame(BINARY, b"\x01\x02") + frame(TEXT, b"two"))
    sock.data_received(frame(BINARY, b"\x03\x04"))
    assert got.got == ["one", b"\x01\x02", "two", "|", b"\x03\x04", "|"]
    assert not task.done()


async def test_a_chunk_that_completes_no_message_ends_no_burst() -> None:
    sock, transport, got, _ = await serving()
    data = frame(TEXT, b"x" * 300)
    sock.data_received(data[:3])  # inside the 4-byte header
    sock.data_received(data[3:100])
    assert got.got == []
    sock.data_received(data[100:] + frame(TEXT, b"y")[:1])
    assert got.got == ["x" * 300, "|"]
    sock.data_received(frame(TEXT, b"y")[1:] + frame(PING, b"p"))
    sock.data_received(frame(PING, b"q"))  # a control frame alone is no message
    assert got.got == ["x" * 300, "|", "y", "|"]
    assert transport.frames() == [(PONG, b"p"), (PONG, b"q")]


async def test_a_frame_fed_byte_by_byte_arrives_once_with_its_burst_end() -> None:
    sock, _, got, _ = await serving()
    data = frame(BINARY, bytes(range(200)) * 400)  # a 64-bit length header
    for i in range(len(data) - 1):
        sock.data_received(data[i : i + 1])
    assert got.got == []
    sock.data_received(data[-1:])
    assert got.got == [bytes(range(200)) * 400, "|"]


async def test_fragments_are_reassembled_with_control_frames_between_them() -> None:
    sock, transport, got, _ = await serving()
    text = "héllo wörld".encode()
    sock.data_received(
        frame(TEXT, text[:2], fin=False)  # splits the two-byte é: valid only once whole
        + frame(PING, b"between")
        + frame(CONT, text[2:9], fin=False)
        + frame(PONG, b"ignored")
        + frame(CONT, text[9:])
        + frame(BINARY, b"b1", fin=False)
        + frame(CONT, b"b2")
    )
    assert got.got == ["héllo wörld", b"b1b2", "|"]
    assert transport.frames() == [(PONG, b"between")]


async def test_a_ping_is_answered_with_its_payload() -> None:
    sock, transport, got, _ = await serving()
    sock.data_received(frame(PING, b"") + frame(PING, b"x" * 125))
    assert transport.frames() == [(PONG, b""), (PONG, b"x" * 125)]
    assert got.got == []


async def test_data_that_came_before_serve_is_delivered_as_one_burst() -> None:
    sock = LeanSocket()
    transport = FakeTransport()
    transport.protocol = sock
    sock.connection_made(transport)
    sock.data_received(frame(TEXT, b"early") + frame(BINARY, b"ab")[:2])
    sock.data_received(frame(BINARY, b"ab")[2:])
    got = Consumer()
    task = asyncio.create_task(sock.serve(got.text, got.audio, got.burst_end))
    await asyncio.sleep(0)
    assert got.got == ["early", b"ab", "|"]
    sock.data_received(frame(TEXT, b"later"))
    assert got.got[-2:] == ["later", "|"]
    with pytest.raises(RuntimeError):
        await sock.serve(got.text, got.audio, got.burst_end)
    task.cancel()


# --- any split yields the same messages (hypothesis) --------------------------------------------

SIZES = st.one_of(st.integers(0, 300), st.sampled_from([125, 126, 127, 65535, 65536, 70_000]))
MESSAGE = st.tuples(st.booleans(), SIZES, st.integers(1, 4), st.booleans())


def payload(is_text: bool, size: int, seed: int) -> str | bytes:
    """``size`` characters of mixed widths (fragments then split characters), or bytes."""
    if is_text:
        return ("aé€𝄞" * (size // 4 + 2))[seed % 4 : seed % 4 + size]
    return (bytes(range(256)) * (size // 256 + 2))[seed % 256 : seed % 256 + size]


@given(messages=st.lists(MESSAGE, max_size=12), data=st.data())
async def test_any_split_of_a_valid_stream_yields_the_same_messages(
    messages: list[tuple[bool, int, int, bool]], data: st.DataObject
) -> None:
    stream = b""
    expected: list[str | bytes] = []
    pings: list[bytes] = []
    for seed, (is_text, size, parts, ping) in enumerate(messages):
        message = payload(is_text, size, seed)
        expected.append(message)
        body = message.encode() if isinstance(message, str) else message
        cuts = sorted({len(body) * k // parts for k in range(1, parts)})
        pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
        for i, piece in enumerate(pieces):
            opcode = (TEXT if is_text else BINARY) if i == 0 else CONT
            stream += frame(opcode, piece, fin=i == len(pieces) - 1)
            if ping and i == 0:  # a control frame between fragments (or messages)
                pings.append(bytes([seed]) * (seed * 10 % 126))
                stream += frame(PING, pings[-1])
    splits = data.draw(st.lists(st.integers(0, len(stream)), max_size=20).map(sorted))
    sock, transport, got, task = await serving()
    for a, b in zip([0, *splits], [*splits, len(stream)], strict=True):
        before = len(got.got)
        sock.data_received(stream[a:b])
        new = got.got[before:]
        if new:  # a chunk that delivered anything ends with exactly one burst end
            assert new[-1] == "|" and new.count("|") == 1
    assert got.messages() == expected
    assert [p for op, p in transport.frames() if op == PONG] == pings
    assert not task.done() and sock.close_code is None
    task.cancel()


# --- a hostile server: each violation fails the connection with its code -------------------------

HOSTILE = {
    "masked server frame": (frame(TEXT, b"hi", mask=b"abcd"), 1002),
    "reserved bit 1": (frame(TEXT, b"hi", rsv=4), 1002),
    "reserved bit 2": (frame(BINARY, b"hi", rsv=2), 1002),
    "reserved bit 3": (frame(PING, b"", rsv=1), 1002),
    "unknown data opcode": (frame(0x3, b"x"), 1002),
    "unknown control opcode": (frame(0xB, b"x"), 1002),
    "control frame over 125 bytes": (frame(PING, b"x" * 126), 1002),
    "fragmented control frame": (frame(PING, b"x", fin=False), 1002),
    "new message inside a fragmented one": (
        frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"),
        1002,
    ),
    "continuation with nothing open": (frame(CONT, b"x"), 1002),
    "64-bit length with the top bit set": (frame(BINARY, length=1 << 63, width=10), 1002),
    "message over max_msg_size": (frame(BINARY, length=1025, width=4), 1009),
    "fragments over max_msg_size": (
        frame(BINARY, b"x" * 1000, fin=False) + frame(CONT, length=25, width=2),
        1009,
    ),
    "invalid UTF-8 text": (frame(TEXT, b"ok \xff"), 1007),
    "invalid UTF-8 across fragments": (frame(TEXT, b"\xc3", fin=False) + frame(CONT, b"("), 1007),
    "invalid UTF-8 close reason": (close_frame(1000, b"\xed\xa0\x80"), 1007),
    "close frame of one byte": (frame(CLOSE, b"\x03"), 1002),
    "close code 999": (close_frame(999), 1002),
    "close code 1005": (close_frame(1005), 1002),
    "close code 1006": (close_frame(1006), 1002),
    "close code 1015": (close_frame(1015), 1002),
    "close code 2999": (close_frame(2999), 1002),
    "close code 5000": (close_frame(5000), 1002),
}


@pytest.mark.parametrize("case", list(HOSTILE))
async def test_a_protocol_violation_fails_the_connection_with_its_code(case: str) -> None:
    bad, code = HOSTILE[case]
    sock, transport, got, task = await serving(max_msg_size=1024)
    # Delivered before the violation in the same chunk: kept, and its burst ended.
    sock.data_received(frame(TEXT, b"before") + bad + frame(TEXT, b"after"))
    assert got.got == ["before", "|"]
    assert transport.frames() == [(CLOSE, code.to_bytes(2, "big"))]
    assert transport.closing and sock.closed and sock.close_code == code
    await ended(task)
    sock.data_received(frame(TEXT, b"too late"))  # whatever comes after is dropped
    assert got.got == ["before", "|"]
    with pytest.raises(ConnectionResetError):
        await sock.send_str("x")


async def test_a_too_large_message_fails_from_its_header_alone() -> None:
    sock, transport, _, task = await serving(max_msg_size=1 << 20)
    sock.data_received(frame(BINARY, length=(1 << 20) + 1, width=10))  # no payload at all
    assert sock.close_code == 1009
    assert transport.frames() == [(CLOSE, (1009).to_bytes(2, "big"))]
    await ended(task)


async def test_exactly_max_msg_size_is_accepted() -> None:
    sock, _, got, _ = await serving(max_msg_size=1000)
    sock.data_received(frame(BINARY, b"x" * 400, fin=False) + frame(CONT, b"y" * 600))
    assert got.messages() == [b"x" * 400 + b"y" * 600]


async def test_a_bug_in_the_parser_fails_with_1011_instead_of_reaching_the_loop(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sock, transport, _, task = await serving()

    def broken(self: LeanSocket, data: bytes) -> None:
        raise IndexError("a bug")

    monkeypatch.setattr(LeanSocket, "_parse", broken)
    with caplog.at_level(logging.ERROR, "ultravox_fsm"):
        sock.data_received(frame(TEXT, b"x"))
    assert sock.close_code == 1011 and transport.closing
    assert "WebSocket reader failed" in caplog.text
    await ended(task)


# --- the server's close -------------------------------------------------------------------------


async def test_a_server_close_is_echoed_and_ends_serve_with_its_code() -> None:
    sock, transport, got, task = await serving()
    sock.data_received(frame(TEXT, b"last") + close_frame(4000, b"bye") + frame(TEXT, b"x"))
    assert got.got == ["last", "|"]
    assert transport.frames() == [(CLOSE, (4000).to_bytes(2, "big"))]
    await ended(task)
    assert sock.close_code == 4000 and transport.closing
    await sock.close()  # idempotent: nothing more is written
    assert len(transport.frames()) == 1


async def test_a_close_without_a_code_is_1005_and_echoed_empty() -> None:
    sock, transport, _, task = await serving()
    sock.data_received(close_frame(None))
    await ended(task)
    assert sock.close_code == 1005
    assert transport.frames() == [(CLOSE, b"")]


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1011, 1014, 3000, 4999])
async def test_close_codes_a_peer_may_send_are_accepted(code: int) -> None:
    sock, _, _, task = await serving()
    sock.data_received(close_frame(code, "fin ✓".encode()))
    await ended(task)
    assert sock.close_code == code


async def test_a_connection_lost_without_a_close_frame_is_1006() -> None:
    sock, _, got, task = await serving()
    sock.data_received(frame(TEXT, b"a"))
    sock.eof_received()
    sock.connection_lost(ConnectionResetError())
    await ended(task)
    assert sock.close_code == 1006 and sock.closed
    assert got.got == ["a", "|"]


# --- the consumer raising -----------------------------------------------------------------------


async def test_a_raising_handler_is_reported_and_the_reader_goes_on() -> None:
    got = Consumer()
    calls: list[str] = []

    def text(data: str) -> None:
        calls.append(data)
        if data == "bad":
            raise ValueError("cannot handle")

    def burst_end() -> None:
        calls.append("|")
        raise KeyError("burst")

    sock = LeanSocket()
    transport = FakeTransport()
    transport.protocol = sock
    sock.connection_made(transport)
    task = asyncio.create_task(sock.serve(text, got.audio, burst_end, on_error=got.errors.append))
    await asyncio.sleep(0)
    sock.data_received(frame(TEXT, b"bad") + frame(TEXT, b"good"))
    sock.data_received(frame(TEXT, b"next"))
    assert calls == ["bad", "good", "|", "next", "|"]
    assert [type(e) for e in got.errors] == [ValueError, KeyError, KeyError]
    assert not task.done() and sock.close_code is None
    task.cancel()


async def test_an_error_handler_that_raises_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    def boom(data: bytes) -> None:
        raise ValueError("audio")

    def report(exc: Exception) -> None:
        raise RuntimeError("report")

    sock = LeanSocket()
    transport = FakeTransport()
    transport.protocol = sock
    sock.connection_made(transport)
    task = asyncio.create_task(sock.serve(lambda _: None, boom, lambda: None, on_error=report))
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, "ultravox_fsm"):
        sock.data_received(frame(BINARY, b"ab") + frame(BINARY, b"cd"))
    assert caplog.text.count("error handler raised") == 2
    assert not task.done()
    task.cancel()


# --- writing ------------------------------------------------------------------------------------


def completes_at_once(coro: object) -> None:
    with pytest.raises(StopIteration):
        coro.send(None)  # type: ignore[attr-defined]


@pytest.mark.parametrize("size", [0, 1, 3, 125, 126, 65535, 65536, 100_003])
async def test_frames_are_masked_and_sized_as_rfc_6455_says(size: int) -> None:
    sock, transport, _, _ = await serving()
    data = os.urandom(size)
    completes_at_once(sock.send_bytes(data))
    completes_at_once(sock.send_str("é" * (size // 2)))
    assert transport.frames() == [(BINARY, data), (TEXT, ("é" * (size // 2)).encode())]
    header = 2 if size < 126 else 4 if size < 65536 else 10
    assert len(transport.written) >= header + 4 + size


def test_the_fallback_mask_masks_as_aiohttps_does() -> None:
    from aiohttp._websocket.helpers import websocket_mask

    for size in (1, 2, 3, 4, 5, 640, 1001):
        data = bytearray(random.getrandbits(8) for _ in range(size))
        mine, theirs = bytearray(data), bytearray(data)
        lean_socket._xor_mask(b"\x9a\x01\xff\x3c", mine)
        websocket_mask(b"\x9a\x01\xff\x3c", theirs)
        assert mine == theirs
        lean_socket._xor_mask(b"\x9a\x01\xff\x3c", mine)
        assert mine == data


async def test_masks_differ_between_frames() -> None:
    sock, transport, _, _ = await serving()
    for _ in range(8):
        completes_at_once(sock.send_bytes(b"same"))
    masks = {bytes(transport.written[i + 2 : i + 6]) for i in range(0, len(transport.written), 10)}
    assert len(masks) > 1


async def test_a_write_over_the_high_water_mark_waits_for_the_drain() -> None:
    sock, transport, _, _ = await serving()
    sock.pause_writing()
    send = sock.send_bytes(b"a")
    waiting = send.send(None)
    assert isinstance(waiting, asyncio.Future) and not waiting.done()
    assert transport.frames() == [(BINARY, b"a")]  # written at once all the same
    second = asyncio.ensure_future(sock.send_str("b"))
    await asyncio.sleep(0)
    assert not second.done()
    sock.resume_writing()
    assert waiting.done()
    completes_at_once(send)
    await asyncio.wait_for(second, 1)
    completes_at_once(sock.send_bytes(b"c"))  # not paused any more


async def test_a_drain_that_never_comes_fails_when_the_connection_is_lost() -> None:
    sock, _, _, task = await serving()
    sock.pause_writing()
    send = asyncio.ensure_future(sock.send_bytes(b"a"))
    await asyncio.sleep(0)
    sock.connection_lost(None)
    with pytest.raises(ConnectionResetError):
        await send
    await ended(task)


async def test_the_outbox_steps_lean_writes_without_a_task_and_keeps_order() -> None:
    sock, transport, _, _ = await serving()
    box = Outbox(max_audio_bytes=1_000_000)
    box.attach(sock)
    box.put(b"1")
    box.put("2")
    assert transport.frames() == [(BINARY, b"1"), (TEXT, b"2")]
    sock.pause_writing()
    box.put(b"3")  # written, then waits for the drain
    box.put(b"4")  # queued behind it
    assert transport.frames()[-1] == (BINARY, b"3")
    sock.resume_writing()
    for _ in range(5):
        await asyncio.sleep(0)
    assert transport.frames()[-2:] == [(BINARY, b"3"), (BINARY, b"4")]
    box.put(b"5")
    assert transport.frames()[-1] == (BINARY, b"5")


async def test_the_outbox_drops_frames_for_a_closed_lean_socket() -> None:
    sock, transport, _, task = await serving()
    box = Outbox(max_audio_bytes=1_000_000)
    box.attach(sock)
    sock.data_received(close_frame(1000))
    await ended(task)
    box.put(b"late")  # ConnectionResetError, caught by the outbox like aiohttp's
    assert transport.frames() == [(CLOSE, (1000).to_bytes(2, "big"))]


# --- our close ----------------------------------------------------------------------------------


async def test_close_sends_1000_and_returns_on_the_echo(monkeypatch: pytest.MonkeyPatch) -> None:
    sock, transport, got, task = await serving()
    closing = asyncio.ensure_future(sock.close())
    await asyncio.sleep(0)
    assert transport.frames() == [(CLOSE, (1000).to_bytes(2, "big"))]
    assert sock.closed and not closing.done()
    sock.data_received(frame(TEXT, b"stale") + close_frame(1000))
    await asyncio.wait_for(closing, 0.5)
    await ended(task)
    assert got.got == []  # data after our close is not delivered
    assert sock.close_code == 1000 and transport.closing
    assert len(transport.frames()) == 1  # the echo is not echoed
    await sock.close()


async def test_close_gives_up_on_a_silent_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lean_socket, "CLOSE_TIMEOUT", 0.05)
    sock, transport, _, task = await serving()
    await asyncio.wait_for(sock.close(4001), 1)
    assert transport.frames() == [(CLOSE, (4001).to_bytes(2, "big"))]
    assert transport.closing and sock.close_code == 1006
    await ended(task)


async def test_close_after_the_peer_vanished_returns_at_once() -> None:
    sock, transport, _, task = await serving()
    transport.close()
    await asyncio.sleep(0)
    await asyncio.wait_for(sock.close(), 0.1)
    assert transport.frames() == [] and sock.close_code == 1006
    await ended(task)


async def test_close_without_serve_still_sees_the_echo() -> None:
    sock = LeanSocket()
    transport = FakeTransport()
    transport.protocol = sock
    sock.connection_made(transport)
    sock.data_received(frame(TEXT, b"never delivered"))  # before serve: held
    closing = asyncio.ensure_future(sock.close())
    await asyncio.sleep(0)
    sock.data_received(close_frame(1000))
    await asyncio.wait_for(closing, 0.5)
    assert sock.close_code == 1000
    got = Consumer()
    await asyncio.wait_for(sock.serve(got.text, got.audio, got.burst_end), 0.5)
    assert got.got == []


async def test_concurrent_closes_both_return() -> None:
    sock, transport, _, _ = await serving()
    first = asyncio.ensure_future(sock.close())
    second = asyncio.ensure_future(sock.close())
    await asyncio.sleep(0)
    sock.data_received(close_frame(1000))
    await asyncio.wait_for(asyncio.gather(first, second), 0.5)
    assert len(transport.frames()) == 1


def test_client_frames_helper_refuses_unmasked_frames() -> None:
    with pytest.raises(AssertionError):
        client_frames(frame(TEXT, b"x"))


# --- a server that does not read ----------------------------------------------------------------


async def test_pings_while_writes_wait_get_one_pong_for_the_latest_when_they_drain() -> None:
    """A server that stops reading but floods pings must not grow our write buffer: aiohttp
    stops reading until its pong drains; here only the latest ping is answered (§5.5.3 allows
    it), once the transport drains."""
    sock, transport, _, _ = await serving()
    sock.pause_writing()
    for i in range(1000):
        sock.data_received(frame(PING, b"%d" % i))
    assert transport.frames() == []
    sock.resume_writing()
    assert transport.frames() == [(PONG, b"999")]
    sock.data_received(frame(PING, b"now"))
    assert transport.frames()[-1] == (PONG, b"now")


async def test_a_message_in_tiny_fragments_costs_its_size_not_a_list_entry_per_fragment() -> None:
    """max_msg_size bounds what a fragmented message holds: empty or one-byte continuation
    frames must not cost an object (or a list slot) each, without bound."""
    import tracemalloc

    sock, _, got, _ = await serving(max_msg_size=1024)
    sock.data_received(frame(BINARY, b"a", fin=False))
    empty = frame(CONT, b"", fin=False) * 20_000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(5):
            sock.data_received(empty)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 64 * 1024, f"{held} bytes held for a 1-byte message"
    sock.data_received(frame(CONT, b"b"))
    assert got.messages() == [b"ab"]


class _CountingFind(bytearray):
    """A buffer that counts the bytes its ``find`` is asked to scan."""

    scanned = 0

    def find(self, sub: object, start: int = 0, end: int | None = None) -> int:  # type: ignore[override]
        stop = len(self) if end is None else min(end, len(self))
        self.scanned += max(0, stop - start)
        return super().find(sub, start, stop)  # type: ignore[arg-type]


async def test_a_handshake_answer_dribbled_byte_by_byte_is_scanned_once() -> None:
    """A server sending its headers a byte at a time must not make each byte rescan all that
    came before (64 KiB of headers: 2 GiB of comparisons, a second of CPU)."""
    sock = LeanSocket()
    transport = FakeTransport()
    transport.protocol = sock
    sock.connection_made(transport)
    sock._buf = buf = _CountingFind()
    handshake = sock._handshake = asyncio.get_running_loop().create_future()
    head = b"HTTP/1.1 101 Switching Protocols\r\nX-Pad: " + b"a" * 20_000 + b"\r\nUpgrade: x"
    for i in range(len(head)):
        sock.data_received(head[i : i + 1])
    sock.data_received(b"\r\n\r\n" + frame(TEXT, b"early"))
    assert handshake.result() == head
    assert buf.scanned < 8 * len(head)  # the new byte and the 3 before it, each time
    assert bytes(buf) == frame(TEXT, b"early")
