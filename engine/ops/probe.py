"""The embedded runtime's :class:`~engine.ops.ports.RuntimeProbe` and its throughput window."""

from __future__ import annotations

import os
import socket
import time
from collections import deque
from collections.abc import Callable, Mapping

from engine.fortnox.limiter import LimiterRegistry
from engine.ops.flows import topic_of
from engine.ops.records import Budget, TopicLag, WorkerAssignment
from engine.store.db import Database
from engine.store.log import Log, Offsets
from topics.names import RECONCILED_TOPICS


class Throughput:
    """Messages per second over a sliding window, by topic (fed by the runtime)."""

    def __init__(self, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._clock = clock
        self._started = clock()
        self._events: deque[tuple[float, str, int]] = deque()

    def add(self, topic: str, count: int) -> None:
        if count > 0:
            self._events.append((self._clock(), topic, count))
            self._trim(self._clock())

    def add_types(self, by_type: Mapping[str, int]) -> None:
        for message_type, count in by_type.items():
            self.add(topic_of(message_type), count)

    def _trim(self, now: float) -> None:
        while self._events and self._events[0][0] < now - self.window:
            self._events.popleft()

    def rates(self) -> dict[str, float]:
        now = self._clock()
        self._trim(now)
        span = max(1.0, min(self.window, now - self._started))
        totals: dict[str, int] = {}
        for _, topic, count in self._events:
            totals[topic] = totals.get(topic, 0) + count
        return {topic: n / span for topic, n in sorted(totals.items())}


class EmbeddedProbe:
    """:class:`RuntimeProbe` of the embedded runtime: one process, one partition per topic.

    Without ``limiters`` and ``throughput`` (the CLI reading a database) it reports lag only.
    """

    def __init__(
        self,
        db: Database,
        *,
        consumer: str = "reconciler",
        limiters: LimiterRegistry | None = None,
        throughput: Throughput | None = None,
        running: bool = True,
    ) -> None:
        self.db = db
        self.consumer = consumer
        self.limiters = limiters
        self._throughput = throughput
        self.running = running
        self._log = Log(db)
        self._offsets = Offsets(db)

    @property
    def name(self) -> str:
        return "embedded" if self.running else "embedded (not running)"

    def lag(self) -> list[TopicLag]:
        ends = self._log.end_offsets()
        done = self._offsets.handled(self.consumer)
        return [
            TopicLag(topic.value, None, ends.get(topic, 0), done.get(topic, 0))
            for topic in RECONCILED_TOPICS
        ]

    def throughput(self) -> dict[str, float]:
        return {} if self._throughput is None else self._throughput.rates()

    def workers(self) -> list[WorkerAssignment]:
        if not self.running:
            return []
        tenants = int(self.db.conn.execute("SELECT COUNT(*) FROM tenants").fetchone()[0])
        return [
            WorkerAssignment(
                worker=f"embedded@{socket.gethostname()}:{os.getpid()}",
                partitions=None,
                tenants=tenants,
                detail="one process runs every tenant (no partitions)",
            )
        ]

    def budgets(self) -> list[Budget]:
        if self.limiters is None:
            return []
        out: list[Budget] = []
        for (client_id, tenant), stats in sorted(self.limiters.stats().items()):
            limiter = self.limiters.get(client_id, tenant)
            out.append(
                Budget(
                    client_id=client_id,
                    tenant=tenant,
                    in_window=limiter.in_window(),
                    limit=limiter.limit,
                    window_seconds=limiter.period,
                    acquired=stats.acquired,
                    waited=stats.waited,
                    mean_wait=stats.mean_wait,
                    max_wait=stats.max_wait,
                    penalties=stats.penalties,
                    waiting_now=stats.waiting_now,
                )
            )
        return out
