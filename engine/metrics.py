"""Prometheus metrics, one :class:`CollectorRegistry` per engine (``GET /metrics``).

Counters and histograms are fed by hooks: the processor's batch callback (messages in, commands
out), :class:`MeteredPorts` around the executors' ports (command outcomes, Fortnox changes
published) and :class:`PrometheusFortnoxMetrics`, the Fortnox client's metrics protocol
(requests, limiter waits, retries, token refreshes). Gauges about the state (lag, outbox, dead
letters, last successes, status lights, request budget) are read from the ops read model when
Prometheus scrapes, so they are right whichever runtime feeds it.
"""

from __future__ import annotations

import collections
import datetime as dt
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from engine.executors.ports import CursorUpdate, ExecutorPorts
from engine.ops import Light, Ops, topic_of
from engine.store.outbox import Pending
from engine.store.retention import Retention
from engine.supervision import Health
from topics.envelope import Envelope
from topics.errors import ShopError
from topics.outcomes import OutcomeStatus
from topics.registry import Packed, topic_and_type

#: Limiter waits are mostly 0 (sent at once) or up to a window (5 s) when a tenant is busy.
WAIT_BUCKETS = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
REQUEST_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

LIGHT_VALUE = {Light.GREEN: 0, Light.AMBER: 1, Light.RED: 2}


class EngineMetrics:
    """The engine's metrics on its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages_in = Counter(
            "kassasync_messages_in",
            "Messages consumed by the reconcilers, by topic and type.",
            ["topic", "type"],
            registry=r,
        )
        self.messages_out = Counter(
            "kassasync_messages_out",
            "Messages the engine appended: commands from the reconcilers, changes published by "
            "the Fortnox pollers.",
            ["topic", "type"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "kassasync_messages_dead_lettered",
            "Messages the reconcilers could not handle and parked as dead letters.",
            registry=r,
        )
        self.commands = Counter(
            "kassasync_commands",
            "Command deliveries by target (fortnox, till), command type and outcome.",
            ["target", "type", "outcome"],
            registry=r,
        )
        self.fortnox_requests = Counter(
            "kassasync_fortnox_requests",
            "HTTP requests to Fortnox by method, resource and status (or error name).",
            ["method", "resource", "status"],
            registry=r,
        )
        self.fortnox_request_seconds = Histogram(
            "kassasync_fortnox_request_duration_seconds",
            "Duration of Fortnox HTTP exchanges (limiter wait included).",
            ["method", "resource"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.fortnox_retries = Counter(
            "kassasync_fortnox_retries",
            "Fortnox requests retried, by reason (429, 5xx, timeout, unknown_outcome, ...).",
            ["reason"],
            registry=r,
        )
        self.token_refreshes = Counter(
            "kassasync_fortnox_token_refreshes",
            "Fortnox token refreshes by outcome (ok, lost_race, login_expired, failed).",
            ["outcome"],
            registry=r,
        )
        self.limiter_wait = Histogram(
            "kassasync_fortnox_limiter_wait_seconds",
            "Time a Fortnox request waited for the 25-per-5-seconds sliding window.",
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.loop_restarts = Counter(
            "kassasync_loop_restarts",
            "Long-running loops restarted by the supervisor after a crash, by loop kind "
            "(processor, ticks, sessions, session, feed, till, ...).",
            ["loop"],
            registry=r,
        )
        self.fortnox = PrometheusFortnoxMetrics(self)

    # -- hooks ----------------------------------------------------------------------------

    def batch(
        self,
        by_type: Mapping[str, int],
        commands_by_type: Mapping[str, int],
        dead_letters: int = 0,
    ) -> None:
        """One reconciled batch: what came in, the commands that went out."""
        for message_type, count in by_type.items():
            self.messages_in.labels(topic_of(message_type), message_type).inc(count)
        for command_type, count in commands_by_type.items():
            self.messages_out.labels(topic_of(command_type), command_type).inc(count)
        if dead_letters:
            self.dead_lettered.inc(dead_letters)

    def published(self, messages: Iterable[Envelope | Packed]) -> None:
        # Counted per label first: a full sync publishes 100,000 records at once.
        counts = collections.Counter(topic_and_type(m) for m in messages)
        for (topic, message_type), n in counts.items():
            self.messages_out.labels(topic, message_type).inc(n)

    def settled(self, target: str, command_type: str, outcome: str) -> None:
        self.commands.labels(target, command_type, outcome).inc()

    def loop_restarted(self, kind: str) -> None:
        self.loop_restarts.labels(kind).inc()

    def watch_health(self, health: Callable[[], Health]) -> HealthCollector:
        """Report the supervisor's health at every scrape."""
        collector = HealthCollector(health)
        self.registry.register(collector)
        return collector

    def watch(self, ops: Ops) -> OpsCollector:
        """Read the state gauges from ``ops`` at every scrape."""
        collector = OpsCollector(ops)
        self.registry.register(collector)
        return collector

    def watch_retention(self, retention: Retention) -> RetentionCollector:
        """Report what retention did and what the store holds at every scrape."""
        collector = RetentionCollector(retention)
        self.registry.register(collector)
        return collector

    def render(self) -> bytes:
        return generate_latest(self.registry)


