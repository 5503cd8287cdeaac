"""The lean WebSocket client on real sockets: against aiohttp's server, against servers that
answer the handshake wrongly, and against the stand-in in burst mode (issue 15).

These do not depend on the suite's transport switch, so ``make test`` runs them once.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import shutil
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from ultravox_fsm.io import lean_socket
from ultravox_fsm.io.lean_socket import (
    MAX_HEADERS,
    HandshakeError,
    HandshakeStatus,
    LeanSocket,
    connect,
)
from ultravox_fsm.io.ultravox import CallUnreachable, open_socket
from ultravox_fsm.testing.server import Reply, Scenario, StandInServer

from ..unit.lean_wire import CONT, TEXT, Consumer, frame

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def aiohttp_server(
    handler: Handler, context: ssl.SSLContext | None = None
) -> AsyncIterator[str]:
    """An aiohttp WebSocket server on a free 127.0.0.1 port; yields its ws:// (wss://) URL."""
    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    assert site._server is not None
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    try:
        yield f"{'wss' if context else 'ws'}://127.0.0.1:{port}/ws"
    finally:
        await runner.cleanup()


async def serve(sock: LeanSocket, consumer: Consumer | None = None) -> Consumer:
    got = consumer or Consumer()
    await asyncio.wait_for(sock.serve(got.text, got.audio, got.burst_end), 5)
    return got


# --- against aiohttp's server -------------------------------------------------------------------


async def test_fragmented_text_from_the_server_arrives_whole() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        assert request.transport is not None  # aiohttp cannot fragment: write the frames raw
        request.transport.write(
            frame(TEXT, b"frag", fin=False)
            + frame(CONT, b"men", fin=False)
            + frame(CONT, "té ✓".encode())
        )
        await ws.close(code=1000)
        return ws

    async with aiohttp_server(handler) as url:
        sock = await connect(url, timeout=5)
        got = await serve(sock)
    assert got.messages() == ["fragmenté ✓"]
    assert sock.close_code == 1000


async def test_a_server_ping_is_answered_with_a_pong_carrying_its_payload() -> None:
    pongs: list[bytes] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        await ws.ping(b"are you there")
        msg = await ws.receive()
        if msg.type is WSMsgType.PONG:
            pongs.append(msg.data)
        await ws.close()
        return ws

    async with aiohttp_server(handler) as url:
        sock = await connect(url, timeout=5)
        await serve(sock)
    assert pongs == [b"are you there"]


async def test_a_server_close_with_4000_and_a_reason_is_echoed() -> None:
    server_side: list[tuple[int | None, float]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str("goodbye")
        started = time.monotonic()
        await ws.close(code=4000, message=b"the call ended")  # waits for our echo
        server_side.append((ws.close_code, time.monotonic() - started))
        return ws

    async with aiohttp_server(handler) as url:
        sock = await connect(url, timeout=5)
        got = await serve(sock)
        for _ in range(100):
            if server_side:
                break
            await asyncio.sleep(0.01)
    assert got.messages() == ["goodbye"]
    assert sock.close_code == 4000 and sock.closed
    [(echoed, seconds)] = server_side
    assert echoed == 4000 and seconds < 1  # the echo came, not the server's timeout


async def test_two_mebibyte_binary_messages_both_ways() -> None:
    big = bytes(range(256)) * (8 * 1024)  # 2 MiB
    received: list[int] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=4 * 1024 * 1024)
        await ws.prepare(request)
        await ws.send_bytes(big)
        msg = await ws.receive()
        received.append(len(msg.data))
        await ws.send_str(hashlib.sha256(msg.data).hexdigest())
        await ws.close()
        return ws

    async with aiohttp_server(handler) as url:
        sock = await connect(url, timeout=5)
        got = Consumer()
        reader = asyncio.create_task(serve(sock, got))
        await sock.send_bytes(big[::-1])
        await reader
    assert got.messages() == [big, hashlib.sha256(big[::-1]).hexdigest()]
    assert received == [len(big)]


