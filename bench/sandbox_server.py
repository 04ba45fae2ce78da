"""The sandbox Fortnox in its own process, for the end-to-end benchmarks: Fortnox is remote in
production, so its CPU must not be taken from the engine's (the machine has two cores).

    python -m bench.sandbox_server --articles 10000 --customers 1000 --rate-window 0.04 \
        --compression 120 --origin 1763718000.0

prints one JSON line (``base_url``, ``client_id``, ``client_secret``, ``tenant_id``) and serves
until SIGTERM. With ``--compression`` the sandbox's business clock (``lastmodified``, token
lifetimes) runs that many times faster than the wall clock from ``--origin`` (the engine's shop
clock uses the same origin, so both sides agree on shop time).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any

import uvicorn

from sandbox.fortnox.app import create_app
from sandbox.fortnox.clock import BusinessClock
from sandbox.fortnox.seed import add_bulk, add_client_for, seed_empty
from sandbox.fortnox.state import SandboxState

FIRST_ARTICLE = 100_000


def shop_wall(compression: float, origin: float) -> Any:
    def wall() -> float:
        return origin + (time.time() - origin) * compression

    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--articles", type=int, default=0)
    parser.add_argument("--customers", type=int, default=0)
    parser.add_argument("--rate-window", type=float, default=5.0)
    parser.add_argument("--compression", type=float, default=1.0)
    parser.add_argument("--origin", type=float, default=None)
    parser.add_argument("--tenants", type=int, default=1)
    args = parser.parse_args()
    origin = time.time() if args.origin is None else args.origin
    clock = BusinessClock(wall=shop_wall(args.compression, origin))
    state = SandboxState(clock=clock, rate_window_seconds=args.rate_window)
    out: list[dict[str, Any]] = []
    for i in range(args.tenants):
        tenant = seed_empty(state, company_name=f"Benchbutiken {i} AB")
        add_bulk(tenant, articles=args.articles, customers=args.customers, start=FIRST_ARTICLE)
        client = add_client_for(
            state, tenant, client_id=f"bench-{i}", client_secret=f"bench-secret-{i}"
        )
        out.append(
            {
                "client_id": client.client_id,
                "client_secret": client.client_secret,
                "tenant_id": tenant.id,
            }
        )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    print(json.dumps({"base_url": base_url, "tenants": out}), flush=True)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(state),
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
    )

    def stop(_signum: int, _frame: FrameType | None) -> None:
        server.should_exit = True

    signal.signal(signal.SIGTERM, stop)
    server.run(sockets=[sock])


@dataclass
class RemoteSandbox:
    base_url: str
    tenants: list[dict[str, Any]]
    process: subprocess.Popen[str]

    def credentials(self, index: int = 0) -> dict[str, Any]:
        return {"base_url": self.base_url, **self.tenants[index]}


@contextlib.contextmanager
def sandbox_process(
    *,
    articles: int = 0,
    customers: int = 0,
    rate_window: float = 5.0,
    compression: float = 1.0,
    origin: float | None = None,
    tenants: int = 1,
) -> Iterator[RemoteSandbox]:
    cmd = [
        sys.executable,
        "-m",
        "bench.sandbox_server",
        "--articles",
        str(articles),
        "--customers",
        str(customers),
        "--rate-window",
        str(rate_window),
        "--compression",
        str(compression),
        "--tenants",
        str(tenants),
    ]
    if origin is not None:
        cmd += ["--origin", repr(origin)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("the sandbox process did not start")
        info = json.loads(line)
        yield RemoteSandbox(info["base_url"], info["tenants"], proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
