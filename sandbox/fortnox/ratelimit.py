"""Fortnox's rate limit: 25 requests per 5 seconds, sliding window, per (client id, tenant).

The window runs on the monotonic wall clock (never the movable business clock). Only accepted
requests enter the window, so a client that keeps hammering gets through again as soon as the
average is back under the limit (reference/fortnox-api.md §2). Over the limit the answer is
HTTP 429 with no ``Retry-After`` and no rate-limit headers.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class RateLimiter:
    """A sliding-window log limiter keyed by ``(client_id, tenant_id)``."""

    def __init__(
        self,
        *,
        limit: int = 25,
        window_seconds: float = 5.0,
        enabled: bool = True,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self.enabled = enabled
        self._monotonic = monotonic
        self._windows: dict[tuple[str, int], deque[float]] = {}
        self._lock = threading.Lock()
        self.rejected = 0

    def configure(
        self,
        *,
        limit: int | None = None,
        window_seconds: float | None = None,
        enabled: bool | None = None,
    ) -> None:
        with self._lock:
            if limit is not None:
                self.limit = limit
            if window_seconds is not None:
                self.window_seconds = window_seconds
            if enabled is not None:
                self.enabled = enabled
            self._windows.clear()

    def allow(self, client_id: str, tenant_id: int) -> bool:
        """Record one request; False when it must be answered with 429."""
        if not self.enabled:
            return True
        now = self._monotonic()
        with self._lock:
            window = self._windows.setdefault((client_id, tenant_id), deque())
            edge = now - self.window_seconds
            while window and window[0] <= edge:
                window.popleft()
            if len(window) >= self.limit:
                self.rejected += 1
                return False
            window.append(now)
            return True

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()
            self.rejected = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "limit": self.limit,
            "window_seconds": self.window_seconds,
            "enabled": self.enabled,
            "rejected": self.rejected,
        }
