"""Tells a target that is down from one command that keeps failing (both executors).

With lanes (engine/store/lanes.py) a command waiting for its retry holds back only its own lane,
so after a failure the executor goes on with another lane's command. If that one fails as well,
the target itself is taken for down: the tenant's whole delivery waits for the failed command's
own backoff and then probes again with the oldest due command (in practice the first one that
failed), instead of trying every lane of a long backlog against a till or a Fortnox that answers
nobody. One success closes it again.
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

    def failed(self, retry_in: float | None = None) -> None:
        """A command failed in a way that may be the target's (5xx, no answer); ``retry_in`` is
        that command's own backoff (else the breaker's: ``first`` doubling up to ``cap``)."""
        self.strikes += 1
        if self.strikes >= STRIKES:
            if retry_in is None:
                delay = min(self.cap, self.first * 2.0 ** min(self.strikes - STRIKES, 10))
                retry_in = delay * (0.5 + random.random())
            self._until = self.clock() + retry_in

    def succeeded(self) -> None:
        self.strikes = 0
        self._until = 0.0

    def wait(self) -> float:
        """Seconds until the target may be tried again (0: now)."""
        return max(0.0, self._until - self.clock())

    @property
    def down(self) -> bool:
        return self.strikes >= STRIKES
