from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from engine.fortnox.connect import connect
from engine.fortnox.errors import ConsentError
from engine.fortnox.tokens import GrantKind, MemoryTokenStore
from tests.fortnox.fakes import APP, FakeFortnox


def browser(answers: list[dict[str, str]], pages: list[tuple[int, str]]):  # type: ignore[no-untyped-def]
    """A 'browser' that follows the consent URL and lands on the redirect with each answer."""

    def open_url(url: str) -> None:
        q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        for answer in answers:
            params = {k: (q["state"] if v == "$state" else v) for k, v in answer.items()}
            response = httpx.get(f"{q['redirect_uri']}?{urlencode(params)}", timeout=5)
            pages.append((response.status_code, response.text))

    return open_url


async def test_connect_catches_the_redirect_and_stores_tokens() -> None:
    fake = FakeFortnox()
    store = MemoryTokenStore()
    pages: list[tuple[int, str]] = []
    answers = [{"code": "stolen", "state": "wrong"}, {"code": "good-code", "state": "$state"}]
    tokens = await connect(
        "shop-1",
        app=APP,
        store=store,
        port=0,
        oauth_base_url="https://apps.test",
        transport=fake.transport(),
        open_browser=browser(answers, pages),
        show_url=lambda url: None,
        timeout=10,
    )
    assert [status for status, _ in pages] == [400, 200]
    assert "connected" in pages[1][1]
    assert tokens.fortnox_tenant_id == 4242 and tokens.kind is GrantKind.AUTHORIZATION_CODE
    stored = await store.load("shop-1")
    assert stored == tokens
    assert await store.load_app(APP.client_id) == APP
    assert fake.token_calls[0]["grant_type"] == "authorization_code"
    assert fake.token_calls[0]["redirect_uri"].startswith("http://127.0.0.1:")


async def test_connect_service_account_and_denied_consent() -> None:
    fake = FakeFortnox()
    store = MemoryTokenStore()
    tokens = await connect(
        "shop-2",
        app=APP,
        store=store,
        port=0,
        service_account=True,
        oauth_base_url="https://apps.test",
        transport=fake.transport(),
        open_browser=browser([{"code": "good-code", "state": "$state"}], []),
        show_url=lambda url: None,
        timeout=10,
    )
    assert tokens.kind is GrantKind.SERVICE and tokens.fortnox_tenant_id == 4242

    with pytest.raises(ConsentError):
        await connect(
            "shop-3",
            app=APP,
            store=store,
            port=0,
            oauth_base_url="https://apps.test",
            transport=fake.transport(),
            open_browser=browser([{"error": "access_denied", "state": "$state"}], []),
            show_url=lambda url: None,
            timeout=10,
        )
    assert await store.load("shop-3") is None
