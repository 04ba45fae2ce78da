"""Injected faults and request counters (``/_sandbox/faults``, ``/_sandbox/counters``)."""

from __future__ import annotations

import time

import httpx
import pytest

from sandbox.fortnox.gateway import SimulatedConnectionDrop
from sandbox.fortnox.seed import Seeded
from sandbox.fortnox.state import SandboxState
from tests.sandbox.conftest import error_info
from tests.sandbox.test_oauth import REDIRECT, authorize, token


async def test_latency(api: httpx.AsyncClient, admin: httpx.AsyncClient) -> None:
    await admin.post("/_sandbox/faults/latency", json={"ms": 120, "path_prefix": "/3/units"})
    started = time.monotonic()
    await api.get("/3/units")
    assert time.monotonic() - started >= 0.11
    started = time.monotonic()
    await api.get("/3/customers")
    assert time.monotonic() - started < 0.1


async def test_5xx_for_the_next_n_requests(
    api: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    r = await admin.post(
        "/_sandbox/faults/errors", json={"next": 2, "status": 503, "method": "GET"}
    )
    assert r.json()["errors"]["remaining"] == 2
    first, second, third = [await api.get("/3/customers") for _ in range(3)]
    assert (first.status_code, second.status_code, third.status_code) == (503, 503, 200)
    assert error_info(first) == (1000003, "System exception")


async def test_5xx_ratio(
    api: httpx.AsyncClient, admin: httpx.AsyncClient, state: SandboxState
) -> None:
    state.faults.rng.seed(7)
    await admin.post("/_sandbox/faults/errors", json={"ratio": 0.5})
    codes = [(await api.get("/3/units")).status_code for _ in range(60)]
    assert 10 < codes.count(500) < 50 and codes.count(200) == 60 - codes.count(500)
    await admin.delete("/_sandbox/faults")
    assert (await api.get("/3/units")).status_code == 200


async def test_429_storm(api: httpx.AsyncClient, admin: httpx.AsyncClient) -> None:
    await admin.post("/_sandbox/faults/rate-limit-storm", json={"seconds": 0.3})
    r = await api.get("/3/units")
    assert r.status_code == 429 and "retry-after" not in r.headers
    time.sleep(0.35)
    assert (await api.get("/3/units")).status_code == 200


async def test_drop_after_commit_commits_then_fails_the_transport(
    api: httpx.AsyncClient, admin: httpx.AsyncClient, demo: Seeded
) -> None:
    await admin.post(
        "/_sandbox/faults/drop-after-commit", json={"next": 1, "path_prefix": "/3/orders"}
    )
    assert (await api.get("/3/orders")).status_code == 200  # reads are not affected
    body = {"Order": {"CustomerNumber": "1", "ExternalInvoiceReference1": "kvitto-42"}}
    with pytest.raises(httpx.TransportError) as caught:
        await api.post("/3/orders", json=body)
    assert isinstance(caught.value, SimulatedConnectionDrop)
    found = (await api.get("/3/orders", params={"externalinvoicereference1": "kvitto-42"})).json()
    assert len(found["Orders"]) == 1  # the write happened
    assert (await api.post("/3/orders", json=body)).status_code == 201  # the fault was used up
    faults = (await admin.get("/_sandbox/faults")).json()
    assert faults["injected"]["drop"] == 1


async def test_drop_fault_waits_for_a_successful_write(
    api: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    await admin.post("/_sandbox/faults/drop-after-commit", json={"next": 1})
    bad = await api.post("/3/orders", json={"Order": {"CustomerNumber": "nobody"}})
    assert bad.status_code == 400
    with pytest.raises(httpx.TransportError):
        await api.put("/3/customers/1", json={"Customer": {"City": "Luleå"}})
    assert (await api.get("/3/customers/1")).json()["Customer"]["City"] == "Luleå"


async def test_expire_all_tokens_then_refresh_works(admin: httpx.AsyncClient, demo: Seeded) -> None:
    _, query = await authorize(admin, demo)
    tokens = (
        await token(
            admin,
            demo,
            grant_type="authorization_code",
            code=query["code"][0],
            redirect_uri=REDIRECT,
        )
    ).json()
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await admin.get("/3/units", headers=auth)).status_code == 200
    expired = await admin.post("/_sandbox/faults/expire-tokens", json={})
    assert expired.json()["expired"] >= 1
    r = await admin.get("/3/units", headers=auth)
    assert r.status_code == 401 and r.content == b'{"message":"unauthorized"}'
    fresh = await token(
        admin, demo, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert fresh.status_code == 200
    ok = await admin.get(
        "/3/units", headers={"Authorization": f"Bearer {fresh.json()['access_token']}"}
    )
    assert ok.status_code == 200


async def test_revoked_consent_kills_refresh_and_bearer(
    admin: httpx.AsyncClient, demo: Seeded
) -> None:
    _, query = await authorize(admin, demo)
    tokens = (
        await token(
            admin,
            demo,
            grant_type="authorization_code",
            code=query["code"][0],
            redirect_uri=REDIRECT,
        )
    ).json()
    r = await admin.post("/_sandbox/faults/revoke-consent", json={"tenant_id": demo.tenant.id})
    assert r.json() == {"revoked": 1}
    api = await admin.get("/3/units", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert api.status_code == 401
    refresh = await token(
        admin, demo, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert refresh.json() == {
        "error": "invalid_grant",
        "error_description": "Invalid refresh token",
    }


async def test_counters_by_route_template_and_status(
    api: httpx.AsyncClient, admin: httpx.AsyncClient, demo: Seeded
) -> None:
    await admin.delete("/_sandbox/counters")
    await api.get("/3/articles/1001")
    await api.get("/3/articles/1002")
    await api.get("/3/articles/NOPE")
    await api.get("/3/articles", params={"limit": 500})
    await admin.get("/3/articles")  # no token
    counts = (await admin.get(f"/_sandbox/tenants/{demo.tenant.id}/counters")).json()
    assert counts["total"] == 4
    assert counts["by_route"] == {
        "GET /3/articles": 1,
        "GET /3/articles/{ArticleNumber}": 3,
    }
    assert counts["by_status"] == {"200": 3, "404": 1}
    assert {
        "method": "GET",
        "path": "/3/articles/{ArticleNumber}",
        "status": 404,
        "count": 1,
    } in counts["counts"]
    everyone = (await admin.get("/_sandbox/counters")).json()
    assert everyone["unauthenticated"]["by_status"] == {"401": 1}
    await admin.delete(f"/_sandbox/tenants/{demo.tenant.id}/counters")
    assert (await admin.get(f"/_sandbox/tenants/{demo.tenant.id}/counters")).json()["total"] == 0


async def test_rate_limit_is_configurable_over_admin(
    api: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    r = await admin.put("/_sandbox/ratelimit", json={"limit": 3, "window_seconds": 60})
    assert r.json()["limit"] == 3
    codes = [(await api.get("/3/units")).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    await admin.put("/_sandbox/ratelimit", json={"enabled": False})
    assert (await api.get("/3/units")).status_code == 200
