"""The embedded runtime's database: one SQLite file holding the topic logs, the state store, the
outbox, dead letters and the I/O edges' cursors, so a batch commits all of them atomically."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import structlog

from engine.store import packing
from topics.names import TOPICS, Topic

#: 2: the state table holds one row per entity (engine/store/packing.py).
SCHEMA_VERSION = 2

log = structlog.get_logger("kassasync.store")


def log_table(topic: Topic | str) -> str:
    return "log_" + str(topic).replace(".", "_")


_DDL = [
    """CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS offsets (
        consumer TEXT NOT NULL, topic TEXT NOT NULL, "offset" INTEGER NOT NULL,
        PRIMARY KEY (consumer, topic)) WITHOUT ROWID""",
    # The reconcilers' records, one row per entity (engine/store/packing.py).
    packing.DDL,
    """CREATE TABLE IF NOT EXISTS outbox (
        seq INTEGER PRIMARY KEY, command_id TEXT NOT NULL UNIQUE, tenant TEXT NOT NULL,
        target TEXT NOT NULL, type TEXT NOT NULL, payload BLOB NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
        next_at REAL NOT NULL DEFAULT 0, last_error TEXT, created_at REAL NOT NULL,
        done_at REAL, intent TEXT)""",
    # Only pending commands are looked up by these two (every query says status = 'pending'):
    # delivered ones, kept for the redelivery window, take no room in them.
    """CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (target, tenant, status, seq)
        WHERE status = 'pending'""",
    """CREATE TABLE IF NOT EXISTS dead_letters (
        id TEXT PRIMARY KEY, tenant TEXT NOT NULL, topic TEXT NOT NULL, type TEXT NOT NULL,
        payload BLOB NOT NULL, error TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'open',
        created_at REAL NOT NULL, resolved_at REAL)""",
    """CREATE INDEX IF NOT EXISTS dead_letters_open ON dead_letters (tenant, status)""",
    # at: when it was received (retention forgets it after the redelivery window); digest: of
    # the event as stored, to tell a resend from a changed event once the log row is trimmed.
    """CREATE TABLE IF NOT EXISTS ingest_seen (
        tenant TEXT NOT NULL, msg_id TEXT NOT NULL, "offset" INTEGER NOT NULL,
        at REAL NOT NULL DEFAULT 0, digest BLOB,
        PRIMARY KEY (tenant, msg_id)) WITHOUT ROWID""",
    # State snapshots (engine/store/retention.py): the log is trimmed up to one of them.
    """CREATE TABLE IF NOT EXISTS snapshots (
        id INTEGER PRIMARY KEY, taken_at REAL NOT NULL, seq INTEGER NOT NULL,
        offsets TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS snapshot_state (
        snapshot INTEGER NOT NULL, tenant TEXT NOT NULL, records BLOB NOT NULL,
        PRIMARY KEY (snapshot, tenant))""",
    """CREATE TABLE IF NOT EXISTS tenants (
        id TEXT PRIMARY KEY, api_key_hash TEXT NOT NULL, config TEXT NOT NULL,
        created_at REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS tenant_settings_versions (
        tenant TEXT NOT NULL, version INTEGER NOT NULL, settings TEXT NOT NULL,
        saved_at REAL NOT NULL, source TEXT NOT NULL, note TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (tenant, version)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS wake (tenant TEXT PRIMARY KEY, at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS fx_cursor (
        tenant TEXT NOT NULL, resource TEXT NOT NULL, cursor TEXT, last_ok REAL,
        full_sync_at REAL, PRIMARY KEY (tenant, resource)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS fx_seen (
        tenant TEXT NOT NULL, resource TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL,
        PRIMARY KEY (tenant, resource, key)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS fx_seq (tenant TEXT PRIMARY KEY, seq INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS feed_offsets (
        topic TEXT PRIMARY KEY, "offset" TEXT NOT NULL)""",
]


def _topic_ddl(topic: Topic) -> list[str]:
    table = log_table(topic)
    return [
        f"""CREATE TABLE IF NOT EXISTS {table} (
            "offset" INTEGER PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, tenant TEXT NOT NULL,
            type TEXT NOT NULL, msg_id TEXT NOT NULL, at TEXT NOT NULL, payload BLOB NOT NULL)""",
        f"""CREATE INDEX IF NOT EXISTS {table}_tenant ON {table} (tenant, "offset")""",
    ]


class Database:
    """A SQLite database opened for one process: WAL, one connection, explicit transactions."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            str(path), isolation_level=None, check_same_thread=False, timeout=30.0
        )
        # A new database returns the pages retention frees to the disk (``PRAGMA
        # incremental_vacuum``); the setting only takes on a database without tables.
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL: in WAL mode a commit is fsynced at the next checkpoint or at the next durable
        # transaction (see ``transaction(durable=True)``), whichever comes first.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA cache_size=-65536")
        # Checkpoint the WAL every 64 MB instead of SQLite's 4 MB: a batch of the processor writes
        # a few MB, so the default checkpointed (and fsynced the database) on most commits.
        conn.execute("PRAGMA wal_autocheckpoint=16384")
        # ... and the WAL file is cut back to 16 MB after a checkpoint instead of keeping its
        # largest size for ever.
        conn.execute("PRAGMA journal_size_limit=16777216")
        self.conn = conn
        self._lock = threading.RLock()
        self._depth = 0
        self._durable = False
        self._migrate()

    def _migrate(self) -> None:
        with self.transaction():
            for ddl in _DDL:
                self.conn.execute(ddl)
            moved = packing.migrate(self.conn)
            if moved:
                log.info("store.state_migrated", records=moved, layout="one row per entity")
            columns = {row[1] for row in self.conn.execute("PRAGMA table_info(outbox)")}
            if "intent" not in columns:  # databases made before the intent column
                self.conn.execute("ALTER TABLE outbox ADD COLUMN intent TEXT")
            if "lane" not in columns:  # before lanes: every earlier command in one lane
                self.conn.execute("ALTER TABLE outbox ADD COLUMN lane TEXT NOT NULL DEFAULT ''")
            seen = {row[1] for row in self.conn.execute("PRAGMA table_info(ingest_seen)")}
            if "at" not in seen:  # before retention: remembered from now on
                self.conn.execute("ALTER TABLE ingest_seen ADD COLUMN at REAL NOT NULL DEFAULT 0")
                self.conn.execute("ALTER TABLE ingest_seen ADD COLUMN digest BLOB")
                self.conn.execute("UPDATE ingest_seen SET at = unixepoch('now')")
            for name in ("outbox_pending", "outbox_lane"):  # made whole before retention
                row = self.conn.execute(
                    "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)
                ).fetchone()
                if row is not None and "WHERE" not in str(row[0]).upper():
                    self.conn.execute(f"DROP INDEX {name}")
            self.conn.execute(
                "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (target, tenant, status, seq) "
                "WHERE status = 'pending'"
            )
            self.conn.execute(
                "CREATE INDEX IF NOT EXISTS outbox_lane "
                "ON outbox (target, tenant, lane, status, seq) WHERE status = 'pending'"
            )
            for spec in TOPICS:
                for ddl in _topic_ddl(spec.topic):
                    self.conn.execute(ddl)
            self.conn.execute(
                "INSERT INTO meta (name, value) VALUES ('schema_version', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )

    @contextmanager
    def transaction(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; nested use joins the outer transaction.

        ``durable=True`` commits with ``synchronous=FULL``: the WAL is fsynced before the commit
        returns, so the transaction — and, the WAL being sequential, every commit before it —
        survives an OS crash or a power loss. Used where something outside has been or is about
        to be told: events acknowledged to the till (202), an intent recorded before a write
        leaves for Fortnox. Everything else is derived from those and recomputed after a crash.
        """
        with self._lock:
            if self._depth:
                # SQLite's safety level cannot change inside a transaction: the outermost one
                # makes its commit durable with a checkpoint, which syncs the WAL first.
                self._durable = self._durable or durable
                self._depth += 1
                try:
                    yield self.conn
                finally:
                    self._depth -= 1
                return
            if durable:
                self.conn.execute("PRAGMA synchronous=FULL")
            self._durable = False
            try:
                with self._outermost() as conn:
                    yield conn
                if self._durable and not durable:
                    self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            finally:
                if durable:
                    self.conn.execute("PRAGMA synchronous=NORMAL")
                self._durable = False

    @contextmanager
    def _outermost(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self.conn
            except BaseException:
                self._depth = 0
                self.conn.execute("ROLLBACK")
                raise
            self._depth = 0
            self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()
