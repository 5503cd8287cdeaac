"""The main job: a scripted conversation through a real AgentSession and the embedded stand-in.

No API key, no LiveKit server. Every step is checked; the exit code is 0 only if all happened.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import struct
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from livekit import rtc
from livekit.agents import NOT_GIVEN, Agent, AgentSession, RunResult, function_tool, llm

from .io.livekit import RealtimeModel, RealtimeSession
from .states import State
from .testing.server import Reply, Scenario, StandInServer, default_reply
from .trace import read
from .viewer import render_html

STORY = " ".join(["Once upon a time there was a very patient voice agent"] * 4)


def _reply(text: str, tools: list[str]) -> Reply:
    if text.startswith("<instruction>"):
        return Reply(text="Good evening and welcome! How can I help?")
    if "story" in text:
        return Reply(text=STORY)
    return default_reply(text, tools)


class Concierge(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="You are a concise hotel concierge.")

    @function_tool
    async def lookup_weather(self, city: str) -> str:
        """Look up today's weather in a city."""
        return f"sunny and 21 degrees in {city}"


def _frames(seconds_loud: float, seconds_quiet: float, rate: int = 48000) -> list[rtc.AudioFrame]:
    """20 ms frames of a 220 Hz tone, then silence: a stand-in for a spoken sentence."""
    frames, n = [], rate // 50
    for i in range(int((seconds_loud + seconds_quiet) * 50)):
        amp = 6000 if i < seconds_loud * 50 else 0
        data = struct.pack(
            f"<{n}h",
            *(int(amp * math.sin(2 * math.pi * 220 * (i * n + k) / rate)) for k in range(n)),
        )
        frames.append(rtc.AudioFrame(data, rate, 1, n))
    return frames


