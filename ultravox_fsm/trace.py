"""Recorded calls: every engine input and what it did, as JSON lines; and their replay.

A record holds the time, the input (encoded as on the wire for server messages; audio as a byte
count, never the PCM), the transitions it made and a summary of the commands. Replaying feeds
the inputs to a fresh engine and reports the first record whose transitions or commands differ,
so any recorded call becomes a regression test. The engine never sees the API key, so neither
does a trace.
"""

from __future__ import annotations

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


class Record(msgspec.Struct, kw_only=True, omit_defaults=True):
    t: float
    kind: str
    input: msgspec.Raw = msgspec.Raw(b"null")
    audio_bytes: int = 0
    steps: list[tuple[str, str, str]] = msgspec.field(default_factory=list)
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
        commands=[_command(c) for c in commands],
    )


class TraceWriter:
    """An engine observer that appends records to a JSONL file, up to ``max_bytes``."""

    def __init__(self, path: str | Path, *, max_bytes: int = 50_000_000) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] | None = self.path.open("wb")
        self._left = max_bytes

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
        if len(line) > self._left:
            self._file.write(b'{"t":0,"kind":"truncated"}\n')
            self.close()
            return
        self._left -= len(line)
        self._file.write(line)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read(path: str | Path) -> list[Record]:
    """The records of a trace file; raises ValueError naming the bad line."""
    records = []
    for number, line in enumerate(Path(path).read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(_record_decoder.decode(line))
        except msgspec.DecodeError as exc:
            raise ValueError(f"{path}:{number}: not a trace record: {exc}") from None
    return records


def decode_input(rec: Record) -> object:
    if rec.kind == TIMER:
        return TIMER
    if rec.kind == "AgentAudio":
        return ev.AgentAudio(data=b"\0" * rec.audio_bytes)
    cls = _KINDS.get(rec.kind)
    if cls is None:
        raise ValueError(f"unknown input kind {rec.kind!r} in trace")
    return msgspec.json.decode(bytes(rec.input), type=cls)


@dataclass(frozen=True)
class Divergence:
    index: int
    record: Record
    expected: str
    got: str


def replay(records: list[Record], options: EngineOptions | None = None) -> Divergence | None:
    """Feed the recorded inputs to a fresh engine; the first difference, or None."""
    steps: list[Step] = []
    engine = Engine(options, observer=lambda _now, _ev, s, _c: steps.extend(s))
    for index, rec in enumerate(r for r in records if r.kind != "truncated"):
        event = decode_input(rec)
        steps.clear()
        try:
            out = engine.handle_timer(rec.t) if event == TIMER else engine.handle(event, rec.t)  # type: ignore[arg-type]
        except ProtocolError as exc:
            if rec.refused is None:
                return Divergence(index, rec, "accepted", f"refused: {exc}")
            continue
        if rec.refused is not None:
            return Divergence(index, rec, f"refused: {rec.refused}", "accepted")
        got = record(rec.t, event, list(steps), out)
        if got.steps != rec.steps or [bytes(c) for c in got.commands] != [
            bytes(c) for c in rec.commands
        ]:
            return Divergence(
                index, rec, _encoder.encode(rec).decode(), _encoder.encode(got).decode()
            )
    return None
