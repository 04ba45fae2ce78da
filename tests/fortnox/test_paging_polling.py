from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from engine.fortnox.errors import FortnoxError
from engine.fortnox.models import Article, Customer, InvoicePayment
from engine.fortnox.paging import iterate_raw, paginate
from engine.fortnox.polling import (
    STOCKHOLM,
    LastModifiedPoller,
    PollCursor,
    fingerprint,
    format_lastmodified,
    lookback_value,
)
from engine.fortnox.resources.payments import InvoicePayments, payment_key
from engine.fortnox.retry import RetryPolicy
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


def slow_pages(
    fake: FakeFortnox, items: list[dict[str, Any]], delays: dict[int, float], events: list[str]
) -> httpx.MockTransport:
    """/3/articles in pages of 2 whose answers take ``delays[page]`` seconds; ``events`` gets
    "asked N" when page N is requested and "got N" when it is answered."""
    route, _seen = paged("Articles", items, page_size_cap=2)
    fake.routes[("GET", "/3/articles")] = route

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path != "/3/articles":
            return await fake.handler(request)
        page = int(request.url.params["page"])
        events.append(f"asked {page}")
        await asyncio.sleep(delays.get(page, 0.0))
        if delays.get(page) == -1:
            return httpx.Response(500, json={"ErrorInformation": {"message": "x", "code": 1}})
        events.append(f"got {page}")
        return await fake.handler(request)

    return httpx.MockTransport(handler)


async def test_pages_are_read_ahead_while_the_caller_works_and_come_in_order() -> None:
    clock = FakeClock()
    fake = FakeFortnox()
    items = [{"ArticleNumber": str(i)} for i in range(8)]  # 4 pages of 2
    events: list[str] = []
    transport = slow_pages(fake, items, {2: 0.05, 3: 0.0, 4: 0.0}, events)
    client = make_client(
        fake, await seeded_store(fake, now=clock()), clock=clock, transport=transport
    )
    got = []
    async for raw in iterate_raw(client, "/3/articles", "Articles", limit=2, readahead=2):
        if not got:
            await asyncio.sleep(0.02)  # the caller works on page 1: pages 2 and 3 are asked
            assert events[:3] == ["asked 1", "got 1", "asked 2"] and "asked 3" in events
            assert "asked 4" not in events  # no more than two pages ahead
        got.append(raw["ArticleNumber"])
    assert got == [str(i) for i in range(8)]
    assert events.index("got 3") < events.index("got 2")  # answered out of order, read in order


async def test_a_failed_page_ahead_fails_where_it_is_read_and_leaves_nothing_running() -> None:
    clock = FakeClock()
    fake = FakeFortnox()
    items = [{"ArticleNumber": str(i)} for i in range(8)]
    events: list[str] = []
    transport = slow_pages(fake, items, {3: -1}, events)
    client = make_client(
        fake,
        await seeded_store(fake, now=clock()),
        clock=clock,
        transport=transport,
        retry=RetryPolicy(attempts=1),
    )
    got = []
    with pytest.raises(FortnoxError):
        async for raw in iterate_raw(client, "/3/articles", "Articles", limit=2):
            got.append(raw["ArticleNumber"])
    assert got == ["0", "1", "2", "3"]  # pages 1 and 2, then page 3's error
    await asyncio.sleep(0.01)
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


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


