"""Scenario harness: the whole engine against the sandbox Fortnox and the simulated till.

A scenario talks to a ``Runtime``: it sends till events through the ingest API, edits Fortnox
through the sandbox's admin API (as a Fortnox user or a webshop would), waits until everything
has settled, and then looks at both sides. The embedded runtime runs in this process; the Kafka
runtime (tests/scenarios/kafka_runtime.py) implements the same interface, so one scenario suite
runs on both (the ``runtime`` fixture is parametrised over ``embedded`` and ``kafka``).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import httpx
import uvicorn

from engine.clock import utcnow
from engine.embedded.processor import Processor
from engine.embedded.runtime import EmbeddedEngine
from engine.executors.fortnox import FortnoxSession, SessionTiming
from engine.fortnox.api import FortnoxApi
from engine.net import loopback_listener
from engine.ops import Drift
from engine.secrets import SecretBox, generate_key
from engine.tenants import FortnoxConnection, TenantConfig, TillConnection
from sandbox.fortnox.app import create_app as create_sandbox
from sandbox.fortnox.clock import BusinessClock
from sandbox.fortnox.seed import Seeded, seed_demo
from sandbox.fortnox.state import SandboxState
from sandbox.till import TillState
from sandbox.till import create_app as create_till
from topics.envelope import Envelope
from topics.settings import TenantSettings

TENANT = "shop"
#: The tests' rate window: Fortnox's 25 requests per 5 s as 25 per second, declared on both
#: sides (the sandbox's limit and the tenant's connection), so a scenario takes seconds.
WINDOW = 1.0
#: Polls every 0.5 s and master data every 2 s, with or without the topics feed.
FAST_TIMING = SessionTiming(
    poll_seconds=0.5,
    masterdata_seconds=2,
    idle_seconds=0.05,
    feed_poll_seconds=0.5,
    feed_masterdata_seconds=2,
)

BASE_SETTINGS: dict[str, Any] = {
    "customers": {"master": "fortnox"},
    "articles": {"price_list": "A"},
    "stock": {"enabled": True},
    "zreports": {
        "enabled": True,
        "series": "F",
        "accounts": {
            "payment_methods": {"card": 1580, "cash": 1910, "swish": 1930, "giftcard": 2421},
            "sales_by_vat": {"25": 3001, "12": 3002, "6": 3003, "0": 3004},
            "vat_by_rate": {"25": 2611, "12": 2621, "6": 2631},
            "rounding": 3740,
            "tips": 2890,
            "gift_cards": 2421,
        },
    },
    "invoices": {"enabled": True},
    "payments": {"enabled": True},
    "flush_window_seconds": 0.5,
}


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


class Runtime(Protocol):
    till: TillState
    fortnox_tenant: int

    async def send(self, *events: dict[str, Any]) -> httpx.Response: ...

    async def settle(self, timeout: float = 60.0) -> None: ...

    async def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response: ...

    def state(self, kind: str, key: str) -> dict[str, Any] | None: ...


class ScenarioRuntime(ABC):
    """What both runtimes share: the sandbox Fortnox and the simulated till on loopback, the
    tenant's config, and the two-sided views scenarios assert on."""

    name = "?"

    def __init__(
        self,
        data: Path,
        settings: dict[str, Any] | None = None,
        *,
        poll_seconds: float = 0.5,
        feed: bool = True,
        wrap_sandbox: Callable[[Any], Any] | None = None,
        fortnox_clock: BusinessClock | None = None,
        timing: SessionTiming = FAST_TIMING,
    ) -> None:
        """``fortnox_clock``: the sandbox's clock (e.g. started minutes behind the engine's);
        ``timing``: the Fortnox sessions' periods (polls, master data)."""
        self.timing = timing
        self.wrap_sandbox = wrap_sandbox
        self.data = data
        self.poll_seconds = poll_seconds
        self.feed = feed
        self.settings = TenantSettings.model_validate(merged(BASE_SETTINGS, settings or {}))
        self.sandbox_state = SandboxState(rate_window_seconds=WINDOW, clock=fortnox_clock)
        self.seeded: Seeded = seed_demo(self.sandbox_state, client_id="kassasync-test")
        self.fortnox_tenant = self.seeded.tenant.id
        self.till = TillState(tenant=TENANT, token="till-token")
        self._ids = itertools.count(1)
        self._servers: list[uvicorn.Server] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self.stop = asyncio.Event()

    async def _serve(self, app: Any) -> str:
        sock = loopback_listener()
        # No server Date: the sandbox's answers carry its business clock as their Date.
        config = uvicorn.Config(app, log_level="warning", lifespan="off", date_header=False)
        server = uvicorn.Server(config)
        self._tasks.append(asyncio.create_task(server.serve(sockets=[sock])))
        while not server.started:
            await asyncio.sleep(0.01)
        self._servers.append(server)
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    async def _start_world(self) -> None:
        sandbox_app = create_sandbox(self.sandbox_state)
        if self.wrap_sandbox is not None:
            sandbox_app = self.wrap_sandbox(sandbox_app)
        self.sandbox_url = await self._serve(sandbox_app)
        self.till_url = await self._serve(create_till(self.till))
        self.http = httpx.AsyncClient(timeout=30)

    def tenant_config(self) -> TenantConfig:
        return TenantConfig(
            id=TENANT,
            settings=self.settings,
            till=TillConnection(endpoint=f"{self.till_url}/kassasync/commands", token="till-token"),
            fortnox=FortnoxConnection.at(
                self.sandbox_url,
                self.seeded.credentials(self.sandbox_url),
                poll_seconds=self.poll_seconds,
                feed=self.feed,
                rate_window_seconds=WINDOW,
            ),
        )

    async def _wait_http(self, url: str) -> None:
        for _ in range(200):
            try:
                if (await self.http.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
        raise AssertionError(f"{url} never answered")

    async def _stop_world(self) -> None:
        self.stop.set()
        for server in self._servers:
            server.should_exit = True
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.http.aclose()

    # -- what scenarios use ----------------------------------------------------------------------

    def event(self, type_: str, data: dict[str, Any], msg_id: str | None = None) -> dict[str, Any]:
        return {
            "id": msg_id or f"{type_}-{next(self._ids)}",
            "tenant": TENANT,
            "type": type_,
            "occurred_at": utcnow().isoformat(),
            "source": "till",
            "data": data,
        }

    async def send(self, *events: dict[str, Any]) -> httpx.Response:
        response = await self.http.post(
            f"{self.engine_url}/v1/tenants/{TENANT}/events",
            json={"events": list(events)},
            headers={"Authorization": f"Bearer {self.api_key}"},
        )
        return response

    async def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self.http.request(
            method, f"{self.sandbox_url}/_sandbox/tenants/{self.fortnox_tenant}{path}", **kwargs
        )
        assert response.status_code < 400, (path, response.status_code, response.text)
        return response

    async def fortnox(self, *registers: str) -> dict[str, Any]:
        names = ",".join(registers)
        response = await self.admin("GET", f"?registers={names}")
        return dict(response.json())

    # -- settling (each runtime says what its sessions are and when it is quiet) -----------------

    @property
    @abstractmethod
    def sessions(self) -> Mapping[str, FortnoxSession]:
        """The runtime's running Fortnox sessions, by tenant."""

    @abstractmethod
    async def quiet(self) -> bool:
        """Nothing left to reconcile, deliver or flush."""

    @abstractmethod
    def backlog(self) -> str:
        """What is still waiting, for the message of a settle that timed out."""

    @abstractmethod
    async def drift(self) -> Drift:
        """The pending drift the dashboard shows for the tenant."""

    @abstractmethod
    def feed_offsets(self) -> int:
        """How many topics-feed offsets the runtime has kept."""

    async def settle(self, timeout: float = 60.0) -> None:
        """Until nothing is pending and two fresh polls (and master-data reads) in a row brought
        nothing new."""
        deadline = time.monotonic() + timeout
        quiet = 0
        while quiet < 2:
            if time.monotonic() > deadline:
                raise AssertionError(f"the {self.name} runtime did not settle: {self.backlog()}")
            polled = {t: (s.polls_done, s.masterdata_done) for t, s in self.sessions.items()}
            for session in self.sessions.values():
                session.request_poll()
                session.request_master_data()
            while any(
                s.polls_done <= polled.get(t, (-1, -1))[0]
                or s.masterdata_done <= polled.get(t, (-1, -1))[1]
                for t, s in self.sessions.items()
            ):
                if time.monotonic() > deadline:
                    raise AssertionError("Fortnox was not polled (see the session's log)")
                await asyncio.sleep(0.05)
            if not self.sessions:
                await asyncio.sleep(0.2)
                continue
            await asyncio.sleep(0.3)
            quiet = quiet + 1 if await self.quiet() else 0

    # -- two-sided views -----------------------------------------------------------------------

    async def stock_levels(self) -> dict[str, tuple[Decimal, Decimal]]:
        """article -> (till, Fortnox) for every stock article the till holds."""
        articles = (await self.fortnox("articles"))["articles"]
        out: dict[str, tuple[Decimal, Decimal]] = {}
        for article in articles:
            number = article["ArticleNumber"]
            if article.get("StockGoods") and number in self.till.articles:
                out[number] = (
                    self.till.stock.get(number, Decimal(0)),
                    Decimal(str(article.get("QuantityInStock") or 0)),
                )
        return out


class EmbeddedRuntime(ScenarioRuntime):
    """The embedded engine with the sandbox and the simulated till, all on loopback."""

    name = "embedded"

    async def __aenter__(self) -> EmbeddedRuntime:
        await self._start_world()
        engine_sock = loopback_listener()
        port = engine_sock.getsockname()[1]
        engine_sock.close()
        self.box = SecretBox(generate_key())
        self.engine = EmbeddedEngine(self.data, self.box, http_port=port, timing=self.timing)
        key = self.engine.tenants.upsert(self.tenant_config())
        assert key is not None
        self.api_key = key
        self.engine_url = f"http://127.0.0.1:{port}"
        self._engine_task = asyncio.create_task(self.engine.run(self.stop))
        self._tasks.append(self._engine_task)
        await self._wait_http(f"{self.engine_url}/healthz")
        return self

    async def restart(self) -> None:
        """Stop the engine and start a new one on the same data folder (the sandbox and the
        till go on), as after a deploy."""
        old, old_task = self.engine, self._engine_task
        # The engine runs until self.stop (the servers stop by should_exit): a new stop for
        # the new engine.
        self.stop.set()
        await asyncio.gather(old_task, return_exceptions=True)
        self._tasks.remove(old_task)
        #: What the stopped engine left unapplied on its log as the next start finds it (the
        #: state in the table: a graceful stop applies its log and writes its state).
        self.lag_after_stop = sum(Processor(old.db).lag().values())
        old.db.close()
        self.stop = asyncio.Event()
        self.engine = EmbeddedEngine(
            self.data, self.box, http_port=old.http_port, timing=self.timing
        )
        self._engine_task = asyncio.create_task(self.engine.run(self.stop))
        self._tasks.append(self._engine_task)
        await self._wait_http(f"{self.engine_url}/healthz")

    @property
    def session(self) -> FortnoxSession:
        return self.engine.sessions[TENANT]

    def full_passes(self) -> dict[str, float | None]:
        """Resource -> when its last full pass was saved (the dashboard's last full pass)."""
        rows = self.engine.db.conn.execute(
            "SELECT resource, full_sync_at FROM fx_cursor WHERE tenant = ?", (TENANT,)
        ).fetchall()
        return {resource: at for resource, at in rows}

    async def __aexit__(self, *exc: object) -> None:
        await self._stop_world()
        self.engine.db.close()

    @property
    def api(self) -> FortnoxApi:
        return self.engine.sessions[TENANT].api

    def publish(self, messages: list[Envelope]) -> None:
        self.engine.edge.publish(messages)

    def records(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        return list(self.engine.processor.store.scan(TENANT, kind))

    def state(self, kind: str, key: str) -> dict[str, Any] | None:
        return self.engine.processor.store.get(TENANT, kind, key)

    def force_full_sync(self) -> None:
        """Make the next poll a full pass (it is what notices deletions in Fortnox)."""
        with self.engine.db.transaction() as conn:
            conn.execute("UPDATE fx_cursor SET full_sync_at = 0 WHERE tenant = ?", (TENANT,))

    async def update_settings(self, override: dict[str, Any]) -> None:
        config = self.engine.tenants.get(TENANT)
        assert config is not None
        settings = merged(config.settings.model_dump(mode="json"), override)
        self.settings = TenantSettings.model_validate(settings)
        self.engine.tenants.upsert(config.model_copy(update={"settings": self.settings}))

    @property
    def sessions(self) -> Mapping[str, FortnoxSession]:
        return self.engine.sessions

    async def quiet(self) -> bool:
        return self.engine.quiet()

    def backlog(self) -> str:
        return f"lag={self.engine.processor.lag()} outbox={self.engine.edge.outbox.depth()}"

    async def drift(self) -> Drift:
        return self.engine.ops.store.drift(TENANT)

    def feed_offsets(self) -> int:
        return int(self.engine.db.conn.execute("SELECT COUNT(*) FROM feed_offsets").fetchone()[0])
