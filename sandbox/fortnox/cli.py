"""``kassasync sandbox``: run the Fortnox sandbox on the loopback interface.

The first line on stdout is one JSON object with ``base_url``, ``client_id``, ``client_secret``
and ``tenant_id`` of the seeded tenant (flushed at once); the server then runs until SIGTERM or
SIGINT. ``--port 0`` picks a free port (reported in ``base_url``).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: ``kassasync --help`` need not load the server
    from sandbox.fortnox.seed import Seeded
    from sandbox.fortnox.state import SandboxState

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: pick a free one)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="loopback address to bind (127.0.0.1 or ::1)"
    )
    parser.add_argument(
        "--seed", choices=("demo", "empty", "bulk"), default="demo", help="what to seed"
    )
    parser.add_argument("--articles", type=int, default=0, help="generated articles (bulk seed)")
    parser.add_argument("--customers", type=int, default=0, help="generated customers (bulk seed)")
    parser.add_argument("--client-id", default=None, help="client id of the seeded integration")
    parser.add_argument("--client-secret", default=None, help="its client secret")
    parser.add_argument(
        "--rate-window",
        type=float,
        default=5.0,
        help="rate-limit window in seconds (25 requests per window; default 5)",
    )
    parser.add_argument("--no-rate-limit", action="store_true", help="switch the rate limit off")
    parser.add_argument("--log-level", default="warning", help="uvicorn log level")


class _QuietDrops(logging.Filter):
    """One line instead of a traceback for the drop-after-commit fault."""

    def filter(self, record: logging.LogRecord) -> bool:
        from sandbox.fortnox.gateway import SimulatedConnectionDrop

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, SimulatedConnectionDrop):
            record.msg = "sandbox fault: connection dropped after a committed write"
            record.args = ()
            record.exc_info = None
        return True


def build(args: argparse.Namespace) -> tuple[SandboxState, Seeded]:
    from sandbox.fortnox.seed import Seeded, add_client_for, seed_bulk, seed_demo, seed_empty
    from sandbox.fortnox.state import SandboxState

    state = SandboxState(rate_window_seconds=args.rate_window)
    if args.no_rate_limit:
        state.rate_limiter.configure(enabled=False)
    if args.seed == "demo":
        seeded = seed_demo(
            state,
            client_id=args.client_id or "kassasync-demo",
            client_secret=args.client_secret,
        )
    elif args.seed == "bulk":
        seeded = seed_bulk(
            state,
            articles=args.articles or 100_000,
            customers=args.customers,
            client_id=args.client_id,
            client_secret=args.client_secret,
        )
    else:
        tenant = seed_empty(state)
        client = add_client_for(
            state, tenant, client_id=args.client_id, client_secret=args.client_secret
        )
        seeded = Seeded(tenant, client)
    return state, seeded


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from sandbox.fortnox.app import create_app

    if args.host not in LOOPBACK:
        print(
            f"refusing to bind {args.host}: the sandbox listens on loopback only", file=sys.stderr
        )
        return 2
    state, seeded = build(args)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    # IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say they are TCP (with
    # protocol 0 every keep-alive answer after the first waits ~40 ms for a delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    host = "127.0.0.1" if args.host == "localhost" else args.host
    try:
        sock.bind((host, args.port))
    except OSError as exc:
        print(f"cannot bind {host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    sock.listen(128)
    port = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    print(json.dumps(seeded.credentials(f"http://{shown}:{port}")), flush=True)
    logging.getLogger("uvicorn.error").addFilter(_QuietDrops())
    config = uvicorn.Config(
        create_app(state),
        log_level=args.log_level,
        lifespan="off",
        timeout_graceful_shutdown=2,
        date_header=False,  # the app's Date is the business clock (see app.BusinessDate)
    )
    server = uvicorn.Server(config)
    if threading.current_thread() is threading.main_thread():
        # uvicorn re-raises the signal it shut down for once it has restored the previous
        # handlers; with these in place that ends in a clean return (exit status 0).
        def stop(_signum: int, _frame: FrameType | None) -> None:
            server.should_exit = True

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, stop)
    server.run(sockets=[sock])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kassasync sandbox", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))
