"""``kassasync``: the command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from engine.logging import configure
from engine.secrets import SecretKeyMissing

DEFAULT_DATA = Path(os.environ.get("KASSASYNC_DATA", "var/kassasync"))


def _cmd_schema(args: argparse.Namespace) -> int:
    from topics.registry import export_schemas

    written = export_schemas(Path(args.out))
    print(json.dumps({"written": len(written), "dir": str(args.out)}))
    return 0


def _cmd_sie_check(args: argparse.Namespace) -> int:
    from engine.sie.check import main_check

    return main_check(list(args.files))


def _cmd_run(args: argparse.Namespace) -> int:
    from engine.embedded.runtime import EmbeddedEngine
    from engine.secrets import SecretBox

    engine = EmbeddedEngine(Path(args.data), SecretBox.from_env(), http_port=args.http_port)
    return _run_until_signal(lambda stop: engine.run(stop))


def _run_until_signal(main: Callable[[asyncio.Event], object]) -> int:
    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)  # type: ignore[misc]

    asyncio.run(runner())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kassasync", description=__doc__)
    parser.add_argument("--log-level", default=os.environ.get("KASSASYNC_LOG_LEVEL", "INFO"))
    sub = parser.add_subparsers(dest="command", required=True)

    schema = sub.add_parser("schema", help="export JSON Schema for every message")
    schema.add_argument("--out", required=True)
    schema.set_defaults(func=_cmd_schema)

    sie = sub.add_parser("sie", help="SIE 4 files")
    sie_sub = sie.add_subparsers(dest="sie_command", required=True)
    check = sie_sub.add_parser("check", help="read SIE files and print one JSON line per file")
    check.add_argument("files", nargs="+")
    check.set_defaults(func=_cmd_sie_check)

    from engine import bookkeeping_cli, connect_cli, ops_cli

    ops_cli.register(sub)
    bookkeeping_cli.register(sub, str(DEFAULT_DATA))
    connect_cli.register(sub, str(DEFAULT_DATA))

    run = sub.add_parser("run", help="run the embedded engine")
    run.add_argument("--data", default=str(DEFAULT_DATA))
    run.add_argument("--http-port", type=int, default=8080)
    run.set_defaults(func=_cmd_run)

    from engine import demo
    from sandbox.fortnox import cli as sandbox_cli

    sandbox = sub.add_parser("sandbox", help="run the Fortnox-compatible sandbox server")
    sandbox_cli.add_arguments(sandbox)
    sandbox.set_defaults(func=sandbox_cli.run)

    demo_parser = sub.add_parser("demo", help="the make-run demo, headless, for a bounded time")
    demo.add_arguments(demo_parser)
    demo_parser.set_defaults(func=demo.run)

    from engine.kafka import cli as kafka_cli

    kafka_cli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure(args.log_level)
    try:
        result = args.func(args)
    except SecretKeyMissing as missing:
        print(f"kassasync: {missing}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
