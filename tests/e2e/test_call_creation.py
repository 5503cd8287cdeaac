"""Call creation through a real AgentSession against the stand-in: saved-agent calls, merged
``extra_call_fields``, server tools beside function tools, and the fallback history."""

from __future__ import annotations

import asyncio

import pytest
from livekit.agents import Agent, AgentSession, function_tool

from ultravox_fsm import RealtimeModel
from ultravox_fsm.io.options import history_of
from ultravox_fsm.testing.server import SavedAgent, Scenario, StandInServer

pytestmark = pytest.mark.filterwarnings("ignore")
KEY = "sk-test.0123456789abcdefghijklmnopqrstuv"
AGENT_ID = "3f0c8a0e-2b7e-4d55-9a55-1c2d3e4f5a6b"
CONCIERGE = SavedAgent(
    name="concierge",
    call_template={
        "systemPrompt": "You help {{customer.name}}.",
        "selectedTools": [{"toolName": "hangUp"}],
    },
)


class Assistant(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="You are terse.")

    @function_tool
    async def weather(self, city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"


async def start(server: StandInServer, **options: object) -> AgentSession:
    model = RealtimeModel(base_url=server.base_url, api_key=KEY, output_medium="text", **options)  # type: ignore[arg-type]
    session: AgentSession = AgentSession(llm=model)
    await session.start(Assistant())
    return session


def tool_names(tools: list[dict[str, object]]) -> list[object]:
    return [t.get("toolName") or t["temporaryTool"]["modelToolName"] for t in tools]  # type: ignore[index]


async def test_a_saved_agent_call_fills_its_template_and_adds_the_function_tools() -> None:
    async with StandInServer(Scenario(agents={AGENT_ID: CONCIERGE})) as server:
        session = await start(
            server,
            agent_id=AGENT_ID,
            template_context={"customer": {"name": "Ada"}},
            throttle="agents",
            metadata={"ticket": "7"},
        )
        result = await asyncio.wait_for(session.run(user_input="please use weather city=Oslo"), 10)
        result.expect.next_event().is_function_call(name="weather", arguments={"city": "Oslo"})
        result.expect.next_event().is_function_call_output(output="sunny in Oslo")
        [call] = server.calls.values()
        assert call.agent_id == AGENT_ID
        assert call.query == {"throttle": "agents"}
        assert call.request["templateContext"] == {"customer": {"name": "Ada"}}
        assert "systemPrompt" not in call.request
        assert call.body["systemPrompt"] == "You help Ada."
        assert tool_names(call.body["selectedTools"]) == ["hangUp", "weather"]
        assert call.body["metadata"] == {"ticket": "7"}
        await session.aclose()


async def test_extra_call_fields_are_merged_not_substituted() -> None:
    async with StandInServer() as server:
        session = await start(
            server,
            server_tools=["queryCorpus"],
            extra_call_fields={
                "medium": {"serverWebSocket": {"mediaIdleTimeout": "30s"}},
                "selectedTools": [{"toolName": "hangUp"}],
            },
        )
        await asyncio.wait_for(session.run(user_input="hi"), 10)
        [call] = server.calls.values()
        assert call.body["medium"]["serverWebSocket"] == {
            "inputSampleRate": 16000,
            "outputSampleRate": 24000,
            "clientBufferSizeMs": 30000,
            "mediaIdleTimeout": "30s",
        }
        assert tool_names(call.body["selectedTools"]) == ["weather", "queryCorpus", "hangUp"]
        await session.aclose()


async def test_the_fallback_history_of_a_tool_round_trip_has_the_call_and_its_result() -> None:
    async with StandInServer() as server:
        session = await start(server)
        await asyncio.wait_for(session.run(user_input="please use weather city=Paris"), 10)
        realtime = session.current_agent.realtime_llm_session
        history = history_of(realtime.chat_ctx)
        tool_messages = [(m.role, m.tool_name) for m in history if m.invocation_id]
        assert tool_messages == [
            ("MESSAGE_ROLE_TOOL_CALL", "weather"),
            ("MESSAGE_ROLE_TOOL_RESULT", "weather"),
        ]
        await session.aclose()


async def test_say_can_force_tool_calls_and_refuses_malformed_ones() -> None:
    async with StandInServer() as server:
        rt = RealtimeModel(base_url=server.base_url, api_key=KEY, output_medium="text").session()
        with pytest.raises(ValueError, match="name"):
            rt.say("x", tool_calls=[{"arguments": {}}])
        rt.say(
            "Let me look that up.",
            tool_calls=[{"name": "lookup", "arguments": {"city": "Paris"}}],
            known_tool_results=[{"invocationId": "i0", "result": "{}"}],
        )
        for _ in range(100):
            if server.messages("forced_agent_message"):
                break
            await asyncio.sleep(0.01)
        [forced] = server.messages("forced_agent_message")
        assert forced["toolCalls"] == [{"name": "lookup", "arguments": {"city": "Paris"}}]
        assert forced["knownToolResults"] == [{"invocationId": "i0", "result": "{}"}]
        await rt.aclose()
