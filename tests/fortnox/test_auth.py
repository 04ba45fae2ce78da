from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from engine.fortnox.auth import OAuthClient, TokenManager, consent_url
from engine.fortnox.errors import AppCredentialsInvalid, LoginExpired
from engine.fortnox.tokens import (
    AppCredentials,
    GrantKind,
    MemoryTokenStore,
    SqliteTokenStore,
    TokenSet,
)
from engine.secrets import Secret, SecretBox
from tests.fortnox.fakes import (
    APP,
    CLIENT_ID,
    FakeClock,
    FakeFortnox,
    json_route,
    make_client,
    seeded_store,
)

COMPANY = {"CompanyInformation": {"CompanyName": "Butik AB", "DatabaseNumber": 4242}}


def test_consent_url() -> None:
    url = consent_url(
        "cid",
        redirect_uri="http://127.0.0.1:8765/callback",
        scopes=["article", "companyinformation"],
        state="s1",
        service_account=True,
    )
    parts = urlsplit(url)
    assert parts.path == "/oauth-v1/auth"
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert q == {
        "client_id": "cid",
        "redirect_uri": "http://127.0.0.1:8765/callback",
        "scope": "article companyinformation",
        "state": "s1",
        "access_type": "offline",
        "response_type": "code",
        "account_type": "service",
    }
    assert "scope=article%20companyinformation" in url


async def test_proactive_refresh_before_expiry() -> None:
    clock = FakeClock()
    fake = FakeFortnox()
    fake.routes[("GET", "/3/companyinformation")] = json_route(200, COMPANY)
    store = await seeded_store(fake, expires_in=60, now=clock())  # inside the 120 s margin
    client = make_client(fake, store, clock=clock)
    data = await client.get_json("/3/companyinformation")
    assert data["CompanyInformation"]["DatabaseNumber"] == 4242
    assert [c["grant_type"] for c in fake.token_calls] == ["refresh_token"]
    assert len(fake.api_calls) == 1  # no 401 round trip
    await client.aclose()


async def test_reactive_refresh_on_401_once() -> None:
    clock = FakeClock()
    fake = FakeFortnox()
    fake.routes[("GET", "/3/companyinformation")] = json_route(200, COMPANY)
    store = await seeded_store(fake, now=clock())
    client = make_client(fake, store, clock=clock)
    await client.get_json("/3/companyinformation")
    assert fake.token_calls == []
    fake.revoke_all_access()  # Fortnox now answers 401 {"message":"unauthorized"}
    await client.get_json("/3/companyinformation")
    assert len(fake.token_calls) == 1
    assert [r.url.path for r in fake.api_calls] == ["/3/companyinformation"] * 3
    await client.aclose()


async def test_new_refresh_token_persisted_before_new_access_token_is_used() -> None:
    clock = FakeClock()
    fake = FakeFortnox()
    store = await seeded_store(fake, expires_in=10, now=clock())
    events: list[str] = []
    original_save = store.save

    async def save(tenant: str, tokens: TokenSet) -> None:
        events.append(f"save:{tokens.access_token.reveal()}")
        await original_save(tenant, tokens)

    store.save = save  # type: ignore[method-assign]
    fake.on_api = lambda r: events.append(f"use:{r.headers['Authorization'][7:]}")
    fake.routes[("GET", "/3/companyinformation")] = json_route(200, COMPANY)
    client = make_client(fake, store, clock=clock)
    await client.get_json("/3/companyinformation")
    assert len(events) == 2
    assert events[0].startswith("save:")
    assert events[1] == "use:" + events[0][5:]
    stored = await store.load("shop-1")
    assert stored is not None and stored.refresh_token is not None
    assert stored.refresh_token.reveal() in fake.valid_refresh
    await client.aclose()


async def test_concurrent_requests_share_one_refresh() -> None:
    clock = FakeClock()
    fake = FakeFortnox(token_delay=0.01)
    fake.routes[("GET", "/3/companyinformation")] = json_route(200, COMPANY)
    store = await seeded_store(fake, expires_in=1, now=clock())
    client = make_client(fake, store, clock=clock)
    await asyncio.gather(*(client.get_json("/3/companyinformation") for _ in range(10)))
    assert len(fake.token_calls) == 1
    await client.aclose()


