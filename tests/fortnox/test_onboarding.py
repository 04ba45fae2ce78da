"""Consent links, the callback's checks, the three "not working" states, service accounts,
the refresh token's 45 days, and deactivation: against the sandbox's real OAuth endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest
from structlog.testing import capture_logs

from engine.fortnox.auth import OAuthClient, TokenManager
from engine.fortnox.errors import (
    ConsentError,
    ConsentRevoked,
    IntegrationDeactivated,
    LoginExpired,
    NotConnected,
)
from engine.fortnox.onboarding import (
    BASE_SCOPES,
    EXPIRY_WARNING_SECONDS,
    RENEW_AFTER_SECONDS,
    STATE_SECONDS,
    ConnectionState,
    FortnoxApp,
    Onboarding,
    renew_idle_logins,
    scopes_for,
)
from engine.fortnox.tokens import REFRESH_TOKEN_SECONDS, Ended, GrantKind, MemoryTokenStore
from engine.secrets import Secret, SecretBox, generate_key
from tests.fortnox.fakes import FakeClock
from tests.fortnox.sandbox_env import SandboxEnv, asgi_sandbox
from topics.settings import TenantSettings

PUBLIC = "https://kassasync.example.se"


@dataclass
class World:
    env: SandboxEnv
    store: MemoryTokenStore
    clock: FakeClock
    onboarding: Onboarding
    connected: list[str]

    def manager(self) -> TokenManager:
        """The engine's token manager for this installation's app, on the same clock."""
        oauth = OAuthClient(
            self.env.credentials,
            base_url=self.env.base_url,
            transport=self.env.transport,
            clock=self.clock,
        )
        return TokenManager(self.store, oauth, clock=self.clock)

    async def approve(self, link: str, **extra: str) -> dict[str, str]:
        """The administrator approves in Fortnox; returns the callback's query."""
        suffix = "".join(f"&{k}={v}" for k, v in extra.items())
        answer = await self.env.admin.get(f"{link}&tenant_id={self.env.tenant_id}{suffix}")
        assert answer.status_code == 302, answer.text
        location = answer.headers["location"]
        assert location.startswith(f"{PUBLIC}/fortnox/callback?")
        return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@pytest.fixture()
async def world() -> AsyncIterator[World]:
    async with asgi_sandbox(client={"redirect_uris": [f"{PUBLIC}/fortnox/callback"]}) as env:
        # The sandbox registers every client with a consent: withdraw it (nothing approved).
        await env.admin.post(
            f"/_sandbox/tenants/{env.tenant_id}/revoke-consent", json={"client_id": env.client_id}
        )
        clock = FakeClock(start=1_800_000_000.0)
        store = MemoryTokenStore(clock=clock)
        connected: list[str] = []

        async def on_connected(tenant: str) -> None:
            connected.append(tenant)

        app = FortnoxApp(
            client_id=env.client_id,
            client_secret=Secret(env.client_secret),
            auth_base=env.base_url,
            api_base=env.base_url,
        )
        onboarding = Onboarding(
            app,
            store,
            SecretBox(generate_key()),
            public_url=PUBLIC + "/",
            on_connected=on_connected,
            transport=env.transport,
            clock=clock,
        )
        env.admin.headers["Accept"] = "application/json"
        yield World(env, store, clock, onboarding, connected)


async def test_a_link_approved_in_fortnox_connects_the_tenant(world: World) -> None:
    assert (await world.onboarding.status("shop")).state is ConnectionState.NOT_CONNECTED
    link = world.onboarding.link("shop", TenantSettings())
    query = parse_qs(urlsplit(link).query)
    assert query["redirect_uri"] == [f"{PUBLIC}/fortnox/callback"]
    assert query["scope"] == [" ".join(scopes_for(TenantSettings()))]
    assert query["access_type"] == ["offline"] and "account_type" not in query

    connected = await world.onboarding.complete(await world.approve(link))
    assert connected.tenant == "shop" and world.connected == ["shop"]
    status = await world.onboarding.status("shop")
    assert status.state is ConnectionState.CONNECTED
    assert (
        status.fortnox_tenant_id == world.env.tenant_id
        and status.kind is GrantKind.AUTHORIZATION_CODE
    )
    assert status.refresh_expires_at == pytest.approx(world.clock() + REFRESH_TOKEN_SECONDS)
    assert await world.store.load_app(world.env.client_id) is not None


