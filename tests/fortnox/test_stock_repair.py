"""Issue 16, repair: a web shop sale an absolute stock write overwrote is established from the
sales' invoices on the topics feed and applied again; what cannot be established is reported.

Pure parts here (the prefix rule, the feed ledger); the session against the sandbox in
``test_stock_repair_session.py``."""

from __future__ import annotations

import time
from decimal import Decimal

from engine.fortnox.stock import (
    MAX_REREADS,
    InvoiceStock,
    OverlapWatch,
    Segment,
    Stock,
    StockIntent,
    Suspect,
    Unestablished,
    overwritten_sales,
)
from tests.fortnox.test_stock_writes import _client

D = Decimal


# --- which of the sales the read contained -------------------------------------------------------


def test_the_read_contains_a_prefix_of_the_sales_and_the_write_overwrote_the_rest() -> None:
    # Our previous write set 20; sales of 1, 2 and 1 followed, in this order.
    sales = [D(-1), D(-2), D(-1)]
    assert overwritten_sales(D(20), D(20), sales) == D(-4)  # read before all three
    assert overwritten_sales(D(20), D(19), sales) == D(-3)
    assert overwritten_sales(D(20), D(17), sales) == D(-1)
    assert overwritten_sales(D(20), D(16), sales) == D(0)  # the read saw them all
    assert overwritten_sales(D(20), D(20), []) == D(0)


def test_a_read_no_prefix_explains_or_several_explain_is_not_established() -> None:
    # A change the invoices do not show (a count in Fortnox's UI) moved the level.
    assert overwritten_sales(D(20), D(18), [D(-1)]) is None
    # A sale and a credit that cancel out: the read fits before both and after both.
    assert overwritten_sales(D(20), D(20), [D(-1), D(1)]) is None


def test_an_invoice_moves_only_its_articles_by_what_it_delivered() -> None:
    invoice = InvoiceStock.model_validate(
        {
            "Cancelled": False,
            "InvoiceRows": [
                {"ArticleNumber": "A1", "DeliveredQuantity": "2"},
                {"ArticleNumber": "B7", "DeliveredQuantity": "1,5"},
                {"ArticleNumber": "A1", "DeliveredQuantity": 1},
            ],
        }
    )
    assert invoice.stock_change("A1") == D(-3)
    assert invoice.stock_change("B7") == D("-1.5")
    assert invoice.stock_change("C9") is None
    cancelled = InvoiceStock.model_validate(
        {"Cancelled": True, "InvoiceRows": [{"ArticleNumber": "A1", "DeliveredQuantity": 1}]}
    )
    assert cancelled.stock_change("A1") is None


# --- the feed ledger: our writes, the sales between them -----------------------------------------

#: Fortnox's clock runs 1000 s ahead of the loop's in these tests (offsets cancel out).
SKEW = 1000.0


def _write(
    watch: OverlapWatch, command: str, begun: float, answered: float, read: int, written: int
) -> Suspect:
    token = watch.begin("A1", begun)
    watch.finish(
        token, answered, command_id=command, read=D(read), written=D(written), changed=True
    )
    return Suspect("A1", command, D(read), D(written), 1, answered - begun, None, begun)


def test_the_sales_between_two_writes_are_the_invoiced_events_between_their_echoes() -> None:
    watch = OverlapWatch(lag=2.0)
    first = _write(watch, "c1", 10.0, 10.4, 21, 20)
    watch.event("A1", SKEW + 10.3, 10.45)  # our first write's echo
    watch.event("A1", SKEW + 11.0, 11.05)  # a sale
    watch.invoice("501", SKEW + 11.0, 11.06)
    watch.invoice("502", SKEW + 11.5, 11.55)  # another article's sale: no event of A1
    watch.event("A1", SKEW + 12.1, 12.15)  # a sale inside the second write's window
    watch.invoice("503", SKEW + 12.101, 12.16)
    second = _write(watch, "c2", 12.0, 12.4, 19, 18)
    watch.event("A1", SKEW + 12.3, 12.45)  # our second write's echo
    assert watch.segment(second) == Segment(D(20), ("501", "503"))
    # Sale 501 (-1) was in the read (19), 503 was overwritten.
    assert overwritten_sales(D(20), D(19), [D(-1), D(-1)]) == D(-1)
    assert watch.segment(first) == Unestablished("no earlier write of the article to start from")


def test_a_change_without_an_invoice_between_the_writes_is_not_established() -> None:
    watch = OverlapWatch(lag=2.0)
    _write(watch, "c1", 10.0, 10.4, 21, 20)
    watch.event("A1", SKEW + 10.3, 10.45)
    watch.event("A1", SKEW + 11.0, 11.05)  # someone counted the article in Fortnox
    second = _write(watch, "c2", 12.0, 12.4, 19, 18)
    watch.event("A1", SKEW + 12.3, 12.45)
    found = watch.segment(second)
    assert isinstance(found, Unestablished)


