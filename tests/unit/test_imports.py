"""The core is sans-I/O: importing it loads neither LiveKit nor aiohttp."""

from __future__ import annotations

import subprocess
import sys


def test_the_core_imports_without_livekit_or_aiohttp() -> None:
    code = (
        "import sys, ultravox_fsm.machine, ultravox_fsm.states, ultravox_fsm.wire; "
        "print(sorted(m for m in ('livekit', 'aiohttp') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_livekit_names_load_on_first_use() -> None:
    code = "from ultravox_fsm import RealtimeModel, RealtimeSession; print(RealtimeModel.__name__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "RealtimeModel"
