"""The demo seed's contents, and a 100 000-article tenant paged the way the benchmarks do."""

from __future__ import annotations

import time

import httpx

from sandbox.fortnox.app import create_app
from sandbox.fortnox.seed import Seeded, mint_token, seed_bulk
from sandbox.fortnox.state import SandboxState

REQUIRED_ACCOUNTS = {
    1510,
    1580,
    1910,
    1930,
    2421,
    2611,
    2621,
    2631,
    2641,
    2890,
    3001,
    3002,
    3003,
    3004,
    3740,
}


async def test_demo_books(api: httpx.AsyncClient, demo: Seeded) -> None:
    today = demo.tenant.today()
    years = (await api.get("/3/financialyears")).json()["FinancialYears"]
    assert [fy["FromDate"] for fy in years] == [f"{today.year - 1}-01-01", f"{today.year}-01-01"]
    for fy in years:
        accounts = (
            await api.get("/3/accounts", params={"financialyear": fy["Id"], "limit": 500})
        ).json()["Accounts"]
        assert {a["Number"] for a in accounts} >= REQUIRED_ACCOUNTS
        series = (await api.get("/3/voucherseries", params={"financialyear": fy["Id"]})).json()
        manual = {s["Code"]: s["Manual"] for s in series["VoucherSeriesCollection"]}
        assert manual["A"] is True and manual["F"] is True and manual["B"] is False
        f = next(s for s in series["VoucherSeriesCollection"] if s["Code"] == "F")
        assert f["Description"] == "Kassa"
    invoices = (await api.get("/3/invoices")).json()["Invoices"]
    assert len(invoices) == 3
    payments = (await api.get("/3/invoicepayments")).json()["InvoicePayments"]
    assert len(payments) == 2 and all(p["Booked"] for p in payments)
    terms = {t["Code"] for t in (await api.get("/3/termsofpayments")).json()["TermsOfPayments"]}
    assert {"10", "30"} <= terms


async def test_bulk_tenant_pages_100k_articles_quickly() -> None:
    state = SandboxState()
    state.rate_limiter.configure(enabled=False)
    started = time.monotonic()
    seeded = seed_bulk(state, articles=100_000, customers=1_000)
    assert time.monotonic() - started < 15
    token = mint_token(state, seeded.tenant, seeded.client)["access_token"]
    transport = httpx.ASGITransport(app=create_app(state))
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as c:
        started = time.monotonic()
        seen = 0
        page = 1
        while True:
            body = (await c.get("/3/articles", params={"limit": 500, "page": page})).json()
            seen += len(body["Articles"])
            if page >= body["MetaInformation"]["@TotalPages"]:
                break
            page += 1
        assert (seen, page) == (100_000, 200)
        assert time.monotonic() - started < 30
        # an incremental poll after one change finds just that change, without a scan
        state.clock.advance(120)
        since = state.clock.now().strftime("%Y-%m-%d %H:%M")
        await c.put("/3/articles/150000", json={"Article": {"QuantityInStock": 7}})
        started = time.monotonic()
        polled = (await c.get("/3/articles", params={"limit": 500, "lastmodified": since})).json()
        assert time.monotonic() - started < 0.5
        assert [a["ArticleNumber"] for a in polled["Articles"]] == ["150000"]
        customers = (await c.get("/3/customers", params={"limit": 500})).json()
        assert customers["MetaInformation"]["@TotalResources"] == 1_000
