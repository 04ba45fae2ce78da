"""The dashboard and ops API: the admin token, sessions, CSRF, pages and actions."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from fastapi.routing import APIRoute

from engine.embedded.runtime import EmbeddedEngine
from engine.web.auth import COOKIE_NAME, AdminAuth, AdminTokenTooShort, resolve_admin_token
from tests.ops.world import (
    ADMIN_TOKEN,
    TENANT,
    Till,
    add_tenant,
    deliver,
    new_engine,
    paused_with_dead_letters,
    payment,
)

BASE = "http://127.0.0.1:8080"
BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# /fortnox/callback is public by design: Fortnox sends the shop there; its sealed state decides.
PUBLIC = {
    "/login",
    "/metrics",
    "/healthz",
    "/v1/tenants/{tenant}/events",
    # The till-PC agent's door: the tenant's ingest key, not the admin token, as for events
    # (its key checks: tests/sie/test_agent.py).
    "/v1/sie-files/{tenant}/{name}",
    "/fortnox/callback",
    "/static/{name}",  # the stylesheet: the login page needs it
}
DOCS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


@pytest.fixture()
async def engine(tmp_path: Path) -> EmbeddedEngine:
    engine = new_engine(tmp_path)
    await paused_with_dead_letters(engine, "1", "2")
    return engine


@pytest.fixture()
async def client(engine: EmbeddedEngine) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(engine.app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
        yield http


async def login(client: httpx.AsyncClient) -> str:
    """Log in through the form; returns the session cookie value."""
    answer = await client.post("/login", data={"token": ADMIN_TOKEN, "next": "/"})
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"]
    value = re.match(rf"{COOKIE_NAME}=([^;]+);", cookie)
    assert value is not None
    return value.group(1)


def session(cookie: str) -> dict[str, str]:
    # httpx keeps Secure cookies for https only; a browser on 127.0.0.1 sends them.
    return {"Cookie": f"{COOKIE_NAME}={cookie}"}


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


def api_routes(routes: Iterable[object]) -> Iterator[APIRoute]:
    """Every route, including those of included routers (however FastAPI wraps them)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from api_routes(inner.routes)


def concrete(path: str) -> str:
    return (
        path.replace("{tenant}", TENANT)
        .replace("{dead_letter_id:path}", "x")
        .replace("{dead_letter_id}", "x")
        .replace("{command_id:path}", "x")
        .replace("{kind}", "payment")
        .replace("{key:path}", "x")
    )


async def test_every_page_and_ops_route_needs_the_token(
    engine: EmbeddedEngine, client: httpx.AsyncClient
) -> None:
    routes = list(api_routes(engine.app.routes))
    guarded = [r for r in routes if r.path not in PUBLIC | DOCS]
    assert {"/", "/tenants/{tenant}", "/system", "/ops/api/overview"} <= {r.path for r in guarded}
    # Each wrong token from an address of its own: ten from one address lock it out (429, see
    # test_wrong_tokens_are_throttled_per_address).
    addresses = (f"10.1.{n // 250}.{n % 250 + 1}" for n in range(10_000))
    for route in guarded:
        for method in route.methods:
            path = concrete(route.path)
            for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"}):
                transport = httpx.ASGITransport(engine.app, client=(next(addresses), 40000))
                async with httpx.AsyncClient(transport=transport, base_url=BASE) as one:
                    answer = await one.request(method, path, headers=headers)
                assert answer.status_code == 401, (method, route.path, headers)
                assert answer.headers["www-authenticate"].startswith("Bearer")
    page = await client.get("/tenants/bageriet")
    assert "/login?next=/tenants/bageriet" in page.text
    assert "not mapped" not in page.text  # nothing about the tenant leaks
    for path in ("/login", "/metrics", "/healthz"):
        assert (await client.get(path)).status_code == 200


async def test_bearer_token_reads_pages_and_api(client: httpx.AsyncClient) -> None:
    for path in ("/", "/tenants/bageriet", "/system"):
        answer = await client.get(path, headers=BEARER)
        assert answer.status_code == 200, path
        assert answer.headers["content-security-policy"].startswith("default-src 'none'")
        assert "<script" not in answer.text
    overview = (await client.get("/ops/api/overview", headers=BEARER)).json()
    [tenant] = overview["tenants"]
    assert tenant["tenant"] == TENANT and tenant["light"] == "red"
    assert tenant["paused"]["kind"] == "login_expired"
    detail = (await client.get("/ops/api/tenants/bageriet", headers=BEARER)).json()
    assert len(detail["dead_letters"]) == 2 and detail["drift"]["total"] == 0
    system = (await client.get("/ops/api/system", headers=BEARER)).json()
    assert system["runtime"] == "embedded" and system["dead_letters"] == 2
    assert (await client.get("/ops/api/tenants/nobody", headers=BEARER)).status_code == 404
    letters = (await client.get("/ops/api/deadletters?tenant=bageriet", headers=BEARER)).json()
    assert {d["flow"] for d in letters["dead_letters"]} == {"payments"}


