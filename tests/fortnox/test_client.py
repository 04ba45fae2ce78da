from __future__ import annotations

import httpx
import pytest

from engine.fortnox.client import FortnoxClient
from engine.fortnox.errors import (
    FortnoxError,
    NotFound,
    RateLimited,
    SeriesNotManual,
    TransportFailure,
    UnknownOutcome,
)
from engine.fortnox.limiter import SlidingWindowLimiter
from engine.fortnox.observability import RecordingMetrics
from engine.fortnox.retry import RetryPolicy, is_idempotent
from tests.fortnox.fakes import FakeClock, FakeFortnox, make_client, seeded_store


def scripted(fake: FakeFortnox, outcomes: list[object]) -> httpx.MockTransport:
    """Each API call takes the next outcome: an int status, a dict body (200) or an exception."""
    calls = iter(outcomes)

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth-v1/token":
            return await fake.handler(request)
        fake.api_calls.append(request)
        outcome = next(calls)
        if isinstance(outcome, Exception):
            raise outcome
        if isinstance(outcome, int):
            return httpx.Response(outcome, json={"ErrorInformation": {"message": "x", "code": 1}})
        return httpx.Response(200, json=outcome)

    return httpx.MockTransport(handler)


async def client_with(
    outcomes: list[object], retry: RetryPolicy | None = None
) -> tuple[FortnoxClient, FakeFortnox]:
    clock = FakeClock()
    fake = FakeFortnox()
    store = await seeded_store(fake, now=clock())
    client = make_client(fake, store, clock=clock, transport=scripted(fake, outcomes), retry=retry)
    return client, fake


def test_idempotency_rules() -> None:
    assert is_idempotent("GET", "/3/articles")
    assert is_idempotent("PUT", "/3/articles/1")
    assert is_idempotent("DELETE", "/3/customers/1")
    assert not is_idempotent("POST", "/3/vouchers")
    assert not is_idempotent("PUT", "/3/orders/1/createinvoice")


async def test_get_is_retried_on_5xx_and_timeouts() -> None:
    req = httpx.Request("GET", "https://api.test/")
    client, fake = await client_with(
        [500, httpx.ReadTimeout("slow", request=req), 503, {"ok": True}]
    )
    assert await client.get_json("/3/articles") == {"ok": True}
    assert len(fake.api_calls) == 4


async def test_get_gives_up_after_the_attempts() -> None:
    client, fake = await client_with([502] * 10, retry=RetryPolicy(attempts=3))
    with pytest.raises(FortnoxError) as info:
        await client.get_json("/3/articles")
    assert info.value.shop_error().kind.value == "fortnox_unavailable"
    assert len(fake.api_calls) == 3


async def test_post_5xx_is_unknown_outcome_and_not_retried() -> None:
    client, fake = await client_with([500, {"Voucher": {}}])
    body = {"Voucher": {"Description": "Z 7"}}
    with pytest.raises(UnknownOutcome) as info:
        await client.send_json("POST", "/3/vouchers", body, params={"financialyear": 3})
    assert len(fake.api_calls) == 1
    assert info.value.payload == body
    assert info.value.params == {"financialyear": 3}
    assert info.value.method == "POST"


async def test_post_read_error_after_send_is_unknown_outcome() -> None:
    req = httpx.Request("POST", "https://api.test/")
    for exc in (
        httpx.ReadTimeout("slow", request=req),
        httpx.RemoteProtocolError("Server disconnected without sending a response", request=req),
        httpx.WriteError("broken pipe", request=req),
    ):
        client, fake = await client_with([exc, {"Voucher": {}}])
        with pytest.raises(UnknownOutcome):
            await client.send_json("POST", "/3/vouchers", {})
        assert len(fake.api_calls) == 1


async def test_post_retried_only_when_it_never_left() -> None:
    req = httpx.Request("POST", "https://api.test/")
    client, fake = await client_with(
        [httpx.ConnectError("refused", request=req), 429, {"Voucher": {"VoucherNumber": 1}}]
    )
    data = await client.send_json("POST", "/3/vouchers", {})
    assert data == {"Voucher": {"VoucherNumber": 1}}
    assert len(fake.api_calls) == 3


async def test_connect_errors_give_up_as_transport_failure() -> None:
    req = httpx.Request("GET", "https://api.test/")
    client, fake = await client_with(
        [httpx.ConnectError("refused", request=req)] * 5, retry=RetryPolicy(attempts=2)
    )
    with pytest.raises(TransportFailure):
        await client.get_json("/3/articles")
    assert len(fake.api_calls) == 2


async def test_429_pauses_the_tenant_and_retries() -> None:
    metrics = RecordingMetrics()
    client, _fake = await client_with([429, 429, {"ok": 1}])
    client.metrics = metrics
    start = client.limiter._clock()
    assert await client.get_json("/3/articles") == {"ok": 1}
    assert client.limiter.stats.penalties == 2
    assert client.limiter._clock() - start >= 10.0
    assert metrics.statuses == {"429": 2, "200": 1}
    assert metrics.retries["429"] == 2


async def test_429_pauses_for_the_window_of_a_faster_server() -> None:
    clock = FakeClock()
    fake = FakeFortnox()
    store = await seeded_store(fake, now=clock())
    limiter = SlidingWindowLimiter(window=1.0, clock=clock, sleep=clock.sleep)
    client = make_client(
        fake, store, clock=clock, transport=scripted(fake, [429, {"ok": 1}]), limiter=limiter
    )
    start = clock()
    assert await client.get_json("/3/articles") == {"ok": 1}
    assert limiter.stats.penalties == 1
    assert 1.0 <= clock() - start < 5.0


async def test_429_forever_raises_rate_limited() -> None:
    client, _ = await client_with([429] * 20, retry=RetryPolicy(rate_limited_attempts=3))
    with pytest.raises(RateLimited):
        await client.get_json("/3/articles")


async def test_errors_are_typed_with_context() -> None:
    clock = FakeClock()
    fake = FakeFortnox()
    store = await seeded_store(fake, now=clock())

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth-v1/token":
            return await fake.handler(request)
        if request.url.path == "/3/vouchers":
            return httpx.Response(
                400,
                json={
                    "ErrorInformation": {
                        "error": 1,
                        "message": "Verifikationsserien är inte manuell",
                        "code": 2999011,
                    }
                },
            )
        return httpx.Response(
            404,
            json={
                "ErrorInformation": {
                    "Error": 1,
                    "Message": "Kan inte hitta kunden.",
                    "Code": 2000433,
                }
            },
        )

    client = make_client(fake, store, clock=clock, transport=httpx.MockTransport(handler))
    with pytest.raises(SeriesNotManual) as info:
        await client.send_json("POST", "/3/vouchers", {}, context={"series": "KS"})
    assert "KS" in info.value.shop_error().message
    with pytest.raises(NotFound):
        await client.get_json("/3/customers/9")
