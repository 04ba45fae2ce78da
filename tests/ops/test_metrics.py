"""``/metrics``: counters fed by the hooks, gauges read from the ops read model at scrape time."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from engine.clock import utcnow
from engine.metrics import EngineMetrics
from engine.ops import TopicLag
from tests.ops.world import TENANT, new_engine, paused_with_dead_letters
from topics import fortnox as fx

EXPECTED = {
    "kassasync_messages_in",
    "kassasync_messages_out",
    "kassasync_messages_dead_lettered",
    "kassasync_commands",
    "kassasync_fortnox_requests",
    "kassasync_fortnox_request_duration_seconds",
    "kassasync_fortnox_retries",
    "kassasync_fortnox_token_refreshes",
    "kassasync_fortnox_limiter_wait_seconds",
    "kassasync_consumer_lag_messages",
    "kassasync_consumer_partition_lag_messages",
    "kassasync_outbox_depth",
    "kassasync_outbox_oldest_pending_age_seconds",
    "kassasync_fortnox_budget_used_ratio",
    "kassasync_tenants",
    "kassasync_dead_letters_open",
    "kassasync_flow_status",
    "kassasync_flow_last_success_timestamp_seconds",
    "kassasync_last_success_timestamp_seconds",
}


async def test_metrics_count_the_engine_and_read_the_state(tmp_path: Path) -> None:
    engine = new_engine(tmp_path)
    await paused_with_dead_letters(engine, "1", "2")
    registry = engine.metrics.registry

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert (
        value(
            "kassasync_messages_in_total", topic="fortnox.changes", type="fortnox.payment.changed"
        )
        == 2
    )
    assert value("kassasync_messages_in_total", topic="sync.outcomes", type="sync.outcome") == 2
    assert (
        value("kassasync_messages_out_total", topic="till.commands", type="till.payment.register")
        == 2
    )
    assert (
        value(
            "kassasync_commands_total",
            target="till",
            type="till.payment.register",
            outcome="rejected",
        )
        == 2
    )
    assert value("kassasync_dead_letters_open", tenant=TENANT) == 2
    assert value("kassasync_flow_status", tenant=TENANT, flow="payments") == 2
    assert value("kassasync_flow_status", tenant=TENANT, flow="ledger") is None  # off
    assert value("kassasync_tenants", state="paused") == 1
    assert value("kassasync_consumer_lag_messages", topic="till.events") == 0
    assert value("kassasync_outbox_depth", target="till") == 0

    # Unconsumed messages are lag; published changes are counted out.
    engine.ports.publish(
        [
            fx.FortnoxPaymentDeleted(
                id="fx-del-1",
                tenant=TENANT,
                occurred_at=utcnow(),
                data=fx.FortnoxPaymentDeletedData(number="1"),
            )
        ]
    )
    assert value("kassasync_consumer_lag_messages", topic="fortnox.changes") == 1
    assert (
        value(
            "kassasync_messages_out_total", topic="fortnox.changes", type="fortnox.payment.deleted"
        )
        == 1
    )

    transport = httpx.ASGITransport(engine.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        answer = await http.get("/metrics")  # no token
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(answer.text)}
    assert names >= EXPECTED


def test_the_fortnox_hooks_and_partition_lag() -> None:
    metrics = EngineMetrics(CollectorRegistry())
    hooks = metrics.fortnox
    hooks.request_finished(
        tenant="t", method="GET", resource="/3/articles", status="200", seconds=0.2
    )
    hooks.request_finished(
        tenant="t", method="PUT", resource="/3/articles", status="429", seconds=1
    )
    hooks.limiter_waited(tenant="t", seconds=0.0)
    hooks.limiter_waited(tenant="t", seconds=1.5)
    hooks.retried(tenant="t", reason="429")
    hooks.token_refreshed(tenant="t", outcome="ok")
    r = metrics.registry
    assert (
        r.get_sample_value(
            "kassasync_fortnox_requests_total",
            {"method": "GET", "resource": "/3/articles", "status": "200"},
        )
        == 1
    )
    assert r.get_sample_value("kassasync_fortnox_limiter_wait_seconds_count") == 2
    assert r.get_sample_value("kassasync_fortnox_limiter_wait_seconds_bucket", {"le": "1.0"}) == 1
    assert r.get_sample_value("kassasync_fortnox_retries_total", {"reason": "429"}) == 1
    assert r.get_sample_value("kassasync_fortnox_token_refreshes_total", {"outcome": "ok"}) == 1
    assert (
        r.get_sample_value(
            "kassasync_fortnox_request_duration_seconds_count",
            {"method": "PUT", "resource": "/3/articles"},
        )
        == 1
    )


async def test_a_runtime_with_partitions_reports_lag_per_partition(tmp_path: Path) -> None:
    engine = new_engine(tmp_path)

    class Partitioned:
        name = "kafka"

        def lag(self) -> list[TopicLag]:
            return [TopicLag("till.events", 0, 10, 7), TopicLag("till.events", 1, 5, 5)]

        def throughput(self) -> dict[str, float]:
            return {}

        def workers(self) -> list[object]:
            return []

        def budgets(self) -> list[object]:
            return []

    engine.ops.probe = Partitioned()  # type: ignore[assignment]
    r = engine.metrics.registry
    assert r.get_sample_value("kassasync_consumer_lag_messages", {"topic": "till.events"}) == 3
    assert (
        r.get_sample_value(
            "kassasync_consumer_partition_lag_messages", {"topic": "till.events", "partition": "0"}
        )
        == 3
    )
