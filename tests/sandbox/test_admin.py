"""The ``/_sandbox`` admin API: tenants, user edits, clock, state dumps."""

from __future__ import annotations

import asyncio

import httpx

from sandbox.fortnox.seed import Seeded
from sandbox.fortnox.state import SandboxState


async def test_create_tenant_with_clients_licences_and_warehouse(admin: httpx.AsyncClient) -> None:
    r = await admin.post(
        "/_sandbox/tenants",
        json={
            "tenant_id": 555,
            "company_name": "Lagerbutiken AB",
            "warehouse": True,
            "licences": ["article", "customer"],
            "articles": 30,
            "customers": 5,
            "clients": [{"client_id": "till-x", "scopes": ["article", "customer", "bookkeeping"]}],
        },
    )
    assert r.status_code == 201
    body = r.json()
    assert body["tenant_id"] == 555
    assert body["summary"]["counts"]["articles"] == 30
    client = body["clients"][0]
    assert client["client_id"] == "till-x" and client["service_account"] is True
    tokens = (await admin.post("/_sandbox/tenants/555/tokens", json={"client_id": "till-x"})).json()
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await admin.get("/api/warehouse/tenants-v4", headers=auth)).json()["activated"] is True
    assert (await admin.get("/3/customers", headers=auth)).json()["MetaInformation"][
        "@TotalResources"
    ] == 5
    no_licence = await admin.get("/3/accounts", headers=auth)
    assert no_licence.json()["ErrorInformation"]["code"] == 2001101
    assert (await admin.post("/_sandbox/tenants", json={"tenant_id": 555})).status_code == 409
    listed = (await admin.get("/_sandbox/tenants")).json()
    assert {t["tenant_id"] for t in listed} >= {555}
    assert (await admin.delete("/_sandbox/tenants/555")).status_code == 204
    assert (await admin.get("/3/customers", headers=auth)).status_code == 401


async def test_second_demo_tenant_honours_the_client_spec(admin: httpx.AsyncClient) -> None:
    r = await admin.post(
        "/_sandbox/tenants",
        json={
            "seed": "demo",
            "tenant_id": 777,
            "clients": [{"client_id": "it", "service_account": False, "scopes": ["article"]}],
        },
    )
    assert r.status_code == 201
    assert r.json()["summary"]["counts"]["articles"] == 50
    client = r.json()["clients"][0]
    assert (client["client_id"], client["service_account"], client["scopes"]) == (
        "it",
        False,
        ["article"],
    )


async def test_state_dump(admin: httpx.AsyncClient, demo: Seeded) -> None:
    full = (await admin.get(f"/_sandbox/tenants/{demo.tenant.id}")).json()
    assert full["company"]["CompanyName"] == "Exempelbutiken AB"
    assert len(full["articles"]) == 50 and "_lastmodified" in full["articles"][0]
    assert {fy["Id"] for fy in full["financialyears"]} == {1, 2}
    assert full["financialyears"][0]["vouchers"][0]["VoucherSeries"] == "F"
    assert full["consents"][0]["client_id"] == "kassasync-demo"
    some = (
        await admin.get(f"/_sandbox/tenants/{demo.tenant.id}", params={"registers": "units"})
    ).json()
    assert "units" in some and "articles" not in some
    assert (await admin.get("/_sandbox/tenants/1")).status_code == 404


