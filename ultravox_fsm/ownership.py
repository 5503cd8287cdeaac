"""Which request a generation answers, from the evidence: a pure function.

The GENERATION table decides on the `Verdict` this returns (see the Ownership rules in
`states.py`). Evidence per request kind:

* reply: the server echoed its text as a user transcript with ordinal N; a generation whose
  ordinal is above N answers it (or, before the generation's ordinal is known, one that opened
  after the echo).
* say: the generation's words match the forced message's text (a prefix of it counts once it
  has ``SAY_WORDS`` words, or is the whole text: one short word is no evidence).
* interrupt: only the generation right after its echo (N + 1): the server's reply to our
  interrupt under the reading "``immediate`` interrupts and replies".

A request without evidence yet is *unknown*: a live one makes the generation wait (up to the
owner grace, set once); an abandoned one (timed out, cancelled, our interrupt) waits only if
the server echoed it (the ordinal will tell), and otherwise claims nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from .request import Request, norm
from .states import Req


class Evidence(Protocol):
    """What a generation shows about itself."""

    ordinal: int | None
    text: str
    opened_after_echo: frozenset[str]


@dataclass(frozen=True)
class Verdict:
    """``owner``: the request the generation goes to (None: nobody asked for it); ``merged``:
    other requests it also answers, which end with it (merged); ``waiting``: evidence is missing."""

    owner: Request | None = None
    merged: tuple[Request, ...] = field(default=())
    waiting: bool = False

    @property
    def abandoned(self) -> bool:
        return self.owner is not None and self.owner.state is Req.SWALLOWING


def answers(request: Request, gen: Evidence) -> bool | None:
    """Does ``gen`` answer ``request``? None: not known yet."""
    if request.kind == "say":
        said, heard = norm(request.text), norm(gen.text)
        if not heard:
            return None
        if heard.startswith(said):
            return True
        if not said.startswith(heard):
            return False
        enough = len(heard.split()) >= min(SAY_WORDS, len(said.split()))
        return True if enough else None
    echo = request.echo_ordinal
    if echo is not None and gen.ordinal is not None:
        return gen.ordinal == echo + 1 if request.kind == "interrupt" else gen.ordinal > echo
    if request.kind == "reply" and echo is not None and request.id in gen.opened_after_echo:
        return True
    return None


SAY_WORDS = 3


def _rank(ranked: tuple[int, Request]) -> tuple[bool, bool, int]:
    """Higher wins: a request still awaited over an abandoned one, a user's over an internal
    one, then the newest (requests come in the order they were made)."""
    made, request = ranked
    return (request.state is not Req.SWALLOWING, not request.internal, made)


def evaluate(requests: Iterable[Request], gen: Evidence, *, final: bool) -> Verdict:
    """The verdict on ``gen``; with ``final`` (owner grace over, or the generation closing) it
    never waits: a live request that was not ruled out is taken, oldest first."""
    answered: list[Request] = []
    unknown_live: list[Request] = []
    waiting = False
    for request in requests:
        live = request.state in (Req.SENT, Req.ECHOED)
        if not live and request.state is not Req.SWALLOWING:
            continue
        verdict = answers(request, gen)
        if verdict:
            answered.append(request)
        elif verdict is None and live:
            unknown_live.append(request)
        elif verdict is None and request.echo_ordinal is not None:
            waiting = True  # an abandoned request with evidence: wait for the ordinal
    if (unknown_live or waiting) and not final:
        return Verdict(waiting=True)
    if not answered and unknown_live:
        # Tolerant: a server that does not echo; the oldest live request, a user's first.
        answered = [min(unknown_live, key=lambda r: r.internal)]
    if not answered:
        return Verdict()
    says = [r for r in answered if r.kind == "say"]
    if says:  # the forced message's own words: it is that say's, and no reply to anyone else
        _, owner = max(enumerate(says), key=_rank)
        return Verdict(owner=owner)
    _, owner = max(enumerate(answered), key=_rank)
    return Verdict(owner=owner, merged=tuple(r for r in answered if r is not owner))
