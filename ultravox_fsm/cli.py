"""``ultravox-fsm``: the demo, the stand-in server and the state diagram from one command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path

from .diagram import DiagramError, dot, mermaid, render
from .testing.scenario import DEFAULT_GREETING


def _diagram(args: argparse.Namespace) -> int:
    try:
        if args.format == "mermaid":
            data = mermaid(full=args.all).encode()
        elif args.format == "dot":
            data = dot(full=args.all).encode()
        else:
            data = render(args.format, full=args.all)
    except DiagramError as exc:
        print(f"ultravox-fsm diagram: {exc}", file=sys.stderr)
        return 2
    if args.output:
        Path(args.output).write_bytes(data)
    else:
        sys.stdout.buffer.write(data)
    return 0


async def _serve(port: int, greeting: str | None) -> None:
    from .testing.server import Scenario, StandInServer

    server = StandInServer(Scenario(greeting=greeting), port=port)
    await server.start()
    print(f"stand-in Ultravox server: base_url={server.base_url} (any API key; Ctrl-C stops)")
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def _replay(path: str) -> int:
    from .trace import read, replay

    try:
        records = read(path)
    except (OSError, ValueError) as exc:
        print(f"ultravox-fsm replay: {exc}", file=sys.stderr)
        return 2
    divergence = replay(records)
    if divergence is None:
        print(f"{path}: {len(records)} inputs replayed; every transition and command matches")
        return 0
    rec = divergence.record
    print(f"{path}: diverges at input {divergence.index} ({rec.kind}, t={rec.t:.3f})")
    print(f"  recorded: {divergence.expected}")
    print(f"  replayed: {divergence.got}")
    return 1


def _render(path: str, output: str) -> int:
    from .trace import read
    from .viewer import render_html

    try:
        records = read(path)
    except (OSError, ValueError) as exc:
        print(f"ultravox-fsm render: {exc}", file=sys.stderr)
        return 2
    Path(output).write_text(render_html(records, title=f"ultravox-fsm call: {Path(path).name}"))
    print(f"wrote {output} ({len(records)} inputs)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ultravox-fsm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="a scripted conversation on the embedded stand-in")
    demo.add_argument("--text-only", action="store_true", help="ask for text output, no audio")
    demo.add_argument(
        "--record", metavar="DIR", default="out/demo", help="where to write the trace and viewer"
    )
    replay = commands.add_parser("replay", help="re-run a recorded trace and check it matches")
    replay.add_argument("trace", help="a .jsonl trace written with trace_dir / --record")
    render = commands.add_parser("render", help="an offline HTML viewer of a recorded trace")
    render.add_argument("trace", help="a .jsonl trace written with trace_dir / --record")
    render.add_argument("-o", "--output", default="call.html", help="the HTML file to write")
    serve = commands.add_parser("serve", help="run the stand-in Ultravox server on 127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="port to listen on (default: any free)")
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
    args = parser.parse_args(argv)
    if args.command == "diagram":
        return _diagram(args)
    if args.command == "replay":
        return _replay(args.trace)
    if args.command == "render":
        return _render(args.trace, args.output)
    if args.command == "serve":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(args.port, args.greeting))
        return 0
    from .demo import main as run_demo

    return run_demo(text_only=args.text_only, record=args.record)


if __name__ == "__main__":
    sys.exit(main())