class PrometheusFortnoxMetrics:
    """The Fortnox client's :class:`~engine.fortnox.observability.FortnoxMetrics` protocol.

    The tenant is deliberately not a label of the request counters (thousands of tenants times
    resources times statuses); per-tenant load is the budget gauge.
    """

    def __init__(self, metrics: EngineMetrics) -> None:
        self.m = metrics

    def request_finished(
        self, *, tenant: str, method: str, resource: str, status: str, seconds: float
    ) -> None:
        self.m.fortnox_requests.labels(method, resource, status).inc()
        self.m.fortnox_request_seconds.labels(method, resource).observe(seconds)

    def limiter_waited(self, *, tenant: str, seconds: float) -> None:
        self.m.limiter_wait.observe(seconds)

    def retried(self, *, tenant: str, reason: str) -> None:
        self.m.fortnox_retries.labels(reason).inc()

    def token_refreshed(self, *, tenant: str, outcome: str) -> None:
        self.m.token_refreshes.labels(outcome).inc()


class HealthCollector(Collector):
    """``kassasync_healthy`` (1 or 0) and ``kassasync_loop_problems`` per loop kind."""

    def __init__(self, health: Callable[[], Health]) -> None:
        self.health = health

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        health = self.health()
        healthy = GaugeMetricFamily(
            "kassasync_healthy", "1 while /healthz answers 200, else 0 (see its problems)."
        )
        healthy.add_metric([], 1.0 if health.ok else 0.0)
        yield healthy
        problems = GaugeMetricFamily(
            "kassasync_loop_problems",
            "Loops that are down, crashing, reporting a fault or stalled, by loop kind.",
            labels=["loop"],
        )
        kinds = collections.Counter(p.loop.split(":", 1)[0] for p in health.problems)
        for kind, count in sorted(kinds.items()):
            problems.add_metric([kind], float(count))
        yield problems


