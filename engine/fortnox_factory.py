"""A tenant's Fortnox API, built from its configuration: the one place that knows how."""

from __future__ import annotations

from engine.fortnox.api import FortnoxApi
from engine.fortnox.auth import OAuthClient, TokenManager
from engine.fortnox.client import FortnoxClient
from engine.fortnox.limiter import LimiterRegistry
from engine.fortnox.observability import FortnoxMetrics
from engine.fortnox.onboarding import FortnoxApp
from engine.fortnox.tokens import AppCredentials, TokenStore
from engine.tenants import FortnoxConnection, TenantConfig
from topics.settings import StockMode


def resolve_connection(
    conn: FortnoxConnection, app: FortnoxApp | None
) -> tuple[FortnoxConnection, AppCredentials]:
    """The tenant's connection with the installation's app filled in where the tenant names
    none (client id and secret, and the app's API and OAuth addresses)."""
    if conn.client_id and conn.client_secret is not None:
        return conn, AppCredentials(client_id=conn.client_id, client_secret=conn.client_secret)
    app = app or FortnoxApp.from_env()
    if app is None:
        raise ValueError(
            "no Fortnox app configured: set KASSASYNC_FORTNOX_CLIENT_ID and "
            "KASSASYNC_FORTNOX_CLIENT_SECRET (or the tenant's fortnox.client_id/client_secret)"
        )
    given = conn.model_fields_set
    resolved = conn.model_copy(
        update={
            "client_id": app.client_id,
            "client_secret": app.client_secret,
            "api_base": conn.api_base if "api_base" in given else app.api_base,
            "auth_base": conn.auth_base if "auth_base" in given else app.auth_base,
        }
    )
    return resolved, app.credentials


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
    conn, credentials = resolve_connection(config.fortnox, app)
    oauth = OAuthClient(credentials, base_url=conn.auth_base)
    tokens = TokenManager(token_store, oauth, metrics=metrics)
    if await token_store.load(config.id) is None and conn.fortnox_tenant_id is not None:
        await token_store.save(
            config.id, await oauth.client_credentials(conn.fortnox_tenant_id, tenant=config.id)
        )
    client = FortnoxClient(
        config.id,
        tokens,
        base_url=conn.api_base,
        limiters=limiters,
        rate_window=conn.rate_window_seconds,
        metrics=metrics,
    )
    documents = config.settings.stock.mode is StockMode.WAREHOUSE_DOCUMENTS
    return FortnoxApi(client, stock_documents_enabled=documents)
