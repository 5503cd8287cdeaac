"""Requests (`generate_reply`, `say`, our interrupt) and what goes out on the call's socket.

`Request` is the model of the REQUEST table; `Requests` keeps the live ones in the order they
were made and prunes those that end; `Outgoing` holds what waits for a live call and notes the
echoes we expect back.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from . import commands as cmd
from . import wire
from .runner import Core
from .states import REQUEST, Req, ReqTrigger

DEFAULT_REPLY_PROMPT = "<instruction>Respond to the user now.</instruction>"
# Sent by interrupt(): an empty immediate user text that asks for no reply (both readings of
# the protocol's deferral: urgency and the legacy deferResponse).
INTERRUPT_MESSAGE = wire.UserTextMessage(text="", urgency="immediate", defer_response=True)


@dataclass(frozen=True)
class Expiry:
    """A request's deadline passed: why, and until when an undecided generation that may be
    its reply stays open (None: there is none)."""

    reason: str
    open_until: float | None = None


def norm(text: str) -> str:
    return " ".join(text.split()).lower()


@dataclass
class Outgoing:
    """Messages for the call: on the wire when it is live, else held (bounded) in order.
    A held entry with a request id stands for that request's message, sent by the request."""

    core: Core
    live: bool = False
    unsent: list[tuple[wire.ClientMessage, str | None]] = field(default_factory=list)
    echoes: deque[tuple[str, str | None]] = field(default_factory=lambda: deque(maxlen=64))

    def put_on_wire(self, message: wire.ClientMessage, request_id: str | None = None) -> None:
        """Emit the send; typed text is expected back as an echo, which is not user speech."""
        if isinstance(message, wire.UserTextMessage):
            self.echoes.append((norm(message.text), request_id))
        self.core.emit(cmd.Send(message=message))

    def hold(self, message: wire.ClientMessage, request_id: str | None = None) -> str | None:
        """Keep for the next call; returns the request id of an entry evicted to make room."""
        self.unsent.append((message, request_id))
        if len(self.unsent) <= self.core.options.max_unsent:
            return None
        _, evicted = self.unsent.pop(0)
        if evicted is None:
            self.core.report(
                "unsent_overflow",
                "oldest queued message dropped: too many messages were queued while no call "
                "was live",
            )
        return evicted

    def withdraw(self, request_id: str) -> None:
        self.unsent = [(m, r) for m, r in self.unsent if r != request_id]


@dataclass(eq=False)
class Request:
    """One request's lifecycle (the REQUEST table's model)."""

    id: str
    kind: Literal["reply", "say", "interrupt"]
    message: wire.ClientMessage
    core: Core
    outgoing: Outgoing
    # A resume after a lost call: nobody asked, so its reply is announced as unsolicited.
    internal: bool = False
    # The text is the user's own words (a chat message), not an instruction or a prompt.
    words: bool = False
    state: Req = Req.QUEUED
    # Queued: ``reply_timeout`` from when it was made; each send and end moves or clears it.
    deadline: float | None = None
    echo_ordinal: int | None = None
    sends: int = 0

    def __post_init__(self) -> None:
        if self.deadline is None:
            self.deadline = self.core.now + self.core.options.reply_timeout

    @property
    def text(self) -> str:
        message = self.message
        if isinstance(message, wire.ForcedAgentMessage):
            return message.content
        assert isinstance(message, wire.UserTextMessage)
        return message.text

    # --- guards -----------------------------------------------------------------------------

    def is_interrupt(self, data: Any) -> bool:
        return self.kind == "interrupt"

    def sent_too_often(self, data: Any) -> bool:
        return self.sends >= self.core.options.max_sends

    def carries_words(self, data: Any) -> bool:
        return self.words

    def answer_may_be_open(self, data: Expiry) -> bool:
        return data.open_until is not None

    # --- effects ----------------------------------------------------------------------------

    def put_on_wire(self, data: Any) -> None:
        self.sends += 1
        self.deadline = self.core.now + self.core.options.reply_timeout
        self.outgoing.put_on_wire(self.message, self.id)

    def fail_poisoned(self, data: Any) -> None:
        self.fail(
            f"every call this request was sent to ({self.sends}) was lost before it was "
            "answered; not sent again"
        )

    def note_echo(self, data: int) -> None:
        self.echo_ordinal = data

    def announce(self, data: str) -> None:
        self.deadline = None
        if not self.internal:
            self.core.emit(cmd.AnnounceGeneration(gen_id=data, request_id=self.id))

    def end_merged(self, data: str) -> None:
        self.deadline = None
        if not self.internal:
            self.core.emit(cmd.EndRequest(request_id=self.id, answered_by=data))

    def discard_reply(self, data: str) -> None:
        self.deadline = None
        self.core.emit(cmd.DiscardGeneration(gen_id=data, request_id=self.id))

    def fail(self, data: str) -> None:
        self.deadline = None
        if not self.internal and self.kind != "interrupt":
            self.core.emit(cmd.FailRequest(request_id=self.id, reason=data))

    def swallow(self, data: Any) -> None:
        self.deadline = self.core.now + self.core.options.late_reply_window

    def fail_and_swallow(self, data: Expiry) -> None:
        self.fail(data.reason)
        self.swallow(data)

    def expire(self, data: Expiry) -> None:
        self.fail(data.reason)

    def postpone(self, data: Expiry) -> None:
        self.deadline = data.open_until

    def requeue(self, data: Any) -> None:
        """Back in the queue for the next call. If the server echoed a reply request, the new
        call (``priorCallId``) has the words already: ask for the reply only."""
        if self.kind == "reply" and self.echo_ordinal is not None:
            self.message = wire.UserTextMessage(text=DEFAULT_REPLY_PROMPT, urgency="soon")
            self.words = False
        self.echo_ordinal = None
        self.outgoing.unsent.append((self.message, self.id))

    def keep_words_as_context(self, data: Any) -> None:
        """A cancelled reply request still carried the user's message: it goes out as context."""
        context = wire.UserTextMessage(text=self.text, urgency="later", defer_response=True)
        self.outgoing.unsent = [
            (context, None) if r == self.id else (m, r) for m, r in self.outgoing.unsent
        ]
        self.deadline = None

    def withdraw(self, data: Any) -> None:
        self.outgoing.withdraw(self.id)

    def forget(self, data: Any) -> None:
        self.deadline = None


@dataclass
class Requests:
    """The requests that have not ended, oldest first; ended ones are dropped as they end."""

    core: Core
    by_id: dict[str, Request] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Request]:
        return iter(list(self.by_id.values()))

    def __contains__(self, request_id: str) -> bool:
        return request_id in self.by_id

    def get(self, request_id: str | None) -> Request | None:
        return None if request_id is None else self.by_id.get(request_id)

    def add(self, request: Request) -> None:
        self.by_id[request.id] = request

    def fire(self, request: Request, trigger: ReqTrigger, data: Any = None) -> None:
        self.core.fire(REQUEST, request, trigger, data)
        if request.state in REQUEST.terminal:
            self.by_id.pop(request.id, None)

    def in_flight(self) -> bool:
        return any(r.state in (Req.SENT, Req.ECHOED) for r in self.by_id.values())