class RetentionCollector(Collector):
    """The embedded store's retention: what it removed, what the store holds, how old the log's
    start is (``docs/operations.md``, *Retention*)."""

    def __init__(self, retention: Retention, clock: Callable[[], float] = time.time) -> None:
        self.retention = retention
        self.clock = clock

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        status = self.retention.status
        gauges: list[tuple[str, str, float]] = [
            (
                "kassasync_retention_passes",
                "Retention passes run since the process started.",
                float(status.passes),
            ),
            (
                "kassasync_retention_log_rows_trimmed",
                "Log rows retention deleted since the process started (below the base state).",
                float(status.log_rows_trimmed),
            ),
            (
                "kassasync_retention_seen_expired",
                "Till message ids forgotten after the redelivery window, since the start.",
                float(status.seen_expired),
            ),
            (
                "kassasync_retention_outbox_deleted",
                "Delivered commands' outbox rows deleted once as old as the kept log.",
                float(status.outbox_deleted),
            ),
            (
                "kassasync_store_bytes",
                "Size of the embedded store's database (pages in use and free).",
                float(self.retention.store_bytes()),
            ),
        ]
        for name, text, value in gauges:
            gauge = GaugeMetricFamily(name, text)
            gauge.add_metric([], value)
            yield gauge
        last = GaugeMetricFamily(
            "kassasync_retention_last_pass_timestamp_seconds",
            "When the last retention pass ran (Unix time; absent before the first).",
        )
        if status.last_pass_at is not None:
            last.add_metric([], status.last_pass_at)
        yield last
        oldest = GaugeMetricFamily(
            "kassasync_log_oldest_age_seconds",
            "Age of the oldest record on the reconciled topics' log (the replay horizon).",
        )
        at = _timestamp(self.retention.oldest_log_at())
        if at is not None:
            oldest.add_metric([], max(0.0, self.clock() - at))
        yield oldest


class OpsCollector(Collector):
    """State gauges, read from the ops read model when Prometheus scrapes."""

    def __init__(self, ops: Ops, clock: Any = time.time) -> None:
        self.ops = ops
        self.clock = clock

    def describe(self) -> list[Metric]:
        # Nothing at registration: collecting reads the database.
        return []

    def collect(self) -> Iterator[Metric]:
        system = self.ops.system()
        lag = GaugeMetricFamily(
            "kassasync_consumer_lag_messages",
            "Messages on a topic the reconcilers have not consumed yet.",
            labels=["topic"],
        )
        partition_lag = GaugeMetricFamily(
            "kassasync_consumer_partition_lag_messages",
            "Consumer lag per partition (runtimes with partitions only).",
            labels=["topic", "partition"],
        )
        per_topic: dict[str, int] = {}
        for item in system.lag:
            per_topic[item.topic] = per_topic.get(item.topic, 0) + item.lag
            if item.partition is not None:
                partition_lag.add_metric([item.topic, str(item.partition)], item.lag)
        for topic, value in sorted(per_topic.items()):
            lag.add_metric([topic], value)
        yield lag
        yield partition_lag

        depth = GaugeMetricFamily(
            "kassasync_outbox_depth",
            "Commands waiting in the outbox for delivery, by target.",
            labels=["target"],
        )
        age = GaugeMetricFamily(
            "kassasync_outbox_oldest_pending_age_seconds",
            "Age of the oldest pending command, by target.",
            labels=["target"],
        )
        now = self.clock()
        for target in ("fortnox", "till"):
            depth.add_metric([target], system.pending.get(target, 0))
            oldest = system.oldest_pending.get(target)
            age.add_metric([target], 0.0 if oldest is None else max(0.0, now - oldest))
        yield depth
        yield age

        budget = GaugeMetricFamily(
            "kassasync_fortnox_budget_used_ratio",
            "Share of the Fortnox request window (25 per 5 s) in use, per tenant.",
            labels=["tenant"],
        )
        for used in system.budgets:
            budget.add_metric([used.tenant], used.used)
        yield budget

        tenants = GaugeMetricFamily(
            "kassasync_tenants", "Tenants by state (active, paused).", labels=["state"]
        )
        tenants.add_metric(["active"], system.tenants - system.paused)
        tenants.add_metric(["paused"], system.paused)
        yield tenants

        dead = GaugeMetricFamily(
            "kassasync_dead_letters_open",
            "Dead letters waiting for an operator, per tenant.",
            labels=["tenant"],
        )
        light = GaugeMetricFamily(
            "kassasync_flow_status",
            "Status light per tenant and flow: 0 green, 1 amber, 2 red (flows that are off are "
            "left out).",
            labels=["tenant", "flow"],
        )
        flow_ok = GaugeMetricFamily(
            "kassasync_flow_last_success_timestamp_seconds",
            "When a flow last had a command done, per tenant (Unix time).",
            labels=["tenant", "flow"],
        )
        last_ok = GaugeMetricFamily(
            "kassasync_last_success_timestamp_seconds",
            "When a Fortnox poll stream last succeeded, per tenant and resource (Unix time).",
            labels=["tenant", "resource"],
        )
        overlaps = GaugeMetricFamily(
            "kassasync_stock_possible_lost_sales",
            "Absolute stock writes a change made by someone else in Fortnox overlapped (a sale "
            "may have been overwritten), per tenant; shown on the tenant page.",
            labels=["tenant"],
        )
        repaired = GaugeMetricFamily(
            "kassasync_stock_sales_repaired",
            "Web shop sales an absolute stock write overwrote that Kassasync established from "
            "their invoices and applied to Fortnox again (nothing lost), per tenant.",
            labels=["tenant"],
        )
        for summary in self.ops.overview():
            dead.add_metric([summary.tenant], summary.dead_letters)
            kinds = self.ops.store.kind_counts(summary.tenant)
            overlaps.add_metric([summary.tenant], kinds.get("stock.overlap", 0))
            repaired.add_metric([summary.tenant], kinds.get("stock.repaired", 0))
            for flow in summary.flows:
                if flow.light in LIGHT_VALUE:
                    light.add_metric([summary.tenant, flow.flow], LIGHT_VALUE[flow.light])
                stamp = _timestamp(flow.last_ok)
                if stamp is not None:
                    flow_ok.add_metric([summary.tenant, flow.flow], stamp)
            for cursor in self.ops.store.cursors(summary.tenant):
                if cursor.last_ok is not None:
                    last_ok.add_metric([summary.tenant, cursor.resource], cursor.last_ok)
        yield dead
        yield overlaps
        yield repaired
        yield light
        yield flow_ok
        yield last_ok


