"""A long call through a real AgentSession: client CPU per turn early and late, side by side.

The stand-in runs in its own process (`ultravox-fsm serve`), so `time.process_time` counts the
client only. Each turn is a typed question and its text reply. The per-turn cost must not grow
with the history (the chat context is sent per new item, never diffed whole).

    python benchmarks/long_call.py [--turns 2000] [--window 20]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import resource
import statistics
import subprocess
import sys
import time

from livekit.agents import Agent, AgentSession

from ultravox_fsm import RealtimeModel

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from session import free_port


def own_time(profile: cProfile.Profile) -> float:
    """Seconds spent in ultravox_fsm's own code (not in what it calls)."""
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    return sum(v[2] for (path, _, _), v in stats.items() if "/ultravox_fsm/" in path)


async def run(base_url: str, turns: int, window: int) -> dict[int, tuple[float, float]]:
    """Per mark: (median client CPU per turn, ultravox_fsm's own CPU per turn), in ms."""
    session: AgentSession = AgentSession(
        llm=RealtimeModel(base_url=base_url, api_key="bench", output_medium="text")
    )
    await session.start(Agent(instructions="You are terse."))
    marks = {min(100, turns // 2), turns}
    per_turn: dict[int, list[float]] = {m: [] for m in marks}
    own: dict[int, float] = {}

    async def turn(n: int) -> None:
        await asyncio.wait_for(session.run(user_input=f"question number {n}"), 10)

    for n in range(1, turns + 1):
        started = time.process_time()
        await turn(n)
        spent = time.process_time() - started
        for mark in marks:
            if mark - window < n <= mark:
                per_turn[mark].append(spent)
        if n in marks:  # one more window under the profiler, to split ours from the rest
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(window):
                await turn(n)
            profile.disable()
            own[n] = own_time(profile) / window
    await session.aclose()
    return {m: (statistics.median(per_turn[m]) * 1000, own[m] * 1000) for m in marks}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=2000)
    parser.add_argument("--window", type=int, default=20)
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "ultravox_fsm", "serve", "--port", str(port), "--no-greeting"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert server.stdout is not None
        server.stdout.readline()
        gc.collect()
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        cpu = await run(f"http://127.0.0.1:{port}/api", args.turns, args.window)
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    finally:
        server.terminate()
        server.wait()
    early, late = sorted(cpu)
    print(f"long call, {args.turns} turns through an AgentSession (median of {args.window})")
    print(f"{'':>30}{'turn ' + str(early):>12}{'turn ' + str(late):>12}{'late/early':>12}")
    for label, i in (("client CPU per turn (ms)", 0), ("ultravox_fsm's own (ms)", 1)):
        a, b = cpu[early][i], cpu[late][i]
        print(f"{label:>30}{a:>12.2f}{b:>12.2f}{b / a:>11.2f}x")
    print(f"  peak RSS growth over the call: {(rss_after - rss_before) / 1024:.1f} MB")


if __name__ == "__main__":
    asyncio.run(main())
