"""A minimal RFC 6455 client over `asyncio.Protocol`: the opt-in ``transport="lean"``.

Ultravox sends a reply's audio ahead of playback, so its frames arrive in bursts. aiohttp
parses them into a queue and wakes the reader once per message; here every complete message
of a ``data_received`` chunk is parsed and handed to the consumer in one loop, followed by one
``on_burst_end()``. Only what the call socket needs: no proxies, no extensions, no
subprotocols, client side only; the standard library, plus aiohttp's compiled masking when it
can be imported. A hostile server cannot raise into the event loop: every protocol violation
fails the connection with the close code RFC 6455 §7.4.1 gives it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import random
import ssl
from collections.abc import Callable
from urllib.parse import quote, urlsplit

logger = logging.getLogger("ultravox_fsm")

MAX_HEADERS = 64 * 1024  # the handshake answer's status line and headers
CLOSE_TIMEOUT = 1.0  # Ultravox has been seen not echoing a client close frame (protocol §2.4)
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_CONT, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
# Codes a peer may put in a close frame (§7.4.1, §7.4.2); 3000-4999 are registered or private.
_SENDABLE = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})
# Everything printable in ASCII but the space: the request target is sent as given, except
# that spaces, control characters and non-ASCII are percent-encoded (no header injection).
_TARGET_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))
_mask_bits = random.getrandbits  # the mask only defeats proxy cache poisoning (§10.3)


class HandshakeError(Exception):
    """The server did not accept the WebSocket upgrade as RFC 6455 §4.1 requires."""


class HandshakeStatus(HandshakeError):
    """The server answered the upgrade with another status than 101."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        super().__init__(f"the server answered the WebSocket upgrade with {status} {reason}")


class _Failure(Exception):
    """A protocol violation by the server: the connection fails with ``code``."""

    def __init__(self, code: int, why: str) -> None:
        self.code = code
        super().__init__(why)


def _xor_mask(mask: bytes, data: bytearray) -> None:
    """Mask ``data`` in place (§5.3) as one big-int XOR: no per-byte Python loop."""
    n = len(data)
    key = int.from_bytes((mask * ((n + 3) >> 2))[:n], "little")
    data[:] = (int.from_bytes(data, "little") ^ key).to_bytes(n, "little")


try:  # aiohttp's compiled mask (a dependency anyway): 640 bytes in 0.15 us, not 2 us
    from aiohttp._websocket.helpers import websocket_mask as _mask
except ImportError:  # pragma: no cover - a private module that may move
    _mask = _xor_mask


