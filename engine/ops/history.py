"""A small ring buffer of the engine's figures over time, for the dashboard's charts: lag,
throughput, Fortnox budget and errors, overall and per tenant.

The engine samples every :data:`SAMPLE_SECONDS` (the embedded runtime's ``history`` loop; the
dashboard's pages also take a sample when the last one is older than that, so a runtime without
the loop gets history while someone watches). :data:`SAMPLES` samples are kept: an hour at
10 s. Per tenant only the figures that are not zero are kept, so thousands of quiet tenants cost
nothing. Nothing is written to disk: a restart starts a new history."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

SAMPLE_SECONDS = 10.0
SAMPLES = 360


@dataclass(frozen=True, slots=True)
class TenantSample:
    """One tenant's figures at a sample (all zero: the tenant is left out of the sample)."""

    #: Commands waiting in the outbox, and the age of the oldest in seconds.
    pending: int = 0
    oldest_age: float = 0.0
    #: Commands settled (done) since the previous sample.
    settled: int = 0
    #: Open dead letters and commands waiting for a retry.
    dead_letters: int = 0
    retrying: int = 0
    #: Share of its Fortnox request window in use (0..1), and requests since the last sample.
    budget_used: float = 0.0
    requests: int = 0

    @property
    def errors(self) -> int:
        return self.dead_letters + self.retrying

    @property
    def quiet(self) -> bool:
        return self == TenantSample()


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    #: Messages waiting for the reconcilers (consumer lag, every topic and partition).
    lag: int = 0
    #: Messages reconciled per second (the probe's last-minute rate).
    throughput: float = 0.0
    pending: int = 0
    settled: int = 0
    dead_letters: int = 0
    retrying: int = 0
    #: The fullest Fortnox request window (0..1) and the requests made since the last sample.
    budget_used: float = 0.0
    requests: int = 0
    tenants: Mapping[str, TenantSample] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return self.dead_letters + self.retrying

    def tenant(self, tenant: str) -> TenantSample:
        return self.tenants.get(tenant) or TenantSample()


class Metric(StrEnum):
    """What a chart shows; each has an overall and a per-tenant reading."""

    LAG = "lag"
    THROUGHPUT = "throughput"
    BUDGET = "budget"
    ERRORS = "errors"


#: Per metric: (title, unit, overall reading, per-tenant reading).
READINGS: dict[
    Metric, tuple[str, str, Callable[[Sample], float], Callable[[TenantSample], float]]
] = {
    Metric.LAG: (
        "Lag",
        "messages waiting for the reconcilers",
        lambda s: float(s.lag),
        lambda t: t.oldest_age,
    ),
    Metric.THROUGHPUT: (
        "Throughput",
        "messages reconciled per second",
        lambda s: s.throughput,
        lambda t: float(t.settled),
    ),
    Metric.BUDGET: (
        "Fortnox budget",
        "% of the fullest Fortnox request window",
        lambda s: 100 * s.budget_used,
        lambda t: 100 * t.budget_used,
    ),
    Metric.ERRORS: (
        "Errors",
        "dead letters + commands being retried",
        lambda s: float(s.errors),
        lambda t: float(t.errors),
    ),
}


class History:
    """The last ``size`` samples, oldest first (thread-safe: the dashboard may read while the
    engine's loop adds)."""

    def __init__(self, size: int = SAMPLES, every: float = SAMPLE_SECONDS) -> None:
        self.every = every
        self._samples: deque[Sample] = deque(maxlen=size)
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return self._samples.maxlen or 0

    def add(self, sample: Sample) -> None:
        with self._lock:
            self._samples.append(sample)

    def samples(self) -> tuple[Sample, ...]:
        with self._lock:
            return tuple(self._samples)

    def last(self) -> Sample | None:
        with self._lock:
            return self._samples[-1] if self._samples else None

    def due(self, now: float) -> bool:
        last = self.last()
        return last is None or now - last.at >= self.every

    def series(self, metric: Metric, tenant: str | None = None) -> list[tuple[float, float]]:
        """(time, value) of one metric, overall or for one tenant, oldest first."""
        _title, _unit, overall, per_tenant = READINGS[metric]
        if tenant is None:
            return [(s.at, overall(s)) for s in self.samples()]
        return [(s.at, per_tenant(s.tenant(tenant))) for s in self.samples()]
