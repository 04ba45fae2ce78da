"""Logging and metrics hooks for the Fortnox client.

Every decision (refresh, retry, backoff, 429, unknown outcome) is one structlog event named
``fortnox.*`` carrying the tenant. No token or secret is ever passed to a log call; as a second
line of defence :func:`redact_secrets` is a structlog processor the engine can install that blanks
:class:`~engine.secrets.Secret` values and fields whose names look secret.

Metrics go through the small :class:`FortnoxMetrics` protocol that the engine binds to
Prometheus; :class:`RecordingMetrics` keeps counts in memory for tests and the benchmark.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from engine.secrets import REDACTED, Secret

log = structlog.get_logger("engine.fortnox")

_SECRET_WORDS = ("token", "secret", "password", "authorization", "code_verifier")


def redact_secrets(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: blank Secret values and fields named like secrets."""
    for key, value in list(event_dict.items()):
        if isinstance(value, Secret) or (
            isinstance(value, str) and any(w in key.lower() for w in _SECRET_WORDS)
        ):
            event_dict[key] = REDACTED
    return event_dict


def resource_of(path: str) -> str:
    """A low-cardinality label for a request path: ``/3/customers/17`` -> ``/3/customers``."""
    parts = [p for p in path.split("?")[0].split("/") if p]
    if parts[:1] == ["api"]:
        return "/" + "/".join(parts[:3])
    return "/" + "/".join(parts[:2])


class FortnoxMetrics(Protocol):
    def request_finished(
        self, *, tenant: str, method: str, resource: str, status: str, seconds: float
    ) -> None:
        """One HTTP exchange ended; ``status`` is the HTTP status or an error name."""

    def limiter_waited(self, *, tenant: str, seconds: float) -> None:
        """A request waited ``seconds`` in the rate limiter (0 when it went at once)."""

    def retried(self, *, tenant: str, reason: str) -> None:
        """A request is retried because of ``reason`` (429, 5xx, timeout, ...)."""

    def token_refreshed(self, *, tenant: str, outcome: str) -> None:
        """A token refresh ended with ``outcome`` (ok, lost_race, login_expired, ...)."""


class NullMetrics:
    def request_finished(
        self, *, tenant: str, method: str, resource: str, status: str, seconds: float
    ) -> None:
        return None

    def limiter_waited(self, *, tenant: str, seconds: float) -> None:
        return None

    def retried(self, *, tenant: str, reason: str) -> None:
        return None

    def token_refreshed(self, *, tenant: str, outcome: str) -> None:
        return None


@dataclass
class RecordingMetrics:
    """Keeps counters in memory (tests, benchmark, a quick look in a REPL)."""

    statuses: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    refreshes: Counter[str] = field(default_factory=Counter)
    waits: list[float] = field(default_factory=list)
    requests: int = 0

    def request_finished(
        self, *, tenant: str, method: str, resource: str, status: str, seconds: float
    ) -> None:
        self.requests += 1
        self.statuses[status] += 1

    def limiter_waited(self, *, tenant: str, seconds: float) -> None:
        self.waits.append(seconds)

    def retried(self, *, tenant: str, reason: str) -> None:
        self.retries[reason] += 1

    def token_refreshed(self, *, tenant: str, outcome: str) -> None:
        self.refreshes[outcome] += 1