class Demo:
    """Runs the steps; a step's action returns whether it happened, or None if it was skipped."""

    def __init__(self, text_only: bool, record: str | None) -> None:
        self.text_only = text_only
        self.record = record
        self.t0 = time.monotonic()
        self.results: list[tuple[str, bool | None]] = []

    def say(self, who: str, text: str) -> None:
        print(f"{time.monotonic() - self.t0:6.2f}s  {who:<10} {text}", flush=True)

    async def step(self, name: str, action: Callable[[], Awaitable[bool | None]]) -> None:
        self.say("--", name)
        try:
            passed = await asyncio.wait_for(action(), 20)
        except Exception as exc:  # a demo step reports, then the run goes on
            self.say("!!", f"{name} failed: {type(exc).__name__}: {exc}")
            passed = False
        self.results.append((name, passed))

    async def run(self) -> int:
        """Records into a scratch directory, then keeps only this run's files in ``record``."""
        with tempfile.TemporaryDirectory(prefix="ultravox-fsm-demo-") as scratch:
            trace = await self.converse(scratch if self.record else None)
            print()
            if trace and self.record:
                try:
                    self.keep(trace, Path(self.record))
                except OSError as exc:
                    print(f"  cannot record to {self.record}: {exc}", file=sys.stderr)
                    self.results.append(("recording", False))
        for name, passed in self.results:
            print(f"  {'skip' if passed is None else 'ok  ' if passed else 'FAIL'} {name}")
        return 0 if all(p is not False for _, p in self.results) else 1

    def keep(self, trace: str, record: Path) -> None:
        jsonl, page = record / "demo.jsonl", record / "demo.html"
        shutil.copyfile(trace, jsonl)
        page.write_text(render_html(read(jsonl).records, title="ultravox-fsm demo call"))
        print(f"  trace: {jsonl} (replay it: ultravox-fsm replay {jsonl})")
        print(f"  call viewer: {page}")

    async def converse(self, trace_dir: str | None) -> str | None:
        """The scripted call; returns the path of its trace, if one was written."""
        async with StandInServer(
            Scenario(reply=_reply, voice_transcript="Is breakfast included?")
        ) as server:
            self.say("server", f"stand-in Ultravox at {server.base_url}")
            model = RealtimeModel(
                base_url=server.base_url,
                api_key="demo-key",
                output_medium="text" if self.text_only else "voice",
                client_buffer_size_ms=60,
                trace_dir=trace_dir or NOT_GIVEN,
            )
            session: AgentSession[None] = AgentSession(llm=model)
            agent = Concierge()
            items: list[llm.ChatMessage] = []

            def on_item(ev: Any) -> None:
                item = ev.item
                if isinstance(item, llm.ChatMessage) and item.text_content:
                    items.append(item)
                    cut = " [interrupted]" if item.interrupted else ""
                    self.say(item.role, item.text_content + cut)

            session.on("conversation_item_added", on_item)
            await session.start(agent)
            rt = agent.realtime_llm_session
            assert isinstance(rt, RealtimeSession)
            rt.on(
                "ultravox_state_changed",
                lambda a, b, why: self.say("state", f"{a.value} -> {b.value}  ({why.value})"),
            )
            rt.on("ultravox_call_ended", lambda reason: self.say("call", f"ended: {reason}"))

            async def greeting() -> bool:
                await session.generate_reply(instructions="Greet the guest").wait_for_playout()
                return bool(items) and items[-1].role == "assistant"

            async def typed() -> bool:
                result: RunResult[None] = await session.run(user_input="What time is checkout?")
                return [e.type for e in result.events] == ["message"]

            async def spoken() -> bool:
                before = len(items)
                for frame in _frames(0.6, 0.6):
                    rt.push_audio(frame)
                    await asyncio.sleep(0.02)
                while len(items) < before + 2:
                    await asyncio.sleep(0.05)
                return [i.role for i in items[before:]] == ["user", "assistant"]

            async def tool() -> bool:
                result: RunResult[None] = await session.run(
                    user_input="please use lookup_weather city=Lisbon"
                )
                kinds = [e.type for e in result.events]
                return kinds == ["function_call", "function_call_output", "message"]

            async def barge_in() -> bool | None:
                if self.text_only:
                    self.say("--", "skipped in --text-only (no agent audio to talk over)")
                    return None
                before = len(items)
                handle = session.generate_reply(user_input="Tell me a story")
                while rt.state is not State.SPEAKING:
                    await asyncio.sleep(0.02)
                await asyncio.sleep(0.3)
                for frame in _frames(0.4, 0.6):
                    rt.push_audio(frame)
                    await asyncio.sleep(0.02)
                await handle.wait_for_playout()
                # the request, the cut story, the barge-in turn and its answer
                roles = ["user", "assistant", "user", "assistant"]
                while len(items) < before + len(roles):
                    await asyncio.sleep(0.05)
                return handle.interrupted and [i.role for i in items[before:]] == roles

            async def instructions() -> bool:
                await agent.update_instructions("You are a concierge who answers in one sentence.")
                result: RunResult[None] = await session.run(user_input="Can I get a late checkout?")
                calls = list(server.calls.values())
                return (
                    len(calls) == 2
                    and calls[1].query.get("priorCallId") == calls[0].call_id
                    and len(result.events) == 1
                )

            async def hang_up() -> bool:
                ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()

                def on_end(reason: str) -> None:
                    if not ended.done():
                        ended.set_result(reason)

                rt.on("ultravox_call_ended", on_end)
                rt.hang_up("Goodbye and enjoy your stay!")
                return "1000" in await ended

            for name, action in [
                ("greeting", greeting),
                ("typed question", typed),
                ("spoken turn from generated audio", spoken),
                ("tool call and result", tool),
                ("barge-in", barge_in),
                ("instruction change keeps the conversation", instructions),
                ("hang-up", hang_up),
            ]:
                await self.step(name, action)
            await session.aclose()
        return rt.trace_path


def main(text_only: bool = False, record: str | None = None) -> int:
    return asyncio.run(Demo(text_only, record).run())


if __name__ == "__main__":
    sys.exit(main("--text-only" in sys.argv))
