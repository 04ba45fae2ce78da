"""Retention: a busy shop's embedded store over seven simulated days, with the default retention
and, in the same run, with retention off (the baseline: nothing is ever deleted).

Each simulated day, every shop sends what ``bench.gen`` makes of a busy day (stock movements from
sales, till customers, article edits, invoices, Z-reports) through the ingest door's store
(``engine.gateway.ingest.store``: the log and ``ingest_seen``), Fortnox changes from polls are
appended as the sessions append them, and the real processor (``Processor``) reconciles them.
Every command is settled at once as instant executors would (``bench.record.Settler``: an outcome
on the log, the outbox row ``done``), and ticks flush the windows. Day 1 also holds the first full
pass over the shop's articles and customers. Business time is simulated: the messages are stamped
07:00-21:00 of their day, and retention (``engine.store.retention``) runs every simulated hour
on that clock with the default policy (``KASSASYNC_LOG_KEEP_DAYS`` = 1, so delivered commands'
outbox rows are kept 27 hours; the three-day redelivery window for ``ingest_seen`` and the stock
movement ids).

Measured (the database file plus its WAL after a truncating checkpoint, at the end of each day):

* ``store_growth_day7_vs_day1``: the store after day 7 / after day 1, retention on (and, beside
  it, ``store_growth_day7_vs_day5``: after day 7 / after day 5, once the three-day windows are
  full);
* ``store_bytes_per_retained_input_event``: the store after day 7 / the input events (till
  events and Fortnox changes) its log still holds, retention on;
* the same two with retention off, and ``replay_exact_after_trim``: every shop replays from the
  base state plus the kept log to exactly its live state (``engine.replay.embedded_replay``).

    python -m bench.retention [--tenants 2] [--days 7]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import Stopwatch, quiet_logs
from bench.gen import START, TenantPlan, TenantStream
from bench.record import Settler
from bench.replay import append
from engine.embedded.edge import Edge
from engine.embedded.processor import Processor
from engine.gateway.ingest import REDELIVERY_WINDOW, SEEN_FOR, store
from engine.replay import embedded_replay
from engine.store.db import Database, log_table
from engine.store.retention import Retention, RetentionPolicy
from topics import registry
from topics.names import Topic

#: The business day: messages are stamped from its start for this long.
OPEN = dt.timedelta(hours=14)
#: Retention runs every simulated hour.
PASS_EVERY = dt.timedelta(hours=1)
#: Messages appended (and processed) at a time.
CHUNK = 1_000


class ShopDays(TenantStream):
    """One shop's stream, one simulated day at a time: day 1 holds the first full passes, later
    days only the day's business. Ids carry the day, so no id of one day is reused on another."""

    def __init__(self, index: int, plan: TenantPlan) -> None:
        super().__init__(index, plan)
        self.day = 1

    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}-{self.tenant}-d{self.day}-{self._n}"

    def start(self, day: int) -> int:
        """Begin ``day``; returns how many messages it holds."""
        self.day = day
        self._gen = self._messages()
        if day == 1:
            return self.plan.total
        # The full passes are day 1's: skip them (settings, master data, articles, customers).
        skip = 4 + self.plan.articles + self.plan.customers
        for _ in range(skip):
            next(self._gen)
        return self.plan.total - skip


def _days(tenants: int, days: int, plan: TenantPlan) -> Iterator[tuple[int, list[Any]]]:
    """(day, [(topic, tenant, payload, occurred_at)]) per simulated day, tenants interleaved."""
    shops = [ShopDays(i, plan) for i in range(tenants)]
    for day in range(1, days + 1):
        opened = START + dt.timedelta(days=day - 1)
        sizes = [shop.start(day) for shop in shops]
        step = OPEN / max(sizes)
        out: list[Any] = []
        for i in range(max(sizes)):
            at = opened + step * i
            for shop in shops:
                item = shop.next(at)
                if item is not None:
                    out.append((item[0], shop.tenant, item[1], at))
        yield day, out


class Shop:
    """A store in a temporary folder, fed and processed as the engine would."""

    def __init__(self, folder: Path, retention: bool, policy: RetentionPolicy) -> None:
        self.folder = folder
        self.db = Database(folder / "kassasync.db")
        self.edge = Edge(self.db)
        self.processor = Processor(self.db, log_notes=False)
        self.settler = Settler(self.db, self.processor)
        self.now = START
        self.retention = (
            Retention(self.db, policy, clock=lambda: self.now.timestamp()) if retention else None
        )
        self.next_pass = START + PASS_EVERY
        self.inputs = 0

    def feed(self, batch: list[Any]) -> None:
        till = [(tenant, payload) for topic, tenant, payload, _ in batch if topic == "till.events"]
        other = [
            (topic, tenant, payload)
            for topic, tenant, payload, _ in batch
            if topic != "till.events"
        ]
        self.now = batch[-1][3]
        by_tenant: dict[str, list[Any]] = {}
        for tenant, payload in till:
            by_tenant.setdefault(tenant, []).append(registry.parse(payload))
        for tenant, events in by_tenant.items():
            store(self.edge, tenant, events, now=self.now.timestamp())
        append(self.db, other)
        self.inputs += len(batch)
        self.settler.drain()
        # Instant executors: delivered when queued, on the simulated clock.
        moment = self.now.timestamp()
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE outbox SET created_at = ?, done_at = ? WHERE status = 'done' "
                "AND done_at IS NULL",
                (moment, moment),
            )
            conn.execute("UPDATE outbox SET created_at = ? WHERE created_at > ?", (moment, moment))
        self.retain()

    def retain(self) -> None:
        if self.retention is None:
            return
        while self.now >= self.next_pass:
            self.retention.run_once()
            self.next_pass += PASS_EVERY

    def close_day(self, day: int) -> None:
        """The night: simulated time runs to the next morning (retention keeps running)."""
        self.now = START + dt.timedelta(days=day) - dt.timedelta(minutes=1)
        self.retain()

    def size(self) -> int:
        self.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        files = [self.folder / "kassasync.db", self.folder / "kassasync.db-wal"]
        return sum(f.stat().st_size for f in files if f.exists())

    def inputs_on_log(self) -> int:
        total = 0
        for topic in (Topic.TILL_EVENTS, Topic.FORTNOX_CHANGES):
            total += int(
                self.db.conn.execute(f"SELECT COUNT(*) FROM {log_table(topic)}").fetchone()[0]
            )
        return total

    def tables(self) -> dict[str, int]:
        """Bytes per table and index (SQLite's dbstat), largest first."""
        try:
            rows = self.db.conn.execute(
                "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC"
            ).fetchall()
        except Exception:  # dbstat is an optional SQLite module
            return {}
        return {str(name): int(size) for name, size in rows[:12]}


