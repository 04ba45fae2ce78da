from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest

from engine.fortnox.errors import (
    AccountInactive,
    CostCenterMissing,
    FinancialYearMissing,
    PeriodLocked,
    SeriesNotManual,
    UnknownOutcome,
    VoucherUnbalanced,
    WarehouseModuleActive,
)
from engine.fortnox.models import Customer, Order, Voucher, VoucherRow
from engine.fortnox.resources import Bookkeeping, Customers, Orders, Prices
from engine.fortnox.resources.bookkeeping import has_marker
from engine.fortnox.stock import Stock, StockMode, document_id
from tests.fortnox.fakes import FakeClock, FakeFortnox, make_client, seeded_store


def ok(body: Any, status: int = 200):  # type: ignore[no-untyped-def]
    return lambda r: httpx.Response(status, json=body)


def err(status: int, message: str, code: int):  # type: ignore[no-untyped-def]
    return lambda r: httpx.Response(
        status, json={"ErrorInformation": {"error": 1, "message": message, "code": code}}
    )


async def setup() -> tuple[FakeFortnox, Any]:
    clock = FakeClock()
    fake = FakeFortnox()
    client = make_client(fake, await seeded_store(fake, now=clock()), clock=clock)
    return fake, client


async def test_order_lookup_compares_exactly() -> None:
    fake, client = await setup()

    def search(request: httpx.Request) -> httpx.Response:
        params = request.url.params
        if "externalinvoicereference1" in params:
            return httpx.Response(
                200,
                json={
                    "Orders": [
                        {"DocumentNumber": "1", "ExternalInvoiceReference1": "INV-10"},
                        {"DocumentNumber": "2", "ExternalInvoiceReference1": "INV-100"},
                        {"DocumentNumber": "3", "ExternalInvoiceReference1": "XINV-10"},
                        {
                            "DocumentNumber": "4",
                            "ExternalInvoiceReference1": "INV-10",
                            "Cancelled": True,
                        },
                    ]
                },
            )
        return httpx.Response(
            200,
            json={
                "Orders": [
                    {"DocumentNumber": "5", "YourOrderNumber": "INV-10"},
                    {"DocumentNumber": "6", "YourOrderNumber": "INV-101"},
                ]
            },
        )

    fake.routes[("GET", "/3/orders")] = search
    found = await Orders(client).find_by_reference("INV-10")
    assert [o.document_number for o in found] == ["1", "5"]
    with_cancelled = await Orders(client).find_by_reference("INV-10", include_cancelled=True)
    assert [o.document_number for o in with_cancelled] == ["1", "4", "5"]