async def test_two_managers_sharing_sqlite_store_refresh_once(
    tmp_path: object, box: SecretBox
) -> None:
    fake = FakeFortnox(token_delay=0.05)
    store = SqliteTokenStore(f"{tmp_path}/tokens.sqlite", box)
    seed = fake.issue()
    await store.save(
        "shop-1",
        TokenSet(
            client_id=CLIENT_ID,
            access_token=Secret(seed["access_token"]),
            refresh_token=Secret(seed["refresh_token"]),
            expires_at=0.0,  # expired
        ),
    )

    def manager(owner: str) -> TokenManager:
        oauth = OAuthClient(APP, transport=fake.transport(), base_url="https://apps.test")
        return TokenManager(store, oauth, owner=owner, lease_poll=0.01)

    a, b = manager("worker-a"), manager("worker-b")
    token_a, token_b = await asyncio.gather(a.access_token("shop-1"), b.access_token("shop-1"))
    assert token_a == token_b
    assert [c["grant_type"] for c in fake.token_calls] == ["refresh_token"]
    assert not any(c.get("error") for c in fake.token_calls)
    stored = await store.load("shop-1")
    assert stored is not None and not stored.login_expired


async def test_invalid_grant_marks_login_expired() -> None:
    clock = FakeClock()
    fake = FakeFortnox()
    store = await seeded_store(fake, expires_in=0, now=clock())
    fake.valid_refresh.clear()  # consent revoked / token used elsewhere
    client = make_client(fake, store, clock=clock)
    with pytest.raises(LoginExpired) as info:
        await client.get_json("/3/companyinformation")
    assert info.value.shop_error().kind.value == "login_expired"
    stored = await store.load("shop-1")
    assert stored is not None and stored.login_expired
    # Later calls fail fast without touching the token endpoint again.
    calls = len(fake.token_calls)
    with pytest.raises(LoginExpired):
        await client.get_json("/3/companyinformation")
    assert len(fake.token_calls) == calls
    await client.aclose()


async def test_service_account_uses_client_credentials_with_tenant_id() -> None:
    clock = FakeClock()
    fake = FakeFortnox()
    fake.routes[("GET", "/3/companyinformation")] = json_route(200, COMPANY)
    store = MemoryTokenStore()
    await store.save(
        "shop-1",
        TokenSet(
            client_id=CLIENT_ID,
            access_token=Secret("old"),
            expires_at=0.0,
            kind=GrantKind.SERVICE,
            fortnox_tenant_id=4242,
        ),
    )
    client = make_client(fake, store, clock=clock)
    await client.get_json("/3/companyinformation")
    assert fake.token_calls == [{"grant_type": "client_credentials"}]
    stored = await store.load("shop-1")
    assert stored is not None and stored.kind is GrantKind.SERVICE and stored.refresh_token is None
    await client.aclose()


async def test_bad_client_secret_is_not_login_expired() -> None:
    fake = FakeFortnox()
    wrong = AppCredentials(client_id=CLIENT_ID, client_secret=Secret("nope"))
    oauth = OAuthClient(wrong, transport=fake.transport(), base_url="https://apps.test")
    with pytest.raises(AppCredentialsInvalid) as info:
        await oauth.exchange_code("good-code", None)
    assert "nope" not in str(info.value) + repr(info.value)


async def test_token_endpoint_connect_error_is_retried() -> None:
    fake = FakeFortnox()
    failures = iter([True, False])

    async def flaky(request: httpx.Request) -> httpx.Response:
        if next(failures):
            raise httpx.ConnectError("refused", request=request)
        return await fake.handler(request)

    oauth = OAuthClient(APP, transport=httpx.MockTransport(flaky), base_url="https://apps.test")
    tokens = await oauth.exchange_code("good-code", "http://127.0.0.1/cb")
    assert tokens.fortnox_tenant_id == 4242
    assert "refresh-" not in repr(tokens) and tokens.refresh_token is not None
