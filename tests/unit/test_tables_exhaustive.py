"""Every (state, trigger) pair of the CONNECTION, REQUEST and GENERATION tables, h2-style.

Each model is put in each state and given each trigger with data of the right kind: either a
row applies and the model ends in that row's destination, or the trigger is refused and the
model is left exactly as it was. (The TURN table is walked through the engine in
`test_table.py`, reaching every state for real.)
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ultravox_fsm import events as ev
from ultravox_fsm import wire
from ultravox_fsm.connection import Connection
from ultravox_fsm.generation import Generation
from ultravox_fsm.ownership import Verdict
from ultravox_fsm.request import Expiry, Outgoing, Request, Requests
from ultravox_fsm.runner import Core, EngineOptions, Refused
from ultravox_fsm.states import CONNECTION, GENERATION, REQUEST, Conn, Gen, Req, Table


def connection(state: Conn) -> Connection:
    conn = Connection(Core(EngineOptions()), lambda *_: None, lambda _: None, lambda *_: None)
    conn.state, conn.call_id, conn.prior_call_id = state, "c1", "c0"
    return conn


def request(state: Req, kind: str = "reply") -> Request:
    core = Core(EngineOptions())
    message = wire.UserTextMessage(text="hi", urgency="soon")
    made = Request("r1", kind, message, core, Outgoing(core), words=True)  # type: ignore[arg-type]
    made.state = state
    made.outgoing.unsent.append((message, "r1"))
    return made


def generation(state: Gen, owner: Request) -> Generation:
    requests = Requests(owner.core)
    requests.add(owner)
    gen = Generation("g1", 3, 0.0, frozenset(), owner.core, requests)
    gen.state = state
    return gen


DATA: dict[str, list[Any]] = {
    "joined": [ev.Connected(call_id="c1")],
    "create_failed": [
        ev.CallFailed(detail="HTTP 404", retryable=False, status=404),
        ev.CallFailed(detail="HTTP 503", retryable=True, status=503, retry_after=float("inf")),
        ev.CallFailed(detail="HTTP 401", retryable=False, status=401),
    ],
    "socket_closed": [
        ev.SocketClosed(call_id="c1", code=1000),
        ev.SocketClosed(call_id="c1", code=1011),
        ev.SocketClosed(call_id="c9", code=None),
    ],
    "echo": [4],
    "answer": ["g1"],
    "merge": ["g1"],
    "late_reply": ["g1"],
    "time_out": [Expiry("timed out"), Expiry("timed out", open_until=3.0)],
    "fail": ["the call ended"],
    "evict": ["too many"],
    "replace": ["tools changed"],
}


def check(table: Table[Any, Any], model: Any, trigger: Any, data: Any) -> None:
    before = copy.copy(model.__dict__)
    state = model.state
    allowed = {row.dest or state for row in table.rows_for(state, trigger)}
    try:
        model.core.fire(table, model, trigger, data)
    except Refused:
        assert model.__dict__ == before, (table.name, state, trigger, "a refusal changed it")
        return
    assert model.state in allowed, (table.name, state, trigger, model.state)


@pytest.mark.parametrize("state", list(Conn))
@pytest.mark.parametrize("trigger", list(CONNECTION.triggers))
def test_connection_pairs(state: Conn, trigger: Any) -> None:
    for data in DATA.get(trigger.value, [None]):
        conn = connection(state)
        check(CONNECTION, conn, trigger, data)


@pytest.mark.parametrize("state", list(Req))
@pytest.mark.parametrize("trigger", list(REQUEST.triggers))
@pytest.mark.parametrize("kind", ["reply", "say", "interrupt"])
def test_request_pairs(state: Req, trigger: Any, kind: str) -> None:
    for data in DATA.get(trigger.value, [None]):
        check(REQUEST, request(state, kind), trigger, data)


@pytest.mark.parametrize("state", list(Gen))
@pytest.mark.parametrize("trigger", list(GENERATION.triggers))
@pytest.mark.parametrize("owner_state", [Req.SENT, Req.ECHOED, Req.SWALLOWING])
def test_generation_pairs(state: Gen, trigger: Any, owner_state: Req) -> None:
    for verdict_of in (
        lambda r: Verdict(owner=r),
        lambda r: Verdict(),
        lambda r: Verdict(waiting=True),
    ):
        owner = request(owner_state)
        gen = generation(state, owner)
        check(GENERATION, gen, trigger, verdict_of(owner))
