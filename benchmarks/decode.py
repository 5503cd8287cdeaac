"""Micro-benchmark: decoding one server frame, ours against the seed's parse path.

Run: `make bench` (or `python benchmarks/decode.py [--calls 100000]`). Prints best and median
microseconds per decode over 7 runs of ``--calls`` calls; the seed's path is json.loads +
parse_ultravox_event.
"""

from __future__ import annotations

import argparse
import json
import statistics
import timeit
from collections.abc import Callable

import msgspec

from ultravox_fsm import wire

TRANSCRIPT = (
    b'{"type":"transcript","role":"agent","medium":"voice","delta":"Sure, I can move your '
    b'appointment to Tuesday at 3pm.","final":false,"ordinal":12}'
)
STATE = b'{"type":"state","state":"speaking"}'
RUNS = 7


def measure(fn: Callable[[], object], calls: int) -> tuple[float, float]:
    times = [t / calls * 1e6 for t in timeit.repeat(fn, number=calls, repeat=RUNS)]
    return min(times), statistics.median(times)


def main(calls: int) -> None:
    rows: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
        (
            "ultravox_fsm wire.decode_server",
            lambda: wire.decode_server(TRANSCRIPT),
            lambda: wire.decode_server(STATE),
        ),
        (
            "msgspec.json.decode (untyped floor)",
            lambda: msgspec.json.decode(TRANSCRIPT),
            lambda: msgspec.json.decode(STATE),
        ),
    ]
    try:
        from livekit.plugins.ultravox.realtime.events import parse_ultravox_event

        rows.append(
            (
                "livekit-plugins-ultravox 1.8.9 parse",
                lambda: parse_ultravox_event(json.loads(TRANSCRIPT)),
                lambda: parse_ultravox_event(json.loads(STATE)),
            )
        )
    except ImportError:
        print("(livekit-plugins-ultravox not installed: seed row skipped)")
    print(f"{'decoder':40} {'transcript best/median us':>28} {'state best/median us':>24}")
    results = {}
    for name, transcript, state in rows:
        tb, tm = measure(transcript, calls)
        sb, sm = measure(state, calls)
        results[name] = tm
        print(f"{name:40} {tb:12.3f} / {tm:8.3f}     {sb:10.3f} / {sm:8.3f}")
    seed_name = "livekit-plugins-ultravox 1.8.9 parse"
    if seed_name in results:
        ratio = results[seed_name] / results["ultravox_fsm wire.decode_server"]
        print(f"\nseed / ours (transcript, median): {ratio:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=100_000)
    main(parser.parse_args().calls)
