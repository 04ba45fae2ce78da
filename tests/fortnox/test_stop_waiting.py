"""A stopping engine stops waiting for Fortnox (``FortnoxClient.stop_waiting``): a retry's
backoff and a wait for the rate limiter end at once with ``Stopping``, the request not sent
(again); a request the limiter lets go at once is still sent, and one on the wire gets its
answer. Real time here: the point is that nothing sleeps on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest

from engine.fortnox.auth import OAuthClient, TokenManager
from engine.fortnox.client import FortnoxClient
from engine.fortnox.errors import FortnoxError, Stopping
from engine.fortnox.limiter import SlidingWindowLimiter
from engine.fortnox.retry import RetryPolicy
from tests.fortnox.fakes import APP, FakeClock, FakeFortnox, seeded_store

#: Long enough that a test which waits it out fails its own time bound.
LONG = 30.0

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


async def _client(answer: Handler) -> tuple[FortnoxClient, FakeFortnox]:
    token_clock = FakeClock()
    fake = FakeFortnox()
    store = await seeded_store(fake, now=token_clock())

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth-v1/token":
            return await fake.handler(request)
        fake.api_calls.append(request)
        return await answer(request)

    oauth = OAuthClient(
        APP, transport=fake.transport(), base_url="https://apps.test", clock=token_clock
    )
    client = FortnoxClient(
        "shop-1",
        TokenManager(store, oauth, clock=token_clock, sleep=token_clock.sleep),
        base_url="https://api.test",
        transport=httpx.MockTransport(handler),
        # Every backoff its longest: 30 s after the first 429.
        retry=RetryPolicy(rate_limited_base_delay=LONG, max_delay=LONG, random=lambda a, b: b),
        limiter=SlidingWindowLimiter(),
    )
    return client, fake


async def _answer_429(_request: httpx.Request) -> httpx.Response:
    return httpx.Response(429)


async def _answer_ok(_request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"ok": 1})


async def _until(check: Callable[[], bool]) -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never happened")


async def test_a_stop_ends_a_retrys_backoff_at_once_and_nothing_is_sent_again() -> None:
    client, fake = await _client(_answer_429)
    # A POST refused with 429 is retried (Fortnox provably did not apply it), after a backoff.
    posting = asyncio.create_task(client.send_json("POST", "/3/vouchers", {"Voucher": {}}))
    await _until(lambda: len(fake.api_calls) == 1)
    await asyncio.sleep(0.05)
    assert not posting.done()
    asked = time.monotonic()
    client.stop_waiting()
    with pytest.raises(Stopping) as info:
        await posting
    assert time.monotonic() - asked < 1.0
    assert len(fake.api_calls) == 1
    # Not a Fortnox failure: no handler of those may settle a command or a write from it.
    assert not isinstance(info.value, FortnoxError)
    assert info.value.waiting == "retry after 429"
    await client.aclose()


async def test_a_stop_ends_a_wait_for_the_rate_limiter_and_the_request_is_not_sent() -> None:
    client, fake = await _client(_answer_ok)
    client.limiter.penalize(LONG)  # Fortnox answered 429: every request of the tenant waits
    reading = asyncio.create_task(client.get_json("/3/articles"))
    await _until(lambda: client.limiter.stats.waiting_now == 1)
    asked = time.monotonic()
    client.stop_waiting()
    with pytest.raises(Stopping) as info:
        await reading
    assert time.monotonic() - asked < 1.0
    assert info.value.waiting == "rate_limiter"
    assert fake.api_calls == []
    # The limiter's queue holds nothing of it: another client of the tenant is not held up.
    assert client.limiter.stats.waiting_now == 0
    assert not client.limiter._queue
    await client.aclose()


async def test_after_a_stop_a_request_that_need_not_wait_is_sent_one_that_must_is_not() -> None:
    client, fake = await _client(_answer_ok)
    client.stop_waiting()
    # The limiter lets it go at once: sent (a stopping session still reads what it must).
    assert await client.get_json("/3/articles") == {"ok": 1}
    assert len(fake.api_calls) == 1
    client.limiter.penalize(LONG)
    asked = time.monotonic()
    with pytest.raises(Stopping):
        await client.get_json("/3/articles")
    assert time.monotonic() - asked < 1.0
    assert len(fake.api_calls) == 1
    await client.aclose()


async def test_a_stop_leaves_a_request_on_the_wire_to_its_answer() -> None:
    async def slow(_request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.3)
        return httpx.Response(200, json={"Voucher": {"VoucherNumber": 7}})

    client, fake = await _client(slow)
    posting = asyncio.create_task(client.send_json("POST", "/3/vouchers", {"Voucher": {}}))
    await _until(lambda: len(fake.api_calls) == 1)
    client.stop_waiting()
    assert await posting == {"Voucher": {"VoucherNumber": 7}}
    await client.aclose()
