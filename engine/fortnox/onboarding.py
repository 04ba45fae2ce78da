"""Connecting a shop's Fortnox company from a link, and ending the connection.

The Fortnox app (client id and secret) is configured once for the whole Kassasync installation
(:class:`FortnoxApp`, from ``KASSASYNC_FORTNOX_*``), not per tenant. For each tenant the operator
gets a *consent link* (:meth:`Onboarding.link`) to send to the shop's Fortnox administrator; it
asks for the scopes the tenant's switched-on flows need (:func:`scopes_for`). Fortnox redirects
the administrator to the callback on the dashboard's public URL (``KASSASYNC_PUBLIC_URL`` +
``/fortnox/callback``), where :meth:`Onboarding.complete` checks the ``state`` and exchanges the
code at once.

The ``state`` is sealed with the installation's secret key (AES-GCM, so it is both signed and
opaque): it names the tenant, the redirect URI and an expiry, so an answer cannot be replayed
for another tenant, tampered with, or used after :data:`STATE_SECONDS`. Each ``state`` completes
at most once.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from engine.fortnox.auth import OAUTH_BASE_URL, OAuthClient, TokenManager, consent_url
from engine.fortnox.client import API_BASE_URL
from engine.fortnox.errors import ConsentError, FortnoxError, LoginExpired
from engine.fortnox.observability import log
from engine.fortnox.tokens import (
    AppCredentials,
    Ended,
    GrantKind,
    TokenSet,
    TokenStore,
)
from engine.secrets import Secret, SecretBox, SecretDecryptError
from topics.settings import StockMode, TenantSettings

CLIENT_ID_ENV = "KASSASYNC_FORTNOX_CLIENT_ID"
CLIENT_SECRET_ENV = "KASSASYNC_FORTNOX_CLIENT_SECRET"
AUTH_BASE_ENV = "KASSASYNC_FORTNOX_AUTH_BASE"
API_BASE_ENV = "KASSASYNC_FORTNOX_API_BASE"
SERVICE_ACCOUNT_ENV = "KASSASYNC_FORTNOX_SERVICE_ACCOUNT"
PUBLIC_URL_ENV = "KASSASYNC_PUBLIC_URL"

CALLBACK_PATH = "/fortnox/callback"
#: How long a consent link works (Fortnox's codes live 10 minutes once issued; the link itself
#: may wait in the administrator's inbox).
STATE_SECONDS = 7 * 24 * 3600.0
#: A refresh token this close to its 45 days is warned about (the tenant has been idle).
EXPIRY_WARNING_SECONDS = 10 * 24 * 3600.0
#: A refresh token this old is renewed by the engine even while its tenant is idle (paused: its
#: session makes no requests), so an idle tenant's login does not lapse while the engine runs.
RENEW_AFTER_SECONDS = 30 * 24 * 3600.0
_STATE_CONTEXT = "kassasync fortnox consent state v1"

#: Scopes every tenant needs: what the session's master-data refresh reads whatever flows are
#: on (company, financial years, accounts, voucher series, locked period, cost centres, terms
#: of payment).
BASE_SCOPES: tuple[str, ...] = ("companyinformation", "settings", "bookkeeping", "costcenter")


class FortnoxApp(BaseModel):
    """The Fortnox app (integration) Kassasync runs as: configured once, for every tenant."""

    model_config = ConfigDict(frozen=True)

    client_id: str
    client_secret: Secret
    auth_base: str = OAUTH_BASE_URL
    api_base: str = API_BASE_URL
    #: Consent links ask for a service account (``account_type=service``): new access tokens
    #: then come from client credentials and the company's TenantId, with no refresh token.
    service_accounts: bool = False

    @property
    def credentials(self) -> AppCredentials:
        return AppCredentials(client_id=self.client_id, client_secret=self.client_secret)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FortnoxApp | None:
        """The app from ``KASSASYNC_FORTNOX_CLIENT_ID`` / ``_CLIENT_SECRET`` (None if unset)."""
        env = os.environ if environ is None else environ
        client_id = env.get(CLIENT_ID_ENV, "").strip()
        secret = env.get(CLIENT_SECRET_ENV, "").strip()
        if not client_id or not secret:
            return None
        return cls(
            client_id=client_id,
            client_secret=Secret(secret),
            auth_base=env.get(AUTH_BASE_ENV, "").strip() or OAUTH_BASE_URL,
            api_base=env.get(API_BASE_ENV, "").strip() or API_BASE_URL,
            service_accounts=env.get(SERVICE_ACCOUNT_ENV, "").strip().lower()
            in ("1", "true", "yes"),
        )


def public_url_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if environ is None else environ
    value = env.get(PUBLIC_URL_ENV, "").strip().rstrip("/")
    return value or None


def scopes_for(settings: TenantSettings) -> tuple[str, ...]:
    """The Fortnox scopes the tenant's switched-on flows need (sorted, no duplicates)."""
    wanted = set(BASE_SCOPES)
    if settings.articles.enabled:
        wanted |= {"article", "price"}
    if settings.stock.enabled:
        wanted.add("article")
        if settings.stock.mode is StockMode.WAREHOUSE_DOCUMENTS:
            wanted.add("warehouse")
    if settings.customers.enabled:
        wanted.add("customer")
    if settings.zreports.enabled:
        wanted |= {"bookkeeping", "costcenter"}
    if settings.invoices.enabled:
        wanted |= {"order", "invoice", "customer", "article"}
    if settings.payments.enabled:
        wanted |= {"payment", "invoice"}
    if settings.ledger.enabled:
        wanted.add("bookkeeping")
    return tuple(sorted(wanted))


