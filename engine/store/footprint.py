"""What takes room in an embedded store (``kassasync store``): each table with its rows and the
bytes it and its indexes fill, the reconcilers' state by family, the WAL and the free pages.

Read through sqlite-utils (tables, their indexes and counts) on a read-only connection, so it can
run beside the engine (WAL). The bytes are SQLite's ``dbstat`` pages; a SQLite built without
``dbstat`` gives the rows only. Not on the engine's path: sqlite-utils is imported here only.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils
import structlog

log = structlog.get_logger("kassasync.store")

#: What each table holds, for people (docs/operations.md, *Retention*, says how long).
WHAT = {
    "state": "the reconcilers' records, one row per entity",
    "snapshot_state": "the base replay starts from, per tenant",
    "outbox": "commands waiting, and delivered ones for as long as the log",
    "ingest_seen": "till message ids, for the redelivery window",
    "dead_letters": "dead letters (kept until dealt with)",
    "offsets": "consumers' positions",
    "fx_seen": "Fortnox records seen, by fingerprint",
    "fx_cursor": "Fortnox poll positions",
    "fx_seq": "Fortnox reads' order, per tenant",
    "feed_offsets": "the Fortnox topics feed's position",
    "snapshots": "the marks the base moves to",
    "tenants": "tenants, their hashed keys and settings",
    "tenant_settings_versions": "tenants' earlier settings",
    "wake": "when each tenant's next tick is due",
    "meta": "schema version, log sequence",
    "sie_uploads": "SIE files uploaded by the till agent",
    "sie_file_reports": "what each uploaded SIE file became",
}


class NotAStore(ValueError):
    """The file is not a SQLite database, or not one of Kassasync's."""


@dataclass(frozen=True, slots=True)
class TableUse:
    """One table: its rows, and the bytes of its pages and its indexes' (``None``: unknown)."""

    name: str
    rows: int
    bytes: int | None
    what: str


@dataclass(frozen=True, slots=True)
class FamilyUse:
    """The state table's rows of one family (engine/store/packing.py) and their values' bytes."""

    family: str
    rows: int
    value_bytes: int


@dataclass(frozen=True, slots=True)
class Footprint:
    path: Path
    file_bytes: int
    wal_bytes: int
    page_size: int
    free_pages: int
    tables: list[TableUse]
    state: list[FamilyUse]

    @property
    def free_bytes(self) -> int:
        return self.free_pages * self.page_size


def _what(name: str) -> str:
    if name.startswith("log_"):
        return f"the {name[4:].replace('_', '.')} topic's log"
    return WHAT.get(name, "")


def footprint(path: Path) -> Footprint:
    """The footprint of the store at ``path`` (which must exist), read-only; raises
    :class:`NotAStore` for a file that is not a Kassasync store."""
    try:
        conn = _open(path)
    except sqlite3.OperationalError as failed:  # a directory, a file SQLite cannot open
        raise NotAStore(f"{path} cannot be read as a Kassasync store ({failed})") from None
    except sqlite3.DatabaseError as failed:  # "file is not a database"
        raise NotAStore(f"{path} is not a Kassasync store ({failed})") from None
    try:
        return _footprint(path, conn)
    except sqlite3.DatabaseError as failed:  # "file is not a database", a missing table
        raise NotAStore(f"{path} is not a Kassasync store ({failed})") from None
    finally:
        conn.close()


def _open(path: Path) -> sqlite3.Connection:
    """A read-only connection to ``path``. The name is quoted into the URI (a folder named
    with ``?``, ``#`` or ``%`` is a name, not a query). In a folder this process cannot write,
    SQLite cannot make the shared-memory file a WAL reader needs; no engine can be writing
    there either, so the file is opened as immutable."""
    uri = path.resolve().as_uri()
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True)
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return conn
    except sqlite3.OperationalError:  # "unable to open database file" (not "not a database")
        if conn is not None:
            conn.close()
        if os.access(path.parent, os.W_OK):
            raise
    log.info("store.footprint_immutable", path=str(path), reason="the folder is read-only")
    return sqlite3.connect(f"{uri}?immutable=1", uri=True)


def _footprint(path: Path, conn: sqlite3.Connection) -> Footprint:
    db = sqlite_utils.Database(conn)
    pages = _pages(conn)
    tables: list[TableUse] = []
    for table in db.tables:
        names = [table.name, *(index.name for index in table.xindexes)]
        size = None if pages is None else sum(pages.get(n, 0) for n in names)
        tables.append(TableUse(table.name, table.count, size, _what(table.name)))
    tables.sort(key=lambda t: (-(t.bytes or 0), -t.rows, t.name))
    state = [
        FamilyUse(str(family), int(rows), int(size or 0))
        for family, rows, size in conn.execute(
            "SELECT family, COUNT(*), SUM(length(value)) FROM state GROUP BY family ORDER BY 3 DESC"
        ).fetchall()
    ]
    wal = path.with_name(path.name + "-wal")
    result = Footprint(
        path=path,
        file_bytes=path.stat().st_size,
        wal_bytes=wal.stat().st_size if wal.exists() else 0,
        page_size=int(conn.execute("PRAGMA page_size").fetchone()[0]),
        free_pages=int(conn.execute("PRAGMA freelist_count").fetchone()[0]),
        tables=tables,
        state=state,
    )
    log.info(
        "store.footprint",
        path=str(path),
        file_bytes=result.file_bytes,
        tables=len(tables),
        dbstat=pages is not None,
    )
    return result


def _pages(conn: sqlite3.Connection) -> dict[str, int] | None:
    """Bytes per table and index from ``dbstat``, or None if this SQLite has none."""
    try:
        rows = conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
    except sqlite3.OperationalError:
        return None
    return {str(name): int(size) for name, size in rows}