def _frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame (§5.2)."""
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 0x10000:
        header = bytes((0x80 | opcode, 0xFE)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0xFF)) + n.to_bytes(8, "big")
    mask = _mask_bits(32).to_bytes(4, "little")
    data = bytearray(payload)
    if n:
        _mask(mask, data)
    return header + mask + data


class LeanSocket(asyncio.Protocol):
    """One client WebSocket: the protocol the transport drives, and the socket its user holds.

    ``send_bytes``/``send_str`` write at once and complete without suspending unless the
    transport's buffer is over its high-water mark (the `Outbox` relies on it). Reading is
    paused from the end of the handshake until `serve` (or `close`) is called, so nothing is
    parsed before there is someone to hand it to.
    """

    def __init__(self, max_msg_size: int = 4 * 1024 * 1024) -> None:
        self.close_code: int | None = None
        self._max = max_msg_size
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._done: asyncio.Future[None] = self._loop.create_future()
        self._handshake: asyncio.Future[bytes] | None = None
        self._buf = bytearray()  # bytes not yet parsed (a partial frame, or the handshake)
        self._part = bytearray()  # an open fragmented message so far (no object per fragment)
        self._part_op = 0  # its opcode (0: no fragmented message open)
        self._close_sent = False
        self._paused = False
        self._pong: bytes | None = None  # the latest ping's payload, unanswered while paused
        self._drains: list[asyncio.Future[None]] = []
        self._served = False
        self._parsing = False  # reading is paused until serve() or close() wants frames
        self._on_text: Callable[[str], None] = _ignore
        self._on_audio: Callable[[bytes], None] = _ignore
        self._on_burst_end: Callable[[], None] = _nothing
        self._on_error: Callable[[Exception], None] = _log

    @property
    def closed(self) -> bool:
        """No more data can be sent: a close frame went out, or the connection is gone."""
        return self._close_sent or self._done.done()

    # --- what the user calls --------------------------------------------------------------

    async def send_bytes(self, data: bytes) -> None:
        self._write(_frame(_BINARY, data))
        if self._paused:
            await self._drain()

    async def send_str(self, data: str) -> None:
        self._write(_frame(_TEXT, data.encode()))
        if self._paused:
            await self._drain()

    async def close(self, code: int = 1000) -> None:
        """Send a close frame, wait at most `CLOSE_TIMEOUT` for the echo, close the transport
        (abort it if what was written is still unsent: the peer stopped reading).

        Idempotent; data arriving meanwhile is no longer delivered (the user is done with it).
        """
        transport = self._transport
        if transport is None:
            return
        try:
            if not self._done.done():
                self._send_close(code.to_bytes(2, "big"))
                self._start_parsing()  # to see the echo, even if serve() never ran
                await asyncio.wait((self._done,), timeout=CLOSE_TIMEOUT)
        finally:
            if transport.get_write_buffer_size():  # a peer that stopped reading would keep
                transport.abort()  # a gracefully closed socket open until it read again
            else:
                transport.close()
            self._finish(1006)

    async def serve(
        self,
        on_text: Callable[[str], None],
        on_audio: Callable[[bytes], None],
        on_burst_end: Callable[[], None],
        *,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        """Deliver every message until the socket closes; ``on_burst_end()`` after each chunk.

        A callback that raises is given to ``on_error`` (default: logged) and the reader goes on.
        """
        if self._served:
            raise RuntimeError("serve() was already called")
        self._served = True
        self._on_text = on_text
        self._on_audio = on_audio
        self._on_burst_end = on_burst_end
        if on_error is not None:
            self._on_error = on_error
        self._start_parsing()
        await asyncio.wait((self._done,))

    # --- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        if not self._parsing:
            self._before_serve(data)
        elif not self._done.done():
            self._consume(data)

    def _consume(self, data: bytes) -> None:
        try:
            self._parse(data)
        except _Failure as exc:
            self._fail(exc.code, str(exc))
        except Exception as exc:  # a bug here must not reach the event loop
            logger.exception("WebSocket reader failed")
            self._fail(1011, f"internal error: {type(exc).__name__}")

    def eof_received(self) -> bool:
        return False  # the transport closes itself; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        handshake = self._handshake
        if handshake is not None and not handshake.done():
            handshake.set_exception(
                HandshakeError("the server closed the connection during the handshake")
            )
        self._finish(1006)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        pong, self._pong = self._pong, None
        if pong is not None:
            self._control(_PING, pong)
        self._release_drains()

    # --- reading --------------------------------------------------------------------------

    def _before_serve(self, data: bytes) -> None:
        """The handshake's answer, then (reading paused) whatever came in the same chunk."""
        buf = self._buf
        buf += data
        handshake = self._handshake
        if handshake is None or handshake.done():
            return
        # From just before the new bytes: a server dribbling its answer is scanned once.
        end = buf.find(b"\r\n\r\n", max(0, len(buf) - len(data) - 3), MAX_HEADERS + 4)
        if end < 0:
            if len(buf) > MAX_HEADERS:
                handshake.set_exception(HandshakeError(f"headers over {MAX_HEADERS} bytes"))
            return
        head = bytes(buf[:end])
        del buf[: end + 4]
        assert self._transport is not None
        self._transport.pause_reading()
        handshake.set_result(head)

    def _start_parsing(self) -> None:
        if self._parsing:
            return
        self._parsing = True
        if self._buf:
            early = bytes(self._buf)  # what came with the handshake's answer
            self._buf.clear()
            self._consume(early)
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()

    def _parse(self, data: bytes) -> None:
        """Deliver each complete message in ``data`` (after what is buffered), in order."""
        buf = self._buf
        if buf:
            buf += data
            chunk: bytes | bytearray = buf
        else:
            chunk = data
        end = len(chunk)
        pos = 0
        delivered = 0
        view = memoryview(chunk)
        try:
            while end - pos >= 2:
                b0 = chunk[pos]
                b1 = chunk[pos + 1]
                if b0 & 0x70:
                    raise _Failure(1002, "reserved bits set (no extension was negotiated)")
                if b1 & 0x80:
                    raise _Failure(1002, "a masked frame from the server")
                opcode = b0 & 0x0F
                start = pos + 2
                size = b1 & 0x7F
                if size == 126:
                    if end - pos < 4:
                        break
                    size = int.from_bytes(chunk[start : start + 2], "big")
                    start += 2
                elif size == 127:
                    if end - pos < 10:
                        break
                    size = int.from_bytes(chunk[start : start + 8], "big")
                    if size >> 63:
                        raise _Failure(1002, "a 64-bit length with its top bit set")
                    start += 8
                self._check(opcode, b0 & 0x80, size)
                stop = start + size
                if stop > end:
                    break
                pos = stop
                if opcode == _BINARY and b0 & 0x80:  # the common cases first
                    if not self._close_sent:
                        delivered += 1
                        self._deliver_audio(bytes(view[start:stop]))
                elif opcode == _TEXT and b0 & 0x80:
                    if not self._close_sent:
                        delivered += 1
                        self._deliver_text(_utf8(view[start:stop], "a text message"))
                elif opcode >= _CLOSE:
                    self._control(opcode, bytes(view[start:stop]))
                    if self._done.done():
                        break
                else:
                    delivered += self._fragment(opcode, b0 & 0x80, bytes(view[start:stop]))
        finally:
            view.release()
            if delivered:
                self._burst_end()
        if chunk is buf:
            del buf[:pos]
        elif pos < end:
            buf += memoryview(chunk)[pos:]

    def _check(self, opcode: int, fin: int, size: int) -> None:
        """Refuse a frame from its header alone, before any of its payload is kept."""
        if opcode >= _CLOSE:
            if opcode > _PONG:
                raise _Failure(1002, f"unknown control opcode {opcode:#x}")
            if not fin or size > 125:
                raise _Failure(1002, "a control frame fragmented or over 125 bytes")
            return
        if opcode == _CONT:
            if not self._part_op:
                raise _Failure(1002, "a continuation frame with no message open")
            size += len(self._part)
        elif opcode > _BINARY:
            raise _Failure(1002, f"unknown data opcode {opcode:#x}")
        elif self._part_op:
            raise _Failure(1002, "a new message while a fragmented one is open")
        if size > self._max:
            raise _Failure(1009, f"a message over {self._max} bytes")

    def _fragment(self, opcode: int, fin: int, payload: bytes) -> int:
        """Keep a fragment; deliver the message on its last one (returns messages delivered)."""
        if opcode != _CONT:
            self._part_op = opcode
        self._part += payload
        if not fin:
            return 0
        message = bytes(self._part)
        kind = self._part_op
        self._part.clear()
        self._part_op = 0
        if self._close_sent:
            return 0
        if kind == _TEXT:
            self._deliver_text(_utf8(message, "a text message"))
        else:
            self._deliver_audio(message)
        return 1

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == _PING:
            transport = self._transport
            if self._paused:  # a peer that does not read would have every pong buffered
                self._pong = payload  # only the latest is answered, on the drain (§5.5.3)
            elif not self._close_sent and transport is not None and not transport.is_closing():
                transport.write(_frame(_PONG, payload))
        elif opcode == _CLOSE:
            code = 1005
            if payload:
                if len(payload) < 2:
                    raise _Failure(1002, "a close frame with a one-byte payload")
                code = int.from_bytes(payload[:2], "big")
                if code not in _SENDABLE and not 3000 <= code <= 4999:
                    raise _Failure(1002, f"close code {code} may not be sent")
                _utf8(payload[2:], "a close reason")
            self._send_close(payload[:2])  # the echo (§5.5.1); nothing if we closed first
            self._finish(code)
            assert self._transport is not None
            self._transport.close()

    def _deliver_text(self, text: str) -> None:
        try:
            self._on_text(text)
        except Exception as exc:
            self._report(exc)

    def _deliver_audio(self, data: bytes) -> None:
        try:
            self._on_audio(data)
        except Exception as exc:
            self._report(exc)

    def _burst_end(self) -> None:
        try:
            self._on_burst_end()
        except Exception as exc:
            self._report(exc)

    def _report(self, exc: Exception) -> None:
        try:
            self._on_error(exc)
        except Exception:
            logger.exception("the WebSocket consumer's error handler raised")

    # --- writing and closing --------------------------------------------------------------

    def _write(self, frame: bytes) -> None:
        transport = self._transport
        if self._close_sent or transport is None or transport.is_closing():
            raise ConnectionResetError("Cannot write to a closing WebSocket")
        transport.write(frame)

    async def _drain(self) -> None:
        waiter = self._loop.create_future()
        self._drains.append(waiter)
        await waiter
        if self._done.done() or self._transport is None or self._transport.is_closing():
            raise ConnectionResetError("the WebSocket closed while a write waited")

    def _release_drains(self) -> None:
        drains, self._drains = self._drains, []
        for waiter in drains:
            if not waiter.done():
                waiter.set_result(None)

    def _send_close(self, payload: bytes) -> None:
        if self._close_sent:
            return
        self._close_sent = True
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(_frame(_CLOSE, payload))

    def _fail(self, code: int, why: str) -> None:
        """Fail the connection (§7.1.7): say why in a close frame, then drop it."""
        logger.debug("failing the WebSocket connection with %d: %s", code, why)
        self._part.clear()
        self._send_close(code.to_bytes(2, "big"))
        self._finish(code)
        if self._transport is not None:
            self._transport.close()

    def _finish(self, code: int) -> None:
        if self.close_code is None:
            self.close_code = code
        if not self._done.done():
            self._done.set_result(None)
        self._release_drains()