async def test_login_sets_a_signed_session_cookie(client: httpx.AsyncClient) -> None:
    wrong = await client.post("/login", data={"token": "guess-guess-guess-guess"})
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    answer = await client.post("/login", data={"token": ADMIN_TOKEN, "next": "/system"})
    assert answer.status_code == 303 and answer.headers["location"] == "/system"
    cookie = answer.headers["set-cookie"]
    for flag in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/"):
        assert flag in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    assert ADMIN_TOKEN not in cookie and ADMIN_TOKEN not in value
    page = await client.get("/", headers=session(value))
    assert page.status_code == 200 and "bageriet" in page.text
    tampered = value[:-2] + ("AA" if not value.endswith("AA") else "BB")
    assert (await client.get("/", headers=session(tampered))).status_code == 401
    # Logged in already: the login page sends you on.
    again = await client.get("/login?next=/system", headers=session(value))
    assert again.status_code == 303 and again.headers["location"] == "/system"


async def test_login_never_redirects_off_site(client: httpx.AsyncClient) -> None:
    for target in ("//evil.example", "https://evil.example/", "/\\evil.example", "evil"):
        answer = await client.post("/login", data={"token": ADMIN_TOKEN, "next": target})
        assert answer.headers["location"] == "/", target


def test_sessions_expire_and_die_with_the_token() -> None:
    now = [1000.0]
    auth = AdminAuth(ADMIN_TOKEN, session_seconds=60, clock=lambda: now[0])
    _, cookie = auth.new_session()
    assert auth.read_cookie(cookie) is not None
    now[0] += 61
    assert auth.read_cookie(cookie) is None
    now[0] = 1000.0
    assert (
        AdminAuth("another-token-another-token", clock=lambda: now[0]).read_cookie(cookie) is None
    )
    for junk in ("", "v1", "v1.a.b", "v2.x.y", "v1.!!!.sig"):
        assert auth.read_cookie(junk) is None
    with pytest.raises(AdminTokenTooShort):
        AdminAuth("short")


def test_the_admin_token_comes_from_the_environment_or_is_generated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KASSASYNC_ADMIN_TOKEN", "from-the-environment-123")
    assert resolve_admin_token() == ("from-the-environment-123", False)
    assert resolve_admin_token("given-explicitly-12345") == ("given-explicitly-12345", False)
    monkeypatch.delenv("KASSASYNC_ADMIN_TOKEN")
    token, generated = resolve_admin_token()
    assert generated and len(token) >= 32


async def test_login_is_throttled(client: httpx.AsyncClient) -> None:
    for _ in range(10):
        assert (await client.post("/login", data={"token": "x" * 20})).status_code == 401
    blocked = await client.post("/login", data={"token": ADMIN_TOKEN})
    assert blocked.status_code == 429 and "set-cookie" not in blocked.headers


async def test_actions_with_a_cookie_need_the_csrf_token_and_the_same_origin(
    engine: EmbeddedEngine, client: httpx.AsyncClient
) -> None:
    cookie = await login(client)
    page = (await client.get("/tenants/bageriet", headers=session(cookie))).text
    csrf = csrf_of(page)
    letters = engine.ops.dead_letters(tenant=TENANT)
    target = f"/deadletters/{quote(letters[0].id, safe='')}/retry"
    refused = [
        ({}, {"next": "/tenants/bageriet"}),
        ({}, {"csrf": "forged", "next": "/"}),
        ({"Origin": "https://evil.example"}, {"csrf": csrf}),
        ({"Sec-Fetch-Site": "cross-site"}, {"csrf": csrf}),
        ({"Origin": "null"}, {"csrf": csrf}),
    ]
    for headers, form in refused:
        answer = await client.post(target, data=form, headers={**session(cookie), **headers})
        assert answer.status_code == 403, (headers, form)
    assert len(engine.ops.dead_letters(tenant=TENANT)) == 2
    ok = await client.post(
        target,
        data={"csrf": csrf, "next": "/tenants/bageriet"},
        headers={**session(cookie), "Origin": BASE, "Sec-Fetch-Site": "same-origin"},
    )
    assert ok.status_code == 303
    assert ok.headers["location"].startswith("/tenants/bageriet?done=requeued")
    assert [d.id for d in engine.ops.dead_letters(tenant=TENANT)] == [letters[1].id]
    flashed = await client.get(ok.headers["location"], headers=session(cookie))
    assert f"Dead letter {letters[0].id} retried" in flashed.text
    # Again: already retried, said on the page, nothing changes.
    again = await client.post(target, data={"csrf": csrf, "next": "/"}, headers=session(cookie))
    assert "failed=" in again.headers["location"]
    # The API takes the session too, with the CSRF token in a header.
    discard = f"/ops/api/deadletters/{letters[1].id}/discard"
    assert (await client.post(discard, headers=session(cookie))).status_code == 403
    answer = await client.post(discard, headers={**session(cookie), "X-Kassasync-CSRF": csrf})
    assert answer.status_code == 200 and answer.json()["action"] == "discard"
    # Log out: the form needs the CSRF token as well.
    assert (await client.post("/logout", headers=session(cookie))).status_code == 403
    out = await client.post("/logout", data={"csrf": csrf}, headers=session(cookie))
    assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]


