"""One small interface over both runtimes, so a scenario runs unchanged on each:

``start()`` / ``stop()``, ``add_tenant(config) -> ingest key``, ``ingest(tenant, key, events)
-> HTTP status``, ``wait_quiet(timeout)`` (nothing left to reconcile, deliver or flush) and
``state(tenant)`` (the reconcilers' records). ``World`` is what both talk to: the Fortnox
sandbox and one simulated till per tenant, served on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import httpx
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from kafka import KafkaConsumer, TopicPartition

from engine.demo import DEMO_SETTINGS
from engine.embedded.runtime import EmbeddedEngine
from engine.executors.fortnox import SessionTiming
from engine.kafka.config import KafkaConfig
from engine.kafka.ingest import EventProducer, create_app
from engine.kafka.runtime import KafkaRuntime, quiet_faust_logs
from engine.kafka.topics import init_topics
from engine.net import loopback_listener
from engine.secrets import SecretBox
from engine.tenants import FortnoxConnection, TenantConfig, TillConnection
from reconcilers.state import Record
from sandbox.fortnox.app import create_app as create_sandbox
from sandbox.fortnox.seed import seed_demo
from sandbox.fortnox.state import SandboxState
from sandbox.till import TillState
from sandbox.till import create_app as create_till
from tests.scenarios.harness import WINDOW
from topics.names import RECONCILED_TOPICS
from topics.settings import TenantSettings

TIMING = SessionTiming(poll_seconds=1.0, masterdata_seconds=30.0, idle_seconds=0.05)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.2)
    return time.monotonic() - started


class World:
    """The Fortnox sandbox (one company per tenant) and the tills, on loopback HTTP."""

    def __init__(
        self,
        tenants: list[str],
        *,
        down: set[str] | None = None,
        tills: dict[str, FastAPI] | None = None,
    ) -> None:
        self.tenants = tenants
        #: Tenants whose till back office answers every command with 503 (it is down).
        self.down = set(down or ())
        #: Tenants whose back office is this app (serving ``/kassasync/commands``) instead.
        self.apps = dict(tills or {})
        self.refused_calls: dict[str, int] = {}
        self.sandbox = SandboxState(rate_window_seconds=WINDOW)
        self.seeded = {
            tenant: seed_demo(self.sandbox, tenant_id=3_000_000 + i, client_id=f"ks-{tenant}")
            for i, tenant in enumerate(tenants)
        }
        self.tills = {
            tenant: TillState(tenant=tenant, token=f"till-{tenant}") for tenant in tenants
        }
        self._servers: list[uvicorn.Server] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.sandbox_url = self.till_url = ""
        self.http = httpx.AsyncClient(timeout=30)

    async def _serve(self, app: Any) -> str:
        sock = loopback_listener(256)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self._servers.append(server)
        self._tasks.append(asyncio.create_task(server.serve(sockets=[sock])))
        while not server.started:
            await asyncio.sleep(0.02)
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    async def start(self) -> World:
        self.sandbox_url = await self._serve(create_sandbox(self.sandbox))
        tills = FastAPI()
        for tenant, state in self.tills.items():
            app = self.apps.get(tenant)
            if app is None:
                app = self._down(tenant) if tenant in self.down else create_till(state)
            tills.mount(f"/{tenant}", app)
        self.till_url = await self._serve(tills)
        return self

    def _down(self, tenant: str) -> FastAPI:
        app = FastAPI()

        @app.post("/kassasync/commands")
        async def unavailable() -> JSONResponse:
            self.refused_calls[tenant] = self.refused_calls.get(tenant, 0) + 1
            return JSONResponse(status_code=503, content={"error": "back office down"})

        return app

    async def stop(self) -> None:
        for server in self._servers:
            server.should_exit = True
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.http.aclose()

    def config(self, tenant: str) -> TenantConfig:
        credentials = self.seeded[tenant].credentials(self.sandbox_url)
        return TenantConfig(
            id=tenant,
            name=f"Butik {tenant}",
            settings=TenantSettings.model_validate(DEMO_SETTINGS),
            till=TillConnection(
                endpoint=f"{self.till_url}/{tenant}/kassasync/commands", token=f"till-{tenant}"
            ),
            fortnox=FortnoxConnection.at(
                self.sandbox_url,
                credentials,
                poll_seconds=TIMING.poll_seconds,
                rate_window_seconds=WINDOW,
            ),
        )

    async def fortnox(self, tenant: str) -> dict[str, Any]:
        tid = self.seeded[tenant].tenant.id
        registers = "articles,customers,financialyears"
        response = await self.http.get(
            f"{self.sandbox_url}/_sandbox/tenants/{tid}?registers={registers}"
        )
        response.raise_for_status()
        return dict(response.json())

    async def counters(self, tenant: str) -> dict[str, int]:
        tid = self.seeded[tenant].tenant.id
        response = await self.http.get(f"{self.sandbox_url}/_sandbox/counters")
        by_route = response.json().get(str(tid), {}).get("by_route", {})
        return {str(k): int(v) for k, v in by_route.items()}


class Harness(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def add_tenant(self, config: TenantConfig) -> str: ...

    async def ingest(self, tenant: str, key: str, events: list[dict[str, Any]]) -> int: ...

    async def wait_quiet(self, timeout: float = 60.0) -> None: ...

    def state(self, tenant: str) -> dict[tuple[str, str], Record]: ...


class EmbeddedHarness:
    name = "embedded"

    def __init__(self, data_dir: Path, box: SecretBox) -> None:
        self.engine = EmbeddedEngine(data_dir, box, timing=TIMING)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self.engine.run(self._stop, serve_http=False))

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def add_tenant(self, config: TenantConfig) -> str:
        key = self.engine.tenants.upsert(config)
        assert key is not None
        return key

    async def ingest(self, tenant: str, key: str, events: list[dict[str, Any]]) -> int:
        return (await self.answer(tenant, key, events)).status_code

    async def answer(self, tenant: str, key: str, events: list[dict[str, Any]]) -> httpx.Response:
        transport = httpx.ASGITransport(self.engine.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://engine") as client:
            return await client.post(
                f"/v1/tenants/{tenant}/events",
                json={"events": events},
                headers={"Authorization": f"Bearer {key}"},
            )

    async def wait_quiet(self, timeout: float = 60.0) -> None:
        rounds = 0
        deadline = time.monotonic() + timeout
        while rounds < 3:
            if time.monotonic() > deadline:
                raise AssertionError("the embedded engine did not go quiet")
            for session in self.engine.sessions.values():
                session.request_poll()
            await asyncio.sleep(0.7)
            rounds = rounds + 1 if self.engine.quiet() else 0

    def state(self, tenant: str) -> dict[tuple[str, str], Record]:
        return self.engine.processor.store.all_records(tenant)


class KafkaHarness:
    """One in-process worker (faust app) and the Kafka ingest API."""

    name = "kafka"

    def __init__(self, config: KafkaConfig, box: SecretBox) -> None:
        quiet_faust_logs()
        self.config = config
        self.runtime = KafkaRuntime(config, box, timing=TIMING)
        self.events: EventProducer | None = None
        self._consumer: KafkaConsumer | None = None

    async def start(self) -> None:
        await asyncio.to_thread(init_topics, self.config)
        self.events = EventProducer(self.config)
        await self.runtime.start()

    async def stop(self) -> None:
        await self.runtime.stop()
        if self.events is not None:
            self.events.close()
        if self._consumer is not None:
            self._consumer.close()

    async def add_tenant(self, config: TenantConfig) -> str:
        key = await asyncio.to_thread(self.runtime.directory.upsert, config)
        assert key is not None
        return key

    async def ingest(self, tenant: str, key: str, events: list[dict[str, Any]]) -> int:
        return (await self.answer(tenant, key, events)).status_code

    async def answer(self, tenant: str, key: str, events: list[dict[str, Any]]) -> httpx.Response:
        assert self.events is not None
        app = create_app(self.runtime.directory, self.events)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://ingest"
        ) as client:
            return await client.post(
                f"/v1/tenants/{tenant}/events",
                json={"events": events},
                headers={"Authorization": f"Bearer {key}"},
            )

    def _ends(self) -> dict[tuple[str, int], int]:
        if self._consumer is None:
            self._consumer = KafkaConsumer(bootstrap_servers=self.config.bootstrap)
        tps = [
            TopicPartition(self.config.topic(t), p)
            for t in RECONCILED_TOPICS
            for p in range(self.config.partitions)
        ]
        return {
            (tp.topic, tp.partition): end for tp, end in self._consumer.end_offsets(tps).items()
        }

    async def wait_quiet(self, timeout: float = 60.0) -> None:
        rounds = 0
        deadline = time.monotonic() + timeout
        while rounds < 3:
            if time.monotonic() > deadline:
                raise AssertionError("the Kafka worker did not go quiet")
            for session in self.runtime.sessions.values():
                session.request_poll()
            await asyncio.sleep(0.7)
            ends = await asyncio.to_thread(self._ends)
            done = self.runtime.read_up_to()
            behind = sum(max(0, end - done.get(tp, 0)) for tp, end in ends.items())
            quiet = (
                self.runtime.ready
                and not behind
                and not self.runtime.pending()
                and not self.runtime.wakes()
            )
            rounds = rounds + 1 if quiet else 0

    def state(self, tenant: str) -> dict[tuple[str, str], Record]:
        return self.runtime.state_of(tenant)


@contextlib.asynccontextmanager
async def running(harness: Harness) -> Any:
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()
