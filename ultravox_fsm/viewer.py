"""One self-contained HTML page for a recorded call: works offline, no CDN.

It shows the state diagram drawn from the table with per-edge visit counts (never-used edges
greyed), a timeline lane of states over call time with a legend and markers (spoken and typed
user turns, agent replies, tool calls and their results, barge-ins, restarts, reconnects, refused
inputs), the time from each request to the reply's first output, the transcript, and a scrubber:
click the timeline or drag the slider to see the state and the last events at that moment.
"""

from __future__ import annotations

import html
import json
import math
import re
from importlib import resources
from typing import Any

import msgspec

from .states import BOOKKEEPING, TABLE, State
from .trace import OPTIONS, Record

_MARKERS = {
    "PlaybackClearBuffer": "barge-in",
    "RestartRequested": "restart requested",
    "SocketClosed": "socket closed",
    "CallFailed": "call failed",
    "InterruptRequested": "interrupt",
}
# One colour per state, in table order; the page draws its legend from this.
_PALETTE = ("#ddd", "#9cd3a7", "#f3d27a", "#7fb2f0", "#c9a0e8", "#f39a8f", "#888", "#b5d99c")
_INSTRUCTION = re.compile(r"^<instruction>(.*)</instruction>$", re.S)


def _sent(message: dict[str, Any]) -> tuple[str, str] | None:
    """The transcript line for a data message we sent: typed user turns, instructions, context."""
    if message["type"] != "user_text_message":
        return None
    text = message["text"]
    instruction = _INSTRUCTION.match(text)
    if instruction:
        return "instruction", instruction.group(1)
    if message.get("urgency") == "later" or message.get("deferResponse"):
        return "context", text
    return "user", f"{text} (typed)"


def _tool(rec: Record) -> str:
    data = msgspec.json.decode(bytes(rec.input))
    if rec.kind == "ClientToolInvocation":
        parameters = data.get("parameters") or {}
        arguments = ", ".join(f"{k}={json.dumps(v)}" for k, v in parameters.items())
        return f"call {data['toolName']}({arguments})"
    if data.get("error_message") or data.get("error_type"):
        return f"error: {data.get('error_type')}: {data.get('error_message')}"
    return f"result: {data.get('result')}"


def _events(records: list[Record]) -> dict[str, Any]:
    records = [r for r in records if r.kind != OPTIONS]  # the engine's options: no event
    t0 = records[0].t if records else 0.0
    segments: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    visits: dict[str, int] = {}
    state, since, connects = State.IDLE.value, 0.0, 0
    asked: float | None = None  # when the latest turn or request that wants a reply came in
    for rec in records:
        t = round(rec.t - t0, 4)
        for src, dst, _trigger in rec.steps:
            segments.append({"state": state, "from": since, "to": t})
            state, since = dst, t
            key = f"{src}>{dst}"
            visits[key] = visits.get(key, 0) + 1
        if rec.refused:
            events.append({"t": t, "kind": "error", "text": f"{rec.kind} refused: {rec.refused}"})
            continue
        if rec.kind in _MARKERS:
            events.append({"t": t, "kind": "marker", "text": _MARKERS[rec.kind]})
        if rec.kind in ("ClientToolInvocation", "ToolResult"):
            events.append({"t": t, "kind": "tool", "text": _tool(rec)})
            asked = rec.t if rec.kind == "ToolResult" else asked
        if rec.kind == "ReplyRequested":
            asked = rec.t
        if rec.kind == "Connected":
            connects += 1
            if connects > 1:
                events.append({"t": t, "kind": "marker", "text": "reconnected (new call)"})
        for raw in rec.commands:
            c = msgspec.json.decode(bytes(raw))
            if c["type"] == "UserTranscript" and c["final"]:
                events.append({"t": t, "kind": "user", "text": c["text"]})
                asked = rec.t
            elif c["type"] == "Send" and (line := _sent(c["message"])):
                events.append({"t": t, "kind": line[0], "text": line[1]})
            elif c["type"] == "CloseGeneration" and (c["text"] or c["interrupted"]):
                events.append(_agent(c, t, t0, asked))
                asked = None  # one request, one reply
            elif c["type"] == "StartCall":
                events.append({"t": t, "kind": "marker", "text": f"new call: {c['reason']}"})
    end = round(records[-1].t - t0, 4) if records else 0.0
    segments.append({"state": state, "from": since, "to": max(end, since)})
    return {"segments": segments, "events": events, "visits": visits, "end": max(end, 0.001)}


def _agent(c: dict[str, Any], t: float, t0: float, asked: float | None) -> dict[str, Any]:
    """An agent line; ``wait`` is the time from what asked for it to its first output."""
    first = c["first_output_at"]
    known = first is not None and asked is not None and asked <= c["created_at"]
    return {
        "t": t,
        "kind": "agent",
        "text": c["text"] + (" [interrupted]" if c["interrupted"] else ""),
        "asked": round(asked - t0, 4) if known and asked is not None else None,
        "wait": round(first - asked, 4) if known and asked is not None else None,
    }


def _layout() -> tuple[dict[str, tuple[float, float]], list[dict[str, Any]]]:
    states = [s.value for s in State]
    pos = {
        s: (
            300 + 230 * math.cos(2 * math.pi * i / len(states)),
            250 + 200 * math.sin(2 * math.pi * i / len(states)),
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
    colors = {s.value: _PALETTE[i % len(_PALETTE)] for i, s in enumerate(State)}
    data = {**_events(records), "pos": pos, "edges": edges, "colors": colors}
    payload = json.dumps(data).replace("</", "<\\/")
    page = resources.files(__package__).joinpath("viewer.html").read_text()
    return page.replace("{{title}}", html.escape(title)).replace("{{data}}", payload)
