"""Runs the tables of `states.py` on `transitions`, and the context the core's models share.

One `transitions.Machine` per table, built once at import and shared by every session. No model
is ever registered with it (``Event.trigger(model, ...)`` runs a row on any object with a
``state`` attribute), so nothing global keeps a session alive and transitions binds nothing per
session. Effects and guards are resolved by name on the model; `states.py` names them through
typed protocols, so mypy checks every one.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from transitions import Machine

from . import commands as cmd
from .states import TABLES, Table

# transitions logs every state change at INFO; a library must be quiet. Only a level the user
# has not set is raised, so someone debugging transitions itself still can.
_tlog = logging.getLogger("transitions")
if _tlog.level == logging.NOTSET:
    _tlog.setLevel(logging.WARNING)


class Refused(Exception):
    """No row of a table applies to a trigger in the model's state (or no guard held)."""


class Stateful(Protocol):
    state: Any


def _build(table: Table[Any, Any]) -> Machine:
    machine = Machine(
        model=None,
        states=table.states,
        initial=table.initial,
        auto_transitions=False,
        send_event=False,
        model_attribute="state",
    )
    for row in table.rows:
        machine.add_transition(
            row.trigger.value,
            list(row.source),
            row.dest,
            conditions=list[str | Callable[..., Any]](row.guard_names),
            before=list[str | Callable[..., Any]](row.effect_names),
            after=list[str | Callable[..., Any]](row.then_names),
        )
    return machine


_MACHINES: dict[str, Machine] = {t.name: _build(t) for t in TABLES}
_LEGAL: dict[str, frozenset[tuple[Any, Any]]] = {
    t.name: frozenset((s, r.trigger) for r in t.rows for s in r.source) for t in TABLES
}


@dataclass(frozen=True)
class EngineOptions:
    """Timeouts and limits, in seconds of the ``now`` clock."""

    reply_timeout: float = 15.0
    owner_grace: float = 1.0
    drain_timeout: float = 2.0
    tool_timeout: float = 45.0
    late_reply_window: float = 30.0
    max_unsent: int = 256  # control messages held while no call is live
    max_sends: int = 2  # a request is sent to at most this many calls
    max_retry: int = 3  # failed calls in a row before the session gives up
    first_retry_delay: float = 0.1
    retry_interval: float = 2.0  # doubles per failure after the first
    max_backoff: float = 30.0  # also caps the server's Retry-After
    proven_after: float = 30.0  # a call up this long counts as healthy
    seed: int | None = None  # backoff jitter; None draws from the OS


Step = tuple[str, str, str, str]
"""(table, before, after, trigger) of one state change."""


@dataclass
class Core:
    """What every model of one session shares: the clock reading, the options, the commands
    produced by the current input and the state changes it made."""

    options: EngineOptions
    now: float = 0.0
    out: list[cmd.Command] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    rng: random.Random = field(init=False)
    depth: int = 0  # triggers fired from inside effects are the core's own, never refused

    def __post_init__(self) -> None:
        self.rng = random.Random(self.options.seed)

    def emit(self, command: cmd.Command) -> None:
        self.out.append(command)

    def report(self, kind: str, message: str) -> None:
        self.out.append(cmd.Report(kind=kind, message=message))

    def fire(self, table: Table[Any, Any], model: Stateful, trigger: Any, data: Any = None) -> None:
        """Run ``trigger`` on ``model`` by ``table``'s rows; `Refused` if none applies."""
        before = model.state
        event = _MACHINES[table.name].events[trigger.value]
        self.depth += 1
        try:
            done = (before, trigger) in _LEGAL[table.name] and event.trigger(model, data)
        finally:
            self.depth -= 1
        if not done:
            if self.depth:
                raise AssertionError(f"the core refused its own {table.name} {trigger.value!r}")
            raise Refused(table.why_refused(trigger, before))
        if model.state is not before:
            self.steps.append((table.name, before.value, model.state.value, trigger.value))
