"""Traces: a recorded session replays to the same transitions and commands; tampering shows;
a trace that cannot be written never breaks the call."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ultravox_fsm import events as ev
from ultravox_fsm import trace, wire
from ultravox_fsm.cli import main
from ultravox_fsm.errors import ProtocolError
from ultravox_fsm.machine import Engine, EngineOptions

from .helpers import STATE, agent, invocation, user

SCRIPT: list[object] = [
    ev.ToolsChanged(names=frozenset({"lookup"})),
    ev.Connected(call_id="c1"),
    ev.ReplyRequested(request_id="r1", instructions="hi"),
    user(0, "<instruction>hi</instruction>", medium="text"),
    STATE["thinking"],
    ev.AgentAudio(data=b"\1\0" * 160),
    agent(1, text="Hello", final=True),
    STATE["listening"],
    invocation("i1"),
    ev.ToolResult(invocation_id="i1", result="{}"),
    ev.ToolResult(invocation_id="i1", result="again"),  # refused: recorded as refused
    wire.PlaybackClearBuffer(),
    ev.ContextAdded(role="user", text="What time is checkout?"),
    ev.ReplyRequested(request_id="r2"),  # a typed user turn
    user(3, "What time is checkout?", medium="text"),
    agent(4, text="At noon.", final=True),
    "timer",
]


def record_session(path: Path) -> None:
    writer = trace.TraceWriter(path)
    engine = Engine(observer=writer)
    for i, event in enumerate(SCRIPT):
        now = float(i)
        try:
            engine.handle_timer(now + 100) if event == "timer" else engine.handle(event, now)  # type: ignore[arg-type]
        except ProtocolError as exc:
            writer.refused(now, event, exc)
    writer.close()


def test_recorded_session_replays_identically_and_keeps_no_pcm(tmp_path: Path) -> None:
    path = tmp_path / "call.jsonl"
    record_session(path)
    records = trace.read(path)
    assert len(records.records) == len(SCRIPT)
    assert records.records[5].kind == "AgentAudio" and records.records[5].audio_bytes == 320
    assert b"\\u0001" not in path.read_bytes()
    assert trace.replay(records) is None
    assert main(["replay", str(path)]) == 0


def test_a_tampered_trace_reports_the_first_divergence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "call.jsonl"
    record_session(path)
    lines = path.read_text().splitlines()
    lines[6] = lines[6].replace('"Hello"', '"Goodbye"', 1)
    path.write_text("\n".join(lines) + "\n")
    divergence = trace.replay(trace.read(path))
    assert divergence is not None and divergence.line == 7
    assert main(["replay", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{path}:7: replay diverges at this input (Transcript, t=6.000)")
    assert out[1:] == ['  commands[0].text: recorded "Hello", replayed "Goodbye"']


def test_the_trace_stops_at_its_size_bound(tmp_path: Path) -> None:
    path = tmp_path / "small.jsonl"
    writer = trace.TraceWriter(path, max_bytes=300)
    engine = Engine(observer=writer)
    engine.handle(ev.Connected(call_id="c1"), 0.0)
    for i in range(20):
        engine.handle(ev.ContextAdded(role="user", text=f"note {i}"), float(i))
    writer.close()
    assert path.stat().st_size <= 330
    assert trace.read(path).records[-1].kind == "truncated"


def test_replay_explains_missing_and_malformed_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", str(tmp_path / "nope.jsonl")]) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"t": 1}\nnot json\n')
    assert main(["replay", str(bad)]) == 2
    assert "bad.jsonl:1: not a trace record" in capsys.readouterr().err


def test_render_writes_an_offline_viewer(tmp_path: Path) -> None:
    path = tmp_path / "call.jsonl"
    record_session(path)
    out = tmp_path / "call.html"
    assert main(["render", str(path), "-o", str(out)]) == 0
    page = out.read_text()
    assert "<script src" not in page and "http" not in page.split("<body>")[1].replace(
        "http://www.w3.org/2000/svg", ""
    )
    assert '"kind": "agent", "text": "Hello"' in page
    assert '"listening>speaking": 1' in page or '"thinking>speaking": 1' in page


def test_a_cut_last_line_is_left_out_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "crashed.jsonl"
    record_session(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 10])
    assert trace.read(path).cut_line == len(SCRIPT)
    assert main(["replay", str(path)]) == 0
    captured = capsys.readouterr()
    assert f"{len(SCRIPT) - 1} inputs replayed" in captured.out
    assert captured.err == (
        f"warning: {path}:{len(SCRIPT)}: the last line is incomplete (the recording process "
        "stopped mid-write); using the lines before it\n"
    )


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("", "the trace is empty (no inputs recorded)"),
        ('{"t": 1, "kind": "Bogus"}', "line 1: unknown input kind 'Bogus'"),
        (
            '{"t": 1, "kind": "Connected", "input": {"call_id": 5}}',
            "line 1: not a valid Connected input: Expected `str`, got `int` - at `$.call_id`",
        ),
    ],
)
def test_replay_refuses_empty_and_invalid_traces_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, error: str
) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(line + "\n" if line else "")
    assert main(["replay", str(path)]) == 2
    assert capsys.readouterr().err == f"ultravox-fsm replay: {path}: {error}\n"


def test_an_unwritable_trace_warns_once_and_records_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    caplog.set_level(logging.WARNING, logger="ultravox_fsm")
    writer = trace.TraceWriter(blocker / "traces" / "call.jsonl")
    engine = Engine(observer=writer)
    engine.handle(ev.Connected(call_id="c1"), 0.0)
    writer.close()
    assert not writer.recording
    [warning] = [r for r in caplog.records if r.name == "ultravox_fsm"]
    assert warning.getMessage().startswith(f"not recording a trace to {blocker}/traces/call.jsonl")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_trace_whose_disk_fills_up_stops_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="ultravox_fsm")
    writer = trace.TraceWriter("/dev/full")
    engine = Engine(observer=writer)
    engine.handle(ev.Connected(call_id="c1"), 0.0)
    for i in range(2000):
        engine.handle(ev.ContextAdded(role="user", text=f"note {i}"), float(i))
    writer.close()
    assert not writer.recording
    [warning] = [r for r in caplog.records if r.name == "ultravox_fsm"]
    assert "No space left" in warning.getMessage()


def test_a_trace_keeps_every_tables_transitions_and_the_seed_that_replays_its_backoff(
    tmp_path: Path,
) -> None:
    from ultravox_fsm.trace import TraceWriter, read, replay

    path = tmp_path / "t.jsonl"
    options = EngineOptions(seed=12345)
    writer = TraceWriter(path, options=options)
    engine = Engine(options, observer=writer)
    engine.handle(ev.ReplyRequested(request_id="r1"), 0.0)
    engine.handle(ev.Connected(call_id="c1"), 0.1)
    engine.handle(ev.SocketClosed(call_id="c1", code=1011), 0.2)
    deadline = engine.next_deadline()
    assert deadline is not None
    engine.handle_timer(deadline)
    writer.close()
    trace = read(path)
    moves = [m for rec in trace.records for m in rec.moves]
    assert ["request", "queued", "sent", "send"] in [list(m) for m in moves]
    assert ["connection", "live", "backing_off", "socket_closed"] in [list(m) for m in moves]
    assert replay(trace) is None  # the recorded seed gives the same jitter, so the same timer