def _utf8(data: bytes | memoryview, what: str) -> str:
    try:
        return str(data, "utf-8")
    except UnicodeDecodeError:
        raise _Failure(1007, f"{what} is not valid UTF-8") from None


def _observe(future: asyncio.Future[bytes]) -> None:
    if not future.cancelled():
        future.exception()


def _ignore(data: bytes | str) -> None:
    pass


def _nothing() -> None:
    pass


def _log(exc: Exception) -> None:
    logger.warning("a WebSocket message handler raised %s: %s", type(exc).__name__, exc)


async def connect(
    url: str,
    *,
    timeout: float,
    max_msg_size: int = 4 * 1024 * 1024,
    ssl_context: ssl.SSLContext | None = None,
) -> LeanSocket:
    """Open ``url`` (ws:// or wss://); ``timeout`` covers the TCP/TLS connect and the handshake.

    Raises `HandshakeError` (`HandshakeStatus` for a non-101 answer), `OSError` for the network,
    `asyncio.TimeoutError`; `ValueError` for a URL this client cannot use.
    """
    key = base64.b64encode(os.urandom(16))
    host, port, secure, request = _upgrade_request(url, key)
    context = (ssl_context or ssl.create_default_context()) if secure else None
    loop = asyncio.get_running_loop()
    sock = LeanSocket(max_msg_size)
    sock._handshake = loop.create_future()
    # A connection lost after connect() gave up (cancelled as the TCP connection opened)
    # fails the handshake with no one awaiting it: that must not reach the event loop.
    sock._handshake.add_done_callback(_observe)

    async def handshake() -> None:
        transport, _ = await loop.create_connection(
            lambda: sock, host, port, ssl=context, server_hostname=host if secure else None
        )
        try:
            transport.write(request)
            assert sock._handshake is not None
            head = await sock._handshake
            _check_answer(head, key)
            sock._handshake = None
        except BaseException:
            transport.close()
            raise

    await asyncio.wait_for(handshake(), timeout)
    return sock


