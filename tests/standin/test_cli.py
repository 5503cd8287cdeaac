"""``ultravox-fsm serve`` greets as told (issue 14 item 2)."""

from __future__ import annotations

import asyncio
import re
import sys

import aiohttp
import pytest

from .conftest import KEY, WS_16K


async def first_agent_final(base_url: str) -> str | None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base_url}/calls", json={"medium": WS_16K}, headers=KEY) as r:
            call = await r.json()
        async with http.ws_connect(call["joinUrl"]) as ws:

            async def final() -> str:
                async for msg in ws:
                    m = msg.json() if msg.type is aiohttp.WSMsgType.TEXT else {}
                    if m.get("type") == "transcript" and m["final"] and m["role"] == "agent":
                        return str(m["text"])
                raise AssertionError("closed")

            try:
                return await asyncio.wait_for(final(), 0.5)
            except asyncio.TimeoutError:
                return None


@pytest.mark.parametrize(
    ("flags", "greeting"),
    [(["--greeting", "Hi from the shell"], "Hi from the shell"), (["--no-greeting"], None)],
)
async def test_serve_greeting_flags(flags: list[str], greeting: str | None) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ultravox_fsm", "serve", *flags, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        match = re.search(r"base_url=(\S+)", line)
        assert match, line
        assert await first_agent_final(match.group(1)) == greeting
    finally:
        proc.terminate()
        await proc.wait()
