"""The benchmarks keep working: a seconds-long smoke run, no timing asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_decode_and_session_benchmarks_run() -> None:
    session = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "session.py"),
            "--turns",
            "2",
            "--rounds",
            "1",
            "--frames",
            "50",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert session.returncode == 0, session.stderr[-2000:]
    assert "seed / ours, per turn" in session.stdout


def test_realtime_benchmark_runs() -> None:
    realtime = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "realtime.py"),
            *("--rounds", "1", "--seconds", "0.2", "--many", "3"),
            *("--start", "2", "--max-sessions", "3"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert realtime.returncode == 0, realtime.stderr[-2000:]
    assert "p99 added over the floor" in realtime.stdout
    assert "concurrent real-time sessions" in realtime.stdout
