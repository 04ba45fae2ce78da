"""Retention: the embedded store keeps what it needs and stops growing.

Without it every log row, every delivered command's outbox row and every till message id would
stay in ``kassasync.db`` for ever. A pass (the runtime runs one every
``KASSASYNC_RETENTION_INTERVAL_SECONDS`` under the supervisor, ``docs/operations.md``,
*Retention*) does, in short transactions:

1. **Marks.** At most every :attr:`RetentionPolicy.mark_every` it records a *mark*: the
   reconciler's committed offsets and the log's sequence number at that moment (a few bytes).
2. **The base moves forward.** The *base* is the reconcilers' state at one mark, kept compressed
   per tenant (``snapshot_state``); replay starts from it (``engine/replay.py``). Once a mark is
   ``KASSASYNC_LOG_KEEP_DAYS`` old, the base is rolled forward to it by applying the log between
   the two marks to the base with the processing core (:func:`engine.core.process.process`, the
   step the processor and replay run), so the new base is exactly the state the reconcilers had
   at that mark. Only tenants with messages in between are decoded and written again.
3. **The log is trimmed** below the base: the reconciled topics up to the base's offsets (and
   never past any consumer's committed offset), the command topics up to its sequence number.
   The last row of every topic stays, so an offset is never handed out twice.
4. **De-duplication records expire** after the redelivery window (``docs/contract.md``):
   ``ingest_seen`` rows once :data:`engine.gateway.ingest.SEEN_FOR` has passed since they
   arrived (a resend that late is older than the window and refused at ingest); ``done`` outbox
   rows once they are as old as the oldest message the log keeps
   (:attr:`RetentionPolicy.delivered_for`: only a message on the log can be handled again and
   make the same command id), their payload, which the command topic's log also holds, dropped
   an hour after delivery.
5. **Free pages go back to the disk** (``PRAGMA incremental_vacuum``) once they are
   :data:`VACUUM_FREE_PERCENT` of the file, on a database made with ``auto_vacuum=INCREMENTAL``
   (every database this version creates); below that, and on an older database, SQLite reuses
   them for new rows, so the file stops growing all the same.

The pass is a generator that yields between chunks, so the runtime's event loop (the processor,
the ingest API) runs in between; :meth:`Retention.run_once` runs it whole.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import structlog
from pydantic_core import from_json

from engine.clock import utcnow
from engine.core.process import Inbound, Outcome, process
from engine.store import compact
from engine.store.db import Database, log_table
from engine.store.log import Log, Offsets
from reconcilers.state import DIRTY, Due, DueIndex, Record, due_from
from topics.names import RECONCILED_TOPICS, Topic

log = structlog.get_logger("kassasync.retention")

#: The processor's consumer name (engine/embedded/processor.py): marks record its offsets.
RECONCILER = "reconciler"
#: Rows deleted per transaction: the event loop runs between two.
CHUNK = 5_000
#: Log records the roll-forward applies between two yields.
APPLY_CHUNK = 1_000
#: Pages returned to the disk per ``incremental_vacuum`` step.
VACUUM_PAGES = 2_048
#: Free pages go back to the disk once they are this share of the file (below it, SQLite
#: reuses them for new rows).
VACUUM_FREE_PERCENT = 5
BASE = "retention_base"


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long what is kept: the log for replay, the records that recognise resends."""

    #: The log kept behind the base (``KASSASYNC_LOG_KEEP_DAYS``).
    log_keep: dt.timedelta = dt.timedelta(days=1)
    #: ``ingest_seen`` rows are forgotten this long after they arrived.
    seen_for: dt.timedelta = dt.timedelta(days=3, minutes=5)
    #: ``done`` outbox rows are deleted this long after they were delivered; ``None``: as long
    #: as the log is kept (:attr:`delivered_for`).
    done_for: dt.timedelta | None = None
    #: ``ingest_seen`` ids with this prefix are kept for ever: the SIE import's record of the
    #: vouchers it queued (``engine.gateway.ingest.SIE_IDS``), checked on every import.
    kept_ids: str = "sie-"
    #: A delivered command keeps its payload this long (operators and tools that look at what
    #: was just sent find it in the outbox), then only what recognises it again.
    slim_after: dt.timedelta = dt.timedelta(hours=1)

    @property
    def mark_every(self) -> dt.timedelta:
        """Marks are this far apart: the log kept is between ``log_keep`` and ``log_keep`` plus
        this (an eighth of it: three hours for a day, at least five minutes). Each move of the
        base writes the state of every tenant with messages since the last move again."""
        return max(self.log_keep / 8, dt.timedelta(minutes=5))

    @property
    def delivered_for(self) -> dt.timedelta:
        """How long a delivered command's outbox row is kept: by default as long as the oldest
        message the log keeps (``log_keep`` plus a mark interval). Its ``command_id``, a digest
        of the message the command was made from (``reconcilers.context.command_id``), keeps
        the command from being queued twice should that message be handled again. After a crash
        the processor does not make again the commands of messages whose effects committed
        (``engine/embedded/processor.py``), and a message no longer on the log cannot be handled
        at all, so the row is not needed longer than the log; operators see a delivered command
        for as long as the command topic's log holds it."""
        return self.log_keep + self.mark_every if self.done_for is None else self.done_for