async def test_api_actions_with_the_bearer_token(
    engine: EmbeddedEngine, client: httpx.AsyncClient
) -> None:
    letters = engine.ops.dead_letters(tenant=TENANT)
    retried = await client.post(f"/ops/api/deadletters/{letters[0].id}/retry", headers=BEARER)
    assert retried.status_code == 200
    assert retried.json() | {"message_id": ""} == {
        "action": "retry",
        "tenant": TENANT,
        "dead_letter_id": letters[0].id,
        "message_id": "",
        "requeued": True,
        "replayed": False,
        "noop": False,
        "note": "",
    }
    assert (
        await client.post(f"/ops/api/deadletters/{letters[0].id}/retry", headers=BEARER)
    ).status_code == 409
    assert (
        await client.post("/ops/api/deadletters/nope/discard", headers=BEARER)
    ).status_code == 404
    resumed = await client.post(
        "/ops/api/tenants/bageriet/resume", json={"reason": "login renewed"}, headers=BEARER
    )
    assert resumed.status_code == 200
    engine.processor.step()
    assert engine.edge.paused(TENANT) is None
    paused = await client.post(
        "/ops/api/tenants/bageriet/pause", json={"reason": "moving company"}, headers=BEARER
    )
    assert paused.status_code == 200
    engine.processor.step()
    error = engine.edge.paused(TENANT)
    assert error is not None and "moving company" in error.message
    assert (await client.post("/ops/api/tenants/nobody/resume", headers=BEARER)).status_code == 404


async def test_the_tenant_page_shows_what_an_operator_needs(
    engine: EmbeddedEngine, client: httpx.AsyncClient
) -> None:
    page = (await client.get("/tenants/bageriet", headers=BEARER)).text
    assert 'href="/tenants/bageriet/connection"' in page  # the consent link and state live there
    assert 'href="/tenants/new"' in page  # "Add a shop" in the navigation
    assert "Your Fortnox login has expired" in page
    assert 'href="https://apps.fortnox.se/integrations"' in page
    assert 'action="/tenants/bageriet/resume"' in page
    assert page.count(">Retry</button>") == 2 and page.count(">Discard</button>") == 2
    for heading in (
        "Flows",
        "Fortnox polls",
        "Outbox",
        "Pending drift (proxy)",
        "Recent stock merges",
        "Barcode conflicts",
        "#E# exclusions",
        "Z-reports waiting",
    ):
        assert heading in page, heading
    overview = (await client.get("/", headers=BEARER)).text
    assert 'href="/tenants/bageriet"' in overview and "paused" in overview
    problems = (await client.get("/?only=problems", headers=BEARER)).text
    assert 'href="/tenants/bageriet"' in problems
    system = (await client.get("/system", headers=BEARER)).text
    for heading in ("Consumer lag", "Throughput", "Fortnox request budget", "Workers"):
        assert heading in system
    assert "embedded@" in system


async def test_what_comes_from_outside_is_escaped(tmp_path: Path) -> None:
    engine = new_engine(tmp_path)
    add_tenant(engine, "evil", name="<script>alert(1)</script>")
    till = Till()
    payment(engine, "7", tenant="evil")
    await deliver(engine, till, tenant="evil")
    engine.db.conn.execute(
        "UPDATE dead_letters SET error = json_set(error, '$.message', ?)",
        ('<img src=x onerror=alert(2)> "quoted"',),
    )
    transport = httpx.ASGITransport(engine.app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        for path in ("/", "/tenants/evil"):
            page = (await client.get(path, headers=BEARER)).text
            assert "<script>alert(1)</script>" not in page
            assert "<img src=x" not in page
        page = (await client.get("/tenants/evil", headers=BEARER)).text
        # Jinja2's autoescape writes a double quote as &#34;.
        assert "&lt;img src=x onerror=alert(2)&gt; &#34;quoted&#34;" in page
        missing = await client.get("/tenants/%3Cb%3E", headers=BEARER)
        assert missing.status_code == 404 and "<b>" not in missing.text
