"""FortnoxConnection.at: one base URL for the API, OAuth and the topics feed (the sandbox)."""

from __future__ import annotations

from engine.tenants import FortnoxConnection

CREDENTIALS = {"client_id": "cid", "client_secret": "s3cret", "tenant_id": "42"}


def test_one_base_url_serves_api_oauth_and_with_feed_the_topics() -> None:
    conn = FortnoxConnection.at("http://127.0.0.1:9000", CREDENTIALS, poll_seconds=2, feed=True)
    assert (conn.api_base, conn.auth_base) == ("http://127.0.0.1:9000", "http://127.0.0.1:9000")
    assert conn.topics_url == "ws://127.0.0.1:9000/topics-v1"
    assert (conn.client_id, conn.fortnox_tenant_id, conn.poll_seconds) == ("cid", 42, 2)
    assert conn.client_secret.reveal() == "s3cret"


def test_without_the_feed_there_is_no_topics_url() -> None:
    assert FortnoxConnection.at("http://127.0.0.1:9000", CREDENTIALS).topics_url is None


async def test_the_servers_rate_window_reaches_the_tenants_limiter() -> None:
    from engine.fortnox.limiter import LimiterRegistry
    from engine.fortnox.tokens import MemoryTokenStore
    from engine.fortnox_factory import open_api
    from engine.tenants import TenantConfig

    assert FortnoxConnection.at("http://127.0.0.1:9000", CREDENTIALS).rate_window_seconds == 5.0
    limiters = LimiterRegistry()
    fast = FortnoxConnection.at("http://127.0.0.1:9000", CREDENTIALS, rate_window_seconds=1.0)
    config = TenantConfig(id="shop", fortnox=fast.model_copy(update={"fortnox_tenant_id": None}))
    api = await open_api(config, MemoryTokenStore(), limiters=limiters)
    try:
        assert api.client.limiter is limiters.get("cid", "shop")
        assert (api.client.limiter.limit, api.client.limiter.period) == (25, 1.0)
    finally:
        await api.client.aclose()