async def test_user_edits_touch_lastmodified_and_publish(
    admin: httpx.AsyncClient, demo: Seeded, state: SandboxState
) -> None:
    tid = demo.tenant.id
    before = demo.tenant.articles.get("1001").modified  # type: ignore[union-attr]
    state.clock.advance(90)
    r = await admin.patch(
        f"/_sandbox/tenants/{tid}/records/articles/1001", json={"Description": "Ny text"}
    )
    assert r.status_code == 200 and r.json()["_lastmodified"] > before
    assert state.feed.events("articles", tid)[-1]["type"] == "article-updated-v1"
    created = await admin.post(
        f"/_sandbox/tenants/{tid}/records/customers", json={"Name": "Från UI"}
    )
    assert created.status_code == 201
    assert state.feed.events("customers", tid)[-1]["type"] == "customer-created-v1"
    bad = await admin.post(f"/_sandbox/tenants/{tid}/records/customers", json={"Nom": "x"})
    assert bad.status_code == 400
    await admin.delete(
        f"/_sandbox/tenants/{tid}/records/customers/{created.json()['CustomerNumber']}"
    )
    assert state.feed.events("customers", tid)[-1]["type"] == "customer-deleted-v1"
    cc = await admin.patch(
        f"/_sandbox/tenants/{tid}/records/costcenters/100", json={"Active": False}
    )
    assert cc.json()["Active"] is False
    assert state.feed.events("cost-centers", tid)[-1]["type"] == "cost-center-updated-v1"
    price = await admin.put(f"/_sandbox/tenants/{tid}/prices/A/1002/0", json={"Price": 199})
    assert price.json()["Price"] == 199.0
    assert demo.tenant.articles.get("1002").data["SalesPrice"] == 199.0  # type: ignore[union-attr]
    fy = (
        await admin.post(
            f"/_sandbox/tenants/{tid}/financialyears",
            json={"FromDate": "2040-01-01", "ToDate": "2040-12-31"},
        )
    ).json()
    assert fy["Id"] == 3
    series = await admin.patch(
        f"/_sandbox/tenants/{tid}/financialyears/3/voucherseries/B", json={"Manual": True}
    )
    assert series.json()["Manual"] is True
    acct = await admin.patch(
        f"/_sandbox/tenants/{tid}/financialyears/3/accounts/1910", json={"Active": False}
    )
    assert acct.json()["Active"] is False
    locked = await admin.patch(f"/_sandbox/tenants/{tid}", json={"locked_until": "2040-03-31"})
    assert locked.json()["locked_until"] == "2040-03-31"


async def test_webshop_sale_is_atomic(
    admin: httpx.AsyncClient, demo: Seeded, state: SandboxState
) -> None:
    tid = demo.tenant.id
    results = await asyncio.gather(
        *[
            admin.post(
                f"/_sandbox/tenants/{tid}/webshop-sale", json={"article": "1001", "quantity": 1}
            )
            for _ in range(10)
        ]
    )
    assert sorted(r.json()["QuantityInStock"] for r in results) == [float(q) for q in range(30, 40)]
    assert demo.tenant.articles.get("1001").data["QuantityInStock"] == 30.0  # type: ignore[union-attr]
    events = [e for e in state.feed.events("articles", tid) if e["entityId"] == "1001"]
    assert len(events) >= 10
    missing = await admin.post(f"/_sandbox/tenants/{tid}/webshop-sale", json={"article": "NOPE"})
    assert missing.status_code == 404


async def test_user_registers_a_booked_payment(
    admin: httpx.AsyncClient, demo: Seeded, state: SandboxState
) -> None:
    tid = demo.tenant.id
    r = await admin.post(f"/_sandbox/tenants/{tid}/invoices/3/payments", json={"Amount": 50})
    assert r.status_code == 201 and r.json()["Booked"] is True
    last = state.feed.events("invoices", tid)[-1]
    assert (last["type"], last["entityId"]) == ("invoicepayment-bookkeep-v1", r.json()["Number"])


async def test_clock(admin: httpx.AsyncClient, state: SandboxState) -> None:
    before = (await admin.get("/_sandbox/clock")).json()["epoch"]
    after = (await admin.post("/_sandbox/clock/advance", json={"days": 2, "hours": 1})).json()
    assert after["epoch"] - before >= 2 * 86400 + 3600
    assert (
        await admin.post("/_sandbox/clock/set", json={"now": "2001-01-01T00:00:00"})
    ).status_code == 400
    frozen = (await admin.post("/_sandbox/clock/freeze")).json()
    assert frozen["frozen"] is True
    await asyncio.sleep(0.02)
    assert (await admin.get("/_sandbox/clock")).json()["epoch"] == frozen["epoch"]
    assert (await admin.post("/_sandbox/clock/unfreeze")).json()["frozen"] is False
    assert (await admin.post("/_sandbox/clock/advance", json={"seconds": -1})).status_code == 400


async def test_health_and_error_catalogue(admin: httpx.AsyncClient) -> None:
    assert (await admin.get("/_sandbox/health")).json() == {"ok": True, "tenants": 1}
    catalogue = (await admin.get("/_sandbox/errors")).json()
    codes = {row["code"] for row in catalogue if row["documented"]}
    assert {2000637, 2000401, 2000663, 2001101, 2000587, 2000588, 2000428} <= codes
    assert all(row["code"] >= 2999000 for row in catalogue if not row["documented"])
