"""25 requests per 5 seconds, sliding window, per (client id, tenant); 429 without Retry-After."""

from __future__ import annotations

import asyncio
import time

import httpx

from sandbox.fortnox.ratelimit import RateLimiter
from sandbox.fortnox.seed import Seeded, add_client_for, mint_token
from sandbox.fortnox.state import SandboxState


async def test_26th_request_within_five_seconds_is_429(
    api: httpx.AsyncClient, state: SandboxState
) -> None:
    state.rate_limiter.configure(limit=25, window_seconds=5.0)
    started = time.monotonic()
    statuses = [(await api.get("/3/units")).status_code for _ in range(26)]
    assert time.monotonic() - started < 5.0
    assert statuses[:25] == [200] * 25
    assert statuses[25] == 429
    last = await api.get("/3/units")
    assert last.status_code == 429
    assert "retry-after" not in last.headers
    assert not any(h.lower().startswith("x-ratelimit") for h in last.headers)


async def test_window_slides_and_the_limit_is_per_client_and_tenant(
    api: httpx.AsyncClient, admin: httpx.AsyncClient, state: SandboxState, demo: Seeded
) -> None:
    state.rate_limiter.configure(limit=25, window_seconds=0.5)
    for _ in range(25):
        assert (await api.get("/3/units")).status_code == 200
    assert (await api.get("/3/units")).status_code == 429
    # another integration on the same tenant has its own window
    other = add_client_for(state, demo.tenant, client_id="other-integration")
    token = mint_token(state, demo.tenant, other)["access_token"]
    r = await admin.get("/3/units", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    # two tokens of the same client and tenant share the window
    second = mint_token(state, demo.tenant, demo.client)["access_token"]
    shared = await admin.get("/3/units", headers={"Authorization": f"Bearer {second}"})
    assert shared.status_code == 429
    await asyncio.sleep(0.55)
    assert (await api.get("/3/units")).status_code == 200


def test_limiter_counts_only_accepted_requests() -> None:
    now = [0.0]
    limiter = RateLimiter(limit=3, window_seconds=5.0, monotonic=lambda: now[0])
    assert [limiter.allow("c", 1) for _ in range(5)] == [True, True, True, False, False]
    now[0] = 4.9
    assert not limiter.allow("c", 1)
    now[0] = 5.01
    assert limiter.allow("c", 1)
    assert limiter.allow("c", 2)
    assert limiter.rejected == 3


async def test_window_uses_the_wall_clock_not_the_business_clock(
    api: httpx.AsyncClient, state: SandboxState
) -> None:
    state.rate_limiter.configure(limit=2, window_seconds=5.0)
    assert (await api.get("/3/units")).status_code == 200
    assert (await api.get("/3/units")).status_code == 200
    state.clock.advance(600)  # tokens still valid (expire after 3600 s)
    assert (await api.get("/3/units")).status_code == 429
