"""A tenant's Fortnox API, built from its configuration: the one place that knows how."""

from __future__ import annotations

from engine.fortnox.api import FortnoxApi
from engine.fortnox.auth import OAuthClient, TokenManager
from engine.fortnox.client import FortnoxClient
from engine.fortnox.limiter import LimiterRegistry
from engine.fortnox.observability import FortnoxMetrics
from engine.fortnox.tokens import AppCredentials, TokenStore
from engine.tenants import TenantConfig
from topics.settings import StockMode


async def open_api(
    config: TenantConfig,
    token_store: TokenStore,
    *,
    limiters: LimiterRegistry | None = None,
    metrics: FortnoxMetrics | None = None,
) -> FortnoxApi:
    """Connect a tenant: a service account gets its first token by client credentials."""
    if config.fortnox is None:
        raise ValueError(f"tenant {config.id} has no Fortnox connection configured")
    conn = config.fortnox
    app = AppCredentials(client_id=conn.client_id, client_secret=conn.client_secret)
    oauth = OAuthClient(app, base_url=conn.auth_base)
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
