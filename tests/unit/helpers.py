"""A tiny driver that feeds the engine and names the commands it returns."""

from __future__ import annotations

import msgspec

from ultravox_fsm import commands as cmd
from ultravox_fsm import events as ev
from ultravox_fsm import wire
from ultravox_fsm.machine import Engine, EngineOptions


class Driver:
    def __init__(self, options: EngineOptions | None = None) -> None:
        self.engine = Engine(options)
        self.now = 0.0

    def __call__(self, event: object, at: float | None = None) -> list[cmd.Command]:
        if at is not None:
            self.now = at
        return self.engine.handle(event, self.now)  # type: ignore[arg-type]

    def tick(self, at: float) -> list[cmd.Command]:
        self.now = at
        return self.engine.handle_timer(at)

    def live(self, call_id: str = "c1") -> list[cmd.Command]:
        return self(ev.Connected(call_id=call_id))

    def lose(self, call_id: str = "c1", code: int = 1006) -> list[cmd.Command]:
        """The socket drops; returns what that does and what the end of the backoff does."""
        out = self(ev.SocketClosed(call_id=call_id, code=code))
        deadline = self.engine._turns.conn.deadline
        return out if deadline is None else out + self.tick(deadline)


def names(commands: list[cmd.Command]) -> list[str]:
    out = []
    for c in commands:
        name = type(c).__name__
        if isinstance(c, cmd.Send):
            name += ":" + type(c.message).__name__
        out.append(name)
    return out


def sent(commands: list[cmd.Command]) -> list[bytes]:
    return [wire.encode(c.message) for c in commands if isinstance(c, cmd.Send)]


def agent(
    ordinal: int, *, text: str | None = None, delta: str | None = None, final: bool = False
) -> wire.Transcript:
    return wire.Transcript(role="agent", text=text, delta=delta, final=final, ordinal=ordinal)


def user(ordinal: int, text: str, medium: str = "voice") -> wire.Transcript:
    return wire.Transcript(role="user", medium=medium, text=text, final=True, ordinal=ordinal)  # type: ignore[arg-type]


def invocation(invocation_id: str, name: str = "lookup") -> wire.ClientToolInvocation:
    return wire.ClientToolInvocation(
        tool_name=name, invocation_id=invocation_id, parameters=msgspec.Raw(b'{"city":"Paris"}')
    )


STATE = {s: wire.State(state=s) for s in ("idle", "listening", "thinking", "speaking")}
