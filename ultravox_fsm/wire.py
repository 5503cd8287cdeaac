"""The Ultravox serverWebSocket data messages as msgspec Structs.

Every message is a JSON text frame with a snake_case ``type`` tag and camelCase fields
(protocol reference §3). Decoders and encoders are built once at import. Decoding raises only
`RemoteProtocolError`; a message whose ``type`` we do not know becomes `Unknown` (kept raw), since
Ultravox keeps adding message types (threads arrived in 2026).
"""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec

from .errors import RemoteProtocolError

_SNAKE = re.compile(r"(?<!^)(?=[A-Z])")


def _tag(name: str) -> str:
    return _SNAKE.sub("_", name).lower()


class Message(
    msgspec.Struct, tag_field="type", tag=_tag, rename="camel", omit_defaults=True, gc=False
):
    """Base of every data message. Messages are trees, never cycles, so the garbage collector
    does not track them (``gc=False``): fewer tracked objects, shorter collection pauses."""


# --- client -> server -------------------------------------------------------------------------

Urgency = Literal["immediate", "soon", "later"]
AgentReaction = Literal["speaks", "listens", "speaks-once"]


class Ping(Message, kw_only=True):
    timestamp: float


class UserTextMessage(Message, kw_only=True):
    """A user turn typed as text; ``urgency`` decides whether it interrupts or waits."""

    text: str
    urgency: Urgency | None = None
    thread_id: str | None = None
    # Legacy field from input_text_message. Whether the server honours it here is UNCERTAIN
    # (protocol §3.1); we send it together with urgency so either reading works.
    defer_response: bool | None = None


class InputTextMessage(Message, kw_only=True):
    """Legacy name of user_text_message, still sent by the official SDKs."""

    text: str
    defer_response: bool | None = None


class SetOutputMedium(Message, kw_only=True):
    medium: Literal["voice", "text"]


class ClientToolResult(Message, kw_only=True):
    invocation_id: str
    result: str | None = None
    response_type: str | None = None
    agent_reaction: AgentReaction | None = None
    error_type: Literal["undefined", "implementation-error"] | None = None
    error_message: str | None = None
    update_call_state: dict[str, Any] | None = None


class ForcedAgentMessage(Message, kw_only=True):
    """The agent says ``content`` verbatim and/or invokes ``tool_calls`` (``{id?, name,
    arguments}``), with ``known_tool_results`` (client-tool-result objects) already answered."""

    content: str
    tool_calls: list[dict[str, Any]] | None = None
    known_tool_results: list[dict[str, Any]] | None = None
    uninterruptible: bool | None = None
    urgency: Literal["immediate", "soon"] | None = None
    thread_id: str | None = None


class HangUp(Message, kw_only=True):
    message: str | None = None


ClientMessage = (
    Ping
    | UserTextMessage
    | InputTextMessage
    | SetOutputMedium
    | ClientToolResult
    | ForcedAgentMessage
    | HangUp
)

# --- server -> client -------------------------------------------------------------------------


class CallStarted(Message, kw_only=True):
    call_id: str = ""


class Pong(Message, kw_only=True):
    timestamp: float = 0.0


class State(Message, kw_only=True):
    # Kept as str: an unknown state value is reported by the core, not a decode failure.
    state: str


class Transcript(Message, kw_only=True):
    role: Literal["user", "agent"]
    # The docs give `voice` as the default; the seed rejects transcripts without it (§6.8).
    medium: Literal["voice", "text"] = "voice"
    text: str | None = None
    delta: str | None = None
    # `final` and `ordinal` are required by the docs; we read a missing `final` as non-final
    # and a missing `ordinal` as "same utterance" (tolerant reading, noted in the core).
    final: bool = False
    ordinal: int | None = None


def agent_delta(message: Transcript) -> str | None:
    """The text a non-final agent transcript appends when it carries only a delta, else None."""
    if message.role == "agent" and message.text is None and not message.final:
        return message.delta
    return None


class ClientToolInvocation(Message, kw_only=True):
    tool_name: str
    invocation_id: str
    # Kept undecoded: the tool receives the JSON text byte for byte.
    parameters: msgspec.Raw = msgspec.Raw(b"{}")


class DataConnectionToolInvocation(Message, kw_only=True):
    tool_name: str
    invocation_id: str
    parameters: msgspec.Raw = msgspec.Raw(b"{}")


