"""Test doubles: a fake clock and a scripted Fortnox behind httpx.MockTransport."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx

from engine.fortnox.auth import OAuthClient, TokenManager
from engine.fortnox.client import FortnoxClient
from engine.fortnox.limiter import SlidingWindowLimiter
from engine.fortnox.retry import RetryPolicy
from engine.fortnox.tokens import AppCredentials, MemoryTokenStore, TokenSet, TokenStore
from engine.secrets import Secret

CLIENT_ID = "kassasync-test"
CLIENT_SECRET = "client-secret-value-123"


class FakeClock:
    """Virtual time: ``sleep`` advances the clock instead of waiting."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


def jwt(tenant_id: int, suffix: str = "") -> str:
    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{b64({'alg': 'none'})}.{b64({'tenantId': tenant_id, 'n': suffix})}.sig"


@dataclass
class FakeFortnox:
    """A scripted Fortnox: token endpoint with rotating single-use refresh tokens + API routes."""

    tenant_id: int = 4242
    access_lifetime: int = 3600
    valid_access: set[str] = field(default_factory=set)
    valid_refresh: set[str] = field(default_factory=set)
    token_calls: list[dict[str, str]] = field(default_factory=list)
    api_calls: list[httpx.Request] = field(default_factory=list)
    routes: dict[tuple[str, str], Callable[[httpx.Request], httpx.Response]] = field(
        default_factory=dict
    )
    on_api: Callable[[httpx.Request], None] | None = None
    token_delay: float = 0.0
    counter: int = 0

    def issue(self) -> dict[str, Any]:
        self.counter += 1
        access = jwt(self.tenant_id, f"a{self.counter}")
        refresh = f"refresh-{self.counter}"
        self.valid_access.add(access)
        self.valid_refresh.add(refresh)
        return {
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": self.access_lifetime,
            "token_type": "bearer",
            "scope": "customer article",
        }

    async def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth-v1/token":
            return await self._token(request)
        self.api_calls.append(request)
        if self.on_api is not None:
            self.on_api(request)
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.valid_access:
            return httpx.Response(401, content=b'{"message":"unauthorized"}')
        route = self.routes.get((request.method, request.url.path))
        if route is None:
            return httpx.Response(
                404,
                json={"ErrorInformation": {"Error": 1, "Message": "Not found", "Code": 2000762}},
            )
        return route(request)

    async def _token(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        self.token_calls.append(form)
        if self.token_delay:
            await asyncio.sleep(self.token_delay)
        if request.headers.get("Authorization") != f"Basic {expected}":
            return httpx.Response(
                401, json={"error": "invalid_client", "error_description": "bad client"}
            )
        grant = form.get("grant_type")
        if grant == "refresh_token":
            token = form.get("refresh_token", "")
            if token not in self.valid_refresh:
                return httpx.Response(
                    400,
                    json={"error": "invalid_grant", "error_description": "Invalid refresh token"},
                )
            self.valid_refresh.discard(token)
            return httpx.Response(200, json=self.issue())
        if grant == "authorization_code":
            if form.get("code") != "good-code":
                return httpx.Response(400, json={"error": "invalid_grant"})
            return httpx.Response(200, json=self.issue())
        if grant == "client_credentials":
            if request.headers.get("TenantId") != str(self.tenant_id):
                return httpx.Response(400, json={"error": "invalid_grant"})
            data = self.issue()
            del data["refresh_token"]
            return httpx.Response(200, json=data)
        return httpx.Response(400, json={"error": "unsupported_grant_type"})

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)

    def revoke_all_access(self) -> None:
        self.valid_access.clear()


APP = AppCredentials(client_id=CLIENT_ID, client_secret=Secret(CLIENT_SECRET))


async def seeded_store(
    fake: FakeFortnox, tenant: str = "shop-1", *, expires_in: float = 3600, now: float = 0.0
) -> MemoryTokenStore:
    store = MemoryTokenStore()
    data = fake.issue()
    await store.save(
        tenant,
        TokenSet(
            client_id=CLIENT_ID,
            access_token=Secret(data["access_token"]),
            refresh_token=Secret(data["refresh_token"]),
            expires_at=now + expires_in,
        ),
    )
    store.saves.clear()
    return store


def make_client(
    fake: FakeFortnox,
    store: TokenStore,
    *,
    tenant: str = "shop-1",
    clock: FakeClock | None = None,
    retry: RetryPolicy | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    limiter: SlidingWindowLimiter | None = None,
) -> FortnoxClient:
    clock = clock or FakeClock()
    oauth = OAuthClient(APP, transport=fake.transport(), base_url="https://apps.test", clock=clock)
    manager = TokenManager(store, oauth, clock=clock, sleep=clock.sleep)
    return FortnoxClient(
        tenant,
        manager,
        base_url="https://api.test",
        transport=transport or fake.transport(),
        retry=retry or RetryPolicy(random=lambda a, b: b),
        limiter=limiter or SlidingWindowLimiter(clock=clock, sleep=clock.sleep),
        sleep=clock.sleep,
    )


def json_route(status: int, body: Any) -> Callable[[httpx.Request], httpx.Response]:
    def route(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body)

    return route
