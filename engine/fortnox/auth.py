"""OAuth2 for Fortnox: consent URL, token endpoint, single-flight refresh, and an httpx.Auth flow.

* :class:`OAuthClient` talks to ``/oauth-v1/token`` (Basic auth, form bodies): authorization
  code exchange, refresh (rotating, single-use refresh tokens) and client credentials for
  service accounts (``TenantId`` header).
* :class:`TokenManager` hands out access tokens. It refreshes a little before expiry
  (proactive) or when Fortnox answered 401 (reactive), and makes sure exactly one refresher per
  tenant runs: an ``asyncio.Lock`` per tenant inside the process, and the token store's lease
  across processes. A process that does not get the lease waits and re-reads the stored tokens
  instead of refreshing. The rotated refresh token is saved *before* the new access token is
  handed to anyone.
* :class:`FortnoxAuth` is the httpx auth flow: it sets the bearer header and, on a 401, refreshes
  once and resends.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
import uuid
from collections.abc import AsyncGenerator, Generator, Sequence
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from engine.fortnox.errors import (
    AppCredentialsInvalid,
    AuthError,
    ConsentRevoked,
    ErrorInfo,
    FortnoxError,
    IntegrationDeactivated,
    LoginExpired,
    NotConnected,
    ServerError,
    TokenRefreshBusy,
    TransportFailure,
    parse_error_body,
)
from engine.fortnox.observability import FortnoxMetrics, NullMetrics, log
from engine.fortnox.tokens import (
    REFRESH_TOKEN_SECONDS,
    AppCredentials,
    Ended,
    GrantKind,
    TokenSet,
    TokenStore,
    tenant_id_from_token,
)
from engine.secrets import Secret

OAUTH_BASE_URL = "https://apps.fortnox.se"
DEFAULT_SCOPES: tuple[str, ...] = (
    "companyinformation",
    "customer",
    "article",
    "price",
    "payment",
    "bookkeeping",
    "costcenter",
    "order",
    "invoice",
    "settings",
    "archive",
    "connectfile",
)


def consent_url(
    client_id: str,
    *,
    redirect_uri: str | None,
    scopes: Sequence[str],
    state: str,
    service_account: bool = False,
    base_url: str = OAUTH_BASE_URL,
) -> str:
    """The URL a Fortnox administrator opens to approve Kassasync for their company."""
    params: list[tuple[str, str]] = [("client_id", client_id)]
    if redirect_uri:
        params.append(("redirect_uri", redirect_uri))
    params += [
        ("scope", " ".join(scopes)),
        ("state", state),
        ("access_type", "offline"),
        ("response_type", "code"),
    ]
    if service_account:
        params.append(("account_type", "service"))
    return f"{base_url.rstrip('/')}/oauth-v1/auth?{urlencode(params, quote_via=quote)}"


class OAuthClient:
    """Calls Fortnox's token endpoint for one app. Never logs or raises token values."""

    def __init__(
        self,
        app: AppCredentials,
        *,
        base_url: str = OAUTH_BASE_URL,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 15.0,
        attempts: int = 3,
        clock: Any = time.time,
    ) -> None:
        self.app = app
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url, transport=transport, timeout=timeout)
        self._attempts = attempts
        self._clock = clock

    def __repr__(self) -> str:
        return f"OAuthClient(client_id={self.app.client_id!r}, base_url={self.base_url!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    def consent_url(
        self,
        *,
        redirect_uri: str | None,
        scopes: Sequence[str] = DEFAULT_SCOPES,
        state: str,
        service_account: bool = False,
    ) -> str:
        return consent_url(
            self.app.client_id,
            redirect_uri=redirect_uri,
            scopes=scopes,
            state=state,
            service_account=service_account,
            base_url=self.base_url,
        )

    async def exchange_code(
        self, code: str, redirect_uri: str | None, *, tenant: str | None = None
    ) -> TokenSet:
        form = {"grant_type": "authorization_code", "code": code}
        if redirect_uri:
            form["redirect_uri"] = redirect_uri
        data = await self._token_call(form, tenant=tenant, grant="authorization_code")
        return self._token_set(data, GrantKind.AUTHORIZATION_CODE, None)

    async def refresh(self, tokens: TokenSet, *, tenant: str | None = None) -> TokenSet:
        if tokens.refresh_token is None:
            raise LoginExpired("no refresh token stored; reconnect", tenant=tenant)
        form = {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token.reveal()}
        data = await self._token_call(form, tenant=tenant, grant="refresh_token")
        return self._token_set(data, tokens.kind, tokens.fortnox_tenant_id)

    async def client_credentials(self, fortnox_tenant_id: int, *, tenant: str | None) -> TokenSet:
        form = {"grant_type": "client_credentials"}
        data = await self._token_call(
            form,
            tenant=tenant,
            grant="client_credentials",
            headers={"TenantId": str(fortnox_tenant_id)},
        )
        return self._token_set(data, GrantKind.SERVICE, fortnox_tenant_id)

    async def revoke(self, refresh_token: Secret, *, tenant: str | None = None) -> bool:
        response = await self._http.post(
            "/oauth-v1/revoke",
            data={"token_type_hint": "refresh_token", "token": refresh_token.reveal()},
            auth=self._basic(),
        )
        if not response.is_success:
            log.warning("fortnox.token.revoke_refused", tenant=tenant, status=response.status_code)
            return False
        try:
            answer = response.json()
        except ValueError:
            return True
        # Fortnox answers {"Revoked": true|false}; an unknown token is not revoked.
        return not (isinstance(answer, dict) and answer.get("Revoked") is False)

    def _basic(self) -> httpx.BasicAuth:
        return httpx.BasicAuth(self.app.client_id, self.app.client_secret.reveal())

    def _token_set(
        self, data: dict[str, Any], kind: GrantKind, fortnox_tenant_id: int | None
    ) -> TokenSet:
        access = data.get("access_token")
        if not isinstance(access, str) or not access:
            raise AuthError("token endpoint answered without an access token")
        refresh = data.get("refresh_token")
        try:
            expires_in = float(data.get("expires_in", 3600))
        except (TypeError, ValueError):
            expires_in = 3600.0
        return TokenSet(
            client_id=self.app.client_id,
            access_token=Secret(access),
            refresh_token=Secret(refresh) if isinstance(refresh, str) and refresh else None,
            expires_at=self._clock() + expires_in,
            issued_at=self._clock(),
            scope=str(data.get("scope") or ""),
            kind=kind,
            fortnox_tenant_id=tenant_id_from_token(access) or fortnox_tenant_id,
        )

    async def _token_call(
        self,
        form: dict[str, str],
        *,
        tenant: str | None,
        grant: str,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """POST the token endpoint, retrying transport failures and 5xx.

        A refresh whose answer was lost may already have used up the refresh token; the retry
        then gets ``invalid_grant``, which surfaces as :class:`LoginExpired` (nothing else could
        recover it: the new refresh token existed only in the lost answer).
        """
        ambiguous = False
        last: FortnoxError | None = None
        for attempt in range(self._attempts):
            if attempt:
                await asyncio.sleep(random.uniform(0, min(4.0, 0.5 * 2**attempt)))
            try:
                response = await self._http.post(
                    "/oauth-v1/token", data=form, headers=headers, auth=self._basic()
                )
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                last = TransportFailure(f"token endpoint unreachable ({type(exc).__name__})")
                log.warning("fortnox.token.retry", tenant=tenant, grant=grant, reason="connect")
                continue
            except httpx.TransportError as exc:
                ambiguous = True
                last = TransportFailure(f"token endpoint failed ({type(exc).__name__})")
                log.warning("fortnox.token.retry", tenant=tenant, grant=grant, reason="transport")
                continue
            if response.is_success:
                try:
                    data = response.json()
                except ValueError:
                    raise AuthError("token endpoint answered with unreadable JSON") from None
                if not isinstance(data, dict):
                    raise AuthError("token endpoint answered with unexpected JSON")
                return data
            info = parse_error_body(response.status_code, response.content)
            if response.status_code >= 500:
                ambiguous = True
                last = ServerError(f"token endpoint error {response.status_code}", info=info)
                log.warning("fortnox.token.retry", tenant=tenant, grant=grant, reason="5xx")
                continue
            raise self._token_error(info, grant=grant, tenant=tenant, ambiguous=ambiguous)
        assert last is not None
        last.tenant = tenant
        raise last

    @staticmethod
    def _token_error(
        info: ErrorInfo, *, grant: str, tenant: str | None, ambiguous: bool
    ) -> FortnoxError:
        error = (info.error or "").lower()
        description = info.message or error or f"HTTP {info.status}"
        if error == "invalid_client":
            return AppCredentialsInvalid(
                f"Fortnox rejected the app's client id or secret: {description}",
                tenant=tenant,
                info=info,
            )
        if error == "invalid_grant" or grant == "client_credentials":
            note = " (an earlier refresh answer was lost)" if ambiguous else ""
            return LoginExpired(
                f"Fortnox refused the {grant} grant: {description}{note}",
                tenant=tenant,
                info=info,
            )
        return AuthError(f"token endpoint refused {grant}: {description}", tenant=tenant, info=info)


def _default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class TokenManager:
    """Hands out access tokens per tenant and refreshes them, one refresher per tenant."""

    def __init__(
        self,
        store: TokenStore,
        oauth: OAuthClient,
        *,
        owner: str | None = None,
        refresh_margin: float = 120.0,
        lease_ttl: float = 60.0,
        lease_poll: float = 0.1,
        lease_wait: float = 75.0,
        clock: Any = time.time,
        sleep: Any = asyncio.sleep,
        metrics: FortnoxMetrics | None = None,
    ) -> None:
        self.store = store
        self.oauth = oauth
        self.owner = owner or _default_owner()
        self.refresh_margin = refresh_margin
        self.lease_ttl = lease_ttl
        self.lease_poll = lease_poll
        self.lease_wait = lease_wait
        self._clock = clock
        self._sleep = sleep
        self._metrics: FortnoxMetrics = metrics or NullMetrics()
        self._locks: dict[str, asyncio.Lock] = {}
        self._cache: dict[str, TokenSet] = {}

    @property
    def client_id(self) -> str:
        return self.oauth.app.client_id

    def __repr__(self) -> str:
        return f"TokenManager(client_id={self.client_id!r}, owner={self.owner!r})"

    def _lock(self, tenant: str) -> asyncio.Lock:
        lock = self._locks.get(tenant)
        if lock is None:
            lock = self._locks[tenant] = asyncio.Lock()
        return lock

    def _usable(self, tokens: TokenSet | None, rejected: Secret | None) -> bool:
        if tokens is None or tokens.login_expired:
            return False
        if rejected is not None and tokens.access_token == rejected:
            return False
        return not tokens.expires_within(self.refresh_margin, self._clock())

    async def tokens(self, tenant: str) -> TokenSet:
        """The tenant's current tokens, refreshed first if they are about to expire."""
        await self.access_token(tenant)
        return self._cache[tenant]

    async def access_token(self, tenant: str) -> Secret:
        cached = self._cache.get(tenant)
        if self._usable(cached, None):
            assert cached is not None
            return cached.access_token
        return await self.refresh(tenant)

    async def refresh(self, tenant: str, *, rejected: Secret | None = None) -> Secret:
        """A usable access token, refreshing only if no one has done so meanwhile.

        ``rejected`` is the token Fortnox just answered 401 to: a stored token equal to it is
        not usable even if it has not expired yet.
        """
        async with self._lock(tenant):
            current = await self.store.load(tenant)
            if current is None and await self.store.deactivated(tenant):
                raise IntegrationDeactivated("the integration is deactivated", tenant=tenant)
            self._check_connected(tenant, current)
            if self._usable(current, rejected):
                assert current is not None
                self._cache[tenant] = current
                return current.access_token
            current = await self._take_lease(tenant, rejected)
            if current is not None:  # someone else refreshed while we waited
                self._cache[tenant] = current
                return current.access_token
            try:
                fresh = await self._refresh_under_lease(tenant, rejected)
            finally:
                await self.store.release_lease(tenant, self.owner)
            self._cache[tenant] = fresh
            return fresh.access_token

    def _check_connected(self, tenant: str, current: TokenSet | None) -> None:
        if current is None:
            raise NotConnected(
                "no Fortnox tokens stored for this tenant: its consent link was not followed yet",
                tenant=tenant,
            )
        if current.login_expired:
            self._cache.pop(tenant, None)
            if current.kind is GrantKind.SERVICE and current.fortnox_tenant_id is not None:
                # A service account needs no person: try client credentials again (the consent
                # may have been given again), and report revoked only if Fortnox still refuses.
                return
            if current.ended is Ended.REVOKED:
                raise ConsentRevoked("the tenant's Fortnox consent was revoked", tenant=tenant)
            raise LoginExpired("the Fortnox login of this tenant has expired", tenant=tenant)

    def ended(self, current: TokenSet) -> Ended:
        """Why Fortnox refused ``current``: a refresh token past its 45 days expired; anything
        younger (or a service account) was revoked in Fortnox."""
        if current.kind is GrantKind.SERVICE:
            return Ended.REVOKED
        if current.issued_at and self._clock() - current.issued_at >= REFRESH_TOKEN_SECONDS:
            return Ended.EXPIRED
        return Ended.REVOKED if current.issued_at else Ended.EXPIRED

    async def _take_lease(self, tenant: str, rejected: Secret | None) -> TokenSet | None:
        """Wait for the cross-process lease. Returns tokens if another process refreshed."""
        deadline = self._clock() + self.lease_wait
        waited = False
        while not await self.store.acquire_lease(tenant, self.owner, self.lease_ttl):
            if not waited:
                log.info("fortnox.token.refresh_wait", tenant=tenant, reason="lease_held")
                waited = True
            await self._sleep(self.lease_poll)
            current = await self.store.load(tenant)
            self._check_connected(tenant, current)
            if self._usable(current, rejected):
                log.info("fortnox.token.refresh_skipped", tenant=tenant, reason="lost_race")
                self._metrics.token_refreshed(tenant=tenant, outcome="lost_race")
                return current
            if self._clock() > deadline:
                raise TokenRefreshBusy(
                    "another process has been refreshing this tenant's tokens for too long",
                    tenant=tenant,
                )
        return None

    async def _refresh_under_lease(self, tenant: str, rejected: Secret | None) -> TokenSet:
        current = await self.store.load(tenant)
        self._check_connected(tenant, current)
        assert current is not None
        if self._usable(current, rejected):
            self._metrics.token_refreshed(tenant=tenant, outcome="lost_race")
            return current
        started = self._clock()
        try:
            if current.kind is GrantKind.SERVICE:
                if current.fortnox_tenant_id is None:
                    raise LoginExpired("service account without a Fortnox TenantId", tenant=tenant)
                fresh = await self.oauth.client_credentials(
                    current.fortnox_tenant_id, tenant=tenant
                )
            else:
                fresh = await self.oauth.refresh(current, tenant=tenant)
        except LoginExpired as refused:
            latest = await self.store.load(tenant)
            if latest is not None and latest.refresh_token != current.refresh_token:
                # Rotated by someone else after all (e.g. their lease outlived ours).
                log.info("fortnox.token.refresh_skipped", tenant=tenant, reason="rotated_meanwhile")
                self._metrics.token_refreshed(tenant=tenant, outcome="lost_race")
                return latest
            ended = self.ended(current)
            await self.store.mark_login_expired(tenant, current.refresh_token, ended)
            self._cache.pop(tenant, None)
            log.warning(
                "fortnox.token.login_expired",
                tenant=tenant,
                kind=current.kind.value,
                ended=ended.value,
            )
            self._metrics.token_refreshed(tenant=tenant, outcome="login_expired")
            if ended is Ended.REVOKED:
                raise ConsentRevoked(refused.message, tenant=tenant, info=refused.info) from None
            raise
        except FortnoxError as exc:
            log.warning("fortnox.token.refresh_failed", tenant=tenant, error=type(exc).__name__)
            self._metrics.token_refreshed(tenant=tenant, outcome="failed")
            exc.tenant = tenant
            raise
        # Persist the rotated refresh token before anyone may use the new access token.
        await self.store.save(tenant, fresh)
        if current.login_expired:
            log.info("fortnox.token.service_account_restored", tenant=tenant)
        log.info(
            "fortnox.token.refreshed",
            tenant=tenant,
            kind=fresh.kind.value,
            reactive=rejected is not None,
            expires_in=round(fresh.expires_at - self._clock()),
            seconds=round(self._clock() - started, 3),
        )
        self._metrics.token_refreshed(tenant=tenant, outcome="ok")
        return fresh


def is_unauthorized(response: httpx.Response) -> bool:
    return response.status_code == 401


class FortnoxAuth(httpx.Auth):
    """httpx auth flow: bearer token, and one refresh + resend when Fortnox answers 401."""

    requires_response_body = True

    def __init__(self, tenant: str, tokens: TokenManager) -> None:
        self.tenant = tenant
        self.tokens = tokens

    def __repr__(self) -> str:
        return f"FortnoxAuth(tenant={self.tenant!r})"

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        raise RuntimeError("FortnoxAuth works with httpx.AsyncClient only")
        yield request  # pragma: no cover

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self.tokens.access_token(self.tenant)
        request.headers["Authorization"] = f"Bearer {token.reveal()}"
        response = yield request
        if is_unauthorized(response):
            await response.aread()
            info = parse_error_body(response.status_code, response.content)
            log.info(
                "fortnox.token.rejected",
                tenant=self.tenant,
                message=info.message[:80],
                action="refresh_and_resend",
            )
            token = await self.tokens.refresh(self.tenant, rejected=token)
            request.headers["Authorization"] = f"Bearer {token.reveal()}"
            yield request
