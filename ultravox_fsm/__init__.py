"""Ultravox Realtime for LiveKit Agents, driven by an explicit sans-I/O state machine.

    from ultravox_fsm import RealtimeModel
    session = AgentSession(llm=RealtimeModel(api_key=...))

The turn-taking rules live in `ultravox_fsm.states`; the engine in `ultravox_fsm.machine`;
the I/O adapters in `ultravox_fsm.io`; a stand-in server and hypothesis strategies in
`ultravox_fsm.testing`.
"""

import logging
import threading

from livekit.agents import Plugin

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

__version__ = "0.1.0"


class UltravoxFsmPlugin(Plugin):
    def __init__(self) -> None:
        super().__init__(__name__, __version__, __package__, logging.getLogger("ultravox_fsm"))


# LiveKit only accepts registrations on the main thread; an import from a worker thread still
# works, it just does not list the plugin.
if threading.current_thread() is threading.main_thread():
    Plugin.register_plugin(UltravoxFsmPlugin())
