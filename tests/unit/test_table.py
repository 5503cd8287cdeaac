"""The transition table itself, and every (state, input) pair run through the engine."""

from __future__ import annotations

from collections import deque
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from ultravox_fsm import events as ev
from ultravox_fsm import wire
from ultravox_fsm.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from ultravox_fsm.machine import _Turns
from ultravox_fsm.states import GENERATION_STATES, INITIAL, TABLE, State, Trigger, rows_for

from .helpers import STATE, Driver, agent, invocation


def test_every_effect_and_condition_names_a_method_of_the_model() -> None:
    for row in TABLE:
        assert callable(getattr(_Turns, row.effect, None)), row
        for name in row.when:
            assert callable(getattr(_Turns, name, None)), row


def test_rows_for_a_pair_end_with_an_unconditional_row() -> None:
    for state in State:
        for trigger in Trigger:
            rows = rows_for(state, trigger)
            assert not rows or rows[-1].when == (), (state, trigger)


def test_every_state_is_reachable_and_every_open_state_can_reach_listening() -> None:
    edges: dict[State, set[State]] = {s: set() for s in State}
    for row in TABLE:
        for source in row.source:
            edges[source].add(row.dest or source)

    def reach(start: State) -> set[State]:
        seen, todo = {start}, deque([start])
        while todo:
            for nxt in edges[todo.popleft()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        return seen

    assert reach(INITIAL) == set(State)
    for state in set(State) - {State.CLOSED}:
        assert State.LISTENING in reach(state) or state is State.IDLE
        assert State.CLOSED in reach(state)


PATHS: dict[State, list[Any]] = {
    State.IDLE: [],
    State.LISTENING: [ev.Connected(call_id="c1")],
    State.THINKING: [ev.Connected(call_id="c1"), STATE["thinking"]],
    State.SPEAKING: [ev.Connected(call_id="c1"), STATE["speaking"], agent(1, text="Hi")],
    State.TOOL_PENDING: [ev.Connected(call_id="c1"), invocation("i1")],
    State.RESTARTING: [ev.Connected(call_id="c1"), ev.CallLost(reason="1006")],
    State.CLOSED: [ev.Close()],
}
PROBES: list[Any] = [
    ev.Connected(call_id="c2"),
    ev.CallLost(reason="1006"),
    ev.RestartRequested(reason="tools changed"),
    ev.CallEnded(reason="hang-up"),
    ev.Close(),
    *STATE.values(),
    agent(1, delta=" there"),
    agent(2, text="Next"),
    agent(1, text="Hi there", final=True),
    ev.AgentAudio(data=b"\1\0"),
    wire.PlaybackClearBuffer(),
    ev.InterruptRequested(),
    invocation("i2"),
    ev.ToolResult(invocation_id="i1", result="{}"),
    ev.ReplyRequested(request_id="r9"),
    ev.SayRequested(request_id="r9", text="Hi"),
    ev.RequestCancelled(request_id="r9"),
    ev.ContextAdded(role="user", text="note"),
    ev.ContextFlush(),
    ev.HangUpRequested(message="Bye"),
    ev.OutputMediumChanged(medium="text"),
    wire.Transcript(role="user", text="hello", final=True, ordinal=3),
    wire.Unknown(type="new_thing", raw=b"{}"),
    "tick",
]


def check_pair(state: State, probe: Any) -> None:
    """Reach ``state`` for real, apply ``probe``: legal, or a typed error that changes nothing."""
    d = Driver()
    for event in PATHS[state]:
        d(event)
    assert d.engine.state is state
    try:
        d.tick(100.0) if probe == "tick" else d(probe)
    except ProtocolError as exc:
        assert isinstance(exc, (LocalProtocolError, RemoteProtocolError))
        assert d.engine.state is state
        return
    if d.engine.open_generation is not None:
        assert d.engine.state in GENERATION_STATES
    if state is State.CLOSED:
        assert d.engine.state is State.CLOSED


def test_every_state_and_input_pair_exhaustively() -> None:
    for state in State:
        for probe in PROBES:
            check_pair(state, probe)


@given(state=st.sampled_from(list(State)), probe=st.sampled_from(PROBES))
def test_state_and_input_pairs_h2_style(state: State, probe: Any) -> None:
    check_pair(state, probe)


def test_a_closed_engine_leaves_the_shared_machine() -> None:
    from ultravox_fsm.machine import _MACHINE

    d = Driver()
    assert d.engine._turns in _MACHINE.models
    d(ev.Close())
    assert d.engine._turns not in _MACHINE.models
    assert d(ev.InterruptRequested()) == []
