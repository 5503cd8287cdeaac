"""The agent-audio side of a stand-in call: test tones, and where the client is in playing them."""

from __future__ import annotations

import math
import struct
from collections.abc import Callable

FRAME_MS = 20


def tone(ms: int, rate: int) -> bytes:
    """``ms`` of a sine tone as s16le mono at ``rate``: loud enough for any energy VAD."""
    n = rate * ms // 1000
    return struct.pack(f"<{n}h", *(int(3000 * math.sin(i / 8)) for i in range(n)))


class Playback:
    """Where the client is in the agent audio sent to it: it plays in real time whenever it
    has audio, so the unplayed part is what was sent minus the time elapsed since, never < 0."""

    def __init__(self, clock: Callable[[], float], speed: float = 1.0) -> None:
        self.clock = clock
        self.speed = speed  # audio seconds played per second
        self.ends_at = clock()

    def sent(self, ms: float) -> None:
        self.ends_at = max(self.ends_at, self.clock()) + ms / 1000 / self.speed

    def unplayed_ms(self) -> float:
        """Audio milliseconds the client has not played yet."""
        return self.seconds_left() * 1000 * self.speed

    def seconds_left(self) -> float:
        """Seconds until the client has played all it has."""
        return max(0.0, self.ends_at - self.clock())

    def clear(self) -> None:
        self.ends_at = self.clock()