async def test_the_cursor_is_fortnox_time_not_ours() -> None:
    """Our clock 10 minutes ahead of Fortnox's: the cursor is the Date Fortnox answered with,
    so the next poll asks from Fortnox's time minus the overlap and a payment Fortnox saves
    a minute later is seen (with our clock as the cursor it would be asked for 8 minutes
    after it was saved, and never seen)."""
    clock = FakeClock()
    fake = FakeFortnox()
    fortnox_now = [datetime(2024, 3, 1, 12, 0, 30, tzinfo=UTC)]
    db: dict[str, dict[str, Any]] = {"1": {"Number": "1", "InvoiceNumber": 10, "Amount": 100}}
    modified = {"1": fortnox_now[0]}
    queries: list[str | None] = []

    def route(request: httpx.Request) -> httpx.Response:
        asked = request.url.params.get("lastmodified")
        queries.append(asked)
        since = (
            datetime.strptime(asked, "%Y-%m-%d %H:%M").replace(tzinfo=STOCKHOLM) if asked else None
        )
        items = [db[k] for k, at in modified.items() if since is None or at >= since]
        date = format_datetime(fortnox_now[0], usegmt=True)
        return httpx.Response(200, json={"InvoicePayments": items}, headers={"Date": date})

    fake.routes[("GET", "/3/invoicepayments")] = route
    client = make_client(fake, await seeded_store(fake, now=clock()), clock=clock)
    ours = lambda: fortnox_now[0] + timedelta(minutes=10)  # noqa: E731
    poller = LastModifiedPoller(
        client,
        "/3/invoicepayments",
        "InvoicePayments",
        InvoicePayment,
        payment_key,
        overlap=timedelta(minutes=2),
        clock=ours,
    )
    first = await poller.poll(None)
    assert first.next_cursor.since == datetime(2024, 3, 1, 12, 0, 30, tzinfo=UTC)

    fortnox_now[0] += timedelta(minutes=1)
    db["2"] = {"Number": "2", "InvoiceNumber": 11, "Amount": 50}
    modified["2"] = fortnox_now[0]
    second = await poller.poll(first.next_cursor)
    assert queries[-1] == "2024-03-01 12:58"  # 13:00:30 Stockholm minus two minutes
    assert [c.key for c in second.changes] == ["2"]
    assert second.duplicates == 1  # payment 1 again, in the overlap: dropped exactly
    assert second.next_cursor.since == datetime(2024, 3, 1, 12, 1, 30, tzinfo=UTC)


async def test_without_a_date_header_the_cursor_falls_back_to_our_clock() -> None:
    clock = FakeClock()
    fake = FakeFortnox()
    fake.routes[("GET", "/3/invoicepayments")] = lambda r: httpx.Response(
        200, json={"InvoicePayments": []}
    )
    client = make_client(fake, await seeded_store(fake, now=clock()), clock=clock)
    ours = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    poller = LastModifiedPoller(
        client,
        "/3/invoicepayments",
        "InvoicePayments",
        InvoicePayment,
        payment_key,
        clock=lambda: ours,
    )
    assert (await poller.poll(None)).next_cursor.since == ours


async def test_an_unreadable_record_is_handed_over_with_its_problem_and_the_rest_is_read() -> None:
    """One record even the tolerant model cannot read does not fail the poll."""
    clock = FakeClock()
    fake = FakeFortnox()
    items = [
        {"ArticleNumber": "1", "EAN": "123 456", "Description": "Bell\x07"},
        {"ArticleNumber": "2", "QuantityInStock": "many"},
        {"ArticleNumber": "3", "QuantityInStock": "1 234,50"},
    ]
    fake.routes[("GET", "/3/articles")] = lambda r: httpx.Response(200, json={"Articles": items})
    client = make_client(fake, await seeded_store(fake, now=clock()), clock=clock)
    poller = LastModifiedPoller(
        client, "/3/articles", "Articles", Article, lambda raw: str(raw.get("ArticleNumber"))
    )
    batch = await poller.poll(None)
    assert [(c.key, c.problem is None) for c in batch.changes] == [
        ("1", True),
        ("2", False),
        ("3", True),
    ]
    unreadable = batch.changes[1]
    assert unreadable.item is None and "QuantityInStock" in (unreadable.problem or "")
    assert [a.ean for a in batch.items] == ["123 456", None]
    assert batch.items[1].quantity_in_stock == Decimal("1234.50")
    # Seen once: the same unreadable content in the next poll's overlap is not handed over again.
    again = await poller.poll(batch.next_cursor)
    assert again.changes == [] and again.duplicates == 3