async def test_our_close_handshake_completes_with_the_servers_echo() -> None:
    seen: list[tuple[WSMsgType, int | None]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for _ in ws:
            pass
        seen.append((WSMsgType.CLOSE, ws.close_code))
        return ws

    async with aiohttp_server(handler) as url:
        sock = await connect(url, timeout=5)
        got = Consumer()
        reader = asyncio.create_task(serve(sock, got))
        await sock.send_str("hello")
        started = time.monotonic()
        await sock.close()
        took = time.monotonic() - started
        await reader
        await sock.close()  # idempotent
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
    assert sock.close_code == 1000 and took < 0.9  # the echo, not the 1 s timeout
    assert seen == [(WSMsgType.CLOSE, 1000)]
    with pytest.raises(ConnectionResetError):
        await sock.send_str("after close")


async def test_a_server_that_stops_reading_makes_writes_wait_then_resume() -> None:
    reading = asyncio.Event()
    total: list[int] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        await reading.wait()
        size = 0
        async for msg in ws:
            size += len(msg.data)
        total.append(size)
        return ws

    async with aiohttp_server(handler) as url:
        sock = await connect(url, timeout=5)
        chunk = b"\0" * (256 * 1024)
        sent = 0
        waiting = None
        while sent < 256 * len(chunk):  # at most 64 MiB before the kernel buffers are full
            send = sock.send_bytes(chunk)
            sent += len(chunk)
            try:
                waiting = send.send(None)
            except StopIteration:
                continue
            break
        assert isinstance(waiting, asyncio.Future), "the writes never had to wait"
        reading.set()
        await asyncio.wait_for(waiting, 10)
        with pytest.raises(StopIteration):
            send.send(None)
        await sock.close()
        for _ in range(500):
            if total:
                break
            await asyncio.sleep(0.01)
    assert total == [sent]


async def test_close_lets_go_of_a_socket_whose_peer_never_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A peer that stopped reading never takes what is buffered: close() must not leave the
    socket open (and its buffer held) until it does, as a graceful transport close would."""
    monkeypatch.setattr(lean_socket, "CLOSE_TIMEOUT", 0.1)
    release = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        key = next(
            ln.split(":", 1)[1].strip()
            for ln in head.decode().split("\r\n")
            if ln.lower().startswith("sec-websocket-key:")
        )
        writer.write(upgrade({"sec-websocket-key": key}))
        await release.wait()  # never reads again
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        sock = await connect(f"ws://127.0.0.1:{port}/", timeout=5)
        lost = asyncio.get_running_loop().create_future()
        gone = sock.connection_lost

        def connection_lost(exc: Exception | None) -> None:
            gone(exc)
            lost.set_result(None)

        sock.connection_lost = connection_lost  # type: ignore[method-assign]
        send = sock.send_bytes(b"\0" * 65536)
        for _ in range(2048):  # at most 128 MiB before the kernel buffers are full
            try:
                send.send(None)
            except StopIteration:
                send = sock.send_bytes(b"\0" * 65536)
                continue
            break
        send.close()
        await asyncio.wait_for(sock.close(), 2)
        await asyncio.wait_for(lost, 2)  # the socket is gone, not waiting for the peer
    finally:
        release.set()
        server.close()
        await server.wait_closed()


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: no certificate for the wss test")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


async def test_wss_verifies_the_server_certificate(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str("secret")
        await ws.close()
        return ws

    async with aiohttp_server(handler, server_context) as url:
        with pytest.raises(ssl.SSLCertVerificationError):  # the default context trusts no one here
            await connect(url, timeout=5)
        trusting = ssl.create_default_context(cafile=str(cert))
        sock = await connect(url, timeout=5, ssl_context=trusting)
        got = await serve(sock)
    assert got.messages() == ["secret"]


# --- servers that answer the handshake wrongly --------------------------------------------------

Answer = Callable[[dict[str, str]], bytes]


def accept_for(key: str) -> str:
    return base64.b64encode(
        hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
    ).decode()


def upgrade(headers: dict[str, str], extra: str = "", *, accept: str | None = None) -> bytes:
    accept = accept if accept is not None else accept_for(headers["sec-websocket-key"])
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
    ).encode()


@asynccontextmanager
async def raw_server(answer: Answer | None) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A TCP server that reads one request and writes ``answer(headers)`` (None: nothing)."""
    requests: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            requests.append(head)
            lines = head.decode().split("\r\n")[1:]
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (ln.partition(":") for ln in lines if ln)
            }
            if answer is not None:
                writer.write(answer(headers))
                await writer.drain()
                if (await reader.read(64))[:1] == b"\x88":  # the client's close: echo it
                    writer.write(b"\x88\x02\x03\xe8")
            await reader.read()  # until the client goes
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"ws://127.0.0.1:{port}/calls/abc/server_web_socket?clientVersion=x%2F1&a=b", requests
    finally:
        server.close()
        await server.wait_closed()