async def test_ensure_order_creates_once_and_looks_after_unknown_outcome(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake, client = await setup()
    orders: list[dict[str, Any]] = []

    def search(request: httpx.Request) -> httpx.Response:
        ref = request.url.params.get("externalinvoicereference1")
        hits = [o for o in orders if ref and ref in o.get("ExternalInvoiceReference1", "")]
        return httpx.Response(200, json={"Orders": hits})

    def create(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)["Order"]
        body["DocumentNumber"] = str(len(orders) + 1)
        orders.append(body)
        return httpx.Response(502, text="gateway")  # committed, answer lost

    fake.routes[("GET", "/3/orders")] = search
    fake.routes[("POST", "/3/orders")] = create
    api = Orders(client)
    result = await api.ensure(Order(customer_number="1"), "INV-7", settle_seconds=0)
    assert result.created and result.order.document_number == "1"
    again = await api.ensure(Order(customer_number="1"), "INV-7", settle_seconds=0)
    assert not again.created and len(orders) == 1

    orders.clear()
    fake.routes[("POST", "/3/orders")] = lambda r: httpx.Response(500, text="boom")
    with pytest.raises(UnknownOutcome):
        await api.ensure(Order(customer_number="1"), "INV-8", settle_seconds=0)


async def test_customer_number_already_used_is_exists() -> None:
    fake, client = await setup()
    fake.routes[("POST", "/3/customers")] = err(
        400,
        "Kundnummer 17 används redan. Kundnumret har redan använts men blivit raderat.",
        2000637,
    )
    fake.routes[("GET", "/3/customers/17")] = ok(
        {"Customer": {"CustomerNumber": "17", "Name": "A"}}
    )
    got = await Customers(client).create(Customer(customer_number="17", name="A"))
    assert got.customer_number == "17"


async def test_set_price_falls_back_to_create() -> None:
    fake, client = await setup()
    fake.routes[("PUT", "/3/prices/A/ART%2F1/0")] = err(404, "Kan inte hitta priset.", 2999002)
    fake.routes[("POST", "/3/prices")] = lambda r: httpx.Response(
        201, json={"Price": json.loads(r.content)["Price"]}
    )
    price = await Prices(client).set_price("A", "ART/1", Decimal("99.50"))
    assert price.price == Decimal("99.5") and price.article_number == "ART/1"
    assert any(c.url.raw_path == b"/3/prices/A/ART%2F1/0" for c in fake.api_calls)


def voucher(**kw: Any) -> Voucher:
    base: dict[str, Any] = dict(
        voucher_series="K",
        transaction_date=date(2024, 5, 2),
        description="Z-rapport 12",
        comments="KS:z-12",
        voucher_rows=[
            VoucherRow(account=1910, debit=Decimal(100)),
            VoucherRow(account=3001, credit=Decimal(100), cost_center="STHLM"),
        ],
    )
    base.update(kw)
    return Voucher(**base)


def books(fake: FakeFortnox) -> None:
    fy = {"Id": 3, "FromDate": "2024-01-01", "ToDate": "2024-12-31"}
    fake.routes[("GET", "/3/financialyears")] = ok({"FinancialYears": [fy]})
    fake.routes[("GET", "/3/settings/lockedperiod")] = ok({"LockedPeriod": {"EndDate": ""}})
    fake.routes[("GET", "/3/voucherseries/K")] = ok(
        {"VoucherSeries": {"Code": "K", "Manual": True}}
    )
    for n in (1910, 3001):
        fake.routes[("GET", f"/3/accounts/{n}")] = ok({"Account": {"Number": n, "Active": True}})
    fake.routes[("GET", "/3/costcenters/STHLM")] = ok(
        {"CostCenter": {"Code": "STHLM", "Active": True}}
    )


async def test_voucher_preflight() -> None:
    fake, client = await setup()
    books(fake)
    assert (await Bookkeeping(client).check_voucher(voucher())).id == 3
    cases = [
        ({("GET", "/3/financialyears"): ok({"FinancialYears": []})}, FinancialYearMissing),
        (
            {("GET", "/3/settings/lockedperiod"): ok({"LockedPeriod": {"EndDate": "2024-05-31"}})},
            PeriodLocked,
        ),
        (
            {("GET", "/3/voucherseries/K"): ok({"VoucherSeries": {"Code": "K", "Manual": False}})},
            SeriesNotManual,
        ),
        (
            {("GET", "/3/accounts/3001"): ok({"Account": {"Number": 3001, "Active": False}})},
            AccountInactive,
        ),
        ({("GET", "/3/costcenters/STHLM"): err(404, "Kan inte hitta", 2999004)}, CostCenterMissing),
    ]
    for overrides, expected in cases:
        for key, value in overrides.items():
            fake.routes[key] = value
        with pytest.raises(expected) as info:
            await Bookkeeping(client).check_voucher(voucher())
        assert info.value.shop_error().kind == expected.kind
        books(fake)
    unbalanced = voucher(voucher_rows=[VoucherRow(account=1910, debit=1), VoucherRow(account=3001)])
    with pytest.raises(VoucherUnbalanced):
        await Bookkeeping(client).check_voucher(unbalanced)


async def test_find_vouchers_by_marker_is_exact() -> None:
    fake, client = await setup()
    fake.routes[("GET", "/3/vouchers/sublist/K")] = ok(
        {
            "Vouchers": [
                {"VoucherSeries": "K", "VoucherNumber": 1, "Comments": "KS:z-120"},
                {"VoucherSeries": "K", "VoucherNumber": 2, "Comments": "Kassa KS:z-12"},
            ]
        }
    )
    found = await Bookkeeping(client).find_vouchers_by_marker("K", 3, "KS:z-12")
    assert [v.voucher_number for v in found] == [2]
    assert not has_marker(Voucher(comments="xKS:z-12"), "KS:z-12")


async def test_stock_without_warehouse_reads_then_writes() -> None:
    fake, client = await setup()
    fake.routes[("GET", "/api/warehouse/tenants-v4")] = ok({"activated": False, "tenantId": 1})
    stored = {"QuantityInStock": "-8"}
    fake.routes[("GET", "/3/articles/A1")] = lambda r: httpx.Response(
        200, json={"Article": {"ArticleNumber": "A1", **stored}}
    )

    def put(request: httpx.Request) -> httpx.Response:
        stored.update(json.loads(request.content)["Article"])
        return httpx.Response(200, json={"Article": {"ArticleNumber": "A1", **stored}})

    fake.routes[("PUT", "/3/articles/A1")] = put
    stock = Stock(client)
    assert await stock.mode() is StockMode.ARTICLE_QUANTITY
    # base 10, till sold 3 (till says 7), Fortnox says -8: new = 10 + (7-10) + (-8-10)
    result = await stock.write_quantity("A1", lambda fortnox: 10 + (7 - 10) + (fortnox - 10))
    assert (result.read, result.written, result.changed) == (Decimal(-8), Decimal(-11), True)
    assert stored["QuantityInStock"] == -11
    puts = len([c for c in fake.api_calls if c.method == "PUT"])
    same = await stock.write_quantity("A1", Decimal(-11))
    assert not same.changed
    assert len([c for c in fake.api_calls if c.method == "PUT"]) == puts


async def test_stock_with_warehouse_refuses_or_uses_documents() -> None:
    fake, client = await setup()
    fake.routes[("GET", "/api/warehouse/tenants-v4")] = ok({"activated": True, "tenantId": 1})
    refused = Stock(client)
    assert await refused.mode() is StockMode.WAREHOUSE_REFUSED
    with pytest.raises(WarehouseModuleActive) as info:
        await refused.write_quantity("A1", Decimal(3))
    assert info.value.shop_error().kind.value == "warehouse_module_active"
    with pytest.raises(WarehouseModuleActive):
        await refused.move("cmd-1", {"A1": Decimal(-2)}, day=date(2024, 5, 2))

    docs: dict[str, Any] = {}

    def put_doc(request: httpx.Request) -> httpx.Response:
        docs[request.url.path] = json.loads(request.content)
        return httpx.Response(200, json=docs[request.url.path])

    doc_id = document_id("cmd-1")
    out_path = f"/api/warehouse/documentdeliveries/custom/outbound-v1/KASSASYNC/{doc_id}"
    in_path = f"/api/warehouse/documentdeliveries/custom/inbound-v1/KASSASYNC-IN/{doc_id}"
    fake.routes[("PUT", out_path)] = put_doc
    fake.routes[("PUT", in_path)] = put_doc
    stock = Stock(client, documents_enabled=True)
    changes = {"A1": Decimal(-2), "B2": Decimal(5), "C3": Decimal(0)}
    first = await stock.move("cmd-1", changes, day=date(2024, 5, 2))
    second = await stock.move("cmd-1", changes, day=date(2024, 5, 2))
    assert first.document_id == second.document_id == doc_id
    assert docs[out_path]["rows"] == [{"itemId": "A1", "quantity": 2, "deliveredQuantity": 2}]
    assert docs[in_path]["rows"] == [{"itemId": "B2", "quantity": 5}]
    assert len(docs) == 2


def test_document_ids_are_digits_and_stable() -> None:
    assert document_id("12345") == "12345"
    a = document_id("0b1d6c6e-5a5f-4e57-9a53-3f8a2d8c9e11")
    assert a.isdigit() and len(a) <= 25 and a == document_id("0b1d6c6e-5a5f-4e57-9a53-3f8a2d8c9e11")
    assert a != document_id("another")
