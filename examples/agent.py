"""A LiveKit worker whose agent talks through Ultravox, with one function tool.

Run against your LiveKit deployment (LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET) and
Ultravox (ULTRAVOX_API_KEY; ULTRAVOX_BASE_URL to point elsewhere, e.g. `ultravox-fsm serve`):

    python examples/agent.py dev
"""

from __future__ import annotations

from livekit.agents import Agent, AgentServer, AgentSession, JobContext, cli, function_tool

from ultravox_fsm import RealtimeModel


class Concierge(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="You are a friendly hotel concierge. Keep answers short.")

    async def on_enter(self) -> None:
        self.session.generate_reply(instructions="Greet the guest and offer help.")

    @function_tool
    async def lookup_weather(self, city: str) -> str:
        """Look up today's weather in a city."""
        return f"sunny and 21 degrees in {city}"


server = AgentServer()


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    session: AgentSession[None] = AgentSession(llm=RealtimeModel(voice="Mark"))
    await session.start(agent=Concierge(), room=ctx.room)


if __name__ == "__main__":
    cli.run_app(server)