async def test_the_upgrade_request_is_as_rfc_6455_asks() -> None:
    async with raw_server(upgrade) as (url, requests):
        sock = await connect(url, timeout=5)
        await sock.close()
    [request] = requests
    lines = request.decode().split("\r\n")
    port = url.split(":")[2].split("/")[0]
    assert lines[0] == "GET /calls/abc/server_web_socket?clientVersion=x%2F1&a=b HTTP/1.1"
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    assert headers["host"] == f"127.0.0.1:{port}"
    assert headers["upgrade"] == "websocket" and headers["connection"].lower() == "upgrade"
    assert headers["sec-websocket-version"] == "13"
    assert len(base64.b64decode(headers["sec-websocket-key"])) == 16
    assert "sec-websocket-extensions" not in headers  # no permessage-deflate offered
    assert "sec-websocket-protocol" not in headers


async def test_each_connection_gets_a_new_key() -> None:
    async with raw_server(upgrade) as (url, requests):
        for _ in range(3):
            await (await connect(url, timeout=5)).close()
    keys = {r.split(b"Sec-WebSocket-Key: ")[1].split(b"\r\n")[0] for r in requests}
    assert len(keys) == 3


async def test_tokens_are_case_insensitive_and_connection_may_list_several() -> None:
    def answer(headers: dict[str, str]) -> bytes:
        return (
            "HTTP/1.1 101 OK\r\nupgrade: WebSocket\r\nCONNECTION: keep-alive, Upgrade\r\n"
            f"sec-websocket-accept: {accept_for(headers['sec-websocket-key'])}\r\n\r\n"
        ).encode()

    async with raw_server(answer) as (url, _):
        sock = await connect(url, timeout=5)
        await sock.close()


async def test_frames_in_the_same_write_as_the_101_are_delivered() -> None:
    def answer(headers: dict[str, str]) -> bytes:
        return upgrade(headers) + frame(TEXT, b"right away") + frame(0x8, b"\x03\xe8")

    async with raw_server(answer) as (url, _):
        sock = await connect(url, timeout=5)
        got = await serve(sock)
    assert got.got == ["right away", "|"]
    assert sock.close_code == 1000


WRONG: dict[str, Answer] = {
    "a wrong accept": lambda h: upgrade(h, accept="dGhlIHNhbXBsZSBub25jZQ=="),
    "no Upgrade": lambda h: upgrade(h).replace(b"Upgrade: websocket\r\n", b""),
    "Upgrade: h2c": lambda h: upgrade(h).replace(b"Upgrade: websocket", b"Upgrade: h2c"),
    "Connection: close": lambda h: upgrade(h).replace(b"Connection: Upgrade", b"Connection: close"),
    "an extension we did not offer": lambda h: upgrade(
        h, "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    ),
    "a subprotocol we did not ask for": lambda h: upgrade(h, "Sec-WebSocket-Protocol: chat\r\n"),
    "not HTTP": lambda h: b"SSH-2.0-OpenSSH\r\n\r\n",
    "a malformed header": lambda h: upgrade(h, "no colon here\r\n"),
    f"headers over {MAX_HEADERS} bytes": lambda h: (
        b"HTTP/1.1 101 OK\r\n" + b"X-Pad: " + b"x" * MAX_HEADERS + b"\r\n\r\n"
    ),
}


@pytest.mark.parametrize("case", list(WRONG))
async def test_a_wrong_handshake_answer_is_refused(case: str) -> None:
    async with raw_server(WRONG[case]) as (url, _):
        with pytest.raises(HandshakeError) as raised:
            await connect(url, timeout=5)
    assert not isinstance(raised.value, HandshakeStatus)


async def test_a_non_101_answer_carries_its_status() -> None:
    def forbidden(headers: dict[str, str]) -> bytes:
        return b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"

    async with raw_server(forbidden) as (url, _):
        with pytest.raises(HandshakeStatus) as raised:
            await connect(url, timeout=5)
    assert raised.value.status == 403


async def test_a_server_that_hangs_up_during_the_handshake() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching")
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(HandshakeError, match="closed the connection"):
            await connect(f"ws://127.0.0.1:{port}/", timeout=5)
    finally:
        server.close()
        await server.wait_closed()


async def test_the_timeout_covers_the_handshake() -> None:
    async with raw_server(None) as (url, _):
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await connect(url, timeout=0.2)
    assert time.monotonic() - started < 1


async def test_a_connect_cancelled_as_the_connection_opens_leaves_no_error_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The session closing (or the timeout) while the TCP connection is being made: the
    connection is closed, and nothing reaches the event loop's exception handler."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: reported.append(context))
    made = LeanSocket.connection_made
    task: asyncio.Task[LeanSocket] | None = None

    def cancel_on_connect(sock: LeanSocket, transport: asyncio.BaseTransport) -> None:
        made(sock, transport)
        assert task is not None
        task.cancel()

    monkeypatch.setattr(LeanSocket, "connection_made", cancel_on_connect)
    try:
        async with raw_server(None) as (url, _):
            task = asyncio.create_task(connect(url, timeout=5))
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.sleep(0.05)
            gc.collect()
    finally:
        loop.set_exception_handler(previous)
    assert reported == []


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1/x", "ws://user:secret@127.0.0.1/x", "ws:///no-host"]
)
async def test_urls_this_client_cannot_use_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        await connect(url, timeout=1)


