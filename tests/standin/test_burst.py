"""The stand-in's burst mode (issue 15): one socket write per loop iteration, same messages."""

from __future__ import annotations

import struct

import pytest

from ultravox_fsm.testing import burst
from ultravox_fsm.testing.server import Reply, Scenario

from .conftest import Raw, Start


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 200_000])
def test_frames_carry_the_length_in_the_shortest_form(size: int) -> None:
    data = burst.frame(b"x" * size)
    assert data[0] == 0x82
    if size < 126:
        assert data[1] == size and len(data) == 2 + size
    elif size < 65536:
        assert data[1] == 126 and struct.unpack("!H", data[2:4])[0] == size
    else:
        assert data[1] == 127 and struct.unpack("!Q", data[2:10])[0] == size
    assert burst.frame("é")[:2] == bytes([0x81, 2])  # text: the UTF-8 length


async def reply_frames(start: Start, monkeypatch: pytest.MonkeyPatch, on: bool) -> list[object]:
    writes: list[int] = []
    flush = burst.BurstWriter.flush

    def counted(self: burst.BurstWriter) -> None:
        if self._pending:
            writes.append(len(self._pending))
        flush(self)

    monkeypatch.setattr(burst.BurstWriter, "flush", counted)
    words = " ".join(f"w{i}" for i in range(50))
    scenario = Scenario(
        greeting=None,
        reply=lambda _t, _tools: Reply(text=words),
        playback_speed=1000,
        burst=on,
    )
    _, raw = await start(scenario)
    await raw.start({"medium": {"serverWebSocket": {"inputSampleRate": 16000}}})
    await raw.send({"type": "user_text_message", "text": "hi"})
    await raw.until(lambda: bool(raw.finals()))
    if on:
        assert writes and max(writes) >= 100  # the reply's frames went out together
    else:
        assert not writes
    return [
        f if isinstance(f, bytes) else (f["type"], f.get("text", f.get("delta")))
        for f in _frames(raw)
    ]


def _frames(raw: Raw) -> list[object]:
    return [f for _, f in raw.frames]


async def test_burst_mode_sends_the_same_messages_in_the_same_order(
    start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = await reply_frames(start, monkeypatch, on=False)
    bursty = await reply_frames(start, monkeypatch, on=True)
    assert bursty == plain
    assert sum(isinstance(f, bytes) for f in plain) == 50 * 3  # 60 ms a word, 20 ms frames
