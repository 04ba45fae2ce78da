"""The end-to-end flows, written once against ``Harness`` and ``World``: articles (with the
``#E#`` exclusion and the barcode conflict), the stock merge, customers both ways and a
Z-report voucher, with the Fortnox sandbox and the simulated till."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from tests.kafka.harness import Harness, World, eventually

#: (article, till delta) per step; seeded quantities: 1001 = 40, 1002 = 25, 1003 = 30.
MOVEMENTS = [("1001", -2), ("1002", 3), ("1001", -1), ("1003", -4)]
SEEDED = {"1001": Decimal(40), "1002": Decimal(25), "1003": Decimal(30)}


def event(tenant: str, type_: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"{type_.split('.')[-1]}-{uuid.uuid4().hex[:12]}",
        "tenant": tenant,
        "type": type_,
        "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
        "source": "till",
        "data": data,
    }


def movement(world: World, tenant: str, article: str, delta: int) -> dict[str, Any]:
    till = world.tills[tenant]
    till.stock[article] = till.stock.get(article, Decimal(0)) + delta
    return event(
        tenant,
        "till.stock.movement",
        {
            "article_number": article,
            "movement_id": f"mv-{uuid.uuid4().hex[:10]}",
            "delta": str(delta),
            "reason": "sale" if delta < 0 else "delivery",
        },
    )


def zreport(tenant: str, number: int) -> dict[str, Any]:
    return event(
        tenant,
        "till.zreport.closed",
        {
            "z_number": number,
            "till_id": "K1",
            "location_code": "100",
            "business_date": dt.date.today().isoformat(),
            "vat": [{"rate": "12", "sales_net": "100.00", "sales_vat": "12.00"}],
            "payments": [
                {"method": "card", "amount": "80.00"},
                {"method": "cash", "amount": "32.00"},
            ],
        },
    )


def customer(tenant: str, till_id: str, name: str) -> dict[str, Any]:
    return event(
        tenant,
        "till.customer.upserted",
        {"till_customer_id": till_id, "customer": {"name": name, "city": "Växjö"}},
    )


def expected_stock(moves: list[tuple[str, int]]) -> dict[str, Decimal]:
    out = dict(SEEDED)
    for article, delta in moves:
        out[article] += delta
    return out


async def initial_sync(world: World, tenant: str, timeout: float = 90.0) -> None:
    till = world.tills[tenant]

    async def synced() -> bool:
        return len(till.articles) >= 48 and len(till.customers) >= 8

    await eventually(synced, timeout, f"the first sync of {tenant}")


def vouchers_f(fortnox: dict[str, Any]) -> list[dict[str, Any]]:
    year = str(dt.date.today().year)
    return [
        v
        for fy in fortnox["financialyears"]
        if str(fy.get("FromDate", "")).startswith(year)
        for v in fy["vouchers"]
        if v.get("VoucherSeries") == "F"
    ]


async def divergence(
    world: World, tenant: str, moves: list[tuple[str, int]], zreports: int, customers: list[str]
) -> str | None:
    """What still differs from what the moves, Z-reports and till customers should have made."""
    till = world.tills[tenant]
    fortnox = await world.fortnox(tenant)
    quantities = {
        a["ArticleNumber"]: Decimal(str(a["QuantityInStock"])) for a in fortnox["articles"]
    }
    for article, want in expected_stock(moves).items():
        if quantities.get(article) != want or till.stock.get(article) != want:
            held = till.stock.get(article)
            return f"{article}: want {want}, Fortnox {quantities.get(article)}, till {held}"
    names = {c["Name"] for c in fortnox["customers"]}
    if not set(customers) <= names:
        return f"customers {set(customers) - names} missing in Fortnox"
    found = len(vouchers_f(fortnox))
    return None if found == zreports else f"{found} vouchers, want {zreports}"


async def converged(
    world: World, tenant: str, moves: list[tuple[str, int]], zreports: int, customers: list[str]
) -> bool:
    return await divergence(world, tenant, moves, zreports, customers) is None


async def run_flows(harness: Harness, world: World, tenant: str) -> None:
    key = await harness.add_tenant(world.config(tenant))
    await initial_sync(world, tenant)
    till = world.tills[tenant]
    # Articles: Fortnox is master; #E# is never sent; the second holder of a barcode waits.
    assert "X-900" not in till.articles
    assert "X-901" not in till.articles and "2001" in till.articles
    assert len(till.articles) == 48
    # Customers (Fortnox is master): Fortnox's register reached the till.
    assert "Anna Andersson" in {c["name"] for c in till.customers.values()}

    first = [movement(world, tenant, a, d) for a, d in MOVEMENTS[:2]]
    assert await harness.ingest(tenant, key, first) in (200, 202)
    second = [movement(world, tenant, a, d) for a, d in MOVEMENTS[2:]]
    second += [customer(tenant, "C900", "Kund Ny"), zreport(tenant, 1)]
    assert await harness.ingest(tenant, key, second) == 202
    # The same batch again (a till that lost the answer): nothing happens twice.
    assert await harness.ingest(tenant, key, second) in (200, 202)

    async def done() -> bool:
        return await converged(world, tenant, MOVEMENTS, 1, ["Kund Ny"])

    await eventually(done, 90, "till and Fortnox to converge")
    await harness.wait_quiet(60)
    assert await done()
    state = harness.state(tenant)
    waiting = [v for (kind, _), v in state.items() if kind == "barcode.wait"]
    assert waiting == [{"queue": ["X-901"]}]
    counters = await world.counters(tenant)
    assert counters.get("POST /3/vouchers", 0) == 1
    assert counters.get("POST /3/customers", 0) == 1
    assert till.refused == 0
