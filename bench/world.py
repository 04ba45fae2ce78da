"""The whole system for the end-to-end benchmarks: the embedded engine, the sandbox Fortnox and
the simulated till, all in one event loop on loopback (as tests/scenarios/harness.py, with the
timing and the tenant's size chosen by the benchmark)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import sys
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from bench.sandbox_server import RemoteSandbox
from engine.embedded.runtime import EmbeddedEngine
from engine.executors.fortnox import SessionTiming
from engine.net import loopback_listener
from engine.secrets import SecretBox, generate_key
from engine.tenants import FortnoxConnection, TenantConfig, TillConnection
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


class ShopClock:
    """Shop time running ``compression`` times faster than the wall clock, from ``origin``."""

    def __init__(self, compression: float, origin: float | None = None) -> None:
        self.compression = compression
        self._wall0 = time.time() if origin is None else origin

    def time(self) -> float:
        return self._wall0 + (time.time() - self._wall0) * self.compression

    def utcnow(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.time(), dt.UTC)


class _ShopDatetime(dt.datetime):
    clock: ShopClock | None = None

    @classmethod
    def now(cls, tz: dt.tzinfo | None = None) -> _ShopDatetime:
        assert cls.clock is not None
        moment = cls.clock.utcnow()
        if tz is not None:
            moment = moment.astimezone(tz)
        return cls.fromtimestamp(moment.timestamp(), moment.tzinfo)


#: Where the engine reads the wall clock for times that have a business meaning: message times,
#: poll cursors and full-sync ages, tick times. Patched by ``compressed_time``.
_CLOCK_USERS = (
    "engine.executors.fortnox",
    "engine.embedded.edge",
    "engine.executors.feed",
    # The tick loop's "now" (it reads engine.clock.utcnow since the engine's clock can be
    # skewed; without this the ticks compared real time with shop times and never came).
    "engine.embedded.runtime",
)


@contextlib.contextmanager
def compressed_time(clock: ShopClock) -> Iterator[None]:
    """Run the engine on shop time: every business timestamp it makes (messages, poll cursors,
    the tick scheduler's now) comes from ``clock``. Periods the engine measures with the event
    loop's clock (poll and master-data periods, idle sleeps) are divided by the caller."""
    import importlib

    saved: list[tuple[Any, str, Any]] = []
    for name in _CLOCK_USERS:
        module = importlib.import_module(name)
        saved.append((module, "utcnow", getattr(module, "utcnow")))  # noqa: B009
        setattr(module, "utcnow", clock.utcnow)  # noqa: B010
    runtime = importlib.import_module("engine.embedded.runtime")
    shim = types.SimpleNamespace(**{k: getattr(dt, k) for k in ("UTC", "timedelta", "date")})
    _ShopDatetime.clock = clock
    shim.datetime = _ShopDatetime
    saved.append((runtime, "dt", getattr(runtime, "dt")))  # noqa: B009
    setattr(runtime, "dt", shim)  # noqa: B010
    # The tick loop sleeps until the next flush window ends: shop seconds, in real ones.
    saved.append((runtime, "seconds_until", getattr(runtime, "seconds_until")))  # noqa: B009
    setattr(  # noqa: B010
        runtime,
        "seconds_until",
        lambda moment: (moment - clock.utcnow()).total_seconds() / clock.compression,
    )
    try:
        yield
    finally:
        for module, attr, value in saved:
            setattr(module, attr, value)


@dataclass
class World:
    """Engine + simulated till in this process, the sandbox Fortnox in its own (``sandbox``);
    ``async with World(...) as w``."""

    data: Path
    sandbox: RemoteSandbox
    timing: SessionTiming
    rate_window: float
    flush_window: float
    poll_seconds: float
    settings: dict[str, Any] = field(default_factory=lambda: dict(SHOP_SETTINGS))
    verbose: bool = True
    #: Follow the sandbox's topics feed (production's configuration when Fortnox offers it).
    feed: bool = False
    #: Fortnox tenants of ``sandbox`` to connect, as engine tenants ``shop``, ``shop-1``, ...
    tenants: int = 1
    _servers: list[uvicorn.Server] = field(default_factory=list)
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    async def _serve(self, app: Any) -> str:
        sock = loopback_listener(512)
        server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        )
        self._tasks.append(asyncio.create_task(server.serve(sockets=[sock])))
        while not server.started:
            await asyncio.sleep(0.01)
        self._servers.append(server)
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    def tenant_name(self, index: int) -> str:
        return TENANT if index == 0 else f"{TENANT}-{index}"

    async def __aenter__(self) -> World:
        self.stop = asyncio.Event()
        self.sandbox_url = self.sandbox.base_url
        self.till = TillState(tenant=TENANT, token="till-token")
        self.till_url = await self._serve(create_till(self.till))
        window = self.rate_window
        self.engine = EmbeddedEngine(
            self.data,
            SecretBox(generate_key()),
            timing=self.timing,
            admin_token="bench-admin-token",
        )
        settings = TenantSettings.model_validate(
            {**self.settings, "flush_window_seconds": str(self.flush_window)}
        )
        for index in range(self.tenants):
            credentials = self.sandbox.credentials(index)
            self.engine.tenants.upsert(
                TenantConfig(
                    id=self.tenant_name(index),
                    settings=settings,
                    till=TillConnection(
                        endpoint=f"{self.till_url}/kassasync/commands", token="till-token"
                    ),
                    fortnox=FortnoxConnection.at(
                        self.sandbox_url,
                        credentials,
                        poll_seconds=self.poll_seconds,
                        feed=self.feed,
                        rate_window_seconds=window,
                    ),
                )
            )
        self.fortnox_tenant = int(self.sandbox.credentials(0)["tenant_id"])
        self.http = httpx.AsyncClient(timeout=60)
        self._calls = 0
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
        """What the ingest API does with a till's batch: validate, append to ``till.events``,
        wake the processor."""
        self.engine.edge.publish([registry.parse_till_event(e) for e in events])
        self.engine.stored()

    async def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self.http.request(
            method, f"{self.sandbox_url}/_sandbox/tenants/{self.fortnox_tenant}{path}", **kwargs
        )
        response.raise_for_status()
        return response

    async def counters(self) -> dict[str, Any]:
        body = (await self.admin("GET", "/counters")).json()
        self._calls = api_calls(body)
        return dict(body)

    async def reset_counters(self) -> None:
        await self.admin("DELETE", "/counters")

    def polls(self) -> int:
        session = self.engine.sessions.get(TENANT)
        return 0 if session is None else session.polls_done

    def feed_live(self) -> bool:
        session = self.engine.sessions.get(TENANT)
        return session is not None and session.feed_live()

    def progress(self) -> str:
        lag = sum(self.engine.processor.lag().values())
        depth = self.engine.edge.outbox.depth()
        return (
            f"till articles={len(self.till.articles)} customers={len(self.till.customers)} "
            f"lag={lag} outbox={depth} polls={self.polls()}"
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
            if self.verbose and now - said > 10:
                print(f"[bench] {what}: {self.progress()}", file=sys.stderr, flush=True)
                said = now
            await asyncio.sleep(step)
        return time.monotonic() - start

    def _polled_since(self, before: int) -> Callable[[], bool]:
        return lambda: self.polls() > before

    async def settle(self, timeout: float = 900.0) -> float:
        """Until nothing is pending and two polls in a row came and went with nothing to do."""
        start = time.monotonic()
        quiet = 0
        while quiet < 2:
            await self.wait(self._polled_since(self.polls()), timeout, "settle")
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
