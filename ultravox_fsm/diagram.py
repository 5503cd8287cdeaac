"""State diagrams drawn from the tables of `states.py`, the same rows the engine runs.

Mermaid comes from transitions' `GraphMachine` (its ``mermaid`` engine needs nothing
installed); DOT text is written from the same rows; SVG and PNG need Graphviz's ``dot``.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from enum import Enum
from typing import Any

from transitions.extensions import GraphMachine

from .states import TABLES, TURN, Table

TABLE_NAMES = tuple(t.name for t in TABLES)


class DiagramError(Exception):
    """The requested format cannot be produced here; the message says what to install."""


def table_named(name: str) -> Table[Any, Any]:
    """The table called ``name`` (``turn``, ``connection``, ``request``, ``generation``)."""
    return {t.name: t for t in TABLES}[name]


def _rows(table: Table[Any, Any], full: bool) -> list[Any]:
    return [r for r in table.rows if full or r.trigger not in table.bookkeeping]


class _Model:
    """A bare model for GraphMachine; it never runs a transition."""


def mermaid(
    current: Enum | None = None, *, full: bool = False, table: Table[Any, Any] = TURN
) -> str:
    """The ``stateDiagram-v2`` text of ``table``, with ``current`` highlighted if given."""
    model = _Model()
    initial = table.initial.value
    GraphMachine(
        model=model,
        states=[s.value for s in table.states],
        initial=current.value if current is not None else initial,
        auto_transitions=False,
        graph_engine="mermaid",
        show_conditions=True,
        title="ultravox-fsm turn-taking" if table is TURN else f"ultravox-fsm {table.name}",
        transitions=[
            {
                "trigger": r.trigger.value,
                "source": [s.value for s in r.source],
                "dest": r.dest.value if r.dest else None,
                "conditions": r.guard_names,
            }
            for r in _rows(table, full)
        ],
    )
    text: str = model.get_graph().draw(None)  # type: ignore[attr-defined]
    if current is None:
        text = text.replace(f"Class {initial} s_active", f"Class {initial} s_default")
    return text


def dot(current: Enum | None = None, *, full: bool = False, table: Table[Any, Any] = TURN) -> str:
    """Graphviz DOT text of the same rows, edges merged per (source, destination)."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for r in _rows(table, full):
        label = r.trigger.value + (f" [{' & '.join(r.guard_names)}]" if r.when else "")
        for source in r.source:
            edges[(source.value, (r.dest or source).value)].append(label)
    lines = [f"digraph {table.name} {{", "  rankdir=LR;", '  node [shape=box, style="rounded"];']
    for s in table.states:
        style = ', style="rounded,filled", fillcolor=darksalmon' if s is current else ""
        lines.append(f'  "{s.value}" [label="{s.value}"{style}];')
    for (src, dst), labels in edges.items():
        joined = "\\n".join(labels)
        lines.append(f'  "{src}" -> "{dst}" [label="{joined}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(
    fmt: str, current: Enum | None = None, *, full: bool = False, table: Table[Any, Any] = TURN
) -> bytes:
    """SVG or PNG bytes through Graphviz's ``dot`` program."""
    exe = shutil.which("dot")
    if exe is None:
        raise DiagramError(
            f"{fmt} needs Graphviz's `dot` program: apt-get install graphviz "
            "(or use --format mermaid / dot, which need nothing installed)"
        )
    done = subprocess.run(
        [exe, f"-T{fmt}"],
        input=dot(current, full=full, table=table).encode(),
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise DiagramError(f"dot failed: {done.stderr.decode(errors='replace')}")
    return done.stdout
