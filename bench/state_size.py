"""State per article: the bytes a tenant in sync keeps in the state table for each of its
articles (``state_bytes_per_article``, issue 15).

A template tenant is built the normal way, as ``bench.scale`` builds it: its settings and a
first full Fortnox pass over ``articles`` articles (80 % stock goods) through the processor,
every command settled as an executor would (``bench.record``), then a tick that flushes
everything. Then, with SQLite's ``dbstat``:

* ``state_bytes_per_article``: the pages of the ``state`` table (a ``WITHOUT ROWID`` table: its
  B-tree is the table) as the store holds them, over the articles;
* ``state_bytes_per_article_packed``: the same after ``VACUUM INTO`` a copy (pages full);
* ``state_payload_bytes_per_article``: the rows' own bytes (tenant, family, key, kinds, the
  compressed value), no page overhead, and the same split by family (engine/store/packing.py),
  so the figure can be explained.

The tenant's other records (its settings, the sync cursor) are counted with its articles: they
are a few against ``articles`` x several records.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import quiet_logs
from bench.record import record
from bench.replay import append
from bench.scale import ARTICLES, TEMPLATE, _template_messages
from engine.store.db import Database
from engine.store.packing import StateTable


@dataclass(frozen=True)
class TableSize:
    """A table's pages in a database file (``dbstat``)."""

    pages: int
    bytes: int
    unused: int


def table_size(conn: sqlite3.Connection, table: str) -> TableSize:
    row = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(pgsize), 0), COALESCE(SUM(unused), 0) "
        "FROM dbstat WHERE name = ?",
        (table,),
    ).fetchone()
    return TableSize(int(row[0]), int(row[1]), int(row[2]))


def run(articles: int = ARTICLES) -> dict[str, Any]:
    quiet_logs()
    with tempfile.TemporaryDirectory(prefix="kassasync-bench-") as tmp:
        path = Path(tmp) / "template.db"
        db = Database(path)
        try:
            record(db, append, _template_messages(articles))
        finally:
            db.close()
        conn = sqlite3.connect(str(path))
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            rows = int(
                conn.execute("SELECT COUNT(*) FROM state WHERE tenant = ?", (TEMPLATE,)).fetchone()[
                    0
                ]
            )
            records = sum(StateTable(conn).counts(TEMPLATE).values())
            by_family = {
                str(family): {"rows": int(n), "bytes": int(b)}
                for family, n, b in conn.execute(
                    "SELECT family, COUNT(*), SUM(length(tenant) + length(family) + length(key) "
                    "+ length(value) + 1) FROM state GROUP BY family ORDER BY 3 DESC"
                )
            }
            in_place = table_size(conn, "state")
            packed_path = Path(tmp) / "packed.db"
            conn.execute("VACUUM INTO ?", (str(packed_path),))
        finally:
            conn.close()
        packed_conn = sqlite3.connect(str(packed_path))
        try:
            packed = table_size(packed_conn, "state")
        finally:
            packed_conn.close()
    payload = sum(f["bytes"] for f in by_family.values())
    return {
        "articles": articles,
        "state_records": records,
        "state_rows": rows,
        "records_per_article": round(records / articles, 2),
        "rows_per_article": round(rows / articles, 2),
        "state_bytes_per_article": round(in_place.bytes / articles, 1),
        "state_bytes_per_article_packed": round(packed.bytes / articles, 1),
        "state_payload_bytes_per_article": round(payload / articles, 1),
        "state_table": {
            "in_place": in_place.__dict__,
            "packed": packed.__dict__,
        },
        "by_family": {
            family: {
                "rows_per_article": round(v["rows"] / articles, 3),
                "bytes_per_article": round(v["bytes"] / articles, 1),
            }
            for family, v in by_family.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--articles", type=int, default=ARTICLES)
    args = parser.parse_args()
    print(json.dumps(run(args.articles), indent=2))


if __name__ == "__main__":
    main()
