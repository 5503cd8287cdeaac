"""Inputs to the core that do not come off the wire: client requests and connection facts.

Decoded server messages (`wire.ServerMessage`) are fed to the core as they are; these Structs
cover everything else. They are msgspec Structs so a trace can record and replay them.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec


class Input(msgspec.Struct, tag=True, kw_only=True, gc=False):
    """Base of the non-wire inputs; untracked by the garbage collector like the wire messages."""


class Connected(Input):
    """The call's socket is open; ``call_id`` comes from the call-creation response."""

    call_id: str


class CallFailed(Input):
    """Creating or joining a call failed. ``status``: the HTTP status (None: the API or the
    socket could not be reached); ``retry_after``: the server's Retry-After, in seconds."""

    detail: str
    retryable: bool
    status: int | None = None
    retry_after: float | None = None


class SocketClosed(Input):
    """The socket of call ``call_id`` closed with ``code`` (None: it failed without one)."""

    call_id: str
    code: int | None


class Close(Input):
    """The user closed the session."""


class RestartRequested(Input):
    """Instructions or tools changed: the call must be replaced, keeping the conversation."""

    reason: str


class AgentAudio(Input):
    """A binary frame of agent audio that the fast path could not place."""

    data: bytes


class ReplyRequested(Input):
    request_id: str
    instructions: str | None = None


class SayRequested(Input):
    request_id: str
    text: str
    interruptible: bool = True
    tool_calls: list[dict[str, Any]] | None = None
    known_tool_results: list[dict[str, Any]] | None = None


class RequestCancelled(Input):
    """The caller gave up on a request; its reply, if it still comes, is dropped."""

    request_id: str


class ContextAdded(Input):
    """A chat-context item that informs the agent without asking for a reply."""

    role: Literal["user", "system"]
    text: str


class ContextFlush(Input):
    """End of the tick: held context that no reply request took goes out as `later`."""


class ToolResult(Input):
    invocation_id: str
    result: str | None = None
    error_message: str | None = None
    error_type: Literal["undefined", "implementation-error"] | None = None
    reply_required: bool = True


class ToolsChanged(Input):
    """The names of the tools the live call knows; others are answered `undefined`."""

    names: frozenset[str]


class InterruptRequested(Input):
    pass


class OutputMediumChanged(Input):
    medium: Literal["voice", "text"]


class HangUpRequested(Input):
    message: str | None = None


ClientInput = (
    Connected
    | CallFailed
    | SocketClosed
    | Close
    | RestartRequested
    | AgentAudio
    | ReplyRequested
    | SayRequested
    | RequestCancelled
    | ContextAdded
    | ContextFlush
    | ToolResult
    | ToolsChanged
    | InterruptRequested
    | OutputMediumChanged
    | HangUpRequested
)