class PlaybackClearBuffer(Message, kw_only=True):
    pass


class Debug(Message, kw_only=True):
    message: str = ""


class ThreadSpawned(Message, kw_only=True):
    thread_id: str = ""


class ThreadRejected(Message, kw_only=True):
    thread_id: str = ""
    reason: str = ""


class ThreadTerminated(Message, kw_only=True):
    thread_id: str = ""
    reason: str = ""


class SideGenerationDelta(Message, kw_only=True):
    thread_id: str = ""
    delta: str = ""


class SideGenerationCompleted(Message, kw_only=True):
    thread_id: str = ""
    text: str = ""
    tool_calls: list[dict[str, Any]] = msgspec.field(default_factory=list)


class UserStartedSpeaking(Message, kw_only=True):
    """Opt-in (``dataMessages.userStartedSpeaking``). The wire name is UNCERTAIN (protocol §3.2):
    we read the snake_case form every other message uses."""


class UserStoppedSpeaking(Message, kw_only=True):
    """Opt-in (``dataMessages.userStoppedSpeaking``); wire name UNCERTAIN as above."""


class Unknown(msgspec.Struct, frozen=True):
    """A well-formed message of a type this library does not know; ``raw`` is the frame."""

    type: str
    raw: bytes


ServerMessage = (
    CallStarted
    | Pong
    | State
    | Transcript
    | ClientToolInvocation
    | DataConnectionToolInvocation
    | PlaybackClearBuffer
    | Debug
    | ThreadSpawned
    | ThreadRejected
    | ThreadTerminated
    | SideGenerationDelta
    | SideGenerationCompleted
    | UserStartedSpeaking
    | UserStoppedSpeaking
)


class _Envelope(msgspec.Struct):
    type: str


_server_decoder = msgspec.json.Decoder(ServerMessage)
_client_decoder = msgspec.json.Decoder(ClientMessage)
_envelope_decoder = msgspec.json.Decoder(_Envelope)
_encoder = msgspec.json.Encoder()
SERVER_TYPES = frozenset(_tag(t.__name__) for t in ServerMessage.__args__)
CLIENT_TYPES = frozenset(_tag(t.__name__) for t in ClientMessage.__args__)


def _decode(data: bytes | str, decoder: msgspec.json.Decoder[Any], known: frozenset[str]) -> Any:
    """Whatever the frame holds (deep nesting, bad UTF-8, lone surrogates, huge numbers), the
    only error out of here is `RemoteProtocolError`."""
    try:
        return _decode_or_raise(data, decoder, known)
    except (RecursionError, UnicodeError, ValueError, OverflowError, MemoryError) as exc:
        raise RemoteProtocolError(f"undecodable frame: {type(exc).__name__}: {exc}") from None


def _decode_or_raise(
    data: bytes | str, decoder: msgspec.json.Decoder[Any], known: frozenset[str]
) -> Any:
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        # The union rejects unknown tags; a known tag with bad fields is a real error.
        try:
            kind = _envelope_decoder.decode(data).type
        except msgspec.DecodeError:
            raise RemoteProtocolError(f"invalid message: {exc}") from None
        if kind in known:
            raise RemoteProtocolError(f"invalid {kind!r} message: {exc}") from None
        raw = data.encode() if isinstance(data, str) else bytes(data)
        return Unknown(type=kind, raw=raw)
    except msgspec.DecodeError as exc:
        raise RemoteProtocolError(f"malformed JSON frame: {exc}") from None


def decode_server(data: bytes | str) -> ServerMessage | Unknown:
    """Decode one server text frame; raises only `RemoteProtocolError`. Every frame of a reply
    comes through here, so a good one costs the decoder call alone; any failure is decoded
    again by `_decode`, which says what was wrong."""
    try:
        message: ServerMessage = _server_decoder.decode(data)
    except Exception:
        result: ServerMessage | Unknown = _decode(data, _server_decoder, SERVER_TYPES)
        return result
    return message


def decode_client(data: bytes | str) -> ClientMessage | Unknown:
    """Decode one client text frame (used by the stand-in server)."""
    result: ClientMessage | Unknown = _decode(data, _client_decoder, CLIENT_TYPES)
    return result


def encode(message: Message) -> bytes:
    """Encode any data message to its exact JSON bytes."""
    return _encoder.encode(message)
