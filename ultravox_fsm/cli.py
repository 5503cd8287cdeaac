"""``ultravox-fsm``: the demo, the stand-in server and the state diagram from one command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path

from .diagram import DiagramError, dot, mermaid, render


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


async def _serve(port: int) -> None:
    from .testing.server import StandInServer

    server = StandInServer(port=port)
    await server.start()
    print(f"stand-in Ultravox server: base_url={server.base_url} (any API key; Ctrl-C stops)")
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ultravox-fsm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="a scripted conversation on the embedded stand-in")
    demo.add_argument("--text-only", action="store_true", help="ask for text output, no audio")
    serve = commands.add_parser("serve", help="run the stand-in Ultravox server on 127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="port to listen on (default: any free)")
    diagram = commands.add_parser("diagram", help="the state diagram, drawn from the table")
    diagram.add_argument("--format", choices=("mermaid", "dot", "svg", "png"), default="mermaid")
    diagram.add_argument("-o", "--output", help="write to this file instead of stdout")
    diagram.add_argument("--all", action="store_true", help="include bookkeeping triggers")
    args = parser.parse_args(argv)
    if args.command == "diagram":
        return _diagram(args)
    if args.command == "serve":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(args.port))
        return 0
    from .demo import main as run_demo

    return run_demo(text_only=args.text_only)


if __name__ == "__main__":
    sys.exit(main())
