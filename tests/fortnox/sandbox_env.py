"""Run the real client against the sandbox (in-process ASGI, or real HTTP on loopback)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import uvicorn

from engine.fortnox.auth import OAuthClient, TokenManager
from engine.fortnox.client import FortnoxClient
from engine.fortnox.limiter import SlidingWindowLimiter
from engine.fortnox.retry import RetryPolicy
from engine.fortnox.tokens import AppCredentials, SqliteTokenStore, TokenSet, TokenStore
from engine.net import loopback_listener
from engine.secrets import Secret, SecretBox
from sandbox.fortnox.app import create_app

FAST_RETRY = RetryPolicy(base_delay=0.05, rate_limited_base_delay=0.2, max_delay=1.0)


@dataclass
class SandboxEnv:
    app: Any
    base_url: str
    transport: httpx.AsyncBaseTransport
    admin: httpx.AsyncClient
    tenant_id: int
    client_id: str
    client_secret: str

    @property
    def credentials(self) -> AppCredentials:
        return AppCredentials(client_id=self.client_id, client_secret=Secret(self.client_secret))

    async def mint(self) -> TokenSet:
        """Tokens through the real consent flow: /oauth-v1/auth (auto-approved), then the code."""
        redirect = "http://127.0.0.1:9/callback"
        oauth = OAuthClient(self.credentials, base_url=self.base_url, transport=self.transport)
        url = oauth.consent_url(redirect_uri=redirect, state="st")
        response = await self.admin.get(f"{url}&tenant_id={self.tenant_id}")
        assert response.status_code == 302, response.text
        query = parse_qs(urlsplit(response.headers["location"]).query)
        assert query["state"] == ["st"]
        tokens = await oauth.exchange_code(query["code"][0], redirect)
        await oauth.aclose()
        return tokens

    async def sqlite_store(
        self, path: Path, box: SecretBox, tenant: str = "shop-1"
    ) -> SqliteTokenStore:
        store = SqliteTokenStore(path, box)
        await store.save(tenant, await self.mint())
        return store

    def manager(self, store: TokenStore, owner: str = "worker-1") -> TokenManager:
        oauth = OAuthClient(self.credentials, base_url=self.base_url, transport=self.transport)
        return TokenManager(store, oauth, owner=owner, lease_poll=0.02)

    def client(
        self,
        store: TokenStore,
        *,
        owner: str = "worker-1",
        tenant: str = "shop-1",
        retry: RetryPolicy | None = FAST_RETRY,
        limiter: SlidingWindowLimiter | None = None,
    ) -> FortnoxClient:
        return FortnoxClient(
            tenant,
            self.manager(store, owner),
            base_url=self.base_url,
            transport=self.transport,
            retry=retry,
            limiter=limiter or SlidingWindowLimiter(),
        )

    async def counters(self) -> dict[str, Any]:
        response = await self.admin.get(f"/_sandbox/tenants/{self.tenant_id}/counters")
        return dict(response.json())

    async def fault(self, name: str, **body: Any) -> None:
        response = await self.admin.post(f"/_sandbox/faults/{name}", json=body)
        response.raise_for_status()

    async def patch_tenant(self, **body: Any) -> None:
        response = await self.admin.patch(f"/_sandbox/tenants/{self.tenant_id}", json=body)
        response.raise_for_status()

    async def dump(self, registers: str) -> dict[str, Any]:
        response = await self.admin.get(
            f"/_sandbox/tenants/{self.tenant_id}", params={"registers": registers}
        )
        return dict(response.json())


async def _seed(admin: httpx.AsyncClient, **spec: Any) -> tuple[int, str, str]:
    client = {"client_id": "kassasync-it", "client_secret": "it-secret", "service_account": False}
    client.update(spec.pop("client", {}))
    response = await admin.post(
        "/_sandbox/tenants", json={"seed": "demo", "clients": [client], **spec}
    )
    response.raise_for_status()
    data = response.json()
    return data["tenant_id"], data["clients"][0]["client_id"], data["clients"][0]["client_secret"]


@contextlib.asynccontextmanager
async def asgi_sandbox(**spec: Any) -> AsyncIterator[SandboxEnv]:
    app = create_app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as admin:
        tenant_id, cid, secret = await _seed(admin, **spec)
        yield SandboxEnv(app, "http://sandbox", transport, admin, tenant_id, cid, secret)


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 (free port) in a thread; yields the base URL."""
    sock = loopback_listener()
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", ws="websockets-sansio")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextlib.asynccontextmanager
async def http_sandbox(**spec: Any) -> AsyncIterator[SandboxEnv]:
    app = create_app()
    with serve(app) as base_url:
        transport = httpx.AsyncHTTPTransport(retries=0)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as admin:
            tenant_id, cid, secret = await _seed(admin, **spec)
            yield SandboxEnv(app, base_url, transport, admin, tenant_id, cid, secret)
        await asyncio.sleep(0)
