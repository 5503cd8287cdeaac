"""Invariants of the engine under arbitrary interleavings of server traffic and client calls."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from ultravox_fsm import commands as cmd
from ultravox_fsm import events as ev
from ultravox_fsm.errors import ProtocolError
from ultravox_fsm.machine import Engine, EngineOptions
from ultravox_fsm.states import GENERATION_STATES, LIVE, State
from ultravox_fsm.testing.strategies import TOOLS, inputs
from ultravox_fsm.turns import Turns

STEPS = 60
OPTIONS = EngineOptions(seed=7)


class EngineMachine(RuleBasedStateMachine):
    """Drives one engine and checks every command batch against the rules of states.py."""

    def __init__(self) -> None:
        super().__init__()
        self.engine = Engine(OPTIONS)
        self.now = 0.0
        self.log: list[tuple[Any, float, list[cmd.Command] | None]] = []
        self.opened: set[str] = set()
        self.closed: Counter[str] = Counter()
        self.owned: dict[str, str] = {}
        self.request_ends: Counter[str] = Counter()
        self.cancelled: set[str] = set()
        self.requested: set[str] = set()

    def apply(self, event: Any, commands: list[cmd.Command]) -> None:
        for c in commands:
            gen_id = getattr(c, "gen_id", None)
            if isinstance(c, cmd.OpenGeneration):
                assert not (self.opened - set(self.closed)), "a second generation opened"
                self.opened.add(c.gen_id)
            elif isinstance(c, cmd.CloseGeneration):
                assert c.gen_id in self.opened and not self.closed[c.gen_id], "closed twice"
                self.closed[c.gen_id] += 1
            elif gen_id is not None:
                assert gen_id in self.opened and not self.closed[gen_id], (
                    f"{c} reached a closed generation"
                )
            if isinstance(c, (cmd.AnnounceGeneration, cmd.DiscardGeneration)):
                assert gen_id not in self.owned, "generation announced twice"
                self.owned[gen_id] = c.request_id or ""
            if isinstance(c, cmd.AnnounceGeneration) and c.request_id:
                self.request_ends[c.request_id] += 1
            if isinstance(c, (cmd.FailRequest, cmd.EndRequest)):
                self.request_ends[c.request_id] += 1

    @initialize()
    def connect(self) -> None:
        """Most of a session's life is spent connected; start there (IDLE is still reachable)."""
        for event in (ev.ToolsChanged(names=frozenset(TOOLS)), ev.Connected(call_id="c0")):
            self.feed(event)

    @rule(event=inputs())
    def feed(self, event: Any) -> None:
        if (
            isinstance(event, (ev.ReplyRequested, ev.SayRequested))
            and event.request_id in self.requested
        ):
            return  # ids are unique per session; a reused id is the caller's bug, tested apart
        before = self.engine.state
        try:
            commands = self.engine.handle(event, self.now)
        except ProtocolError:
            assert self.engine.state is before, "a refused input changed the state"
            self.log.append((event, self.now, None))
            return
        self.log.append((event, self.now, commands))
        if isinstance(event, (ev.ReplyRequested, ev.SayRequested)):
            self.requested.add(event.request_id)
        if isinstance(event, ev.RequestCancelled):
            self.cancelled.add(event.request_id)
        self.apply(event, commands)

    @rule(dt=st.sampled_from((0.1, 1.0, 5.0, 20.0)))
    def tick(self, dt: float) -> None:
        self.now += dt
        commands = self.engine.handle_timer(self.now)
        self.log.append(("tick", self.now, commands))
        self.apply("tick", commands)

    @invariant()
    def generation_only_in_generating_states(self) -> None:
        if self.engine.open_generation is not None:
            assert self.engine.state in GENERATION_STATES

    @invariant()
    def tool_pending_iff_invocation_unanswered(self) -> None:
        if self.engine.state is not State.CLOSED:
            assert (self.engine.state is State.TOOL_PENDING) == bool(
                self.engine.pending_invocations
            )

    @invariant()
    def every_request_ends_at_most_once(self) -> None:
        assert all(n == 1 for n in self.request_ends.values())

    @invariant()
    def failed_calls_in_a_row_stay_within_the_retry_budget(self) -> None:
        assert self.engine._turns.conn.streak <= OPTIONS.max_retry

    @invariant()
    def connection_live_exactly_while_the_turn_is_live(self) -> None:
        live = self.engine.connection.value == "live"
        assert live == (self.engine.state in LIVE)

    @invariant()
    def audio_only_into_the_open_generation(self) -> None:
        target = self.engine.audio_target
        assert target is None or target == self.engine.open_generation

    def teardown(self) -> None:
        commands = self.engine.handle(ev.Close(), self.now)
        self.apply(ev.Close(), commands)
        assert self.engine.state is State.CLOSED
        assert all(self.closed[g] == 1 for g in self.opened), "a generation never closed"
        for request_id in self.requested - self.cancelled:
            assert self.request_ends[request_id] == 1, f"request {request_id} never ended"
        self.replay()

    def replay(self) -> None:
        """The same inputs give the same outputs; and a twin that never saw the refused inputs
        gives the same outputs too (a refused input changed nothing at all)."""
        fresh, twin = Engine(OPTIONS), Engine(OPTIONS)
        for event, now, expected in self.log:
            try:
                got = fresh.handle_timer(now) if event == "tick" else fresh.handle(event, now)
            except ProtocolError:
                got = None
            assert got == expected, f"replay diverged at {event!r}"
            if expected is not None:
                again = twin.handle_timer(now) if event == "tick" else twin.handle(event, now)
                assert again == expected, f"a refused input changed the engine, seen at {event!r}"


SETTINGS = settings(max_examples=150, stateful_step_count=STEPS, deadline=None)
TestEngineMachine = EngineMachine.TestCase
TestEngineMachine.settings = SETTINGS


def test_a_seeded_fault_in_a_handler_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Barge-in that forgets to close the generation must fail the property suite."""

    def broken(self: Turns, event: Any) -> None:
        self.suppress_audio = True

    monkeypatch.setattr(Turns, "clear_playback", broken)
    with pytest.raises(AssertionError):
        run_state_machine_as_test(EngineMachine, settings=settings(SETTINGS, max_examples=400))
