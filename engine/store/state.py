"""The state store: the reconcilers' records, by tenant, kind and key (JSON in SQLite)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from engine.store.db import Database
from reconcilers.state import Record

Key = tuple[str, str, str]


class StateStore:
    """Reads go through a write buffer, so a batch sees its own writes before it commits."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.pending: dict[Key, Record | None] = {}
        self._cache: dict[Key, Record | None] = {}

    def view(self, tenant: str) -> TenantView:
        return TenantView(self, tenant)

    def get(self, tenant: str, kind: str, key: str) -> Record | None:
        k = (tenant, kind, key)
        if k in self.pending:
            return self.pending[k]
        if k in self._cache:
            return self._cache[k]
        row = self.db.conn.execute(
            "SELECT value FROM state WHERE tenant = ? AND kind = ? AND key = ?", k
        ).fetchone()
        value = None if row is None else json.loads(row[0])
        self._cache[k] = value
        return value

    def scan(self, tenant: str, kind: str) -> Iterator[tuple[str, Record]]:
        rows = self.db.conn.execute(
            "SELECT key, value FROM state WHERE tenant = ? AND kind = ? ORDER BY key",
            (tenant, kind),
        ).fetchall()
        merged: dict[str, Record] = {key: json.loads(value) for key, value in rows}
        for (t, k, key), value in self.pending.items():
            if t == tenant and k == kind:
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
        for key in sorted(merged):
            yield key, merged[key]

    def put(self, tenant: str, kind: str, key: str, value: Record | None) -> None:
        self.pending[(tenant, kind, key)] = value

    def flush(self) -> None:
        """Write the buffer inside the caller's transaction."""
        if not self.pending:
            return
        upserts = [
            (t, k, key, json.dumps(v, separators=(",", ":")))
            for (t, k, key), v in self.pending.items()
            if v is not None
        ]
        deletes = [(t, k, key) for (t, k, key), v in self.pending.items() if v is None]
        conn = self.db.conn
        if upserts:
            conn.executemany(
                "INSERT INTO state (tenant, kind, key, value) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (tenant, kind, key) DO UPDATE SET value = excluded.value",
                upserts,
            )
        if deletes:
            conn.executemany("DELETE FROM state WHERE tenant = ? AND kind = ? AND key = ?", deletes)

    def committed(self) -> None:
        """The transaction committed: keep what was written as the read cache."""
        self._cache.update(self.pending)
        self.pending.clear()
        if len(self._cache) > 500_000:
            self._cache.clear()

    def rolled_back(self) -> None:
        self.pending.clear()
        self._cache.clear()

    def all_records(self, tenant: str) -> dict[tuple[str, str], Any]:
        rows = self.db.conn.execute(
            "SELECT kind, key, value FROM state WHERE tenant = ?", (tenant,)
        ).fetchall()
        return {(kind, key): json.loads(value) for kind, key, value in rows}

    def tenants(self) -> list[str]:
        rows = self.db.conn.execute("SELECT DISTINCT tenant FROM state ORDER BY tenant").fetchall()
        return [r[0] for r in rows]


class TenantView:
    """One tenant's slice of the store, as the reconcilers' ``StateView``."""

    __slots__ = ("store", "tenant")

    def __init__(self, store: StateStore, tenant: str) -> None:
        self.store = store
        self.tenant = tenant

    def get(self, kind: str, key: str) -> Record | None:
        return self.store.get(self.tenant, kind, key)

    def scan(self, kind: str) -> Iterator[tuple[str, Record]]:
        return self.store.scan(self.tenant, kind)