async def test_the_state_is_checked(world: World) -> None:
    link = world.onboarding.link("shop", TenantSettings())
    answer = await world.approve(link)
    state = answer["state"]
    # Forged, tampered with, or sealed by another installation: refused, nothing stored.
    for bad in (
        "",
        "made-up",
        state[:-4] + "AAAA",
        Onboarding(
            world.onboarding.app, world.store, SecretBox(generate_key()), public_url=PUBLIC
        ).seal_state("shop", f"{PUBLIC}/fortnox/callback", service=False),
    ):
        with pytest.raises(ConsentError):
            await world.onboarding.complete({**answer, "state": bad})
    assert await world.store.load("shop") is None
    # The right one works once; the same answer again is refused.
    await world.onboarding.complete(answer)
    with pytest.raises(ConsentError, match="already used"):
        await world.onboarding.complete(answer)


async def test_a_link_expires(world: World) -> None:
    link = world.onboarding.link("shop", TenantSettings())
    answer = await world.approve(link)
    world.clock.now += STATE_SECONDS + 1
    with pytest.raises(ConsentError, match="expired"):
        await world.onboarding.complete(answer)
    assert await world.store.load("shop") is None


async def test_a_refusal_in_fortnox_stores_nothing(world: World) -> None:
    link = world.onboarding.link("shop", TenantSettings())
    answer = await world.approve(link, deny="1")
    assert answer["error"] == "access_denied"
    with pytest.raises(ConsentError, match="denied"):
        await world.onboarding.complete(answer)
    assert await world.store.load("shop") is None and world.connected == []


async def test_the_state_binds_the_tenant(world: World) -> None:
    """A state names its tenant inside the sealed payload: the answer to shop A's link stores
    tokens for shop A whatever else the query says."""
    answer = await world.approve(world.onboarding.link("shop-a", TenantSettings()))
    connected = await world.onboarding.complete({**answer, "tenant": "shop-b"})
    assert connected.tenant == "shop-a"
    assert await world.store.load("shop-b") is None


def test_scopes_follow_the_flows() -> None:
    plain = scopes_for(TenantSettings())
    assert set(BASE_SCOPES) <= set(plain) and "warehouse" not in plain and "order" not in plain
    warehouse = TenantSettings.model_validate({"stock": {"mode": "warehouse_documents"}})
    assert "warehouse" in scopes_for(warehouse)
    invoices = TenantSettings.model_validate({"invoices": {"enabled": True}})
    assert {"order", "invoice", "customer"} <= set(scopes_for(invoices))
    off = TenantSettings.model_validate(
        {"articles": {"enabled": False}, "stock": {"enabled": False}}
    )
    assert "article" not in scopes_for(off) and "price" not in scopes_for(off)


async def test_a_service_account_consent_refreshes_by_itself(world: World) -> None:
    link = world.onboarding.link("shop", TenantSettings(), service_account=True)
    assert parse_qs(urlsplit(link).query)["account_type"] == ["service"]
    connected = await world.onboarding.complete(await world.approve(link))
    assert connected.tokens.kind is GrantKind.SERVICE
    assert connected.tokens.fortnox_tenant_id == world.env.tenant_id
    manager = world.manager()
    # Revoked in Fortnox: the next token request says so.
    world.clock.now += 3600
    await world.env.admin.post(
        f"/_sandbox/tenants/{world.env.tenant_id}/revoke-consent",
        json={"client_id": world.env.client_id},
    )
    with pytest.raises(ConsentRevoked):
        await manager.access_token("shop")
    assert (await world.onboarding.status("shop")).state is ConnectionState.CONSENT_REVOKED
    # Approved again (say, from Fortnox's own integration page): the next request gets a new
    # token by client credentials, with no tokens stored by anyone.
    await world.env.admin.post(
        f"/_sandbox/tenants/{world.env.tenant_id}/clients",
        json={
            "client_id": world.env.client_id,
            "client_secret": world.env.client_secret,
            "service_account": True,
        },
    )
    assert await manager.access_token("shop")
    assert (await world.onboarding.status("shop")).state is ConnectionState.CONNECTED


