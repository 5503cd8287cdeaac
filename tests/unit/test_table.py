"""The transition table itself, and every (state, input) pair run through the engine."""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ultravox_fsm import events as ev
from ultravox_fsm import wire
from ultravox_fsm.connection import Connection
from ultravox_fsm.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from ultravox_fsm.generation import Generation
from ultravox_fsm.request import Request
from ultravox_fsm.states import GENERATION_STATES, TABLE, TABLES, State, Table
from ultravox_fsm.turns import Turns

from .helpers import STATE, Driver, agent, invocation

MODELS: dict[str, type] = {
    "turn": Turns,
    "connection": Connection,
    "request": Request,
    "generation": Generation,
}


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.name)
def test_every_effect_and_guard_is_a_method_of_the_model(table: Table[Any, Any]) -> None:
    for row in table.rows:
        for name in (*row.effect_names, *row.guard_names, *row.then_names):
            assert callable(getattr(MODELS[table.name], name, None)), (table.name, row)


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.name)
def test_no_row_hides_behind_an_unconditional_one(table: Table[Any, Any]) -> None:
    for state in table.states:
        for trigger in table.triggers:
            rows = table.rows_for(state, trigger)
            for row in rows[:-1]:
                assert row.when, (table.name, state, trigger, "a later row can never run")


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.name)
def test_every_state_is_reachable_and_can_reach_an_end(table: Table[Any, Any]) -> None:
    edges: dict[Any, set[Any]] = {s: set() for s in table.states}
    for row in table.rows:
        for source in row.source:
            edges[source].add(row.dest or source)

    def reach(start: Any) -> set[Any]:
        seen, todo = {start}, deque([start])
        while todo:
            for nxt in edges[todo.popleft()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        return seen

    assert reach(table.initial) == set(table.states)
    for state in table.states:
        assert reach(state) & table.terminal, (table.name, state)


def test_every_open_turn_state_can_reach_listening() -> None:
    edges: dict[State, set[State]] = {s: set() for s in State}
    for row in TABLE:
        for source in row.source:
            edges[source].add(row.dest or source)
    for state in set(State) - {State.CLOSED, State.IDLE, State.RESTARTING}:
        assert State.LISTENING in edges[state] | {state}


PATHS: dict[State, list[Any]] = {
    State.IDLE: [],
    State.LISTENING: [ev.Connected(call_id="c1")],
    State.THINKING: [ev.Connected(call_id="c1"), STATE["thinking"]],
    State.SPEAKING: [ev.Connected(call_id="c1"), STATE["speaking"], agent(1, text="Hi")],
    State.TOOL_PENDING: [ev.Connected(call_id="c1"), invocation("i1")],
    State.RESTARTING: [ev.Connected(call_id="c1"), ev.SocketClosed(call_id="c1", code=1006)],
    State.CLOSED: [ev.Close()],
}
PROBES: list[Any] = [
    ev.Connected(call_id="c2"),
    ev.SocketClosed(call_id="c1", code=1006),
    ev.SocketClosed(call_id="c0", code=1011),
    ev.CallFailed(detail="HTTP 503", retryable=True, status=503, retry_after=float("inf")),
    ev.RestartRequested(reason="tools changed"),
    ev.SocketClosed(call_id="c1", code=1000),
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


def test_no_engine_is_registered_with_transitions() -> None:
    from ultravox_fsm.runner import _MACHINES

    d = Driver()
    d.live()
    assert all(not m.models for m in _MACHINES.values())
    d(ev.Close())
    assert d(ev.InterruptRequested()) == []
