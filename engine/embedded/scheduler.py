"""Ticks: when a reconciler left work waiting to be written out, a ``sync.tick`` is appended for
that tenant once its wake-up time has come: right after the batch with no flush window (the
default), after the window with one (time reaches the reconcilers through the log)."""

from __future__ import annotations

import datetime as dt
import uuid

from engine.store.db import Database
from engine.store.log import Log
from topics.outcomes import Tick


class TickScheduler:
    def __init__(self, db: Database, log: Log) -> None:
        self.db = db
        self.log = log

    def due(self, now: dt.datetime) -> int:
        """Append a tick for every tenant whose wake-up time has come; returns how many."""
        stamp = now.astimezone(dt.UTC).isoformat()
        rows = self.db.conn.execute("SELECT tenant FROM wake WHERE at <= ?", (stamp,)).fetchall()
        if not rows:
            return 0
        with self.db.transaction() as conn:
            for (tenant,) in rows:
                tick = Tick(id=f"tick-{uuid.uuid4().hex}", tenant=tenant, occurred_at=now)
                self.log.append(tick)
                conn.execute("DELETE FROM wake WHERE tenant = ? AND at <= ?", (tenant, stamp))
        return len(rows)

    def earliest(self) -> dt.datetime | None:
        """The earliest wake-up time waiting, if any."""
        row = self.db.conn.execute("SELECT MIN(at) FROM wake").fetchone()
        return None if row is None or row[0] is None else dt.datetime.fromisoformat(row[0])