async def test_not_connected_expired_and_revoked_are_three_states(world: World) -> None:
    manager = world.manager()
    with pytest.raises(NotConnected) as none:
        await manager.access_token("shop")
    assert none.value.shop_error().kind.value == "not_connected"

    await world.onboarding.complete(
        await world.approve(world.onboarding.link("shop", TenantSettings()))
    )
    tokens = await world.store.load("shop")
    assert tokens is not None
    # Unused for 46 days (the engine stopped): Fortnox refuses the refresh token: expired.
    stale = tokens.model_copy(
        update={
            "issued_at": world.clock() - REFRESH_TOKEN_SECONDS - 86400,
            "expires_at": world.clock() - 1,
            "refresh_token": Secret("lapsed-refresh-token"),
        }
    )
    await world.store.save("shop", stale)
    with pytest.raises(LoginExpired) as expired:
        await manager.access_token("shop")
    assert not isinstance(expired.value, ConsentRevoked)
    assert expired.value.shop_error().kind.value == "login_expired"
    assert (await world.store.load("shop")).ended is Ended.EXPIRED  # type: ignore[union-attr]
    assert (await world.onboarding.status("shop")).state is ConnectionState.LOGIN_EXPIRED
    # Later calls say the same without asking Fortnox again.
    with pytest.raises(LoginExpired) as again:
        await manager.access_token("shop")
    assert again.value.shop_error().kind.value == "login_expired"

    # A young refresh token refused: revoked.
    await world.onboarding.complete(
        await world.approve(world.onboarding.link("shop", TenantSettings()))
    )
    assert (await world.onboarding.status("shop")).state is ConnectionState.CONNECTED
    await world.env.admin.post(
        f"/_sandbox/tenants/{world.env.tenant_id}/revoke-consent",
        json={"client_id": world.env.client_id},
    )
    world.clock.now += 3600  # the access token is due for a refresh
    with pytest.raises(ConsentRevoked) as revoked:
        await manager.access_token("shop")
    assert revoked.value.shop_error().kind.value == "consent_revoked"
    assert (await world.onboarding.status("shop")).state is ConnectionState.CONSENT_REVOKED


async def test_a_refresh_token_near_its_45_days_is_warned_about(world: World) -> None:
    await world.onboarding.complete(
        await world.approve(world.onboarding.link("shop", TenantSettings()))
    )
    assert (await world.onboarding.status("shop")).warning is None
    start = world.clock()
    world.clock.now = start + REFRESH_TOKEN_SECONDS - EXPIRY_WARNING_SECONDS - 3600
    assert (await world.onboarding.status("shop")).warning is None
    world.clock.now = start + REFRESH_TOKEN_SECONDS - EXPIRY_WARNING_SECONDS + 86400
    status = await world.onboarding.status("shop")
    assert status.state is ConnectionState.CONNECTED
    assert status.warning is not None and "lapses in 9.0 days" in status.warning
    # Any use refreshes it (rotating): the warning goes.
    manager = world.manager()
    await manager.access_token("shop")
    assert (await world.onboarding.status("shop")).warning is None


async def test_deactivate_revokes_at_fortnox_and_activate_starts_afresh(world: World) -> None:
    await world.onboarding.complete(
        await world.approve(world.onboarding.link("shop", TenantSettings()))
    )
    tokens = await world.store.load("shop")
    assert tokens is not None and tokens.refresh_token is not None

    assert await world.onboarding.deactivate("shop") is True
    assert await world.store.load("shop") is None
    assert (await world.onboarding.status("shop")).state is ConnectionState.DEACTIVATED
    # Fortnox no longer honours the refresh token Kassasync held.
    oauth = OAuthClient(
        world.env.credentials, base_url=world.env.base_url, transport=world.env.transport
    )
    with pytest.raises(LoginExpired):
        await oauth.refresh(tokens, tenant="shop")
    await oauth.aclose()
    # Nothing runs while deactivated, and a consent answer is refused.
    manager = world.manager()
    with pytest.raises(IntegrationDeactivated) as stopped:
        await manager.access_token("shop")
    assert stopped.value.shop_error().kind.value == "paused_by_operator"
    with pytest.raises(ConsentError, match="deactivated"):
        await world.onboarding.complete(
            await world.approve(world.onboarding.link("shop", TenantSettings()))
        )

    await world.onboarding.activate("shop")
    assert (await world.onboarding.status("shop")).state is ConnectionState.NOT_CONNECTED
    await world.onboarding.complete(
        await world.approve(world.onboarding.link("shop", TenantSettings()))
    )
    assert (await world.onboarding.status("shop")).state is ConnectionState.CONNECTED


