"""When a Fortnox session polls: on its period, on feed events, never on its own writes' echoes."""

from __future__ import annotations

import asyncio
import itertools
from decimal import Decimal
from typing import Any, cast

import pytest

from engine.executors.feed import deletion
from engine.executors.fortnox import (
    RESOURCES,
    FortnoxSession,
    SessionTiming,
    fortnox_article,
    fortnox_payment,
    printable_key,
)
from engine.fortnox.topics_feed import TopicEvent
from topics import commands as cm
from topics import fortnox as fx
from topics.settings import TenantSettings

TIMING = SessionTiming(
    poll_seconds=30, masterdata_seconds=300, feed_poll_seconds=900, feed_masterdata_seconds=1800
)


def session(live: bool) -> FortnoxSession:
    made = FortnoxSession("shop", cast(Any, None), cast(Any, None), TenantSettings, TIMING)
    made.feed_live = lambda: live
    return made


def stock_write(article: str) -> cm.ApplyFortnoxStock:
    return cm.ApplyFortnoxStock.model_validate(
        {
            "id": f"cmd-{article}",
            "tenant": "shop",
            "occurred_at": "2026-11-21T10:00:00+00:00",
            "data": {"article_number": article, "delta": str(Decimal(-1))},
        }
    )


async def test_everything_is_due_at_start_then_only_on_the_period() -> None:
    s = session(live=False)
    now = asyncio.get_running_loop().time()
    assert s._due(now) == (True, set(RESOURCES))
    s._polled_at = s._masterdata_at = now
    assert s._due(now + 29) == (False, set())
    assert s._due(now + 30) == (False, set(RESOURCES))
    assert s._due(now + 300) == (True, set(RESOURCES))


async def test_a_live_feed_makes_the_periods_safety_nets() -> None:
    s = session(live=True)
    now = asyncio.get_running_loop().time()
    s._polled_at = s._masterdata_at = now
    assert s._due(now + 899) == (False, set())
    assert s._due(now + 900) == (False, set(RESOURCES))
    assert s._due(now + 1799)[0] is False
    assert s._due(now + 1800)[0] is True


@pytest.mark.parametrize(
    ("topic", "action", "due"),
    [
        ("articles", "poll", {"articles"}),
        ("warehouse-stockbalances", "poll", {"articles"}),
        ("customers", "poll", {"customers"}),
        ("invoices", "poll", {"payments"}),
        ("orders", "ignored", set()),
    ],
)
async def test_a_feed_event_polls_only_what_it_announces(
    topic: str, action: str, due: set[str]
) -> None:
    s = session(live=True)
    now = asyncio.get_running_loop().time()
    s._polled_at = s._masterdata_at = now
    assert s.on_feed(topic, "1001") == action
    assert s._due(now) == (False, due)


async def test_bookkeeping_topics_refresh_the_master_data() -> None:
    s = session(live=True)
    now = asyncio.get_running_loop().time()
    s._polled_at = s._masterdata_at = now
    assert s.on_feed("financial-years", "3") == "masterdata"
    assert s._due(now) == (True, set())


async def test_the_echoes_of_an_own_write_cost_no_poll_but_others_changes_do() -> None:
    s = session(live=True)
    now = asyncio.get_running_loop().time()
    s._polled_at = s._masterdata_at = now
    s._expect_echo(stock_write("1001"))
    assert s.on_feed("articles", "1001") == "echo"
    assert s.on_feed("warehouse-stockbalances", "1001") == "echo"
    assert s._due(now) == (False, set())
    assert s.on_feed("articles", "1002") == "poll"  # another article: someone else's change
    assert s._due(now) == (False, {"articles"})


async def test_a_second_event_after_an_own_write_is_someone_elses_change() -> None:
    s = session(live=True)
    s._expect_echo(stock_write("1001"))
    assert s.on_feed("articles", "1001") == "echo"
    assert s.on_feed("articles", "1001") == "poll"  # e.g. a webshop sale right after ours
    s._expect_echo(stock_write("1001"))
    s._expect_echo(stock_write("1001"))
    assert [s.on_feed("articles", "1001") for _ in range(3)] == ["echo", "echo", "poll"]


async def test_an_echo_window_closes() -> None:
    s = session(live=True)
    s._expect_echo(stock_write("1001"))
    s._echoes[("articles", "1001")][0] -= TIMING.echo_seconds + 1  # the window has passed
    assert s.on_feed("articles", "1001") == "poll"
    assert ("articles", "1001") not in s._echoes


