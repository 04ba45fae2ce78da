"""A tenant's Fortnox API, built from its configuration: the one place that knows how."""

from __future__ import annotations

from dataclasses import dataclass

from engine.fortnox.api import FortnoxApi
from engine.fortnox.auth import OAuthClient, TokenManager
from engine.fortnox.client import FortnoxClient
from engine.fortnox.limiter import LimiterRegistry
from engine.fortnox.observability import FortnoxMetrics
from engine.fortnox.onboarding import FortnoxApp
from engine.fortnox.tokens import AppCredentials, TokenStore
from engine.tenants import FortnoxConnection, TenantConfig
from topics.settings import StockMode


class NoFortnoxApp(ValueError):
    """Neither the tenant's configuration nor the installation names a Fortnox app: no shop can
    be connected until one is configured (the tenant's page and the connect API say so)."""


@dataclass(frozen=True, slots=True)
class Resolved:
    """A tenant's Fortnox connection with the installation's app filled in."""

    app: FortnoxApp

    @property
    def credentials(self) -> AppCredentials:
        return self.app.credentials


def resolve_connection(conn: FortnoxConnection, app: FortnoxApp | None) -> Resolved:
    """The app a tenant runs as: its own client id and secret if its configuration names them
    (older configurations), else the installation's app, configured once; the tenant's
    ``api_base``/``auth_base`` win over the app's when given."""
    if conn.client_id and conn.client_secret is not None:
        own = FortnoxApp(client_id=conn.client_id, client_secret=conn.client_secret)
    else:
        installed = app or FortnoxApp.from_env()
        if installed is None:
            raise NoFortnoxApp(
                "no Fortnox app configured: set KASSASYNC_FORTNOX_CLIENT_ID and "
                "KASSASYNC_FORTNOX_CLIENT_SECRET (or the tenant's fortnox.client_id and "
                "client_secret)"
            )
        own = installed
    return Resolved(
        own.model_copy(
            update={
                "api_base": conn.api_base or own.api_base,
                "auth_base": conn.auth_base or own.auth_base,
            }
        )
    )


async def open_api(
    config: TenantConfig,
    token_store: TokenStore,
    *,
    limiters: LimiterRegistry | None = None,
    metrics: FortnoxMetrics | None = None,
    app: FortnoxApp | None = None,
) -> FortnoxApi:
    """Connect a tenant: a service account gets its first token by client credentials."""
    if config.fortnox is None:
        raise ValueError(f"tenant {config.id} has no Fortnox connection configured")
    conn = config.fortnox
    resolved = resolve_connection(conn, app)
    oauth = OAuthClient(resolved.credentials, base_url=resolved.app.auth_base)
    tokens = TokenManager(token_store, oauth, metrics=metrics)
    if await token_store.load(config.id) is None and conn.fortnox_tenant_id is not None:
        await token_store.save(
            config.id, await oauth.client_credentials(conn.fortnox_tenant_id, tenant=config.id)
        )
    client = FortnoxClient(
        config.id,
        tokens,
        base_url=resolved.app.api_base,
        limiters=limiters,
        rate_window=conn.rate_window_seconds,
        metrics=metrics,
    )
    documents = config.settings.stock.mode is StockMode.WAREHOUSE_DOCUMENTS
    return FortnoxApi(client, stock_documents_enabled=documents)
