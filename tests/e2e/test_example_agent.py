"""examples/agent.py runs its real entrypoint under the framework's fake job context."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
from livekit.agents import AgentSession
from livekit.agents.testing import fake_job_context

from ultravox_fsm.testing.server import StandInServer

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "agent.py"


async def test_example_entrypoint_greets_through_the_stand_in(
    server: StandInServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ULTRAVOX_BASE_URL", server.base_url)
    monkeypatch.setenv("ULTRAVOX_API_KEY", "example-key")
    spec = importlib.util.spec_from_file_location("example_agent", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "example_agent", module)
    spec.loader.exec_module(module)
    sessions: list[AgentSession[Any]] = []

    class Captured(AgentSession):  # type: ignore[type-arg]
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            sessions.append(self)

    monkeypatch.setattr(module, "AgentSession", Captured)
    with fake_job_context() as ctx:
        await asyncio.wait_for(module.entrypoint(ctx), 10)
        for _ in range(100):
            if server.messages("user_text_message"):
                break
            await asyncio.sleep(0.05)
        await sessions[0].aclose()
    # Closing mid-greeting may add our interrupt message after it; the greeting comes first.
    greeting = server.messages("user_text_message")[0]
    assert greeting["text"] == "<instruction>Greet the guest and offer help.</instruction>"
    [call] = server.calls.values()
    assert call.body["selectedTools"][0]["temporaryTool"]["modelToolName"] == "lookup_weather"
