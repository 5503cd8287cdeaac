"""Recorded calls: every engine input and what it did, as JSON lines; and their replay.

A record holds the time, the input (encoded as on the wire for server messages; audio as a byte
count, never the PCM), the transitions it made and a summary of the commands. Replaying feeds
the inputs to a fresh engine and reports the first record whose transitions or commands differ,
so any recorded call becomes a regression test. The engine never sees the API key, so neither
does a trace. A trace is a diagnostic: writing one never breaks the call it records.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import msgspec

from . import commands as cmd
from . import events as ev
from . import wire
from .errors import ProtocolError
from .machine import Engine, EngineOptions, Step

TIMER = "timer"
OPTIONS = "options"
logger = logging.getLogger("ultravox_fsm")


class Record(msgspec.Struct, kw_only=True, omit_defaults=True):
    t: float
    kind: str
    input: msgspec.Raw = msgspec.Raw(b"null")
    audio_bytes: int = 0
    # The turn's transitions (before, after, trigger), and the other tables' as
    # (table, before, after, trigger): connection, request and generation lifecycles.
    steps: list[tuple[str, str, str]] = msgspec.field(default_factory=list)
    moves: list[tuple[str, str, str, str]] = msgspec.field(default_factory=list)
    commands: list[msgspec.Raw] = msgspec.field(default_factory=list)
    refused: str | None = None


_encoder = msgspec.json.Encoder()
_record_decoder = msgspec.json.Decoder(Record)
_KINDS: dict[str, type[Any]] = {
    t.__name__: t for t in (*wire.ServerMessage.__args__, wire.Unknown, *ev.ClientInput.__args__)
}


def _input(event: object) -> tuple[str, msgspec.Raw, int]:
    if isinstance(event, str):
        return event, msgspec.Raw(b"null"), 0
    if isinstance(event, ev.AgentAudio):
        return "AgentAudio", msgspec.Raw(_encoder.encode(ev.AgentAudio(data=b""))), len(event.data)
    return type(event).__name__, msgspec.Raw(_encoder.encode(event)), 0


def _command(c: cmd.Command) -> msgspec.Raw:
    if isinstance(c, cmd.PushAudio):
        return msgspec.Raw(
            _encoder.encode({"type": "PushAudio", "gen_id": c.gen_id, "bytes": len(c.data)})
        )
    return msgspec.Raw(_encoder.encode(c))


def record(now: float, event: object, steps: list[Step], commands: list[cmd.Command]) -> Record:
    kind, raw, audio = _input(event)
    return Record(
        t=now,
        kind=kind,
        input=raw,
        audio_bytes=audio,
        steps=[(a, b, trig) for table, a, b, trig in steps if table == "turn"],
        moves=[step for step in steps if step[0] != "turn"],
        commands=[_command(c) for c in commands],
    )


class TraceWriter:
    """An engine observer that appends records to a JSONL file, up to ``max_bytes``.

    It never raises: if the file cannot be created or written it logs one warning and stops
    recording, and the call goes on untraced.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        options: EngineOptions | None = None,
        max_bytes: int = 50_000_000,
    ) -> None:
        self.path = Path(path)
        self._file: IO[bytes] | None = None
        self._left = max_bytes
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("wb")
        except OSError as exc:
            self._give_up(exc)
        if options is not None:  # the engine's options (its jitter seed too): replay uses them
            raw = msgspec.Raw(_encoder.encode(options))
            self.write(Record(t=0.0, kind=OPTIONS, input=raw))

    @property
    def recording(self) -> bool:
        """False once the trace is closed, full, or failed."""
        return self._file is not None

    def __call__(
        self, now: float, event: object, steps: list[Step], commands: list[cmd.Command]
    ) -> None:
        self.write(record(now, event, steps, commands))

    def refused(self, now: float, event: object, error: ProtocolError) -> None:
        kind, raw, audio = _input(event)
        self.write(Record(t=now, kind=kind, input=raw, audio_bytes=audio, refused=str(error)))

    def write(self, rec: Record) -> None:
        if self._file is None:
            return
        line = _encoder.encode(rec) + b"\n"
        try:
            if len(line) > self._left:
                self._file.write(b'{"t":0,"kind":"truncated"}\n')
                self.close()
                return
            self._left -= len(line)
            self._file.write(line)
        except OSError as exc:
            self._give_up(exc)

    def close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            try:
                file.close()
            except OSError as exc:
                self._give_up(exc)

    def _give_up(self, exc: OSError) -> None:
        logger.warning("not recording a trace to %s: %s; the call goes on untraced", self.path, exc)
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError:
                logger.debug("closing the failed trace %s failed too", self.path)


