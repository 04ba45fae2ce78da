"""Injected faults: latency, 5xx answers, 429 storms, connections dropped after a commit,
duplicated feed deliveries. Set through the admin API (``/_sandbox/faults/...``).

Each fault can be narrowed to one tenant (``tenant_id``), and the 5xx and drop faults to one
HTTP method and a path prefix, so a chaos test can say "the next POST /3/vouchers fails".
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Scope:
    """Which requests a fault applies to (None = any)."""

    tenant_id: int | None = None
    method: str | None = None
    path_prefix: str | None = None

    def matches(self, tenant: int | None, method: str, path: str) -> bool:
        if self.tenant_id is not None and tenant != self.tenant_id:
            return False
        if self.method is not None and method.upper() != self.method.upper():
            return False
        return self.path_prefix is None or path.startswith(self.path_prefix)


@dataclass
class ErrorFault:
    status: int = 500
    remaining: int | None = None  # next N matching requests (None: use ratio)
    ratio: float = 0.0
    scope: Scope | None = None


@dataclass
class DropFault:
    remaining: int = 0
    scope: Scope | None = None


@dataclass
class LatencyFault:
    ms: float = 0.0
    jitter_ms: float = 0.0
    scope: Scope | None = None


WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Faults:
    """The active faults (all off by default)."""

    def __init__(self, *, seed: int | None = None, monotonic: Callable[[], float] = time.monotonic):
        self._lock = threading.Lock()
        self._monotonic = monotonic
        self.rng = random.Random(seed)
        self.latency = LatencyFault()
        self.errors: ErrorFault | None = None
        self.storm_until = 0.0
        self.storm_scope: Scope | None = None
        self.drop: DropFault | None = None
        self.feed_duplicate_next = 0
        self.feed_duplicate_ratio = 0.0
        self.injected: dict[str, int] = {"latency": 0, "error": 0, "storm": 0, "drop": 0, "dup": 0}

    def clear(self) -> None:
        with self._lock:
            self.latency = LatencyFault()
            self.errors = None
            self.storm_until = 0.0
            self.storm_scope = None
            self.drop = None
            self.feed_duplicate_next = 0
            self.feed_duplicate_ratio = 0.0

    # --- setters -------------------------------------------------------------------------------
    def set_latency(self, ms: float, jitter_ms: float = 0.0, scope: Scope | None = None) -> None:
        self.latency = LatencyFault(ms, jitter_ms, scope)

    def set_errors(
        self,
        *,
        status: int = 500,
        next_n: int | None = None,
        ratio: float = 0.0,
        scope: Scope | None = None,
    ) -> None:
        self.errors = ErrorFault(status, next_n, ratio, scope)

    def set_storm(self, seconds: float, scope: Scope | None = None) -> None:
        self.storm_until = self._monotonic() + seconds
        self.storm_scope = scope

    def set_drop(self, next_n: int, scope: Scope | None = None) -> None:
        self.drop = DropFault(next_n, scope)

    def set_feed_duplicates(self, *, next_n: int = 0, ratio: float = 0.0) -> None:
        self.feed_duplicate_next = next_n
        self.feed_duplicate_ratio = ratio

    # --- decisions (called per request) ----------------------------------------------------------
    def delay_seconds(self, tenant: int | None, method: str, path: str) -> float:
        lat = self.latency
        if lat.ms <= 0 and lat.jitter_ms <= 0:
            return 0.0
        if lat.scope is not None and not lat.scope.matches(tenant, method, path):
            return 0.0
        self.injected["latency"] += 1
        return max(0.0, lat.ms + self.rng.uniform(-lat.jitter_ms, lat.jitter_ms)) / 1000.0

    def in_storm(self, tenant: int | None, method: str, path: str) -> bool:
        if self._monotonic() >= self.storm_until:
            return False
        if self.storm_scope is not None and not self.storm_scope.matches(tenant, method, path):
            return False
        self.injected["storm"] += 1
        return True

    def take_error(self, tenant: int | None, method: str, path: str) -> int | None:
        """The status to fail this request with, or None."""
        with self._lock:
            fault = self.errors
            if fault is None:
                return None
            if fault.scope is not None and not fault.scope.matches(tenant, method, path):
                return None
            if fault.remaining is not None:
                if fault.remaining <= 0:
                    return None
                fault.remaining -= 1
            elif self.rng.random() >= fault.ratio:
                return None
            self.injected["error"] += 1
            return fault.status

    def drop_armed(self, tenant: int | None, method: str, path: str) -> bool:
        """Whether a successful write on this request must be followed by a dropped connection."""
        fault = self.drop
        if fault is None or fault.remaining <= 0 or method.upper() not in WRITE_METHODS:
            return False
        return fault.scope is None or fault.scope.matches(tenant, method, path)

    def consume_drop(self) -> None:
        with self._lock:
            if self.drop is not None and self.drop.remaining > 0:
                self.drop.remaining -= 1
                self.injected["drop"] += 1

    def duplicate_delivery(self) -> bool:
        with self._lock:
            if self.feed_duplicate_next > 0:
                self.feed_duplicate_next -= 1
                self.injected["dup"] += 1
                return True
            if self.feed_duplicate_ratio > 0 and self.rng.random() < self.feed_duplicate_ratio:
                self.injected["dup"] += 1
                return True
            return False

    def as_dict(self) -> dict[str, Any]:
        storm_left = max(0.0, self.storm_until - self._monotonic())
        return {
            "latency": asdict(self.latency),
            "errors": asdict(self.errors) if self.errors else None,
            "rate_limit_storm": {
                "seconds_left": round(storm_left, 3),
                "scope": asdict(self.storm_scope) if self.storm_scope else None,
            },
            "drop_after_commit": asdict(self.drop) if self.drop else None,
            "feed_duplicates": {
                "next": self.feed_duplicate_next,
                "ratio": self.feed_duplicate_ratio,
            },
            "injected": dict(self.injected),
        }
