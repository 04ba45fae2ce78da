"""Wall-clock time at the I/O edges (the reconcilers never read it).

Every engine reading of the wall clock goes through :func:`utcnow`, so the engine's idea of the
time can be moved as a whole with :func:`skew` (tests and chaos runs use it to show that a clock
minutes ahead of or behind Fortnox's loses nothing: Fortnox poll cursors come from Fortnox's own
time, never from this clock).
"""

from __future__ import annotations

import datetime as dt

_offset = dt.timedelta(0)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC) + _offset


def skew(offset: dt.timedelta) -> dt.timedelta:
    """Move the engine's clock by ``offset`` from the real time; returns the previous offset."""
    global _offset
    previous, _offset = _offset, offset
    return previous
