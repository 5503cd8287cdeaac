"""Deltas the engine says `merges` may reach it as one: the adapter does so per burst (issue 15).

The adapter holds a run of such deltas (same ordinal) and feeds them joined, before any other
input and at the burst's end. Whatever the traffic around them, that must give exactly what
feeding them one by one gives: the same commands, with the run's text pieces joined.
"""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from ultravox_fsm import commands as cmd
from ultravox_fsm import events as ev
from ultravox_fsm import wire
from ultravox_fsm.errors import ProtocolError
from ultravox_fsm.machine import Engine, EngineOptions
from ultravox_fsm.testing.strategies import TOOLS, inputs

OPTIONS = EngineOptions(seed=3)
Tick = float  # time passing: the timers fire


def delta_runs() -> st.SearchStrategy[list[Any]]:
    ordinal = st.none() | st.integers(0, 4)
    piece = st.sampled_from(("Hi", " there", ",", " friend", ""))
    return st.builds(
        lambda o, pieces: [wire.Transcript(role="agent", delta=p, ordinal=o) for p in pieces],
        ordinal,
        st.lists(piece, min_size=1, max_size=6),
    )


def replies() -> st.SearchStrategy[list[Any]]:
    """The server starts a reply and streams its deltas, audio among them: so that runs of
    deltas often have a generation to join."""
    return st.builds(
        lambda o, speaking, pieces: [
            wire.State(state="thinking"),
            wire.Transcript(role="agent", text="Hi", ordinal=o),
            *([wire.State(state="speaking")] if speaking else []),
            *(
                wire.Transcript(role="agent", delta=p, ordinal=o) if p else ev.AgentAudio(b"\1\0")
                for p in pieces
            ),
        ],
        st.none() | st.integers(0, 6),
        st.booleans(),
        st.lists(st.sampled_from((" a", " b", ", c", "")), max_size=12),
    )


traffic = st.lists(
    st.one_of(
        inputs().map(lambda e: [e]),
        replies(),
        delta_runs(),
        delta_runs(),
        st.sampled_from((0.5, 2.0, 20.0)).map(lambda dt: [Tick(dt)]),
    ),
    max_size=40,
).map(lambda chunks: [e for chunk in chunks for e in chunk])


def start() -> tuple[Engine, list[cmd.Command]]:
    engine = Engine(OPTIONS)
    out: list[cmd.Command] = []
    for event in (ev.ToolsChanged(names=frozenset(TOOLS)), ev.Connected(call_id="c0")):
        out += engine.handle(event, 0.0)
    return engine, out


def feed(engine: Engine, event: Any, now: float) -> list[cmd.Command]:
    try:
        if isinstance(event, Tick):
            return engine.handle_timer(now)
        return engine.handle(event, now)
    except ProtocolError:
        return []


def one_by_one(events: list[Any]) -> tuple[Engine, list[cmd.Command]]:
    engine, out = start()
    now = 0.0
    for event in events:
        now += event if isinstance(event, Tick) else 0.0
        out += feed(engine, event, now)
    return engine, out


def merged(events: list[Any]) -> tuple[Engine, list[cmd.Command]]:
    """What the adapter does (io/host.py `on_text`, `_hold`, `_settle`)."""
    engine, out = start()
    now = 0.0
    held: list[str] = []
    ordinal: int | None = None

    def settle() -> None:
        if held:
            text = "".join(held)
            held.clear()
            run = wire.Transcript(role="agent", delta=text, ordinal=ordinal)
            out.extend(feed(engine, run, now))

    for event in events:
        if isinstance(event, wire.Transcript) and (delta := wire.agent_delta(event)) is not None:
            if held and event.ordinal == ordinal:
                held.append(delta)
                continue
            settle()
            if engine.merges(event):
                ordinal = event.ordinal
                held.append(delta)
                continue
        settle()
        now += event if isinstance(event, Tick) else 0.0
        out += feed(engine, event, now)
    settle()
    return engine, out


def joined(commands: list[cmd.Command]) -> tuple[list[cmd.Command], set[str]]:
    """Adjacent text pieces of one generation joined (what LiveKit's text stream reads), and
    the kinds reported (the adapter warns once per kind; a run reports a rewrite once)."""
    out: list[cmd.Command] = []
    kinds = {c.kind for c in commands if isinstance(c, cmd.Report)}
    for c in commands:
        if isinstance(c, cmd.Report):
            continue
        last = out[-1] if out else None
        if (
            isinstance(c, cmd.PushText)
            and isinstance(last, cmd.PushText)
            and last.gen_id == c.gen_id
        ):
            out[-1] = cmd.PushText(gen_id=c.gen_id, text=last.text + c.text)
            continue
        out.append(c)
    return out, kinds


# A run of ordinal 1 gives the open generation (which had none) its ordinal: whether the next
# run merges may only be asked once the engine has seen it.
ORDINAL_CHANGE = [
    wire.State(state="thinking"),
    wire.Transcript(role="agent", text="Hi"),
    wire.State(state="speaking"),
    ev.SayRequested(request_id="r2", text="Hi"),
    *(wire.Transcript(role="agent", delta="Hi", ordinal=o) for o in (1, 2, 2)),
]


@settings(max_examples=400, deadline=None)
@given(traffic)
@example(ORDINAL_CHANGE)
def test_merged_deltas_give_what_one_by_one_gives(events: list[Any]) -> None:
    single, expected = one_by_one(events)
    batched, got = merged(events)
    assert joined(got) == joined(expected)
    assert batched.state is single.state
    assert batched.open_generation == single.open_generation


def test_a_run_of_deltas_of_a_decided_reply_merges_and_others_do_not() -> None:
    engine, _ = start()
    engine.handle(wire.State(state="thinking"), 0.0)
    delta = wire.Transcript(role="agent", delta=" more", ordinal=1)
    assert not engine.merges(delta)  # no generation yet: the first delta opens one
    engine.handle(wire.Transcript(role="agent", text="Hello", ordinal=1), 0.0)
    engine.handle(wire.State(state="speaking"), 0.0)
    assert engine.merges(delta)  # nobody asked: decided at once, unsolicited
    assert not engine.merges(wire.Transcript(role="agent", delta=" x", ordinal=0))  # stale
    assert not engine.merges(wire.Transcript(role="agent", delta=" x", ordinal=1, final=True))
    assert not engine.merges(wire.Transcript(role="agent", text="Hello x", ordinal=1))
    assert not engine.merges(wire.Transcript(role="user", delta=" x", ordinal=1))