def _timestamp(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


class MeteredPorts:
    """:class:`ExecutorPorts` that counts what the executors settle and publish.

    Wraps the runtime's ports (the embedded ``Edge``, or the Kafka runtime's), so the executors
    themselves need no metric calls.
    """

    def __init__(self, inner: ExecutorPorts, metrics: EngineMetrics) -> None:
        self.inner = inner
        self.metrics = metrics

    def head(self, target: str, tenant: str) -> Pending | None:
        return self.inner.head(target, tenant)

    def tenants_with_work(self, target: str) -> list[str]:
        return self.inner.tenants_with_work(target)

    def settle(
        self,
        pending: Pending,
        status: OutcomeStatus,
        *,
        result: dict[str, str] | None = None,
        error: ShopError | None = None,
        facts: list[Envelope] | None = None,
        retry_in: float = 0.0,
    ) -> None:
        self.inner.settle(
            pending, status, result=result, error=error, facts=facts, retry_in=retry_in
        )
        self.metrics.settled(pending.target, pending.type, status.value)
        if facts:
            self.metrics.published(facts)

    def next_fx_seq(self, tenant: str, count: int = 1) -> int:
        return self.inner.next_fx_seq(tenant, count)

    def publish(
        self,
        messages: Sequence[Envelope | Packed],
        *,
        cursor: CursorUpdate | None = None,
        fingerprint: tuple[str, str, str, str] | None = None,
    ) -> None:
        self.inner.publish(messages, cursor=cursor, fingerprint=fingerprint)
        self.metrics.published(messages)

    def cursor(self, tenant: str, resource: str) -> tuple[str | None, float | None]:
        return self.inner.cursor(tenant, resource)

    def fingerprint(self, tenant: str, resource: str, key: str) -> str | None:
        return self.inner.fingerprint(tenant, resource, key)

    def remember_intent(self, command_id: str, intent: dict[str, Any]) -> None:
        self.inner.remember_intent(command_id, intent)

    def intent(self, pending: Pending) -> dict[str, Any] | None:
        return self.inner.intent(pending)

    def paused(self, tenant: str) -> ShopError | None:
        return self.inner.paused(tenant)

    def pause(self, tenant: str, error: ShopError) -> None:
        self.inner.pause(tenant, error)
