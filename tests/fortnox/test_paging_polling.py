from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from engine.fortnox.models import Customer, InvoicePayment
from engine.fortnox.paging import paginate
from engine.fortnox.polling import (
    LastModifiedPoller,
    PollCursor,
    fingerprint,
    format_lastmodified,
    lookback_value,
)
from engine.fortnox.resources.payments import InvoicePayments, payment_key
from tests.fortnox.fakes import FakeClock, FakeFortnox, make_client, seeded_store


def paged(key: str, items: list[dict[str, Any]], page_size_cap: int = 500):  # type: ignore[no-untyped-def]
    seen: list[dict[str, str]] = []

    def route(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        seen.append(params)
        limit = min(int(params.get("limit", 100)), page_size_cap)
        page = int(params.get("page", 1))
        chunk = items[(page - 1) * limit : page * limit]
        pages = max(1, -(-len(items) // limit))
        meta = {"@TotalResources": len(items), "@TotalPages": pages, "@CurrentPage": page}
        return httpx.Response(200, json={"MetaInformation": meta, key: chunk})

    return route, seen


async def test_paginate_follows_total_pages_with_limit_500() -> None:
    clock = FakeClock()
    fake = FakeFortnox()
    items = [{"CustomerNumber": str(i), "Name": f"C{i}"} for i in range(1203)]
    route, seen = paged("Customers", items)
    fake.routes[("GET", "/3/customers")] = route
    client = make_client(fake, await seeded_store(fake, now=clock()), clock=clock)
    got = [c async for c in paginate(client, "/3/customers", "Customers", Customer)]
    assert [c.customer_number for c in got] == [str(i) for i in range(1203)]
    assert [(p["limit"], p["page"]) for p in seen] == [("500", "1"), ("500", "2"), ("500", "3")]


async def test_single_page_without_meta() -> None:
    clock = FakeClock()
    fake = FakeFortnox()
    fake.routes[("GET", "/3/termsofpayments")] = lambda r: httpx.Response(
        200, json={"TermsOfPayments": [{"Code": "30", "Description": "30 dagar"}]}
    )
    client = make_client(fake, await seeded_store(fake, now=clock()), clock=clock)
    from engine.fortnox.resources.settings import Settings

    terms = await Settings(client).terms_of_payments()
    assert [t.code for t in terms] == ["30"]


def test_lastmodified_format_is_stockholm_minutes() -> None:
    moment = datetime(2024, 1, 15, 11, 30, 59, tzinfo=UTC)
    assert format_lastmodified(moment) == "2024-01-15 12:30"
    summer = datetime(2024, 7, 1, 10, 0, tzinfo=UTC)
    assert format_lastmodified(summer) == "2024-07-01 12:00"


def test_lookback_covers_the_autumn_clock_change() -> None:
    # 2024-10-27 01:00 UTC = 03:00 CEST -> 02:00 CET.
    since = datetime(2024, 10, 27, 0, 50, tzinfo=UTC)  # 02:50 CEST
    now = datetime(2024, 10, 27, 1, 20, tzinfo=UTC)  # 02:20 CET
    assert lookback_value(since, now) == "2024-10-27 01:50"
    plain = datetime(2024, 10, 20, 0, 50, tzinfo=UTC)
    assert lookback_value(plain, plain + timedelta(minutes=30)) == "2024-10-20 02:50"


def test_fingerprint_ignores_key_order() -> None:
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


async def test_polling_overlap_never_yields_a_duplicate() -> None:
    clock = FakeClock()
    fake = FakeFortnox()
    db: dict[str, dict[str, Any]] = {}
    queries: list[str | None] = []

    def route(request: httpx.Request) -> httpx.Response:
        queries.append(request.url.params.get("lastmodified"))
        # A Fortnox that ignores precision: returns everything in the overlap window.
        return httpx.Response(200, json={"InvoicePayments": list(db.values())})

    fake.routes[("GET", "/3/invoicepayments")] = route
    client = make_client(fake, await seeded_store(fake, now=clock()), clock=clock)
    now = [datetime(2024, 3, 1, 12, 0, tzinfo=UTC)]
    poller = LastModifiedPoller(
        client,
        "/3/invoicepayments",
        "InvoicePayments",
        InvoicePayment,
        payment_key,
        overlap=timedelta(minutes=5),
        clock=lambda: now[0],
    )
    db["1"] = {"Number": "1", "InvoiceNumber": 10, "Amount": 100}
    db["2"] = {"Number": "2", "InvoiceNumber": 11, "Amount": 50}
    first = await poller.poll(None)
    assert sorted(c.key for c in first.changes) == ["1", "2"]
    cursor = PollCursor.from_json(first.next_cursor.to_json())

    now[0] += timedelta(minutes=1)
    db["3"] = {"Number": "3", "InvoiceNumber": 12, "Amount": 75}
    second = await poller.poll(cursor)
    assert [c.key for c in second.changes] == ["3"]
    assert second.duplicates == 2
    assert queries[-1] == "2024-03-01 12:55"  # 13:00 local minus 5 minutes overlap

    now[0] += timedelta(minutes=1)
    db["2"] = {"Number": "2", "InvoiceNumber": 11, "Amount": 55}  # changed again
    third = await poller.poll(second.next_cursor)
    assert [(c.key, c.item.amount) for c in third.changes] == [("2", 55)]

    fourth = await poller.poll(third.next_cursor)
    assert fourth.changes == []
    assert sorted(fourth.next_cursor.seen) == ["1", "2", "3"]


async def test_payments_for_invoice_compare_exactly() -> None:
    clock = FakeClock()
    fake = FakeFortnox()
    fake.routes[("GET", "/3/invoicepayments")] = lambda r: httpx.Response(
        200,
        json={
            "InvoicePayments": [
                {"Number": "1", "InvoiceNumber": 12},
                {"Number": "2", "InvoiceNumber": 120},
                {"Number": "3", "InvoiceNumber": "12"},
            ]
        },
    )
    client = make_client(fake, await seeded_store(fake, now=clock()), clock=clock)
    found = await InvoicePayments(client).for_invoice(12)
    assert [p.number for p in found] == ["1", "3"]