class ConnectionState(StrEnum):
    NOT_CONNECTED = "not_connected"
    CONNECTED = "connected"
    LOGIN_EXPIRED = "login_expired"
    CONSENT_REVOKED = "consent_revoked"
    DEACTIVATED = "deactivated"


_STATE_TEXT: dict[ConnectionState, tuple[str, str]] = {
    ConnectionState.NOT_CONNECTED: (
        "Not connected yet: the shop's Fortnox administrator has not approved Kassasync.",
        "Send the consent link below to the shop's Fortnox administrator. Sync starts by "
        "itself once they approve.",
    ),
    ConnectionState.CONNECTED: ("Connected to Fortnox.", ""),
    ConnectionState.LOGIN_EXPIRED: (
        "Login expired: the Fortnox login lapsed (a refresh token lives 45 days).",
        "Send the consent link below to the shop's Fortnox administrator; the tenant resumes "
        "by itself after they approve.",
    ),
    ConnectionState.CONSENT_REVOKED: (
        "Consent revoked: Kassasync's access was withdrawn in Fortnox.",
        "If the shop still wants the sync, send the consent link below to its Fortnox "
        "administrator; the tenant resumes by itself after they approve.",
    ),
    ConnectionState.DEACTIVATED: (
        "Deactivated by the operator: no flows run and the Fortnox token was revoked.",
        "Activate the integration again, then send the new consent link.",
    ),
}


@dataclass(frozen=True, slots=True)
class ConnectionStatus:
    tenant: str
    state: ConnectionState
    kind: GrantKind | None = None
    fortnox_tenant_id: int | None = None
    scope: str = ""
    #: When the refresh token lapses (authorization-code logins only).
    refresh_expires_at: float | None = None
    #: Set when the refresh token lapses within :data:`EXPIRY_WARNING_SECONDS`.
    warning: str | None = None
    #: Scopes the switched-on flows need that the consent did not grant: a new consent link
    #: grants them (Fortnox keeps a connection's scopes).
    missing_scopes: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return _STATE_TEXT[self.state][0]

    @property
    def fix(self) -> str:
        return _STATE_TEXT[self.state][1]

    def as_dict(self) -> dict[str, object]:
        return {
            "tenant": self.tenant,
            "state": self.state.value,
            "text": self.text,
            "fix": self.fix,
            "kind": self.kind.value if self.kind else None,
            "fortnox_tenant_id": self.fortnox_tenant_id,
            "scope": self.scope,
            "refresh_expires_at": self.refresh_expires_at,
            "warning": self.warning,
            "missing_scopes": list(self.missing_scopes),
        }


class _StatePayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant: str
    redirect_uri: str
    service: bool
    expires: float
    nonce: str


@dataclass(frozen=True, slots=True)
class Connected:
    tenant: str
    tokens: TokenSet


