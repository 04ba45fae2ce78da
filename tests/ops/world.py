"""An engine with a paused tenant and a dead letter, made through the real paths, and a live
engine on loopback for the HTTP, CLI, browser and logging tests.

The dead letter is a payment the till's back office refuses (HTTP 422): the reconciler emits
``till.payment.register``, till delivery settles it REJECTED, the edge parks it. The payments
flow has no retry of its own, so retrying it requeues the command.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from engine.clock import utcnow
from engine.embedded.runtime import EmbeddedEngine
from engine.executors.fortnox import SessionTiming
from engine.executors.till import TillDelivery
from engine.net import loopback_listener
from engine.secrets import SecretBox, generate_key
from engine.tenants import FortnoxConnection, TenantConfig, TillConnection
from topics import fortnox as fx
from topics.errors import ErrorKind, shop_error
from topics.outcomes import TenantPaused, TenantPausedData
from topics.settings import TenantSettings

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
TENANT = "bageriet"
TILL_TOKEN = "till-token-9f8e7d6c5b4a"


@dataclass
class Till:
    """A till back office that refuses payments until ``accept`` is set."""

    accept: bool = False
    received: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/kassasync/commands")
        async def command(request: Request) -> JSONResponse:
            body = await request.json()
            if body["type"] == "till.payment.register" and not self.accept:
                self.refused += 1
                return JSONResponse(
                    {"error": "payment account 1930 is not mapped in the back office"}, 422
                )
            self.received.append(body)
            return JSONResponse({"result": {"ok": "true"}})

        return app


def settings(**flows: bool) -> TenantSettings:
    return TenantSettings.model_validate(
        {
            "payments": {"enabled": True},
            "flush_window_seconds": 0,
            **{name: {"enabled": on} for name, on in flows.items()},
        }
    )


def new_engine(
    data: Path, *, http_port: int = 8080, admin_token: str = ADMIN_TOKEN
) -> EmbeddedEngine:
    return EmbeddedEngine(
        data,
        SecretBox(generate_key()),
        http_port=http_port,
        admin_token=admin_token,
        timing=SessionTiming(poll_seconds=1, masterdata_seconds=30, idle_seconds=0.05),
    )


def add_tenant(
    engine: EmbeddedEngine,
    tenant: str = TENANT,
    *,
    till_url: str = "http://till/kassasync/commands",
    name: str = "Bageriet i Byn AB",
    fortnox: FortnoxConnection | None = None,
) -> str:
    key = engine.tenants.upsert(
        TenantConfig(
            id=tenant,
            name=name,
            settings=settings(),
            till=TillConnection(endpoint=till_url, token=TILL_TOKEN),
            fortnox=fortnox,
        )
    )
    assert key is not None
    return key


def pause(engine: EmbeddedEngine, tenant: str = TENANT) -> None:
    engine.ops.store.append(
        TenantPaused(
            id=f"pause-{tenant}",
            tenant=tenant,
            occurred_at=utcnow(),
            source="kassasync",
            data=TenantPausedData(error=shop_error(ErrorKind.LOGIN_EXPIRED, tenant=tenant)),
        )
    )


def payment(engine: EmbeddedEngine, number: str, tenant: str = TENANT) -> None:
    """Fortnox shows a payment: the reconciler hands it to the till."""
    engine.ops.store.append(
        fx.FortnoxPaymentChanged(
            id=f"fx-pay-{tenant}-{number}",
            tenant=tenant,
            occurred_at=utcnow(),
            data=fx.FortnoxPaymentData(
                payment=fx.FortnoxPayment(
                    number=number,
                    invoice_number=1000 + int(number),
                    amount=Decimal("125.00"),
                    payment_date=dt.date(2026, 11, 20),
                ),
                observed=fx.Observation(seq=int(number)),
            ),
        )
    )


async def deliver(engine: EmbeddedEngine, till: Till, tenant: str = TENANT) -> None:
    """Reconcile, deliver the tenant's till commands to ``till``, reconcile the outcomes."""
    engine.processor.step()
    transport = httpx.ASGITransport(till.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://till") as http:
        delivery = TillDelivery(engine.ports, engine.tenants.get, http)
        await delivery.deliver_tenant(tenant, asyncio.Event())
    engine.processor.step()


async def paused_with_dead_letters(engine: EmbeddedEngine, *numbers: str) -> Till:
    """A paused tenant (login expired) whose till refused one payment per number."""
    add_tenant(engine)
    pause(engine)
    for number in numbers or ("1",):
        payment(engine, number)
    till = Till()
    await deliver(engine, till)
    return till


# --- a live engine on loopback -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening_socket() -> socket.socket:
    return loopback_listener(64)


class Live:
    """Runs an engine (and other apps, each on its own loopback socket) in a background thread.

    While it runs, the test talks to it over HTTP only: the engine's database connection
    belongs to the engine's thread.
    """

    def __init__(self, engine: EmbeddedEngine, apps: dict[str, FastAPI] | None = None) -> None:
        self.engine = engine
        self.sockets = {name: listening_socket() for name in apps or {}}
        self.apps = apps or {}
        self.url = f"http://127.0.0.1:{engine.http_port}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="live-engine", daemon=True)
        self._failed: BaseException | None = None

    def url_of(self, name: str) -> str:
        return f"http://127.0.0.1:{self.sockets[name].getsockname()[1]}"

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as failed:  # reported by __exit__
            self._failed = failed

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        servers = []
        for name, app in self.apps.items():
            server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
            servers.append(
                (server, asyncio.create_task(server.serve(sockets=[self.sockets[name]])))
            )
        await self.engine.run(self._stop)
        for server, task in servers:
            server.should_exit = True
            await task

    def __enter__(self) -> Live:
        self._thread.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            if self._failed is not None:
                raise self._failed
            time.sleep(0.05)
        raise TimeoutError("the engine did not answer /healthz")

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)
        if self._failed is not None and exc[0] is None:
            raise self._failed

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10
        )


def wait_for(predicate: Any, seconds: float = 15.0, every: float = 0.1) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(every)


@contextlib.contextmanager
def live_paused_engine(data: Path) -> Iterator[tuple[Live, Till]]:
    """A live engine whose tenant is paused and whose till refused payment 1 (one dead letter);
    the till accepts from the moment the dead letter exists."""
    till = Till()
    engine = new_engine(data, http_port=free_port())
    apps = {"till": till.app()}
    live = Live(engine, apps)
    add_tenant(engine, till_url=live.url_of("till") + "/kassasync/commands")
    pause(engine)
    payment(engine, "1")
    with live, live.api() as api:
        wait_for(lambda: api.get("/ops/api/deadletters").json()["dead_letters"])
        till.accept = True
        yield live, till
