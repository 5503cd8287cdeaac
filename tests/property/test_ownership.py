"""Invariants of the ownership evidence (`ownership.evaluate`), over arbitrary requests."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from ultravox_fsm import wire
from ultravox_fsm.ownership import answers, evaluate
from ultravox_fsm.request import Outgoing, Request
from ultravox_fsm.runner import Core, EngineOptions
from ultravox_fsm.states import Req

CORE = Core(EngineOptions())
TEXTS = ("Thanks for calling.", "Hello there", "")


@dataclass
class Gen:
    ordinal: int | None
    text: str
    opened_after_echo: frozenset[str]


@st.composite
def requests(draw: st.DrawFn) -> list[Request]:
    out = []
    for i in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(("reply", "say", "interrupt")))
        text = draw(st.sampled_from(TEXTS))
        message: wire.ClientMessage = (
            wire.ForcedAgentMessage(content=text)
            if kind == "say"
            else wire.UserTextMessage(text=text, urgency="soon")
        )
        request = Request(
            f"r{i}",
            kind,
            message,
            CORE,
            Outgoing(CORE),
            internal=kind == "reply" and draw(st.booleans()),
        )
        request.state = (
            Req.SWALLOWING
            if kind == "interrupt"
            else draw(st.sampled_from((Req.SENT, Req.ECHOED, Req.SWALLOWING, Req.QUEUED)))
        )
        request.echo_ordinal = draw(st.none() | st.integers(0, 6))
        out.append(request)
    return out


gens = st.builds(
    Gen,
    ordinal=st.none() | st.integers(0, 8),
    text=st.sampled_from(TEXTS),
    opened_after_echo=st.frozensets(st.sampled_from([f"r{i}" for i in range(5)])),
)


def live(request: Request) -> bool:
    return request.state in (Req.SENT, Req.ECHOED)


@given(requests(), gens, st.booleans())
def test_the_owner_and_the_merged_answer_and_users_win(
    pending: list[Request], gen: Gen, final: bool
) -> None:
    verdict = evaluate(pending, gen, final=final)
    assert not (final and verdict.waiting), "a final verdict never waits"
    if verdict.waiting:
        return
    owner = verdict.owner
    for request in verdict.merged:
        assert answers(request, gen), "only a request the generation answers is merged"
        assert request is not owner
    if owner is None:
        assert not verdict.merged
        assert not any(live(r) and answers(r, gen) for r in pending)
        return
    assert owner.state is not Req.QUEUED
    if answers(owner, gen) is not True:  # the tolerant fallback: only with final, for a live one
        assert final and live(owner)
    rivals = [r for r in pending if r is not owner and live(r) and answers(r, gen)]
    if owner.kind == "say":  # its own words: a say's, whoever else the ordinals point at
        assert answers(owner, gen) is True or final
    elif owner.internal or owner.state is Req.SWALLOWING:
        assert not [r for r in rivals if not r.internal], (
            "an internal or abandoned request won a reply a user's live request also asked for"
        )


@given(requests(), gens)
def test_an_abandoned_request_without_its_echo_never_claims_or_delays(  # (a say has its words)
    pending: list[Request], gen: Gen
) -> None:
    blind = [
        r
        for r in pending
        if r.state is Req.SWALLOWING and r.echo_ordinal is None and r.kind != "say"
    ]
    verdict = evaluate(pending, gen, final=False)
    assert verdict.owner not in blind
    others = [r for r in pending if r not in blind]
    assert verdict.waiting == evaluate(others, gen, final=False).waiting