def run(tenants: int = 2, days: int = 7, plan: TenantPlan | None = None) -> dict[str, Any]:
    plan = plan or TenantPlan()
    policy = RetentionPolicy(log_keep=dt.timedelta(days=1), seen_for=SEEN_FOR)
    result: dict[str, Any] = {
        "tenants": tenants,
        "days": days,
        "policy": {
            "log_keep_days": policy.log_keep / dt.timedelta(days=1),
            "redelivery_window_days": REDELIVERY_WINDOW / dt.timedelta(days=1),
            "delivered_commands_kept_days": round(policy.delivered_for / dt.timedelta(days=1), 3),
            "mark_every_minutes": policy.mark_every / dt.timedelta(minutes=1),
            "pass_every_minutes": PASS_EVERY / dt.timedelta(minutes=1),
        },
    }
    with tempfile.TemporaryDirectory(prefix="kassasync-retention-") as tmp:
        on = Shop(Path(tmp) / "on", True, policy)
        off = Shop(Path(tmp) / "off", False, policy)
        sizes: dict[str, list[int]] = {"on": [], "off": []}
        inputs_per_day: list[int] = []
        clock = {"on": Stopwatch(), "off": Stopwatch()}
        for day, messages in _days(tenants, days, plan):
            inputs_per_day.append(len(messages))
            for start in range(0, len(messages), CHUNK):
                batch = messages[start : start + CHUNK]
                with clock["off"]:
                    off.feed(batch)
                with clock["on"]:
                    on.feed(batch)
            with clock["on"]:
                on.close_day(day)
            sizes["on"].append(on.size())
            sizes["off"].append(off.size())
            print(
                f"day {day}: {len(messages)} inputs, store {sizes['on'][-1]:,} B with retention, "
                f"{sizes['off'][-1]:,} B without",
                file=sys.stderr,
                flush=True,
            )
        assert on.retention is not None
        retained = on.inputs_on_log()
        replays = [embedded_replay(on.folder, shop.tenant) for shop in _shops(tenants, plan)]
        exact = all(not r.differences and not r.new_commands for r in replays)
        status = on.retention.status
        result.update(
            {
                "store_growth_day7_vs_day1": round(sizes["on"][-1] / sizes["on"][0], 3),
                # Once the three-day windows (ingest_seen, stock ids) are full: whether
                # the store still grows, with the first day's full passes out of the figure.
                "store_growth_day7_vs_day5": round(
                    sizes["on"][-1] / sizes["on"][min(4, days - 1)], 3
                ),
                "store_bytes_per_retained_input_event": round(sizes["on"][-1] / retained, 1),
                "store_growth_day7_vs_day1_baseline": round(sizes["off"][-1] / sizes["off"][0], 3),
                "store_bytes_per_retained_input_event_baseline": round(
                    sizes["off"][-1] / off.inputs_on_log(), 1
                ),
                "replay_exact_after_trim": exact,
                "replayed_messages": sum(r.messages for r in replays),
                "store_bytes_by_day": sizes,
                "inputs_per_day": inputs_per_day,
                "inputs_on_log_day7": {"on": retained, "off": off.inputs_on_log()},
                "bytes_by_table_day7": {"on": on.tables(), "off": off.tables()},
                "retention": {
                    "passes": status.passes,
                    "log_rows_trimmed": status.log_rows_trimmed,
                    "seen_expired": status.seen_expired,
                    "outbox_deleted": status.outbox_deleted,
                    "outbox_slimmed": status.outbox_slimmed,
                    "records_rolled_forward": status.records_rolled_forward,
                    "pages_vacuumed": status.pages_vacuumed,
                },
                "seconds": {k: round(v.wall, 1) for k, v in clock.items()},
            }
        )
        on.db.close()
        off.db.close()
    return result


def _shops(tenants: int, plan: TenantPlan) -> list[ShopDays]:
    return [ShopDays(i, plan) for i in range(tenants)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tenants", type=int, default=2)
    parser.add_argument("--days", type=int, default=7)
    args = parser.parse_args()
    quiet_logs()
    print(json.dumps(run(args.tenants, args.days), indent=2))


if __name__ == "__main__":
    main()