class _Idle:
    """Executor ports with nothing to execute and no pause."""

    def paused(self, tenant: str) -> None:
        return None

    def head(self, target: str, tenant: str) -> None:
        return None

    def publish(self, records: list[Any]) -> None:
        """The session announces its stock watch when it starts: nothing else is expected."""
        assert all(isinstance(r, fx.FortnoxStockWatchStarted) for r in records), records


async def test_a_poll_slower_than_its_period_still_leaves_the_period_free() -> None:
    """The period runs from the end of a poll: a poll held up by the rate limiter for longer
    than the period must not start the next one at once (commands would get no turn)."""
    period, took = 0.05, 0.1
    timing = SessionTiming(poll_seconds=period, masterdata_seconds=3600, idle_seconds=0.01)
    s = FortnoxSession("shop", cast(Any, None), cast(Any, _Idle()), TenantSettings, timing)
    polls: list[tuple[float, float]] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def slow_poll(resources: Any = RESOURCES) -> None:
        started = loop.time()
        await asyncio.sleep(took)
        polls.append((started, loop.time()))
        if len(polls) == 4:
            stop.set()

    async def no_master_data() -> None:
        return None

    s.poll = slow_poll  # type: ignore[method-assign]
    s.refresh_master_data = no_master_data  # type: ignore[method-assign]
    await asyncio.wait_for(s.run(stop), 5)
    gaps = [nxt[0] - prev[1] for prev, nxt in itertools.pairwise(polls)]
    assert len(gaps) == 3 and min(gaps) >= period - 0.005, gaps


# --- what a poll reads: as lenient as Fortnox --------------------------------------------------


def test_an_article_record_keeps_what_fortnox_accepts() -> None:
    record = fortnox_article(
        {
            "ArticleNumber": "1001",
            "Description": "Ring\x07klocka",
            "EAN": "123 456",
            "QuantityInStock": "1 234,50",
            "VAT": "25",
            "StockGoods": "true",
            "Unit": "",
        },
        "A",
        Decimal("12.5"),
    )
    assert (record.ean, record.description, record.unit) == ("123 456", "Ring\x07klocka", None)
    assert record.quantity_in_stock == Decimal("1234.50") and record.stock_goods is True
    assert record.price == Decimal("12.50")


def test_a_payment_record_is_read_with_the_tolerant_model() -> None:
    payment = fortnox_payment(
        "7",
        {
            "InvoiceNumber": "12",
            "Amount": "1 234,5",
            "Currency": "eur",
            "PaymentDate": "2026-11-02",
        },
    )
    assert (payment.invoice_number, payment.amount, payment.currency) == (
        12,
        Decimal("1234.50"),
        "EUR",
    )
    with pytest.raises(ValueError, match="PaymentDate"):
        fortnox_payment("8", {"InvoiceNumber": 12, "Amount": 1})


def test_a_record_key_is_made_printable_for_ids_and_reports() -> None:
    assert printable_key("A\x07B") == "A\\x07B"
    assert printable_key("") == "?"
    assert len(printable_key("x" * 500)) == 100


def test_a_feed_deletion_no_record_can_carry_is_left_to_the_full_pass() -> None:
    def event(type_: str, entity: str) -> TopicEvent:
        return TopicEvent(
            topic="t",
            offset="1",
            type=type_,
            tenant="shop",
            fortnox_tenant_id=1,
            entity_id=entity,
            timestamp=None,
            raw={},
        )

    gone = deletion(event("article-deleted-v1", "A 1"), "shop")
    assert isinstance(gone, fx.FortnoxArticleDeleted) and gone.data.article_number == "A 1"
    assert deletion(event("customer-deleted-v1", "K\x001"), "shop") is None
    assert deletion(event("invoicepayment-deleted-v1", ""), "shop") is None


def test_a_full_pass_reuses_a_whole_customer_while_its_list_item_is_the_same() -> None:
    """A full pass fetches again only customers whose list item changed; bounded."""
    from engine.executors.fortnox import WholeCustomers

    whole = WholeCustomers(limit=2)
    item = {"CustomerNumber": "1", "Name": "Anna", "City": "Lund"}
    record = {**item, "Type": "COMPANY", "Phone1": "040-1", "Currency": "SEK"}
    assert whole.get("1", item) is None
    whole.put("1", item, record)
    assert whole.get("1", dict(item)) == {
        "Name": "Anna",
        "City": "Lund",
        "Type": "COMPANY",
        "Phone1": "040-1",
    }, "only the fields Kassasync reads are kept"
    assert whole.get("1", {**item, "City": "Malmö"}) is None, "a changed list item is fetched"
    whole.put("2", item, record)
    whole.put("3", item, record)
    assert whole.get("1", item) is None and whole.get("3", item) is not None, "oldest go first"
    whole.forget("3")
    assert whole.get("3", item) is None, "listed again unchanged: fetched whole next time"
