"""Adding shops and connecting them to Fortnox over HTTP, as an operator, a shop's Fortnox
administrator and an attacker would: the public callback, the admin-only pages and JSON, and
deactivation with the data kept or deleted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from engine.clock import utcnow
from engine.embedded.runtime import EmbeddedEngine
from engine.fortnox.onboarding import FortnoxApp, Onboarding
from engine.secrets import Secret
from engine.store.packing import StateTable
from engine.web.connect import resume_where_connected
from tests.fortnox.sandbox_env import SandboxEnv, asgi_sandbox
from tests.ops.world import ADMIN_TOKEN, TENANT, new_engine, paused_with_dead_letters
from tests.web.test_dashboard import BASE, BEARER, csrf_of, login, session
from topics.errors import ErrorKind, shop_error
from topics.outcomes import TenantPaused, TenantPausedData

CALLBACK = f"{BASE}/fortnox/callback"


@dataclass
class World:
    engine: EmbeddedEngine
    env: SandboxEnv
    http: httpx.AsyncClient

    def paused_kind(self, tenant: str = TENANT) -> str | None:
        self.engine.processor.step()
        summary = self.engine.ops.summary(tenant)
        assert summary is not None
        return None if summary.paused is None else summary.paused.kind.value

    async def consent(self, link: str) -> httpx.Response:
        """The administrator approves in Fortnox and the browser lands on the callback."""
        approved = await self.env.admin.get(link, headers={"Accept": "application/json"})
        assert approved.status_code == 302, approved.text
        location = approved.headers["location"]
        assert location.startswith(CALLBACK + "?")
        return await self.http.get(location)


@pytest.fixture()
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with asgi_sandbox(client={"redirect_uris": [CALLBACK]}) as env:
        await env.admin.post(
            f"/_sandbox/tenants/{env.tenant_id}/revoke-consent", json={"client_id": env.client_id}
        )
        engine = new_engine(tmp_path)
        app = FortnoxApp(
            client_id=env.client_id,
            client_secret=Secret(env.client_secret),
            auth_base=env.base_url,
            api_base=env.base_url,
        )
        engine.fortnox_app = app
        engine.onboarding = Onboarding(
            app,
            engine.token_store,
            engine.box,
            public_url=BASE,
            on_connected=engine._connected,
            transport=env.transport,
        )
        await paused_with_dead_letters(engine, "1")
        transport = httpx.ASGITransport(engine.app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
            yield World(engine, env, http)


async def test_a_forged_or_foreign_callback_is_refused(world: World) -> None:
    for query in (
        {"code": "x", "state": "forged"},
        {"code": "x"},
        {"state": world.engine.box.seal('{"tenant":"bageriet"}', "other purpose")},
    ):
        answer = await world.http.get("/fortnox/callback", params=query)
        assert answer.status_code == 400
        assert "Fortnox was not connected" in answer.text
        assert answer.headers["content-security-policy"].startswith("default-src 'none'")
    assert await world.engine.token_store.load(TENANT) is None
    # A link sealed for a shop that is not (or no longer) set up stores nothing either.
    assert world.engine.onboarding is not None
    gone = world.engine.onboarding.link("gone", world.engine.settings_of(TENANT))
    answer = await world.consent(gone)
    assert answer.status_code == 400 and "no longer set up" in answer.text
    assert await world.engine.token_store.load("gone") is None


async def test_a_consent_lands_resumes_the_tenant_and_says_it_worked(world: World) -> None:
    # The shop never connected: its session paused it as not connected.
    world.engine.ops.store.append(
        TenantPaused(
            id="pause-nc",
            tenant=TENANT,
            occurred_at=utcnow(),
            source="kassasync",
            data=TenantPausedData(error=shop_error(ErrorKind.NOT_CONNECTED, tenant=TENANT)),
        )
    )
    assert world.paused_kind() == "not_connected"
    status = (await world.http.get(f"/ops/api/tenants/{TENANT}/connection", headers=BEARER)).json()
    assert status["state"] == "not_connected" and "Not connected yet" in status["text"]
    page = await world.consent(status["consent_link"])
    assert page.status_code == 200 and "Fortnox is connected" in page.text
    assert "Bageriet i Byn AB" in page.text
    assert world.paused_kind() is None
    status = (await world.http.get(f"/ops/api/tenants/{TENANT}/connection", headers=BEARER)).json()
    assert status["state"] == "connected" and status["fortnox_tenant_id"] == world.env.tenant_id


async def test_a_consent_does_not_lift_an_operators_pause(world: World) -> None:
    world.engine.ops.pause(TENANT, "inventory day")
    assert world.paused_kind() == "paused_by_operator"
    link = (await world.http.get(f"/ops/api/tenants/{TENANT}/connection", headers=BEARER)).json()
    assert (await world.consent(link["consent_link"])).status_code == 200
    assert world.paused_kind() == "paused_by_operator"


async def test_adding_a_shop_needs_the_admin_token_and_gives_a_link(world: World) -> None:
    shop = {"id": "hornan", "name": "Hörnan"}
    assert (await world.http.post("/ops/api/tenants", json=shop)).status_code == 401
    added = await world.http.post("/ops/api/tenants", json=shop, headers=BEARER)
    assert added.status_code == 201, added.text
    body = added.json()
    assert body["api_key"].startswith("ks_hornan_") and body["connection"] == "not_connected"
    link = urlsplit(body["consent_link"])
    assert link.path == "/oauth-v1/auth" and "redirect_uri=http%3A%2F%2F127.0.0.1%3A8080" in (
        link.query
    )
    config = world.engine.tenants.get("hornan")
    assert config is not None and config.fortnox is not None
    assert config.fortnox.client_id is None and config.fortnox.client_secret is None
    again = await world.http.post("/ops/api/tenants", json=shop, headers=BEARER)
    assert again.status_code == 409
    for bad in ({"id": "../etc"}, {"id": "Hornan"}, {"id": "x", "extra": 1}):
        answer = await world.http.post("/ops/api/tenants", json=bad, headers=BEARER)
        assert answer.status_code == 400, bad
    for raw in (b"not json", b"[1]"):
        answer = await world.http.post("/ops/api/tenants", content=raw, headers=BEARER)
        assert answer.status_code == 400 and "JSON" in answer.json()["error"]
    problem = await world.http.post("/ops/api/tenants", json={"id": "A b"}, headers=BEARER)
    assert problem.json()["error"].startswith("id: a tenant id is")


async def test_the_add_form_refuses_a_post_without_its_csrf_token(world: World) -> None:
    cookie = await login(world.http)
    form = await world.http.get("/tenants/new", headers=session(cookie))
    assert form.status_code == 200 and "Add a shop" in form.text
    refused = await world.http.post("/tenants/new", data={"id": "evil"}, headers=session(cookie))
    assert refused.status_code == 403 and world.engine.tenants.get("evil") is None
    cross = await world.http.post(
        "/tenants/new",
        data={"id": "evil", "csrf": csrf_of(form.text)},
        headers={**session(cookie), "Origin": "https://evil.example"},
    )
    assert cross.status_code == 403 and world.engine.tenants.get("evil") is None
    made = await world.http.post(
        "/tenants/new",
        data={"id": "hornan", "name": "Hörnan", "csrf": csrf_of(form.text)},
        headers=session(cookie),
    )
    assert made.status_code == 201 and 'id="api-key"' in made.text
    page = await world.http.get("/tenants/hornan/connection", headers=session(cookie))
    assert 'data-state="not_connected"' in page.text and 'id="consent-link"' in page.text


async def test_deactivate_keeping_the_data_then_activate(world: World) -> None:
    link = (await world.http.get(f"/ops/api/tenants/{TENANT}/connection", headers=BEARER)).json()
    await world.consent(link["consent_link"])
    deactivated = await world.http.post(
        f"/ops/api/tenants/{TENANT}/deactivate", json={"delete_data": False}, headers=BEARER
    )
    assert deactivated.json() == {
        "tenant": TENANT,
        "deactivated": True,
        "revoked": True,
        "data_deleted": False,
    }
    assert world.paused_kind() == "paused_by_operator"
    assert "deactivated" in world.engine.ops.summary(TENANT).paused.message  # type: ignore[union-attr]
    assert len(world.engine.ops.dead_letters(tenant=TENANT)) == 1  # kept
    status = (await world.http.get(f"/ops/api/tenants/{TENANT}/connection", headers=BEARER)).json()
    assert status["state"] == "deactivated" and status["consent_link"] is None

    activated = await world.http.post(f"/ops/api/tenants/{TENANT}/activate", headers=BEARER)
    assert activated.status_code == 200
    assert world.paused_kind() is None
    status = (await world.http.get(f"/ops/api/tenants/{TENANT}/connection", headers=BEARER)).json()
    assert status["state"] == "not_connected" and status["consent_link"]


async def test_deactivate_and_delete_the_data(world: World) -> None:
    assert world.engine.ops.dead_letters(tenant=TENANT)
    answer = await world.http.post(
        f"/ops/api/tenants/{TENANT}/deactivate", json={"delete_data": True}, headers=BEARER
    )
    assert answer.status_code == 200 and answer.json()["data_deleted"] is True
    assert world.engine.ops.dead_letters(tenant=TENANT) == []
    assert world.engine.tenants.get(TENANT) is not None  # the shop itself stays, to activate
    assert StateTable(world.engine.db.conn).counts(TENANT) == {}
    assert world.paused_kind() == "paused_by_operator"


async def test_unknown_tenants_and_missing_token(world: World) -> None:
    for method, path in (
        ("GET", "/ops/api/tenants/nobody/connection"),
        ("POST", "/ops/api/tenants/nobody/deactivate"),
        ("POST", "/ops/api/tenants/nobody/activate"),
    ):
        assert (await world.http.request(method, path)).status_code == 401
        assert (await world.http.request(method, path, headers=BEARER)).status_code == 404
    assert (await world.http.get("/tenants/nobody/connection", headers=BEARER)).status_code == 404
    assert ADMIN_TOKEN not in (await world.http.get("/tenants/new")).text


async def test_the_safety_net_resumes_only_answered_connection_pauses(world: World) -> None:
    """Tokens stored by another process (``kassasync connect``), or a pause that reached the log
    after the callback's resume: the engine's check resumes the tenant. It never resumes a pause
    that new tokens do not answer."""
    store = world.engine.token_store
    engine = world.engine

    def paused_as(kind: ErrorKind) -> None:
        engine.ops.store.append(
            TenantPaused(
                id=f"pause-{kind.value}-{utcnow().timestamp()}",
                tenant=TENANT,
                occurred_at=utcnow(),
                source="kassasync",
                data=TenantPausedData(error=shop_error(kind, tenant=TENANT)),
            )
        )
        assert world.paused_kind() == kind.value

    async def net() -> list[str]:
        found = await resume_where_connected(engine.ops, store, [TENANT])
        engine.processor.step()
        return found

    # Expired login (the fixture's pause) with only tokens older than the pause: stays.
    assert world.paused_kind() == "login_expired"
    link = (await world.http.get(f"/ops/api/tenants/{TENANT}/connection", headers=BEARER)).json()
    assert (await world.consent(link["consent_link"])).status_code == 200  # resumes at once
    tokens = await store.load(TENANT)
    assert tokens is not None
    paused_as(ErrorKind.LOGIN_EXPIRED)
    assert await net() == [] and world.paused_kind() == "login_expired"
    # New tokens, issued after the pause: resumed.
    await store.save(TENANT, tokens.model_copy(update={"issued_at": utcnow().timestamp() + 1}))
    assert await net() == [TENANT] and world.paused_kind() is None
    # Not connected, while tokens exist after all (the race): resumed.
    paused_as(ErrorKind.NOT_CONNECTED)
    assert await net() == [TENANT] and world.paused_kind() is None
    # A missing scope is not answered by tokens that look fine, nor is an operator's pause.
    paused_as(ErrorKind.LICENCE_OR_SCOPE_MISSING)
    assert await net() == [] and world.paused_kind() == "licence_or_scope_missing"
    engine.ops.pause(TENANT, "inventory day")
    assert await net() == [] and world.paused_kind() == "paused_by_operator"