async def test_no_public_url_no_link(world: World) -> None:
    bare = Onboarding(world.onboarding.app, world.store, SecretBox(generate_key()))
    with pytest.raises(ConsentError, match="KASSASYNC_PUBLIC_URL"):
        bare.link("shop", TenantSettings())


def test_the_app_is_configured_once_from_the_environment() -> None:
    assert FortnoxApp.from_env({}) is None
    app = FortnoxApp.from_env(
        {
            "KASSASYNC_FORTNOX_CLIENT_ID": "cid",
            "KASSASYNC_FORTNOX_CLIENT_SECRET": "app-secret-7d1e",
            "KASSASYNC_FORTNOX_SERVICE_ACCOUNT": "true",
        }
    )
    assert app is not None and app.client_id == "cid" and app.service_accounts
    assert app.auth_base == "https://apps.fortnox.se" and "app-secret-7d1e" not in repr(app)


async def test_the_callback_page_never_shows_tokens(world: World) -> None:
    """Belt and braces for the web layer: Connected carries tokens, repr hides them."""
    connected = await world.onboarding.complete(
        await world.approve(world.onboarding.link("shop", TenantSettings()))
    )
    assert connected.tokens.access_token.reveal() not in repr(connected)


async def test_the_engine_renews_an_idle_tenants_login_before_it_lapses(world: World) -> None:
    await world.onboarding.complete(
        await world.approve(world.onboarding.link("shop", TenantSettings()))
    )
    before = await world.store.load("shop")
    assert before is not None
    managers = {"shop": world.manager()}
    # Young: left alone (no token request).
    world.clock.now += RENEW_AFTER_SECONDS - 3600
    assert await renew_idle_logins(world.store, managers, clock=world.clock) == []
    assert await world.store.load("shop") == before
    # 30 days unused (the tenant was paused): renewed, so the 45 days start again.
    world.clock.now += 7200
    assert await renew_idle_logins(world.store, managers, clock=world.clock) == ["shop"]
    after = await world.store.load("shop")
    assert after is not None and after.refresh_token != before.refresh_token
    assert after.issued_at == world.clock() and not after.login_expired
    # A login Fortnox refuses is marked as any refresh would, and not retried in a loop.
    world.clock.now += RENEW_AFTER_SECONDS + 1
    await world.env.admin.post(
        f"/_sandbox/tenants/{world.env.tenant_id}/revoke-consent",
        json={"client_id": world.env.client_id},
    )
    assert await renew_idle_logins(world.store, managers, clock=world.clock) == []
    assert (await world.onboarding.status("shop")).state is ConnectionState.CONSENT_REVOKED
    assert await renew_idle_logins(world.store, managers, clock=world.clock) == []


async def test_a_flow_switched_on_after_the_consent_shows_its_missing_scope(world: World) -> None:
    await world.onboarding.complete(
        await world.approve(world.onboarding.link("shop", TenantSettings()))
    )
    assert (await world.onboarding.status("shop", TenantSettings())).missing_scopes == ()
    later = TenantSettings.model_validate(
        {"stock": {"mode": "warehouse_documents"}, "invoices": {"enabled": True}}
    )
    status = await world.onboarding.status("shop", later)
    assert status.state is ConnectionState.CONNECTED
    assert status.missing_scopes == ("invoice", "order", "warehouse")
    # A new consent with the new link grants them.
    await world.onboarding.complete(await world.approve(world.onboarding.link("shop", later)))
    assert (await world.onboarding.status("shop", later)).missing_scopes == ()


async def test_no_token_code_state_or_secret_is_logged(world: World) -> None:
    with capture_logs() as logs:
        link = world.onboarding.link("shop", TenantSettings())
        answer = await world.approve(link)
        connected = await world.onboarding.complete(answer)
        world.clock.now += 3600
        await world.manager().access_token("shop")
        await world.onboarding.deactivate("shop")
    tokens = connected.tokens
    assert tokens.refresh_token is not None
    text = repr(logs)
    assert {e["event"] for e in logs} >= {"fortnox.connect.link", "fortnox.connect.done"}
    for secret in (
        tokens.access_token.reveal(),
        tokens.refresh_token.reveal(),
        answer["code"],
        answer["state"],
        world.env.client_secret,
    ):
        assert secret not in text