@dataclass(frozen=True, slots=True)
class Mark:
    id: int
    taken_at: float
    seq: int
    offsets: dict[Topic, int]


@dataclass(slots=True)
class RetentionStatus:
    """What retention did, cumulative since the process started (and the last pass's moment)."""

    passes: int = 0
    last_pass_at: float | None = None
    last_pass_seconds: float = 0.0
    log_rows_trimmed: int = 0
    seen_expired: int = 0
    outbox_deleted: int = 0
    outbox_slimmed: int = 0
    records_rolled_forward: int = 0
    pages_vacuumed: int = 0
    #: When the state the log now starts from was the reconcilers' (None: the log is whole).
    base_taken_at: float | None = None
    by_topic: dict[str, int] = field(default_factory=dict)


class _TenantState:
    """One tenant's records with an index by kind, as the reconcilers' ``StateView``
    (``MemoryState.scan`` sorts every record of the tenant), and its dirty entries by time for
    ticks (``DueIndex``)."""

    __slots__ = ("by_kind", "dirty", "records")

    def __init__(self, records: dict[tuple[str, str], Record]) -> None:
        self.records = records
        self.by_kind: dict[str, set[str]] = {}
        self.dirty = DueIndex()
        for (kind, key), value in records.items():
            self.by_kind.setdefault(kind, set()).add(key)
            if kind == DIRTY:
                self.dirty.set(key, value)

    def get(self, kind: str, key: str) -> Record | None:
        return self.records.get((kind, key))

    def scan(self, kind: str) -> Iterator[tuple[str, Record]]:
        for key in sorted(self.by_kind.get(kind, ())):
            yield key, self.records[(kind, key)]

    def due(self, until: int) -> Due:
        records = self.records
        return due_from(self.dirty, until, lambda key: records[(DIRTY, key)])

    def apply_puts(self, puts: Mapping[tuple[str, str], Record | None]) -> None:
        for (kind, key), value in puts.items():
            if value is None:
                if self.records.pop((kind, key), None) is not None:
                    self.by_kind[kind].discard(key)
            else:
                self.records[(kind, key)] = value
                self.by_kind.setdefault(kind, set()).add(key)
            if kind == DIRTY:
                self.dirty.set(key, value)


def _pack(records: dict[tuple[str, str], Record]) -> bytes:
    rows = [[kind, key, value] for (kind, key), value in sorted(records.items())]
    return zlib.compress(json.dumps(rows, separators=(",", ":")).encode(), 6)


def _unpack(blob: bytes) -> dict[tuple[str, str], Record]:
    return {(kind, key): value for kind, key, value in from_json(zlib.decompress(blob))}


