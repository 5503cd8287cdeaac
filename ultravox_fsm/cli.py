"""``ultravox-fsm``: the demo, the stand-in server, traces and the state diagram from one command.

Bad input (a path that cannot be written, a port in use, a broken trace) ends with one line on
stderr naming the problem and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .diagram import TABLE_NAMES, DiagramError, dot, mermaid, render, table_named
from .states import TABLES
from .testing.scenario import DEFAULT_GREETING

if TYPE_CHECKING:
    from .trace import Trace

DESCRIPTION = (
    "Ultravox Realtime for LiveKit Agents: a scripted demo, the stand-in Ultravox server, "
    "recorded-call replay and viewer, and the turn-taking state diagram."
)
DEFAULT_RECORD = "out/demo"


class CommandError(Exception):
    """A problem with the user's input, printed as one line."""


def _write(output: str, data: bytes) -> None:
    try:
        Path(output).write_bytes(data)
    except OSError as exc:
        raise CommandError(f"cannot write {output}: {exc.strerror or exc}") from None


def _diagram(args: argparse.Namespace) -> int:
    if args.format in ("svg", "png") and not args.output and sys.stdout.isatty():
        raise CommandError(f"{args.format} is binary: write it to a file with -o FILE")
    if args.format in ("svg", "png") and args.machine == "all":
        raise CommandError(f"{args.format} draws one machine: choose it with --machine")
    tables = TABLES if args.machine == "all" else (table_named(args.machine),)
    try:
        if args.format == "mermaid":
            data = b"".join(
                mermaid(full=args.all, table=t).rstrip("\n").encode() + b"\n" for t in tables
            )
        elif args.format == "dot":
            data = "".join(dot(full=args.all, table=t) for t in tables).encode()
        else:
            data = render(args.format, full=args.all, table=tables[0])
    except DiagramError as exc:
        raise CommandError(str(exc)) from None
    if args.output:
        _write(args.output, data)
    else:
        sys.stdout.buffer.write(data)
    return 0


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0 to 65535)")
    return port


def _speed(text: str) -> float:
    try:
        speed = float(text)
    except ValueError:
        speed = 0.0
    if not 0 < speed < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive speed")
    return speed


async def _serve(port: int, greeting: str | None, playback_speed: float, burst: bool) -> None:
    from .testing.server import Scenario, StandInServer

    scenario = Scenario(greeting=greeting, playback_speed=playback_speed, burst=burst)
    server = StandInServer(scenario, port=port)
    try:
        await server.start()
    except OSError as exc:
        await server.stop()
        raise CommandError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}") from None
    print(f"stand-in Ultravox server: base_url={server.base_url} (any API key; Ctrl-C stops)")
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def _read(path: str) -> Trace:
    from .trace import read

    try:
        trace = read(path)
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if trace.cut_line is not None:
        print(
            f"warning: {path}:{trace.cut_line}: the last line is incomplete (the recording "
            "process stopped mid-write); using the lines before it",
            file=sys.stderr,
        )
    if not trace.records:
        raise CommandError(f"{path}: the trace is empty (no inputs recorded)")
    return trace


def _replay(path: str) -> int:
    from .trace import replay

    trace = _read(path)
    try:
        divergence = replay(trace)
    except ValueError as exc:
        raise CommandError(f"{path}: {exc}") from None
    if divergence is None:
        print(f"{path}: {len(trace.records)} inputs replayed; every transition and command matches")
        return 0
    rec = divergence.record
    print(f"{path}:{divergence.line}: replay diverges at this input ({rec.kind}, t={rec.t:.3f})")
    for difference in divergence.differences:
        print(f"  {difference}")
    return 1


def _render(path: str, output: str) -> int:
    from .viewer import render_html

    trace = _read(path)
    page = render_html(trace.records, title=f"ultravox-fsm call: {Path(path).name}")
    _write(output, page.encode())
    print(f"wrote {output} ({len(trace.records)} inputs)")
    return 0


def _demo(args: argparse.Namespace) -> int:
    record = None if args.no_record else args.record
    if record is not None:
        try:
            Path(record).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CommandError(f"cannot record to {record}: {exc.strerror or exc}") from None
    from .demo import main as run_demo

    return run_demo(text_only=args.text_only, record=record)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ultravox-fsm", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="a scripted conversation on the embedded stand-in")
    demo.add_argument("--text-only", action="store_true", help="ask for text output, no audio")
    demo.add_argument(
        "--record",
        metavar="DIR",
        default=DEFAULT_RECORD,
        help="where to write the call's trace and viewer, replacing the last run's "
        "(default: %(default)s)",
    )
    demo.add_argument("--no-record", action="store_true", help="write no trace or viewer")
    replay = commands.add_parser("replay", help="re-run a recorded trace and check it matches")
    replay.add_argument("trace", help="a .jsonl trace written with trace_dir / --record")
    render = commands.add_parser("render", help="an offline HTML viewer of a recorded trace")
    render.add_argument("trace", help="a .jsonl trace written with trace_dir / --record")
    render.add_argument("-o", "--output", default="call.html", help="the HTML file to write")
    serve = commands.add_parser("serve", help="run the stand-in Ultravox server on 127.0.0.1")
    serve.add_argument("--port", type=_port, default=0, help="port to listen on (0: any free)")
    serve.add_argument(
        "--playback-speed",
        type=_speed,
        default=1.0,
        help="how fast the modelled client plays agent audio (default 1: real time; "
        "benchmarks use 1000)",
    )
    serve.add_argument(
        "--burst",
        action="store_true",
        help="write what a call sends in one loop iteration in one socket write, as a "
        "server under load does (default: one write per frame)",
    )
    greeting = serve.add_mutually_exclusive_group()
    greeting.add_argument(
        "--greeting",
        default=DEFAULT_GREETING,
        help="what the agent says when it speaks first (the API default; a call's "
        "firstSpeakerSettings.agent.text overrides it)",
    )
    greeting.add_argument(
        "--no-greeting",
        dest="greeting",
        action="store_const",
        const=None,
        help="never greet unless the call sets firstSpeakerSettings.agent.text",
    )
    diagram = commands.add_parser("diagram", help="the state diagram, drawn from the table")
    diagram.add_argument("--format", choices=("mermaid", "dot", "svg", "png"), default="mermaid")
    diagram.add_argument("-o", "--output", help="write to this file instead of stdout")
    diagram.add_argument("--all", action="store_true", help="include bookkeeping triggers")
    diagram.add_argument(
        "--machine",
        choices=(*TABLE_NAMES, "all"),
        default="turn",
        help="which table to draw (default: turn; all: every table, one after another)",
    )
    return parser


def _run(args: argparse.Namespace) -> int:
    if args.command == "diagram":
        return _diagram(args)
    if args.command == "replay":
        return _replay(args.trace)
    if args.command == "render":
        return _render(args.trace, args.output)
    if args.command == "serve":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(args.port, args.greeting, args.playback_speed, args.burst))
        return 0
    return _demo(args)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except CommandError as exc:
        print(f"ultravox-fsm {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
