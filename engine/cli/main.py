"""The ``kassasync`` command line: every command is built here, on the settings that
:func:`engine.cli.util.execute` reads once from the environment and the flags."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from engine.cli.util import CliError, Parser, execute, settings_of
from engine.cli.util import run_until_signal as _run_until_signal
from engine.settings import LOG_LEVELS

DESCRIPTION = (
    "Kassasync keeps a shop's till and its Fortnox company in sync. Settings come from the "
    "KASSASYNC_* environment variables (docs/configuration.md); a flag wins over its variable."
)
DATA_HELP = "the engine's data folder (default $KASSASYNC_DATA or var/kassasync)"


def package_version() -> str:
    try:
        return version("kassasync")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _cmd_schema(args: argparse.Namespace) -> int:
    from topics.registry import export_schemas

    written = export_schemas(Path(args.out))
    print(json.dumps({"written": len(written), "dir": str(args.out)}))
    return 0


def _cmd_sie_check(args: argparse.Namespace) -> int:
    from engine.sie.check import main_check

    return main_check(list(args.files))


def _cmd_run(args: argparse.Namespace) -> int:
    from engine import bootstrap
    from engine.net import port_in_use

    settings = settings_of(args)
    if port_in_use(settings.http_host, args.http_port):
        raise CliError(
            f"port {args.http_port} on {settings.http_host} is in use (another kassasync?); "
            "choose a free one with --http-port"
        )
    engine = bootstrap.embedded_engine(settings, http_port=args.http_port)
    return _run_until_signal(lambda stop: engine.run(stop))


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="kassasync", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"kassasync {package_version()}")
    parser.add_argument(
        "--log-level",
        dest="main_log_level",
        metavar="LEVEL",
        default=None,
        help=f"{', '.join(LOG_LEVELS)} (default $KASSASYNC_LOG_LEVEL or INFO)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    schema = sub.add_parser("schema", help="export JSON Schema for every message")
    schema.add_argument("--out", required=True, help="folder to write one .json file per message")
    schema.set_defaults(func=_cmd_schema)

    sie = sub.add_parser("sie", help="SIE 4 files")
    sie_sub = sie.add_subparsers(dest="sie_command", required=True)
    check = sie_sub.add_parser("check", help="read SIE files and print one JSON line per file")
    check.add_argument("files", nargs="+", metavar="FILE", help="SIE 4 files (.se, .si)")
    check.set_defaults(func=_cmd_sie_check)

    from engine.cli import bookkeeping, connect, ops

    ops.register(sub)
    bookkeeping.register(sub, None)
    connect.register(sub, None)  # type: ignore[arg-type]  # its parser class is ours

    run = sub.add_parser("run", help="run the embedded engine")
    run.add_argument("--data", default=None, help=DATA_HELP)
    run.add_argument(
        "--http-port", type=int, default=8080, help="ingest API and dashboard port (default 8080)"
    )
    run.add_argument(
        "--host",
        dest="http_host",
        default=None,
        help="address to bind (default $KASSASYNC_HTTP_HOST or 127.0.0.1)",
    )
    run.set_defaults(func=_cmd_run)

    from engine import demo
    from sandbox.fortnox import cli as sandbox_cli

    sandbox = sub.add_parser("sandbox", help="run the Fortnox-compatible sandbox server")
    sandbox_cli.add_arguments(sandbox)
    sandbox.set_defaults(func=sandbox_cli.run)

    demo_parser = sub.add_parser(
        "demo", help="what make run runs: the engine, a sandbox Fortnox and a simulated till"
    )
    demo.add_arguments(demo_parser)
    demo_parser.set_defaults(func=demo.run)

    from engine import agent

    agent_parser = sub.add_parser(
        "agent", help="the till-PC agent: send the till's daily SIE files to the engine"
    )
    agent.add_arguments(agent_parser)

    from engine.kafka import cli as kafka_cli

    kafka_cli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return execute(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