def marks(db: Database) -> list[Mark]:
    rows = db.conn.execute("SELECT id, taken_at, seq, offsets FROM snapshots ORDER BY id")
    return [
        Mark(
            int(i),
            float(t),
            int(s),
            {Topic(k): int(v) for k, v in json.loads(o).items()},
        )
        for i, t, s, o in rows.fetchall()
    ]


def base_mark(db: Database) -> Mark | None:
    """The mark the log starts from (None while nothing has been trimmed)."""
    row = db.conn.execute("SELECT value FROM meta WHERE name = ?", (BASE,)).fetchone()
    if row is None:
        return None
    ident = int(row[0])
    return next((m for m in marks(db) if m.id == ident), None)


def base_state(db: Database, tenant: str) -> tuple[dict[Topic, int], dict[tuple[str, str], Record]]:
    """The offsets replay starts after and the tenant's state there (nothing trimmed: from the
    start, with no state)."""
    base = base_mark(db)
    if base is None:
        return {}, {}
    row = db.conn.execute(
        "SELECT records FROM snapshot_state WHERE snapshot = ? AND tenant = ?", (base.id, tenant)
    ).fetchone()
    return dict(base.offsets), ({} if row is None else _unpack(bytes(row[0])))


class Retention:
    """Runs retention passes over one database (see the module's docstring)."""

    def __init__(
        self,
        db: Database,
        policy: RetentionPolicy,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.db = db
        self.policy = policy
        #: Unix time; the engine's clock (``engine.clock``) unless a simulation gives its own.
        self.clock = clock or (lambda: utcnow().timestamp())
        self.log = Log(db)
        self.status = RetentionStatus()
        base = base_mark(db)
        self.status.base_taken_at = None if base is None else base.taken_at

    def run_once(self) -> RetentionStatus:
        for _ in self.run():
            pass
        return self.status

    def run(self) -> Iterator[None]:
        """One pass; yields between chunks of work."""
        started = time.perf_counter()
        now = self.clock()
        self._mark(now)
        yield
        yield from self._roll_forward(now)
        yield from self._expire(now)
        yield from self._vacuum()
        self.status.passes += 1
        self.status.last_pass_at = now
        self.status.last_pass_seconds = time.perf_counter() - started
        log.info(
            "retention.pass",
            seconds=round(self.status.last_pass_seconds, 3),
            log_rows_trimmed=self.status.log_rows_trimmed,
            seen_expired=self.status.seen_expired,
            outbox_deleted=self.status.outbox_deleted,
        )

    # -- marks and the base ---------------------------------------------------------------------

    def _mark(self, now: float) -> None:
        known = marks(self.db)
        if known and now - known[-1].taken_at < self.policy.mark_every.total_seconds():
            return
        with self.db.transaction() as conn:
            written = Offsets(self.db).get(RECONCILER)
            if Offsets(self.db).handled(RECONCILER) != written:
                # The state is written behind its commands (a backlog under way): the commands
                # appended so far include some of records after the state's offsets, so the
                # sequence number would not split the log where the offsets do. Next pass.
                log.info("retention.mark_deferred", reason="state written behind its commands")
                return
            offsets = {t.value: o for t, o in written.items()}
            seq = int(conn.execute("SELECT value FROM meta WHERE name = 'seq'").fetchone()[0])
            conn.execute(
                "INSERT INTO snapshots (taken_at, seq, offsets) VALUES (?, ?, ?)",
                (now, seq, json.dumps(offsets, sort_keys=True)),
            )
        log.info("retention.marked", seq=seq)

    def _roll_forward(self, now: float) -> Iterator[None]:
        keep = self.policy.log_keep.total_seconds()
        base = base_mark(self.db)
        due = [
            m
            for m in marks(self.db)
            if m.taken_at <= now - keep and (base is None or m.id > base.id)
        ]
        if not due:
            return
        target = due[-1]
        start = dict(base.offsets) if base is not None else {}
        states: dict[str, _TenantState] = {}
        after = dict(start)
        applied = 0
        while True:
            records = self.log.read(RECONCILED_TOPICS, after, APPLY_CHUNK)
            records = [r for r in records if r.offset <= target.offsets.get(r.topic, 0)]
            if not records:
                break
            for record in records:
                after[record.topic] = record.offset
                state = states.get(record.tenant)
                if state is None:
                    state = states[record.tenant] = _TenantState(
                        self._base_records(base, record.tenant)
                    )
                where = f"{record.topic.value}:{record.offset}"
                step = process(
                    state, Inbound(record.topic, record.tenant, where, record.payload), report=False
                )
                if step.outcome is Outcome.APPLIED:
                    state.apply_puts(step.puts)
                applied += 1
            yield
        with self.db.transaction() as conn:
            for tenant, state in states.items():
                conn.execute(
                    "INSERT OR REPLACE INTO snapshot_state (snapshot, tenant, records) "
                    "VALUES (?, ?, ?)",
                    (target.id, tenant, _pack(state.records)),
                )
            if base is not None:  # tenants without messages in between keep their state
                # (a tenant written above already has its row under target: ignored here)
                conn.execute(
                    "UPDATE OR IGNORE snapshot_state SET snapshot = ? WHERE snapshot = ?",
                    (target.id, base.id),
                )
            conn.execute("DELETE FROM snapshot_state WHERE snapshot < ?", (target.id,))
            conn.execute("DELETE FROM snapshots WHERE id < ?", (target.id,))
            conn.execute(
                "INSERT INTO meta (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (BASE, str(target.id)),
            )
        self.status.records_rolled_forward += applied
        self.status.base_taken_at = target.taken_at
        log.info("retention.base_moved", records=applied, tenants=len(states), seq=target.seq)
        yield from self._trim(target)

    def _base_records(self, base: Mark | None, tenant: str) -> dict[tuple[str, str], Record]:
        if base is None:
            return {}
        row = self.db.conn.execute(
            "SELECT records FROM snapshot_state WHERE snapshot = ? AND tenant = ?",
            (base.id, tenant),
        ).fetchone()
        return {} if row is None else _unpack(bytes(row[0]))

    def _trim(self, base: Mark) -> Iterator[None]:
        consumed: dict[str, int] = {}
        for topic, offset in self.db.conn.execute('SELECT topic, "offset" FROM offsets'):
            consumed[topic] = min(consumed.get(topic, offset), int(offset))
        for topic in Topic:
            table = log_table(topic)
            last = self.db.conn.execute(f'SELECT MAX("offset") FROM {table}').fetchone()[0]
            if last is None:
                continue
            if topic in RECONCILED_TOPICS:
                upto = min(base.offsets.get(topic, 0), consumed.get(topic.value, 0))
                where, bound = '"offset" <= ?', upto
            else:  # the command topics: what was appended before the base's mark
                where, bound = "seq <= ?", base.seq
            trimmed = 0
            while True:
                with self.db.transaction() as conn:
                    cur = conn.execute(
                        f'DELETE FROM {table} WHERE "offset" IN (SELECT "offset" FROM {table} '
                        f'WHERE {where} AND "offset" < ? ORDER BY "offset" LIMIT ?)',
                        (bound, int(last), CHUNK),
                    )
                    trimmed += cur.rowcount
                if cur.rowcount < CHUNK:
                    break
                yield
            if trimmed:
                self.status.log_rows_trimmed += trimmed
                self.status.by_topic[topic.value] = (
                    self.status.by_topic.get(topic.value, 0) + trimmed
                )
                log.info("retention.log_trimmed", topic=topic.value, rows=trimmed)
            yield

    # -- de-duplication records and the outbox --------------------------------------------------

    def _expire(self, now: float) -> Iterator[None]:
        seen_before = now - self.policy.seen_for.total_seconds()
        while True:
            with self.db.transaction() as conn:
                cur = conn.execute(
                    "DELETE FROM ingest_seen WHERE (tenant, msg_id) IN (SELECT tenant, msg_id "
                    "FROM ingest_seen WHERE at < ? AND substr(msg_id, 1, ?) != ? LIMIT ?)",
                    (seen_before, len(self.policy.kept_ids), self.policy.kept_ids, CHUNK),
                )
            self.status.seen_expired += cur.rowcount
            if cur.rowcount < CHUNK:
                break
            yield
        done_before = now - self.policy.delivered_for.total_seconds()
        while True:
            with self.db.transaction() as conn:
                cur = conn.execute(
                    "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE status = 'done' "
                    "AND COALESCE(done_at, created_at) < ? LIMIT ?)",
                    (done_before, CHUNK),
                )
            self.status.outbox_deleted += cur.rowcount
            if cur.rowcount < CHUNK:
                break
            yield
        yield from self._slim_done(now - self.policy.slim_after.total_seconds())

    def _slim_done(self, before: float) -> Iterator[None]:
        """A delivered command keeps only what recognises it again (its id, tenant, type, status
        and times: the command itself is on its topic's log; its lane, which only orders pending
        commands, is dropped with its payload). Shrinking a row in place frees no page, so
        the slim rows are written anew at the end of the table and the full ones deleted: the
        pages they filled become free for new rows."""
        conn = self.db.conn
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS retention_done AS SELECT * FROM outbox WHERE 0"
        )
        while True:
            with self.db.transaction():
                conn.execute("DELETE FROM temp.retention_done")
                moved = conn.execute(
                    "INSERT INTO temp.retention_done SELECT * FROM outbox WHERE status = 'done' "
                    "AND COALESCE(done_at, created_at) < ? AND length(payload) > 0 "
                    "ORDER BY seq LIMIT ?",
                    (before, CHUNK),
                ).rowcount
                conn.execute(
                    "DELETE FROM outbox WHERE seq IN (SELECT seq FROM temp.retention_done)"
                )
                conn.execute(
                    "INSERT INTO outbox (command_id, tenant, target, type, payload, status, "
                    "attempts, next_at, last_error, created_at, done_at, intent, lane) "
                    "SELECT command_id, tenant, target, type, x'', status, attempts, next_at, "
                    "NULL, created_at, done_at, NULL, '' FROM temp.retention_done ORDER BY seq"
                )
            self.status.outbox_slimmed += moved
            if moved < CHUNK:
                return
            yield

    def _vacuum(self) -> Iterator[None]:
        mode = int(self.db.conn.execute("PRAGMA auto_vacuum").fetchone()[0])
        if mode != 2:  # not INCREMENTAL: SQLite reuses the free pages instead
            return
        conn = self.db.conn
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
        if free * 100 < pages * VACUUM_FREE_PERCENT:
            return  # new rows fill them: moving pages to shrink the file would cost more
        while free > 0:
            step = min(free, VACUUM_PAGES)
            # executescript steps the pragma to its end (one execute() frees a single page).
            conn.executescript(f"PRAGMA incremental_vacuum({step});")
            after = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
            self.status.pages_vacuumed += free - after
            if after >= free:
                return
            free = after
            yield

    # -- for /metrics -------------------------------------------------------------------------

    def store_bytes(self) -> int:
        pages = int(self.db.conn.execute("PRAGMA page_count").fetchone()[0])
        size = int(self.db.conn.execute("PRAGMA page_size").fetchone()[0])
        return pages * size

    def oldest_log_at(self) -> str | None:
        """The ``at`` of the oldest record on the reconciled topics' log."""
        oldest: str | None = None
        for topic in RECONCILED_TOPICS:
            row = self.db.conn.execute(
                f'SELECT at, payload FROM {log_table(topic)} ORDER BY "offset" LIMIT 1'
            ).fetchone()
            if row is None:
                continue
            packed = compact.unpack(bytes(row[1]))  # a packed row keeps its time packed
            at = str(row[0]) if packed is None else packed[2]
            if oldest is None or at < oldest:
                oldest = at
        return oldest