class Onboarding:
    """Consent links, the callback's code exchange, connection states and deactivation."""

    def __init__(
        self,
        app: FortnoxApp,
        store: TokenStore,
        box: SecretBox,
        *,
        public_url: str | None = None,
        on_connected: Callable[[str], Awaitable[None]] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.store = store
        self.box = box
        self.public_url = (public_url or "").rstrip("/") or None
        self.on_connected = on_connected
        self.transport = transport
        self.clock = clock
        #: States already completed (a state works once; the code inside is single use anyway).
        self._used: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"Onboarding(client_id={self.app.client_id!r}, public_url={self.public_url!r})"

    @property
    def callback_url(self) -> str | None:
        return f"{self.public_url}{CALLBACK_PATH}" if self.public_url else None

    def _oauth(self) -> OAuthClient:
        return OAuthClient(
            self.app.credentials,
            base_url=self.app.auth_base,
            transport=self.transport,
            clock=self.clock,
        )

    # -- the link ------------------------------------------------------------------------------

    def seal_state(self, tenant: str, redirect_uri: str, *, service: bool) -> str:
        payload = _StatePayload(
            tenant=tenant,
            redirect_uri=redirect_uri,
            service=service,
            expires=self.clock() + STATE_SECONDS,
            nonce=secrets.token_urlsafe(12),
        )
        return self.box.seal(payload.model_dump_json(), _STATE_CONTEXT)

    def open_state(self, state: str) -> _StatePayload:
        """The payload of a state we issued; :class:`ConsentError` if forged, stale or used."""
        try:
            payload = _StatePayload.model_validate(
                json.loads(self.box.open(state, _STATE_CONTEXT).reveal())
            )
        except (SecretDecryptError, ValueError, ValidationError):
            raise ConsentError("the link's state is not one Kassasync issued") from None
        if payload.expires <= self.clock():
            raise ConsentError("the consent link has expired", tenant=payload.tenant)
        if payload.nonce in self._used:
            raise ConsentError("this consent answer was already used", tenant=payload.tenant)
        return payload

    def link(
        self,
        tenant: str,
        settings: TenantSettings,
        *,
        redirect_uri: str | None = None,
        service_account: bool | None = None,
        scopes: Sequence[str] | None = None,
    ) -> str:
        """The consent link for ``tenant`` (to send to the shop's Fortnox administrator); its
        scopes follow the tenant's flows unless ``scopes`` names them."""
        target = redirect_uri or self.callback_url
        if target is None:
            raise ConsentError(
                f"no public URL for the callback: set {PUBLIC_URL_ENV} to the dashboard's "
                "address as the shop's browser reaches it",
                tenant=tenant,
            )
        service = self.app.service_accounts if service_account is None else service_account
        state = self.seal_state(tenant, target, service=service)
        wanted = tuple(scopes) if scopes is not None else scopes_for(settings)
        log.info("fortnox.connect.link", tenant=tenant, scopes=" ".join(wanted), service=service)
        return consent_url(
            self.app.client_id,
            redirect_uri=target,
            scopes=wanted,
            state=state,
            service_account=service,
            base_url=self.app.auth_base,
        )

    # -- the callback --------------------------------------------------------------------------

    async def complete(self, query: Mapping[str, str]) -> Connected:
        """Fortnox's redirect: check the state, exchange the code at once, store the tokens."""
        payload = self.open_state(query.get("state", ""))
        tenant = payload.tenant
        if "error" in query:
            log.warning("fortnox.connect.refused", tenant=tenant, error=query["error"][:60])
            raise ConsentError(
                f"Fortnox answered: {query.get('error_description') or query['error']}",
                tenant=tenant,
            )
        code = query.get("code", "")
        if not code:
            raise ConsentError("Fortnox sent no code", tenant=tenant)
        if await self.store.deactivated(tenant):
            raise ConsentError("the integration is deactivated for this shop", tenant=tenant)
        self._used[payload.nonce] = payload.expires
        self._forget_used()
        oauth = self._oauth()
        try:
            tokens = await oauth.exchange_code(code, payload.redirect_uri, tenant=tenant)
        finally:
            await oauth.aclose()
        if payload.service:
            tenant_id = tokens.fortnox_tenant_id or await database_number(
                tokens, self.app.api_base, self.transport
            )
            tokens = tokens.model_copy(
                update={"kind": GrantKind.SERVICE, "fortnox_tenant_id": tenant_id}
            )
        await self.store.save_app(self.app.credentials)
        await self.store.save(tenant, tokens)
        log.info(
            "fortnox.connect.done",
            tenant=tenant,
            kind=tokens.kind.value,
            fortnox_tenant_id=tokens.fortnox_tenant_id,
            scope=tokens.scope,
        )
        if self.on_connected is not None:
            await self.on_connected(tenant)
        return Connected(tenant, tokens)

    def _forget_used(self) -> None:
        now = self.clock()
        for nonce in [n for n, expires in self._used.items() if expires <= now]:
            del self._used[nonce]

    # -- states --------------------------------------------------------------------------------

    async def status(self, tenant: str, settings: TenantSettings | None = None) -> ConnectionStatus:
        """The tenant's connection state; with ``settings``, also the scopes its switched-on
        flows need that the consent did not grant (a flow switched on after the consent)."""
        if await self.store.deactivated(tenant):
            return ConnectionStatus(tenant, ConnectionState.DEACTIVATED)
        tokens = await self.store.load(tenant)
        if tokens is None:
            return ConnectionStatus(tenant, ConnectionState.NOT_CONNECTED)
        state = ConnectionState.CONNECTED
        if tokens.login_expired:
            state = (
                ConnectionState.CONSENT_REVOKED
                if tokens.ended is Ended.REVOKED
                else ConnectionState.LOGIN_EXPIRED
            )
        lapses = tokens.refresh_expires_at()
        warning = None
        if state is ConnectionState.CONNECTED and lapses is not None:
            left = lapses - self.clock()
            if left <= EXPIRY_WARNING_SECONDS:
                days = max(0.0, left / 86400)
                warning = (
                    f"The Fortnox refresh token lapses in {days:.1f} days: the tenant has been "
                    "idle (paused or the engine stopped). Resume it so Kassasync renews the "
                    "login, or send a new consent link."
                )
                log.warning(
                    "fortnox.token.refresh_expiring", tenant=tenant, days_left=round(days, 1)
                )
        missing: tuple[str, ...] = ()
        if settings is not None and state is ConnectionState.CONNECTED:
            granted = set(tokens.scope.split())
            missing = tuple(s for s in scopes_for(settings) if s not in granted)
        return ConnectionStatus(
            tenant,
            state,
            kind=tokens.kind,
            fortnox_tenant_id=tokens.fortnox_tenant_id,
            scope=tokens.scope,
            refresh_expires_at=lapses,
            warning=warning,
            missing_scopes=missing,
        )

    # -- deactivation --------------------------------------------------------------------------

    async def deactivate(self, tenant: str) -> bool:
        """Revoke the tenant's refresh token at Fortnox, forget its tokens and mark it
        deactivated. True when Fortnox confirmed the revocation (False: nothing to revoke,
        or Fortnox refused or was unreachable; the tokens are forgotten all the same)."""
        tokens = await self.store.load(tenant)
        revoked = False
        if tokens is not None and tokens.refresh_token is not None:
            oauth = self._oauth()
            try:
                revoked = await oauth.revoke(tokens.refresh_token, tenant=tenant)
            except (httpx.HTTPError, FortnoxError) as failed:
                log.warning(
                    "fortnox.connect.revoke_failed", tenant=tenant, error=type(failed).__name__
                )
            finally:
                await oauth.aclose()
        await self.store.set_deactivated(tenant, True)
        await self.store.delete(tenant)
        log.info("fortnox.connect.deactivated", tenant=tenant, revoked=revoked)
        return revoked

    async def activate(self, tenant: str) -> None:
        """Allow the tenant to connect again (it is then not connected until consent)."""
        await self.store.set_deactivated(tenant, False)
        log.info("fortnox.connect.activated", tenant=tenant)


async def renew_idle_logins(
    store: TokenStore,
    managers: Mapping[str, TokenManager],
    *,
    clock: Callable[[], float] = time.time,
) -> list[str]:
    """Renew the logins whose refresh token is :data:`RENEW_AFTER_SECONDS` old (their tenant
    has been idle); returns the tenants renewed. A refusal marks the login as any refresh does
    (and the tenant pauses when it next runs); Fortnox being away is retried on the next round."""
    renewed: list[str] = []
    for tenant, manager in managers.items():
        tokens = await store.load(tenant)
        if tokens is None or tokens.login_expired or tokens.refresh_expires_at() is None:
            continue
        if clock() < tokens.issued_at + RENEW_AFTER_SECONDS:
            continue
        try:
            # Issued 30 days ago, the access token is long expired: this refreshes.
            await manager.refresh(tenant)
        except LoginExpired as refused:
            log.warning("fortnox.token.renew_refused", tenant=tenant, kind=refused.kind.value)
            continue
        except FortnoxError as failed:
            days = ((tokens.refresh_expires_at() or 0.0) - clock()) / 86400
            log.warning(
                "fortnox.token.refresh_expiring",
                tenant=tenant,
                days_left=round(days, 1),
                renew_error=type(failed).__name__,
            )
            continue
        log.info("fortnox.token.renewed_idle", tenant=tenant)
        renewed.append(tenant)
    return renewed


async def database_number(
    tokens: TokenSet, api_base_url: str, transport: httpx.AsyncBaseTransport | None
) -> int:
    """The company's DatabaseNumber (= TenantId), needed for client-credentials tokens."""
    async with httpx.AsyncClient(base_url=api_base_url, transport=transport) as http:
        response = await http.get(
            "/3/companyinformation",
            headers={
                "Authorization": f"Bearer {tokens.access_token.reveal()}",
                "Accept": "application/json",
            },
        )
    try:
        number = response.json()["CompanyInformation"]["DatabaseNumber"]
        return int(number)
    except (ValueError, KeyError, TypeError):
        raise ConsentError(
            "could not read the company's TenantId for the service account"
        ) from None
