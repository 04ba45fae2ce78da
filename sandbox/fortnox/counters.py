"""Request counters per tenant: method x path template x status (benchmarks count calls)."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

UNAUTHENTICATED = "unauthenticated"


class RequestCounters:
    """Counts every request the Fortnox-facing routes answered."""

    def __init__(self) -> None:
        self._counts: dict[str, Counter[tuple[str, str, int]]] = {}
        self._lock = threading.Lock()

    def add(self, tenant: int | None, method: str, path: str, status: int) -> None:
        key = str(tenant) if tenant is not None else UNAUTHENTICATED
        with self._lock:
            self._counts.setdefault(key, Counter())[(method, path, status)] += 1

    def reset(self, tenant: int | None = None) -> None:
        with self._lock:
            if tenant is None:
                self._counts.clear()
            else:
                self._counts.pop(str(tenant), None)

    def snapshot(self, tenant: int | str | None = None) -> dict[str, Any]:
        with self._lock:
            keys = [str(tenant)] if tenant is not None else sorted(self._counts)
            out: dict[str, Any] = {}
            for key in keys:
                counter = self._counts.get(key, Counter())
                rows = [
                    {"method": m, "path": p, "status": s, "count": n}
                    for (m, p, s), n in sorted(counter.items())
                ]
                by_route: Counter[str] = Counter()
                by_status: Counter[str] = Counter()
                for (m, p, s), n in counter.items():
                    by_route[f"{m} {p}"] += n
                    by_status[str(s)] += n
                out[key] = {
                    "total": sum(counter.values()),
                    "by_route": dict(sorted(by_route.items())),
                    "by_status": dict(sorted(by_status.items())),
                    "counts": rows,
                }
            return out
