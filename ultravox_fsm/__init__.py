"""Ultravox Realtime for LiveKit Agents, driven by an explicit sans-I/O state machine.

    from ultravox_fsm import RealtimeModel
    session = AgentSession(llm=RealtimeModel(api_key=...))

The turn-taking rules live in `ultravox_fsm.states`; the engine in `ultravox_fsm.machine`;
the I/O adapters in `ultravox_fsm.io`; a stand-in server and hypothesis strategies in
`ultravox_fsm.testing`.
"""

from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from .io.livekit import RealtimeModel, RealtimeSession
from .machine import Engine, EngineOptions
from .states import State

__all__ = [
    "Engine",
    "EngineOptions",
    "LocalProtocolError",
    "ProtocolError",
    "RealtimeModel",
    "RealtimeSession",
    "RemoteProtocolError",
    "State",
]
