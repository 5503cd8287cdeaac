"""One generation: its text bookkeeping and its ownership (the GENERATION table's model)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import commands as cmd
from .ownership import Verdict, evaluate
from .request import Requests
from .runner import Core
from .states import GENERATION, Gen, GenTrigger, ReqTrigger


@dataclass(eq=False)
class Generation:
    id: str
    ordinal: int | None
    created_at: float
    opened_after_echo: frozenset[str]
    core: Core
    requests: Requests
    state: Gen = Gen.UNDECIDED
    text: str = ""
    pushed: str = ""
    first_output_at: float | None = None
    final_seen: bool = False
    drain_deadline: float | None = None
    decide_by: float | None = None

    @property
    def muted(self) -> bool:
        """A discarded generation's text, audio and tool calls reach nobody."""
        return self.state is Gen.DISCARDED

    def consider(self, *, final: bool) -> None:
        """Run the evidence through the table; ``final`` forces a decision."""
        if self.state is Gen.UNDECIDED:
            verdict = evaluate(self.requests, self, final=final)
            trigger = GenTrigger.DECIDE if final else GenTrigger.EVIDENCE
            self.core.fire(GENERATION, self, trigger, verdict)

    # --- guards -----------------------------------------------------------------------------

    def answers_user_request(self, verdict: Verdict) -> bool:
        owner = verdict.owner
        return (
            not verdict.waiting
            and owner is not None
            and not owner.internal
            and not verdict.abandoned
        )

    def answers_abandoned_request(self, verdict: Verdict) -> bool:
        return not verdict.waiting and verdict.abandoned

    def answers_no_request(self, verdict: Verdict) -> bool:
        return not verdict.waiting and (verdict.owner is None or verdict.owner.internal)

    # --- effects ----------------------------------------------------------------------------

    def _merge(self, verdict: Verdict) -> None:
        for request in verdict.merged:
            self.requests.fire(request, ReqTrigger.MERGE, self.id)

    def hand_to_owner(self, verdict: Verdict) -> None:
        assert verdict.owner is not None
        self.decide_by = None
        self.requests.fire(verdict.owner, ReqTrigger.ANSWER, self.id)
        self._merge(verdict)

    def discard(self, verdict: Verdict) -> None:
        assert verdict.owner is not None
        self.decide_by = None
        self.requests.fire(verdict.owner, ReqTrigger.LATE_REPLY, self.id)
        self._merge(verdict)

    def announce_unsolicited(self, verdict: Verdict) -> None:
        self.decide_by = None
        if verdict.owner is not None:  # an internal request: it ends, its reply is nobody's
            self.requests.fire(verdict.owner, ReqTrigger.ANSWER, self.id)
        self.core.emit(cmd.AnnounceGeneration(gen_id=self.id, request_id=None))
        self._merge(verdict)

    def wait_for_evidence(self, verdict: Any) -> None:
        """Set once, when the generation first waits: later words never push it back."""
        if self.decide_by is None:
            self.decide_by = self.core.now + self.core.options.owner_grace
