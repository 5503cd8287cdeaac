"""Ultravox Realtime for LiveKit Agents, driven by an explicit sans-I/O state machine.

    from ultravox_fsm import RealtimeModel
    session = AgentSession(llm=RealtimeModel(api_key=...))

The rules live in `ultravox_fsm.states` (four tables); the engine in `ultravox_fsm.machine`;
the I/O adapters in `ultravox_fsm.io`; a stand-in server and hypothesis strategies in
`ultravox_fsm.testing`. The core (`states`, `machine`, `wire`, `events`, `commands`) imports
neither LiveKit nor aiohttp: the LiveKit names below load on first use.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from .machine import Engine, EngineOptions
from .states import State

if TYPE_CHECKING:
    from .io.livekit import RealtimeModel, RealtimeSession

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


def __getattr__(name: str) -> Any:
    """`RealtimeModel` and `RealtimeSession` import LiveKit, so only when asked for (PEP 562);
    LiveKit's plugin registry learns of us then, as it does of any plugin on import."""
    if name not in ("RealtimeModel", "RealtimeSession"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from .io import livekit

    _register()
    value = getattr(livekit, name)
    globals()[name] = value
    return value


def _register() -> None:
    from livekit.agents import Plugin

    class UltravoxFsmPlugin(Plugin):
        def __init__(self) -> None:
            super().__init__(__name__, __version__, __package__, logging.getLogger(__name__))

    # LiveKit only accepts registrations on the main thread; from a worker thread the plugin
    # still works, it is just not listed.
    if threading.current_thread() is threading.main_thread() and not any(
        isinstance(p, UltravoxFsmPlugin) or p.title == __name__ for p in Plugin.registered_plugins
    ):
        Plugin.register_plugin(UltravoxFsmPlugin())