# --- open_socket: the same failures, the same rules as aiohttp ----------------------------------


async def test_open_socket_maps_lean_failures_to_call_unreachable() -> None:
    async with aiohttp.ClientSession() as http:
        async with raw_server(lambda h: b"HTTP/1.1 404 Not Found\r\n\r\n") as (url, _):
            with pytest.raises(CallUnreachable, match="404"):
                await open_socket(http, url, timeout=5, transport="lean")
        async with raw_server(None) as (url, _):
            with pytest.raises(CallUnreachable, match="TimeoutError"):
                await open_socket(http, url, timeout=0.2, transport="lean")
        with pytest.raises(CallUnreachable):  # nothing listens on port 9 (discard) here
            await open_socket(http, "ws://127.0.0.1:9/x", timeout=5, transport="lean")
        with pytest.raises(CallUnreachable, match="credentials"):  # as aiohttp's InvalidURL
            await open_socket(http, "ws://u:p@127.0.0.1:9/x", timeout=5, transport="lean")
        with pytest.raises(ValueError, match="wss is required"):  # check_join_url, first
            await open_socket(http, "ws://example.com/x", timeout=5, transport="lean")


# --- the stand-in in burst mode -----------------------------------------------------------------


async def test_a_burst_from_the_stand_in_arrives_in_a_few_chunks() -> None:
    words = " ".join(f"w{i}" for i in range(40))
    scenario = Scenario(
        greeting=None, reply=lambda _t, _tools: Reply(text=words), playback_speed=1000, burst=True
    )
    async with StandInServer(scenario) as server, aiohttp.ClientSession() as http:
        medium = {"serverWebSocket": {"inputSampleRate": 16000, "clientBufferSizeMs": 30000}}
        async with http.post(
            f"{server.base_url}/calls", json={"medium": medium}, headers={"X-API-Key": "k"}
        ) as resp:
            call = await resp.json()
        sock = await connect(call["joinUrl"], timeout=5)
        got = Consumer()
        closing: list[asyncio.Task[None]] = []

        def text(data: str) -> None:
            got.text(data)
            if '"final":true' in data.replace(" ", "") and '"agent"' in data:
                closing.append(asyncio.create_task(sock.close()))

        reader = asyncio.create_task(sock.serve(text, got.audio, got.burst_end))
        await sock.send_str('{"type":"user_text_message","text":"hi"}')
        await asyncio.wait_for(reader, 10)
    audio = [m for m in got.messages() if isinstance(m, bytes)]
    assert len(audio) == 40 * 3  # 60 ms a word, 20 ms frames
    assert got.got.count("|") < len(got.messages()) / 10  # whole bursts, not frame by frame
