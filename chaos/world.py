"""What the engine talks to: the Fortnox sandbox (one company per tenant) and one simulated till
per tenant, served on loopback from the harness's own event loop.

Both apps are wrapped in :class:`WriteTap`, which sees every answer before it leaves: the harness
uses it to kill the engine process that made a write *after* Fortnox (or the till) committed it
and before the answer reaches the engine, the moment where a duplicate is born.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from decimal import Decimal
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from chaos.workload import FortnoxAction
from engine.net import loopback_listener
from engine.tenants import FortnoxConnection, TenantConfig, TillConnection
from sandbox.fortnox.app import create_app as create_sandbox
from sandbox.fortnox.seed import Seeded, seed_demo
from sandbox.fortnox.state import SandboxState
from sandbox.till import TillState
from sandbox.till import create_app as create_till
from topics.settings import TenantSettings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: Called with (side, client port, method, path) when a write was committed, before its answer.
WriteHook = Callable[[str, int, str, str], None]

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class WriteTap:
    """ASGI middleware: report committed writes (2xx answers to writes) before answering."""

    def __init__(self, app: ASGIApp, side: str, prefix: str) -> None:
        self.app = app
        self.side = side
        self.prefix = prefix
        self.hook: WriteHook | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if (
            scope["type"] != "http"
            or scope.get("method") not in WRITE_METHODS
            or not path.startswith(self.prefix)
        ):
            await self.app(scope, receive, send)
            return
        client = scope.get("client") or ("", 0)

        async def tapped(message: Message) -> None:
            if message["type"] == "http.response.start" and 200 <= message["status"] < 300:
                hook = self.hook
                if hook is not None:
                    hook(self.side, int(client[1]), str(scope["method"]), path)
            await send(message)

        await self.app(scope, receive, tapped)


class World:
    """The sandbox Fortnox and the tills of a run's tenants."""

    def __init__(
        self,
        tenants: list[str],
        *,
        poll_seconds: float = 0.5,
        rate_window: float = 5.0,
        topics_feed: bool = False,
        warehouse: bool = False,
    ) -> None:
        self.tenants = tenants
        self.poll_seconds = poll_seconds
        self.topics_feed = topics_feed
        self.rate_window = rate_window
        #: Fortnox's limit is 25 requests per 5 s; in-process tests scale the window down on
        #: both sides (the engine's limiter and the sandbox's) to keep the same rule, faster.
        self.sandbox = SandboxState(rate_window_seconds=rate_window)
        self.seeded: dict[str, Seeded] = {
            tenant: seed_demo(self.sandbox, tenant_id=7_100_000 + i, client_id=f"ks-{tenant}")
            for i, tenant in enumerate(tenants)
        }
        for seeded in self.seeded.values():
            # Fortnox Lager active: stock moves only through warehouse documents.
            seeded.tenant.warehouse_active = warehouse
        self.tills = {t: TillState(tenant=t, token=f"till-token-{t}") for t in tenants}
        tills = FastAPI()
        for tenant, state in self.tills.items():
            tills.mount(f"/{tenant}", create_till(state))
        self.fortnox_tap = WriteTap(create_sandbox(self.sandbox), "fortnox", "/3/")
        self.till_tap = WriteTap(tills, "till", "/")
        self.sandbox_url = self.till_url = ""
        self._servers: list[uvicorn.Server] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.http = httpx.AsyncClient(timeout=30)
        self._customer_numbers: dict[tuple[str, str], str] = {}

    async def _serve(self, app: ASGIApp) -> str:
        sock = loopback_listener(512)
        server = uvicorn.Server(
            uvicorn.Config(app, log_level="critical", lifespan="off", access_log=False)
        )
        self._servers.append(server)
        self._tasks.append(asyncio.create_task(server.serve(sockets=[sock])))
        while not server.started:
            await asyncio.sleep(0.02)
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    async def start(self) -> World:
        self.sandbox_url = await self._serve(self.fortnox_tap)
        self.till_url = await self._serve(self.till_tap)
        return self

    async def stop(self) -> None:
        for server in self._servers:
            server.should_exit = True
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.http.aclose()

    def set_hook(self, hook: WriteHook | None) -> None:
        self.fortnox_tap.hook = hook
        self.till_tap.hook = hook

    def fortnox_id(self, tenant: str) -> int:
        return self.seeded[tenant].tenant.id

    def config(self, tenant: str, settings: dict[str, Any]) -> TenantConfig:
        credentials = self.seeded[tenant].credentials(self.sandbox_url)
        return TenantConfig(
            id=tenant,
            name=f"Butik {tenant}",
            settings=TenantSettings.model_validate(settings),
            till=TillConnection(
                endpoint=f"{self.till_url}/{tenant}/kassasync/commands",
                token=self.tills[tenant].token,
            ),
            fortnox=FortnoxConnection.at(
                self.sandbox_url,
                credentials,
                poll_seconds=self.poll_seconds,
                feed=self.topics_feed,
                rate_window_seconds=self.rate_window,
            ),
        )

    # -- the Fortnox side of the workload -------------------------------------------------------

    async def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.request(method, f"{self.sandbox_url}/_sandbox{path}", **kwargs)

    async def apply(self, tenant: str, action: FortnoxAction) -> None:
        """Do one Fortnox-side action of the workload (retried until the sandbox took it)."""
        base = f"/tenants/{self.fortnox_id(tenant)}"
        if action.kind == "webshop_sale":
            request = ("POST", f"{base}/webshop-sale", {"article": action.key, "quantity": 1})
        elif action.kind == "article_edit":
            request = (
                "PATCH",
                f"{base}/records/articles/{action.key}",
                {"Description": action.value},
            )
        elif action.kind == "article_new":
            body = {
                "ArticleNumber": action.key,
                "Description": action.value,
                "StockGoods": True,
                "QuantityInStock": 5,
                "VAT": 25,
                "Unit": "st",
            }
            request = ("POST", f"{base}/records/articles", body)
        elif action.kind == "price":
            request = ("PUT", f"{base}/prices/A/{action.key}/0", {"Price": float(action.value)})
        elif action.kind == "customer_edit":
            number = await self._customer_number(tenant, action.key)
            request = ("PATCH", f"{base}/records/customers/{number}", {"City": action.value})
        else:
            raise ValueError(f"unknown Fortnox action {action.kind}")
        method, path, body = request
        response = await self.admin(method, path, json=body)
        if response.status_code >= 400:
            raise RuntimeError(f"the sandbox refused {action}: {response.text}")

    async def _customer_number(self, tenant: str, name: str) -> str:
        key = (tenant, name)
        if key not in self._customer_numbers:
            state = await self.fortnox_state(tenant)
            for customer in state["customers"]:
                if customer.get("Name") == name:
                    self._customer_numbers[key] = str(customer["CustomerNumber"])
        return self._customer_numbers[key]

    async def fortnox_state(self, tenant: str) -> dict[str, Any]:
        registers = "articles,customers,orders,financialyears"
        response = await self.admin(
            "GET", f"/tenants/{self.fortnox_id(tenant)}?registers={registers}"
        )
        response.raise_for_status()
        return dict(response.json())

    async def seeded_stock(self, tenant: str) -> dict[str, Decimal]:
        state = await self.fortnox_state(tenant)
        return {a["ArticleNumber"]: Decimal(str(a["QuantityInStock"])) for a in state["articles"]}
