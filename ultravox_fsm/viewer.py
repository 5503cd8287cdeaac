"""One self-contained HTML page for a recorded call: works offline, no CDN.

It shows the state diagram drawn from the table with per-edge visit counts (never-used edges
greyed), a timeline lane of states over call time with markers (user and agent turns, tool
invocations and results, barge-ins, restarts, reconnects, refused inputs), the time to first
agent output of each generation, the transcript, and a scrubber: click the timeline or drag the
slider to see the state and the last events at that moment.
"""

from __future__ import annotations

import html
import json
import math
from importlib import resources
from typing import Any

import msgspec

from .states import BOOKKEEPING, TABLE, State
from .trace import Record

_MARKERS = {
    "PlaybackClearBuffer": "barge-in",
    "ClientToolInvocation": "tool invocation",
    "ToolResult": "tool result",
    "RestartRequested": "restart requested",
    "CallLost": "call lost",
    "CallEnded": "call ended",
    "InterruptRequested": "interrupt",
}


def _events(records: list[Record]) -> dict[str, Any]:
    t0 = records[0].t if records else 0.0
    segments: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    visits: dict[str, int] = {}
    state, since, connects = State.IDLE.value, 0.0, 0
    for rec in records:
        t = round(rec.t - t0, 4)
        for src, dst, _trigger in rec.steps:
            segments.append({"state": state, "from": since, "to": t})
            state, since = dst, t
            key = f"{src}>{dst}"
            visits[key] = visits.get(key, 0) + 1
        if rec.refused:
            events.append({"t": t, "kind": "error", "text": f"{rec.kind} refused: {rec.refused}"})
        if rec.kind in _MARKERS:
            events.append({"t": t, "kind": "marker", "text": _MARKERS[rec.kind]})
        if rec.kind == "Connected":
            connects += 1
            if connects > 1:
                events.append({"t": t, "kind": "marker", "text": "reconnected (new call)"})
        for raw in rec.commands:
            c = msgspec.json.decode(bytes(raw))
            if c["type"] == "UserTranscript" and c["final"]:
                events.append({"t": t, "kind": "user", "text": c["text"]})
            elif c["type"] == "CloseGeneration":
                ttft = None
                if c["first_output_at"] is not None:
                    ttft = round(c["first_output_at"] - c["created_at"], 4)
                events.append(
                    {
                        "t": t,
                        "kind": "agent",
                        "text": c["text"] + (" [interrupted]" if c["interrupted"] else ""),
                        "start": round(c["created_at"] - t0, 4),
                        "ttft": ttft,
                    }
                )
            elif c["type"] == "StartCall":
                events.append({"t": t, "kind": "marker", "text": f"new call: {c['reason']}"})
    end = round(records[-1].t - t0, 4) if records else 0.0
    segments.append({"state": state, "from": since, "to": max(end, since)})
    return {"segments": segments, "events": events, "visits": visits, "end": max(end, 0.001)}


def _layout() -> tuple[dict[str, tuple[float, float]], list[dict[str, Any]]]:
    states = [s.value for s in State]
    pos = {
        s: (
            260 + 200 * math.cos(2 * math.pi * i / len(states)),
            230 + 170 * math.sin(2 * math.pi * i / len(states)),
        )
        for i, s in enumerate(states)
    }
    edges: dict[tuple[str, str], set[str]] = {}
    for row in TABLE:
        if row.trigger in BOOKKEEPING or row.dest is None:
            continue
        for src in row.source:
            if src is not row.dest:
                edges.setdefault((src.value, row.dest.value), set()).add(row.trigger.value)
    return pos, [{"from": a, "to": b, "triggers": sorted(t)} for (a, b), t in edges.items()]


def render_html(records: list[Record], title: str = "ultravox-fsm call") -> str:
    """The viewer page for ``records``."""
    pos, edges = _layout()
    data = {**_events(records), "pos": pos, "edges": edges}
    payload = json.dumps(data).replace("</", "<\\/")
    page = resources.files(__package__).joinpath("viewer.html").read_text()
    return page.replace("{{title}}", html.escape(title)).replace("{{data}}", payload)
