"""State diagrams drawn from `states.TABLE`, the same rows the engine runs.

Mermaid comes from transitions' `GraphMachine` (its ``mermaid`` engine needs nothing
installed); DOT text is written from the same rows; SVG and PNG need Graphviz's ``dot``.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict

from transitions.extensions import GraphMachine

from .states import BOOKKEEPING, INITIAL, TABLE, Row, State


class DiagramError(Exception):
    """The requested format cannot be produced here; the message says what to install."""


def _rows(full: bool) -> list[Row]:
    return [r for r in TABLE if full or r.trigger not in BOOKKEEPING]


class _Model:
    """A bare model for GraphMachine; it never runs a transition."""


def mermaid(current: State | None = None, *, full: bool = False) -> str:
    """The ``stateDiagram-v2`` text, with ``current`` highlighted if given."""
    model = _Model()
    GraphMachine(
        model=model,
        states=[s.value for s in State],
        initial=(current or INITIAL).value,
        auto_transitions=False,
        graph_engine="mermaid",
        show_conditions=True,
        title="ultravox-fsm turn-taking",
        transitions=[
            {
                "trigger": r.trigger.value,
                "source": [s.value for s in r.source],
                "dest": r.dest.value if r.dest else None,
                "conditions": list(r.when),
            }
            for r in _rows(full)
        ],
    )
    text: str = model.get_graph().draw(None)  # type: ignore[attr-defined]
    if current is None:
        text = text.replace(f"Class {INITIAL.value} s_active", f"Class {INITIAL.value} s_default")
    return text


def dot(current: State | None = None, *, full: bool = False) -> str:
    """Graphviz DOT text of the same rows, edges merged per (source, destination)."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for r in _rows(full):
        label = r.trigger.value + (f" [{' & '.join(r.when)}]" if r.when else "")
        for source in r.source:
            edges[(source.value, (r.dest or source).value)].append(label)
    lines = ["digraph ultravox_fsm {", "  rankdir=LR;", '  node [shape=box, style="rounded"];']
    for s in State:
        style = ', style="rounded,filled", fillcolor=darksalmon' if s is current else ""
        lines.append(f'  "{s.value}" [label="{s.value}"{style}];')
    for (src, dst), labels in edges.items():
        joined = "\\n".join(labels)
        lines.append(f'  "{src}" -> "{dst}" [label="{joined}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(fmt: str, current: State | None = None, *, full: bool = False) -> bytes:
    """SVG or PNG bytes through Graphviz's ``dot`` program."""
    exe = shutil.which("dot")
    if exe is None:
        raise DiagramError(
            f"{fmt} needs Graphviz's `dot` program: apt-get install graphviz "
            "(or use --format mermaid / dot, which need nothing installed)"
        )
    done = subprocess.run(
        [exe, f"-T{fmt}"], input=dot(current, full=full).encode(), capture_output=True, check=False
    )
    if done.returncode != 0:
        raise DiagramError(f"dot failed: {done.stderr.decode(errors='replace')}")
    return done.stdout
