"""Outputs of the core: what an adapter must do, in order, after each input."""

from __future__ import annotations

from typing import Literal

import msgspec

from .wire import ClientMessage


class Command(msgspec.Struct, tag=True, kw_only=True, gc=False):
    """Base of the commands; untracked by the garbage collector like the wire messages."""


class Send(Command):
    """Write this data message to the call's socket."""

    message: ClientMessage


class OpenGeneration(Command):
    """Create the streams of a new agent message; not announced to anyone yet."""

    gen_id: str


class AnnounceGeneration(Command):
    """Hand the generation to its owner: the request ``request_id`` or, if None, LiveKit as an
    unsolicited ``generation_created``."""

    gen_id: str
    request_id: str | None


class DiscardGeneration(Command):
    """The generation answers a request that timed out or was cancelled: drop it unseen."""

    gen_id: str
    request_id: str


class PushText(Command):
    gen_id: str
    text: str


class PushAudio(Command):
    gen_id: str
    data: bytes


class PushFunctionCall(Command):
    gen_id: str
    call_id: str
    name: str
    arguments: str


class CloseGeneration(Command):
    """End the generation's streams. Times are the core's ``now`` values."""

    gen_id: str
    interrupted: bool
    text: str
    created_at: float
    first_output_at: float | None
    closed_at: float


class EndRequest(Command):
    """The request was answered by a generation that went to a newer request (the server
    answered both with one reply): end it quietly, with nothing to play."""

    request_id: str
    answered_by: str


class FailRequest(Command):
    request_id: str
    reason: str


class UserTranscript(Command):
    item_id: str
    text: str
    final: bool


class UserSpeechStarted(Command):
    pass


class UserSpeechStopped(Command):
    pass


class StartCall(Command):
    """Place a new call carrying the conversation (``prior_call_id`` when there was one)."""

    reason: str
    prior_call_id: str | None


class CallFinished(Command):
    """The session reached its end; ``reason`` says why. ``outcome``: ``closed`` by our caller,
    ``ended`` by the server (hang-up, max duration: a normal end), or ``failed`` (the retry
    budget is spent or the API refused: an error the user must see)."""

    reason: str
    outcome: Literal["closed", "ended", "failed"]


class Report(Command):
    """Something odd but survivable happened; ``kind`` groups reports for log-once."""

    kind: str
    message: str
