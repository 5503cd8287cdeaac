"""The benchmarks keep working: a seconds-long smoke run, no timing asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_benchmark(script: str, *args: str) -> str:
    """Runs ``benchmarks/<script>`` with ``args``; its output, once it exits 0."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_decode_benchmark_runs() -> None:
    assert "seed / ours (transcript, median)" in run_benchmark("decode.py", "--calls", "200")


def test_session_benchmark_runs() -> None:
    out = run_benchmark("session.py", "--turns", "2", "--rounds", "1", "--frames", "50")
    assert "ultravox_fsm lean: per turn seed/ours" in out


def test_replay_benchmark_runs() -> None:
    out = run_benchmark("replay_turn.py", "--turns", "3", "--rounds", "1")
    assert "our processing per turn, no socket" in out


def test_realtime_benchmark_runs() -> None:
    out = run_benchmark(
        "realtime.py",
        *("--rounds", "1", "--seconds", "0.2", "--many", "3", "--start", "2"),
        *("--max-sessions", "3"),
    )
    assert "p99 added over the floor" in out
    assert "concurrent real-time sessions" in out


def test_long_call_benchmark_runs() -> None:
    out = run_benchmark("long_call.py", "--turns", "30", "--window", "5")
    assert "ultravox_fsm's own (ms)" in out
