"""The sandbox's business clock: Swedish local time that tests can move forward.

Everything with a business meaning (``lastmodified``, token and code lifetimes, voucher dates,
feed retention, event timestamps) reads this clock. The rate limiter does not: it uses the
monotonic wall clock, as a real gateway would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import date, datetime
from zoneinfo import ZoneInfo

STOCKHOLM = ZoneInfo("Europe/Stockholm")


class BusinessClock:
    """Wall-clock time plus an offset that only ever grows; optionally frozen."""

    def __init__(
        self, *, start: datetime | None = None, wall: Callable[[], float] = time.time
    ) -> None:
        self._wall = wall
        self._lock = threading.Lock()
        self._offset = 0.0 if start is None else _epoch(start) - wall()
        self._frozen_at: float | None = None

    def time(self) -> float:
        """Business time as POSIX seconds."""
        if self._frozen_at is not None:
            return self._frozen_at
        return self._wall() + self._offset

    def now(self) -> datetime:
        """Business time, aware, in Europe/Stockholm."""
        return datetime.fromtimestamp(self.time(), STOCKHOLM)

    def today(self) -> date:
        return self.now().date()

    @property
    def frozen(self) -> bool:
        return self._frozen_at is not None

    def advance(self, seconds: float) -> None:
        """Move business time forward (never backward)."""
        if seconds < 0:
            raise ValueError("the business clock only moves forward")
        with self._lock:
            if self._frozen_at is not None:
                self._frozen_at += seconds
            else:
                self._offset += seconds

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (naive values are read as Swedish local time); forward only."""
        target = _epoch(when)
        current = self.time()
        if target < current - 1e-6:
            raise ValueError("the business clock only moves forward")
        self.advance(target - current)

    def freeze(self) -> None:
        """Stop business time where it is (``advance``/``set`` still move it)."""
        with self._lock:
            if self._frozen_at is None:
                self._frozen_at = self._wall() + self._offset

    def unfreeze(self) -> None:
        with self._lock:
            if self._frozen_at is not None:
                self._offset = self._frozen_at - self._wall()
                self._frozen_at = None


def _epoch(when: datetime) -> float:
    if when.tzinfo is None:
        when = when.replace(tzinfo=STOCKHOLM)
    return when.timestamp()


def local(ts: float) -> datetime:
    """POSIX seconds as an aware Stockholm datetime."""
    return datetime.fromtimestamp(ts, STOCKHOLM)


_EPOCH = datetime(1970, 1, 1)


def wall_seconds(ts: float) -> float:
    """Swedish wall-clock time of ``ts`` as seconds (local time read as if it were UTC).

    ``lastmodified`` compares wall-clock times, as a system storing local times does: in the
    repeated hour at the end of summer time, a later change can carry an earlier wall time.
    """
    return (local(ts).replace(tzinfo=None) - _EPOCH).total_seconds()


def wall_of(when: datetime) -> float:
    """Seconds of a naive Swedish wall-clock time (see :func:`wall_seconds`)."""
    return (when.replace(tzinfo=None) - _EPOCH).total_seconds()


def iso_millis(ts: float) -> str:
    """``2017-12-28T14:59:16.500+01:00``: the timestamp format of the topics feed."""
    return local(ts).isoformat(timespec="milliseconds")