def test_a_missing_echo_or_a_forgotten_history_is_not_established() -> None:
    watch = OverlapWatch(lag=2.0)
    _write(watch, "c1", 10.0, 10.4, 21, 20)
    # The feed never brought our first write's event (an outage): only the second's.
    second = _write(watch, "c2", 12.0, 12.4, 20, 19)
    watch.event("A1", SKEW + 12.3, 12.45)
    assert watch.segment(second) == Unestablished("the feed did not show both writes")

    short = OverlapWatch(lag=2.0, keep=5.0)
    _write(short, "c1", 10.0, 10.4, 21, 20)
    short.event("A1", SKEW + 10.3, 10.45)
    short.event("A1", SKEW + 30.0, 30.0)  # 20 s later: the first events are dropped
    late = _write(short, "c2", 31.0, 31.4, 20, 19)
    short.event("A1", SKEW + 31.3, 31.45)
    # The first write and its events are forgotten: nothing to start from.
    assert isinstance(short.segment(late), Unestablished)


def test_events_that_do_not_fit_the_writes_timing_are_not_taken_for_them() -> None:
    watch = OverlapWatch(lag=2.0)
    _write(watch, "c1", 10.0, 10.4, 21, 20)
    watch.event("A1", SKEW + 10.3, 10.45)
    # An event without an invoice 5 s after the first echo, while our writes were 2 s apart.
    second = _write(watch, "c2", 12.0, 12.4, 20, 19)
    watch.event("A1", SKEW + 15.3, 15.35)
    assert watch.segment(second) == Unestablished(
        "the events without an invoice are not the two writes"
    )


def test_each_sale_gets_the_invoice_announced_with_it_not_a_neighbours() -> None:
    watch = OverlapWatch(lag=2.0)
    _write(watch, "c1", 10.0, 10.4, 21, 20)
    watch.event("A1", SKEW + 10.3, 10.45)
    watch.event("B7", SKEW + 11.997, 12.01)  # article B7's sale, 3 ms earlier
    watch.invoice("601", SKEW + 11.997, 12.01)
    watch.event("A1", SKEW + 12.0, 12.02)  # A1's sale
    watch.invoice("602", SKEW + 12.0, 12.03)
    second = _write(watch, "c2", 11.9, 12.3, 20, 19)
    watch.event("A1", SKEW + 12.004, 12.04)  # our write's echo, 4 ms after the sale
    assert watch.segment(second) == Segment(D(20), ("602",))


# --- shrinking the window: a read that got old is read again before the write -------------------


async def test_a_read_that_got_old_before_its_write_is_read_again() -> None:
    client, fake, _clock = await _client(
        [
            {"Article": {"ArticleNumber": "A1", "QuantityInStock": 10}},
            {"Article": {"ArticleNumber": "A1", "QuantityInStock": 9}},  # a sale meanwhile
            {"Article": {"QuantityInStock": 6}},
        ]
    )
    stock = Stock(client, max_read_age=0.05)  # type: ignore[arg-type]
    stock._active = False
    recorded: list[StockIntent] = []

    def slow_once(intent: StockIntent) -> None:
        recorded.append(intent)
        if len(recorded) == 1:
            time.sleep(0.1)  # recording the first intent took long (a busy disk)

    result = await stock.apply_delta("A1", D(-3), slow_once)
    assert recorded == [StockIntent(D(10), D(7)), StockIntent(D(9), D(6))]
    assert (result.read, result.written) == (D(9), D(6))  # the sale is kept
    assert [r.method for r in fake.api_calls] == ["GET", "GET", "PUT"]


async def test_reading_again_is_bounded_then_it_writes() -> None:
    client, fake, _clock = await _client(
        [
            *[{"Article": {"ArticleNumber": "A1", "QuantityInStock": 10}}] * (MAX_REREADS + 1),
            {"Article": {"QuantityInStock": 7}},
        ]
    )
    stock = Stock(client, max_read_age=0.0)  # type: ignore[arg-type]
    stock._active = False
    result = await stock.apply_delta("A1", D(-3), lambda _intent: time.sleep(0.001))
    assert (result.read, result.written) == (D(10), D(7))
    assert [r.method for r in fake.api_calls] == ["GET"] * (MAX_REREADS + 1) + ["PUT"]


def test_a_write_that_never_reached_fortnox_does_not_hide_a_sale_from_an_earlier_watch() -> None:
    watch = OverlapWatch(lag=2.0)
    first = watch.begin("A1", 100.0)
    # A second write of ours begins while the first's watch still collects, then fails (a 5xx
    # before Fortnox applied it): no echo of it will come.
    second = watch.begin("A1", 100.1)
    watch.abandon(second)
    watch.event("A1", SKEW + 100.2, 100.25)  # a sale inside the first write's window
    watch.event("A1", SKEW + 100.3, 100.35)  # the first write's echo
    watch.finish(first, 100.4, command_id="c1", read=D(10), written=D(8), changed=True)
    [suspect] = watch.due(103.0)
    assert (suspect.command_id, suspect.foreign_events) == ("c1", 1)
