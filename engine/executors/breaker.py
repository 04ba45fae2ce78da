"""Tells a target that is down from one command that keeps failing (both executors).

With lanes (engine/store/lanes.py) a command waiting for its retry holds back only its own lane,
so after a failure the executor goes on with another lane's command. If that one fails as well,
the target itself is taken for down: the tenant's whole delivery backs off (0.5 s doubling up to
a minute, with jitter) and then probes with one command at a time, instead of trying every lane
of a long backlog against a till or a Fortnox that answers nobody. One success closes it again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

#: Failures in a row, on different commands, that make the target count as down.
STRIKES = 2


class Breaker:
    def __init__(
        self,
        *,
        first: float = 0.5,
        cap: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.first = first
        self.cap = cap
        self.clock = clock
        self.strikes = 0
        self._until = 0.0

    def failed(self) -> None:
        self.strikes += 1
        if self.strikes >= STRIKES:
            delay = min(self.cap, self.first * 2.0 ** min(self.strikes - STRIKES, 10))
            self._until = self.clock() + delay * (0.5 + random.random())

    def succeeded(self) -> None:
        self.strikes = 0
        self._until = 0.0

    def wait(self) -> float:
        """Seconds until the target may be tried again (0: now)."""
        return max(0.0, self._until - self.clock())

    @property
    def down(self) -> bool:
        return self.strikes >= STRIKES
