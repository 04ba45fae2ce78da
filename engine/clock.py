"""Wall-clock time at the I/O edges (the reconcilers never read it)."""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