@dataclass(frozen=True)
class Trace:
    """The records of a trace file, each with its line number; ``cut_line`` is the number of an
    incomplete last line (a process that died mid-write), which is left out."""

    records: list[Record]
    lines: list[int]
    cut_line: int | None = None


def read(path: str | Path) -> Trace:
    """Read a trace file; raises ValueError naming the first bad line (the last may be cut)."""
    data = Path(path).read_bytes()
    records: list[Record] = []
    lines: list[int] = []
    numbered = list(enumerate(data.splitlines(), 1))
    for number, line in numbered:
        if not line.strip():
            continue
        try:
            records.append(_record_decoder.decode(line))
        except msgspec.DecodeError as exc:
            if number == len(numbered) and not data.endswith(b"\n"):
                return Trace(records, lines, cut_line=number)
            raise ValueError(f"{path}:{number}: not a trace record: {exc}") from None
        lines.append(number)
    return Trace(records, lines)


def decode_input(rec: Record) -> object:
    """The engine input a record holds; raises ValueError for an unknown kind or a bad input."""
    if rec.kind == TIMER:
        return TIMER
    if rec.kind == "AgentAudio":
        return ev.AgentAudio(data=b"\0" * rec.audio_bytes)
    cls = _KINDS.get(rec.kind)
    if cls is None:
        raise ValueError(f"unknown input kind {rec.kind!r}")
    try:
        return msgspec.json.decode(bytes(rec.input), type=cls)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a valid {rec.kind} input: {exc}") from None


@dataclass(frozen=True)
class Divergence:
    """The first record whose replay differs: its file line and what differs, field by field."""

    line: int
    record: Record
    differences: list[str]


def _differences(path: str, recorded: Any, replayed: Any) -> list[str]:
    if recorded == replayed:
        return []
    if isinstance(recorded, dict) and isinstance(replayed, dict):
        keys = list(recorded) + [k for k in replayed if k not in recorded]
        return [
            d for k in keys for d in _differences(f"{path}.{k}", recorded.get(k), replayed.get(k))
        ]
    if isinstance(recorded, list) and isinstance(replayed, list) and len(recorded) == len(replayed):
        return [
            d
            for i, (a, b) in enumerate(zip(recorded, replayed, strict=True))
            for d in _differences(f"{path}[{i}]", a, b)
        ]
    return [f"{path}: recorded {json_text(recorded)}, replayed {json_text(replayed)}"]


def json_text(value: Any) -> str:
    """Compact JSON for a value in a message."""
    return _encoder.encode(value).decode()


def _outcome(rec: Record) -> dict[str, Any]:
    return {
        "steps": [list(s) for s in rec.steps],
        "moves": [list(m) for m in rec.moves],
        "commands": [msgspec.json.decode(bytes(c)) for c in rec.commands],
        "refused": rec.refused is not None,
    }


def replay(trace: Trace, options: EngineOptions | None = None) -> Divergence | None:
    """Feed the recorded inputs to a fresh engine; the first difference, or None.

    Raises ValueError naming the line of a record that holds no valid input.
    """
    steps: list[Step] = []
    if trace.records and trace.records[0].kind == OPTIONS and options is None:
        try:
            options = msgspec.json.decode(bytes(trace.records[0].input), type=EngineOptions)
        except msgspec.DecodeError as exc:
            raise ValueError(f"line {trace.lines[0]}: not valid engine options: {exc}") from None
    engine = Engine(options, observer=lambda _now, _ev, s, _c: steps.extend(s))
    for line, rec in zip(trace.lines, trace.records, strict=True):
        if rec.kind in ("truncated", OPTIONS):
            continue
        try:
            event = decode_input(rec)
        except ValueError as exc:
            raise ValueError(f"line {line}: {exc}") from None
        steps.clear()
        try:
            out = engine.handle_timer(rec.t) if event == TIMER else engine.handle(event, rec.t)  # type: ignore[arg-type]
        except ProtocolError as exc:
            got = Record(t=rec.t, kind=rec.kind, refused=str(exc))
        else:
            got = record(rec.t, event, list(steps), out)
        differences = _differences("", _outcome(rec), _outcome(got))
        if differences:
            return Divergence(line, rec, [d.lstrip(".") for d in differences])
    return None