def _upgrade_request(url: str, key: bytes) -> tuple[str, int, bool, bytes]:
    """Where to connect (host, port, TLS) and the upgrade request (§4.1), no extension offered."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"a WebSocket URL must be ws:// or wss://, got {parts.scheme!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials in a WebSocket URL are not supported")
    host = parts.hostname
    if not host:
        raise ValueError("the WebSocket URL has no host")
    secure = parts.scheme == "wss"
    default = 443 if secure else 80
    port = parts.port or default
    authority = f"[{host}]" if ":" in host else host.encode("idna").decode()
    if port != default:
        authority += f":{port}"
    target = quote(parts.path or "/", safe=_TARGET_SAFE)
    if parts.query:
        target += "?" + quote(parts.query, safe=_TARGET_SAFE)
    request = (
        f"GET {target} HTTP/1.1\r\nHost: {authority}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n"
        "User-Agent: ultravox-fsm\r\n\r\n"
    )
    return host, port, secure, request.encode()


def _check_answer(head: bytes, key: bytes) -> None:
    """Accept only a 101 that upgrades to websocket with our key, and nothing we did not ask
    for (§4.1: no extension, no subprotocol)."""
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if len(status) < 2 or not status[0].startswith("HTTP/1.") or not status[1].isdigit():
        raise HandshakeError(f"not an HTTP response: {lines[0][:80]!r}")
    if status[1] != "101":
        raise HandshakeStatus(int(status[1]), status[2] if len(status) > 2 else "")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise HandshakeError(f"a malformed header line: {line[:80]!r}")
        name = name.strip().lower()
        headers[name] = f"{headers[name]}, {value.strip()}" if name in headers else value.strip()
    if headers.get("upgrade", "").lower() != "websocket":
        raise HandshakeError(f"Upgrade is {headers.get('upgrade')!r}, not websocket")
    if "upgrade" not in (t.strip().lower() for t in headers.get("connection", "").split(",")):
        raise HandshakeError(f"Connection is {headers.get('connection')!r}, not upgrade")
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest()).decode()
    if headers.get("sec-websocket-accept") != accept:
        raise HandshakeError("Sec-WebSocket-Accept does not match our key")
    for name in ("sec-websocket-extensions", "sec-websocket-protocol"):
        if headers.get(name):
            raise HandshakeError(f"the server chose {name} {headers[name]!r}; none was offered")
