"""The whole system for the end-to-end benchmarks: the embedded engine, the sandbox Fortnox and
the simulated till, all in one event loop on loopback (as tests/scenarios/harness.py, with the
timing and the tenant's size chosen by the benchmark)."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from engine.embedded.runtime import EmbeddedEngine
from engine.executors.fortnox import SessionTiming
from engine.fortnox.limiter import LimiterRegistry, SlidingWindowLimiter
from engine.secrets import SecretBox, generate_key
from engine.tenants import FortnoxConnection, TenantConfig, TillConnection
from sandbox.fortnox.app import create_app as create_sandbox
from sandbox.fortnox.seed import Seeded
from sandbox.fortnox.state import SandboxState
from sandbox.till import TillState
from sandbox.till import create_app as create_till
from topics import registry
from topics.settings import TenantSettings

TENANT = "shop"

#: The settings of the benchmark shop (as tests/scenarios/harness.py, Fortnox-as-master).
SHOP_SETTINGS: dict[str, Any] = {
    "customers": {"master": "fortnox"},
    "articles": {"price_list": "A"},
    "stock": {"enabled": True},
    "zreports": {
        "enabled": True,
        "series": "F",
        "accounts": {
            "payment_methods": {"card": 1580, "cash": 1910, "swish": 1930},
            "sales_by_vat": {"25": 3001, "12": 3002, "6": 3003, "0": 3004},
            "vat_by_rate": {"25": 2611, "12": 2621, "6": 2631},
            "rounding": 3740,
            "tips": 2890,
        },
    },
    "invoices": {"enabled": True},
    "payments": {"enabled": True},
}


def _listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    return sock


@dataclass
class World:
    """Sandbox + till + engine; ``async with World(...) as w``."""

    data: Path
    sandbox_state: SandboxState
    seeded: Seeded
    timing: SessionTiming
    rate_window: float
    flush_window: float
    poll_seconds: float
    settings: dict[str, Any] = field(default_factory=lambda: dict(SHOP_SETTINGS))
    verbose: bool = True
    _servers: list[uvicorn.Server] = field(default_factory=list)
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    async def _serve(self, app: Any) -> str:
        sock = _listener()
        server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        )
        self._tasks.append(asyncio.create_task(server.serve(sockets=[sock])))
        while not server.started:
            await asyncio.sleep(0.01)
        self._servers.append(server)
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    async def __aenter__(self) -> World:
        self.stop = asyncio.Event()
        self.sandbox_url = await self._serve(create_sandbox(self.sandbox_state))
        self.till = TillState(tenant=TENANT, token="till-token")
        self.till_url = await self._serve(create_till(self.till))
        window = self.rate_window
        self.engine = EmbeddedEngine(
            self.data,
            SecretBox(generate_key()),
            timing=self.timing,
            limiters=LimiterRegistry(lambda: SlidingWindowLimiter(window=window)),
            admin_token="bench-admin-token",
        )
        credentials = self.seeded.credentials(self.sandbox_url)
        settings = TenantSettings.model_validate(
            {**self.settings, "flush_window_seconds": str(self.flush_window)}
        )
        self.engine.tenants.upsert(
            TenantConfig(
                id=TENANT,
                settings=settings,
                till=TillConnection(
                    endpoint=f"{self.till_url}/kassasync/commands", token="till-token"
                ),
                fortnox=FortnoxConnection(
                    api_base=self.sandbox_url,
                    auth_base=self.sandbox_url,
                    client_id=credentials["client_id"],
                    client_secret=credentials["client_secret"],
                    fortnox_tenant_id=int(credentials["tenant_id"]),
                    poll_seconds=self.poll_seconds,
                ),
            )
        )
        self.fortnox_tenant = int(credentials["tenant_id"])
        self.http = httpx.AsyncClient(timeout=60)
        self._tasks.append(asyncio.create_task(self.engine.run(self.stop, serve_http=False)))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        for server in self._servers:
            server.should_exit = True
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.http.aclose()
        self.engine.db.close()

    # -- driving it ------------------------------------------------------------------------------

    def send(self, *events: dict[str, Any]) -> None:
        """What the ingest API does with a till's batch: validate, append to ``till.events``."""
        self.engine.edge.publish([registry.parse_till_event(e) for e in events])

    async def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self.http.request(
            method, f"{self.sandbox_url}/_sandbox/tenants/{self.fortnox_tenant}{path}", **kwargs
        )
        response.raise_for_status()
        return response

    def counters(self) -> dict[str, Any]:
        snap = self.sandbox_state.counters.snapshot(self.fortnox_tenant)
        return dict(snap.get(str(self.fortnox_tenant), {}))

    def reset_counters(self) -> None:
        self.sandbox_state.counters.reset(self.fortnox_tenant)

    def polls(self) -> int:
        session = self.engine.sessions.get(TENANT)
        return 0 if session is None else session.polls_done

    def progress(self) -> str:
        lag = sum(self.engine.processor.lag().values())
        depth = self.engine.edge.outbox.depth()
        return (
            f"till articles={len(self.till.articles)} customers={len(self.till.customers)} "
            f"lag={lag} outbox={depth} polls={self.polls()} calls={api_calls(self.counters())}"
        )

    async def wait(
        self, done: Callable[[], bool], timeout: float, what: str, step: float = 0.02
    ) -> float:
        start = time.monotonic()
        said = start
        while not done():
            now = time.monotonic()
            if now - start > timeout:
                raise TimeoutError(f"{what}: not done after {timeout:.0f} s ({self.progress()})")
            if self.verbose and now - said > 5:
                print(f"[bench] {what}: {self.progress()}", file=sys.stderr, flush=True)
                said = now
            await asyncio.sleep(step)
        return time.monotonic() - start

    async def settle(self, timeout: float = 600.0) -> float:
        """Until nothing is pending and two polls in a row came and went with nothing to do."""
        start = time.monotonic()
        quiet = 0
        while quiet < 2:
            before = self.polls()
            await self.wait(lambda: self.polls() > before, timeout, "poll")
            quiet = quiet + 1 if self.engine.quiet() else 0
            if time.monotonic() - start > timeout:
                raise TimeoutError("the engine did not settle")
        return time.monotonic() - start


def api_calls(counters: dict[str, Any]) -> int:
    """Requests to Fortnox's REST API (``/3`` and ``/api``), OAuth left out."""
    return sum(
        int(n)
        for route, n in counters.get("by_route", {}).items()
        if route.split(" ", 1)[1].startswith(("/3/", "/api/"))
    )
