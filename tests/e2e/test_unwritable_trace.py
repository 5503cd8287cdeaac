"""An optional diagnostic never breaks a call: a trace directory that cannot be created gives
one warning and the session goes on untraced."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from livekit.agents import Agent, AgentSession

from ultravox_fsm import RealtimeModel
from ultravox_fsm.testing.server import StandInServer


async def test_a_session_with_an_unwritable_trace_dir_still_talks(
    server: StandInServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    caplog.set_level(logging.WARNING, logger="ultravox_fsm")
    model = RealtimeModel(
        base_url=server.base_url,
        api_key="test-key",
        output_medium="text",
        trace_dir=str(blocker / "traces"),
    )
    session: AgentSession[None] = AgentSession(llm=model)
    await session.start(Agent(instructions="You are terse."))
    try:
        result = await asyncio.wait_for(session.run(user_input="hello there"), 10)
        result.expect.next_event().is_message(role="assistant")
    finally:
        await session.aclose()
    warnings = [r.getMessage() for r in caplog.records if r.name == "ultravox_fsm"]
    assert len(warnings) == 1 and warnings[0].startswith(f"not recording a trace to {blocker}")
