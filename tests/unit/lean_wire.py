"""A fake transport for `LeanSocket`, and RFC 6455 frames as a server (or a hostile one) sends
them, so the parser is tested without a network."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from ultravox_fsm.io.lean_socket import LeanSocket

TEXT, BINARY, CLOSE, PING, PONG, CONT = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = None,
    length: int | None = None,
    width: int | None = None,
) -> bytes:
    """A frame from the server; ``length``/``width`` (2, 4 or 10 header bytes) forge its header."""
    n = len(payload) if length is None else length
    if width is None:
        width = 2 if n < 126 else 4 if n < 0x10000 else 10
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    bit = 0x80 if mask is not None else 0
    if width == 2:
        header = bytes((first, bit | n))
    elif width == 4:
        header = bytes((first, bit | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((first, bit | 127)) + n.to_bytes(8, "big")
    if mask is not None:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        header += mask
    return header + payload


def close_frame(code: int | None, reason: bytes = b"") -> bytes:
    return frame(CLOSE, b"" if code is None else code.to_bytes(2, "big") + reason)


def client_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Decode what the client wrote: every frame final, masked, its payload unmasked."""
    out = []
    pos = 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        assert b0 & 0x80 and not b0 & 0x70, "client frames are final, without reserved bits"
        assert b1 & 0x80, "client frames are masked (RFC 6455 §5.3)"
        n, pos = b1 & 0x7F, pos + 2
        if n == 126:
            n, pos = int.from_bytes(data[pos : pos + 2], "big"), pos + 2
        elif n == 127:
            n, pos = int.from_bytes(data[pos : pos + 8], "big"), pos + 8
        mask, pos = data[pos : pos + 4], pos + 4
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(data[pos : pos + n]))
        out.append((b0 & 0x0F, payload))
        pos += n
    return out


class FakeTransport(asyncio.Transport):
    """Records writes; ``close`` reports the connection lost one loop turn later, as asyncio's
    transports do."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closing = False
        self.protocol: asyncio.Protocol | None = None

    def write(self, data: Any) -> None:
        assert not self.closing, "a write after close"
        self.written += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            assert self.protocol is not None
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def get_write_buffer_size(self) -> int:
        return 0  # everything written is taken at once

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def frames(self) -> list[tuple[int, bytes]]:
        return client_frames(bytes(self.written))


@dataclass
class Consumer:
    """What `serve` delivered: messages in order, ``"|"`` for each burst end."""

    got: list[str | bytes] = field(default_factory=list)
    errors: list[Exception] = field(default_factory=list)

    def text(self, data: str) -> None:
        self.got.append(data)

    def audio(self, data: bytes) -> None:
        self.got.append(data)

    def burst_end(self) -> None:
        self.got.append("|")

    def messages(self) -> list[str | bytes]:
        return [m for m in self.got if m != "|"]


async def serving(
    max_msg_size: int = 4 * 1024 * 1024, consumer: Consumer | None = None
) -> tuple[LeanSocket, FakeTransport, Consumer, asyncio.Task[None]]:
    """An open socket on a fake transport, served by a task into ``consumer``."""
    sock = LeanSocket(max_msg_size)
    transport = FakeTransport()
    transport.protocol = sock
    sock.connection_made(transport)
    got = consumer or Consumer()
    task = asyncio.create_task(
        sock.serve(got.text, got.audio, got.burst_end, on_error=got.errors.append)
    )
    await asyncio.sleep(0)
    return sock, transport, got, task
