"""Issue 16: an absolute stock write is sent once, its read and write take their limiter slots
together, a write whose answer was lost is settled from its intent, and a foreign change inside
a write's window is reported."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any, cast

import httpx
import pytest

from engine.executors.fortnox import FortnoxSession
from engine.fortnox.errors import RateLimited, ServerError, TransportFailure, UnknownOutcome
from engine.fortnox.limiter import SlidingWindowLimiter
from engine.fortnox.retry import is_absolute_stock_write
from engine.fortnox.stock import (
    Landed,
    OverlapWatch,
    Stock,
    StockIntent,
    Suspect,
    overwritten,
    settle_intent,
)
from tests.fortnox.fakes import FakeClock, FakeFortnox, make_client, seeded_store
from tests.fortnox.test_client import scripted
from topics.settings import TenantSettings

D = Decimal
STOCK_BODY = {"Article": {"QuantityInStock": 7}}


def test_which_writes_are_absolute_stock_writes() -> None:
    assert is_absolute_stock_write("PUT", "/3/articles/A-1", STOCK_BODY)
    assert is_absolute_stock_write("put", "/3/articles/A%2F1?x=1", STOCK_BODY)
    assert not is_absolute_stock_write("PUT", "/3/articles/A-1", {"Article": {"Description": "x"}})
    assert not is_absolute_stock_write("GET", "/3/articles/A-1", None)
    assert not is_absolute_stock_write("POST", "/3/articles", STOCK_BODY)
    assert not is_absolute_stock_write("PUT", "/3/customers/1", {"Customer": {}})


async def _client(outcomes: list[object]) -> tuple[object, FakeFortnox, FakeClock]:
    clock = FakeClock()
    fake = FakeFortnox()
    store = await seeded_store(fake, now=clock())
    client = make_client(fake, store, clock=clock, transport=scripted(fake, outcomes))
    return client, fake, clock


@pytest.mark.parametrize(
    ("outcome", "error"),
    [
        (503, UnknownOutcome),
        (500, UnknownOutcome),
        (
            httpx.ReadTimeout("slow", request=httpx.Request("PUT", "https://api.test/")),
            UnknownOutcome,
        ),
        (
            httpx.RemoteProtocolError("dropped", request=httpx.Request("PUT", "https://api.test/")),
            UnknownOutcome,
        ),
        (429, RateLimited),
        (
            httpx.ConnectError("refused", request=httpx.Request("PUT", "https://api.test/")),
            TransportFailure,
        ),
    ],
)
async def test_an_absolute_stock_put_is_sent_once(outcome: object, error: type[Exception]) -> None:
    client, fake, _clock = await _client([outcome, {"Article": {"QuantityInStock": 7}}])
    with pytest.raises(error):
        await client.send_json("PUT", "/3/articles/A1", STOCK_BODY)  # type: ignore[attr-defined]
    assert len(fake.api_calls) == 1


async def test_a_429_on_the_stock_put_still_pauses_the_tenant() -> None:
    client, _fake, _clock = await _client([429])
    with pytest.raises(RateLimited):
        await client.send_json("PUT", "/3/articles/A1", STOCK_BODY)  # type: ignore[attr-defined]
    assert client.limiter.stats.penalties == 1  # type: ignore[attr-defined]


async def test_other_article_puts_are_still_retried() -> None:
    client, fake, _clock = await _client([503, {"Article": {"Description": "x"}}])
    body = {"Article": {"Description": "x"}}
    assert await client.send_json("PUT", "/3/articles/A1", body) == body  # type: ignore[attr-defined]
    assert len(fake.api_calls) == 2
    client, fake, _clock = await _client([503, 503, 503, 503, 503])
    with pytest.raises(ServerError):
        await client.send_json("PUT", "/3/articles/A1", body)  # type: ignore[attr-defined]
    assert len(fake.api_calls) == 5


# --- paired limiter slots ------------------------------------------------------------------------


async def test_the_write_of_a_pair_does_not_wait_for_pacing() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(clock=clock, sleep=clock.sleep)
    for _ in range(10):  # past the burst: single requests are now paced 0.204 s apart
        await limiter.acquire()
    t0 = clock()
    async with limiter.pair():
        await limiter.acquire()
        read_at = clock()
        clock.now += 0.05  # the read's round trip
        waited = await limiter.acquire()
    assert waited == 0.0
    assert read_at - t0 > 0  # the read itself was paced
    single = SlidingWindowLimiter(clock=clock, sleep=clock.sleep)
    for _ in range(10):
        await single.acquire()
    await single.acquire()
    clock.now += 0.05
    assert await single.acquire() > 0  # unpaired, the second waits for pacing


async def test_a_pair_waits_for_room_for_both_and_holds_the_second_slot() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(clock=clock, sleep=clock.sleep, burst=None)
    for _ in range(24):
        await limiter.acquire()
    start = clock()
    async with limiter.pair():
        await limiter.acquire()
        # Room for two only once the oldest send left the window.
        assert clock() - start > 0
        assert limiter.window.reserved == 1
        # Another task (even one started inside the pair) does not get the held slot: it waits
        # until the window has room next to it.
        other = asyncio.ensure_future(limiter.acquire())
        await other
        assert limiter.window.in_window(clock()) + limiter.window.reserved <= 25
        assert limiter.window.reserved == 1
        await limiter.acquire()
        assert limiter.window.reserved == 0
    assert limiter.window.reserved == 0


async def test_an_unused_held_slot_is_released() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(clock=clock, sleep=clock.sleep)
    async with limiter.pair():
        await limiter.acquire()
        assert limiter.window.reserved == 1
    assert limiter.window.reserved == 0


async def test_apply_delta_reads_records_then_writes_once() -> None:
    client, fake, _clock = await _client(
        [
            {"Article": {"ArticleNumber": "A1", "QuantityInStock": 10}},
            {"Article": {"QuantityInStock": 7}},
        ]
    )
    stock = Stock(client)  # type: ignore[arg-type]
    stock._active = False
    recorded: list[StockIntent] = []
    result = await stock.apply_delta("A1", D(-3), recorded.append)
    assert recorded == [StockIntent(D(10), D(7))]
    assert (result.read, result.written, result.changed) == (D(10), D(7), True)
    assert [r.method for r in fake.api_calls] == ["GET", "PUT"]


# --- settling an intent --------------------------------------------------------------------------


def test_settle_intent_exact_cases() -> None:
    intent = StockIntent(D(10), D(8))
    assert settle_intent(intent, D(8)).certainty is Landed.YES
    assert settle_intent(intent, D(8)).landed
    assert settle_intent(intent, D(10)).certainty is Landed.NO
    assert not settle_intent(intent, D(10)).landed
    assert settle_intent(intent, D(10), error_answer=True).certainty is Landed.NO


def test_settle_intent_ambiguous_cases() -> None:
    intent = StockIntent(D(10), D(8))
    # Landed and then one sold (7 = 8 - 1) needs a smaller foreign change than not landed and
    # three sold (7 = 10 - 3).
    verdict = settle_intent(intent, D(7))
    assert (verdict.certainty, verdict.landed, verdict.foreign) == (Landed.AMBIGUOUS, True, D(-1))
    # Not landed and one returned (11) beats landed and three returned.
    verdict = settle_intent(intent, D(11))
    assert (verdict.certainty, verdict.landed, verdict.foreign) == (Landed.AMBIGUOUS, False, D(1))
    # After an error answer the level of the write is a same-size sale as likely as an arrival.
    verdict = settle_intent(intent, D(8), error_answer=True)
    assert (verdict.certainty, verdict.landed, verdict.foreign) == (Landed.AMBIGUOUS, False, D(-2))


# --- the feed watch ------------------------------------------------------------------------------


def _watch_one(events: list[float], *, answered: float = 100.4) -> list[Suspect]:
    watch = OverlapWatch(lag=2.0)
    token = watch.begin("A1", 100.0)
    for stamp in events:
        watch.event("A1", stamp, 100.5)
    watch.finish(token, answered, command_id="c1", read=D(10), written=D(8), changed=True)
    assert watch.due(answered + 1.0) == []  # still waiting for late events
    return watch.due(answered + 2.0)


def test_a_foreign_event_inside_the_window_is_found() -> None:
    # Our echo at t=1000.30, a sale at 1000.20: 0.1 s apart, the window is 0.4 s.
    [suspect] = _watch_one([1000.20, 1000.30])
    assert (suspect.foreign_events, suspect.command_id) == (1, "c1")
    assert overwritten(suspect, D(8))  # the level still shows our value: the sale is gone
    assert not overwritten(suspect, D(7))  # the sale came after the write: polling has it


def test_only_our_echo_or_far_apart_events_are_not_found() -> None:
    assert _watch_one([1000.30]) == []
    assert _watch_one([998.0, 1000.30]) == []


def test_our_own_next_write_is_not_a_foreign_change() -> None:
    watch = OverlapWatch(lag=2.0)
    first = watch.begin("A1", 100.0)
    watch.event("A1", 1000.3, 100.3)
    watch.finish(first, 100.4, command_id="c1", read=D(10), written=D(8), changed=True)
    second = watch.begin("A1", 100.5)
    watch.event("A1", 1000.7, 100.8)
    watch.finish(second, 100.9, command_id="c2", read=D(8), written=D(6), changed=True)
    assert watch.take_checked() == []  # still watching
    assert watch.due(103.0) == []
    # Both watches ended with nothing found: checked, once.
    assert watch.take_checked() == ["c1", "c2"]
    assert watch.take_checked() == []


def test_unchanged_or_abandoned_writes_are_not_watched() -> None:
    watch = OverlapWatch(lag=2.0)
    token = watch.begin("A1", 100.0)
    watch.finish(token, 100.4, command_id="c1", read=D(10), written=D(10), changed=False)
    token = watch.begin("A1", 101.0)
    watch.abandon(token)
    watch.event("A1", 1000.0, 101.0)
    assert watch.due(200.0) == []
    assert watch.take_checked() == []  # neither was watched, so neither is checked


async def test_the_session_feeds_article_events_with_their_timestamps_to_the_watch() -> None:
    session = FortnoxSession("shop", cast(Any, None), cast(Any, None), TenantSettings)
    loop = asyncio.get_running_loop()
    token = session.overlaps.begin("1001", loop.time())
    # A web shop sale, then our write's echo, 0.1 s apart (Fortnox's ISO timestamps).
    session.on_feed("articles", "1001", "2026-12-04T10:00:00.200Z")
    session.on_feed("articles", "1001", "2026-12-04T10:00:00.300+00:00")
    session.on_feed("customers", "1001", "2026-12-04T10:00:00.250Z")  # another register
    answered = loop.time() + 0.4
    session.overlaps.finish(
        token, answered, command_id="c1", read=D(10), written=D(8), changed=True
    )
    [suspect] = session.overlaps.due(answered + 10)
    assert suspect.foreign_events == 1
    assert suspect.window >= 0.4
