"""The state store: the reconcilers' records, by tenant, kind and key (JSON in SQLite)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pydantic_core import from_json, to_json

from engine.store.db import Database
from reconcilers.state import DIRTY, Due, DueIndex, Record, dirty_since, due_from

Key = tuple[str, str, str]
Slice = tuple[str, str]

#: How many records the read cache may hold before it starts over.
CACHE_LIMIT = 500_000
_MISSING: Any = object()


def _encode(value: Record) -> str:
    # pydantic-core's serialiser: the same JSON as json.dumps (UTF-8 instead of \u escapes),
    # several times faster. Stored as TEXT (a BLOB would read as JSONB to SQLite's json_*).
    return to_json(value).decode()


class StateStore:
    """Reads go through a write buffer, so a batch sees its own writes before it commits.

    Committed records are cached (by key, and by ``(tenant, kind)`` for scans once a slice has
    been scanned), so a batch that keeps touching the same records reads SQLite once. This
    store must be the only writer of the ``state`` table while it is open (the processor's
    store is).
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self.pending: dict[Key, Record | None] = {}
        self._cache: dict[Key, Record | None] = {}
        #: Committed records of every (tenant, kind) slice scanned so far.
        self._slices: dict[Slice, dict[str, Record]] = {}
        #: Keys with a buffered write, per (tenant, kind) slice.
        self._pending_keys: dict[Slice, set[str]] = {}
        #: Committed dirty entries per tenant ordered by time, for the tenants whose dirty
        #: slice is cached (built with it, kept current at commit like the slice).
        self._dirty: dict[str, DueIndex] = {}

    def view(self, tenant: str) -> TenantView:
        return TenantView(self, tenant)

    def get(self, tenant: str, kind: str, key: str) -> Record | None:
        k = (tenant, kind, key)
        value = self.pending.get(k, _MISSING)
        if value is not _MISSING:
            return value
        value = self._cache.get(k, _MISSING)
        if value is not _MISSING:
            return value
        sliced = self._slices.get((tenant, kind))
        if sliced is not None:
            found = sliced.get(key)
            self._cache[k] = found
            return found
        row = self.db.conn.execute(
            "SELECT value FROM state WHERE tenant = ? AND kind = ? AND key = ?", k
        ).fetchone()
        found = None if row is None else from_json(row[0])
        self._cache[k] = found
        return found

    def _slice(self, tenant: str, kind: str) -> dict[str, Record]:
        sliced = self._slices.get((tenant, kind))
        if sliced is None:
            rows = self.db.conn.execute(
                "SELECT key, value FROM state WHERE tenant = ? AND kind = ?", (tenant, kind)
            ).fetchall()
            sliced = {key: from_json(value) for key, value in rows}
            self._slices[(tenant, kind)] = sliced
        return sliced

    def scan(self, tenant: str, kind: str) -> Iterator[tuple[str, Record]]:
        merged = dict(self._slice(tenant, kind))
        for key in self._pending_keys.get((tenant, kind), ()):
            value = self.pending[(tenant, kind, key)]
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        for key in sorted(merged):
            yield key, merged[key]

    def _dirty_index(self, tenant: str) -> tuple[DueIndex, dict[str, Record]]:
        sliced = self._slice(tenant, DIRTY)
        index = self._dirty.get(tenant)
        if index is None:
            index = self._dirty[tenant] = DueIndex()
            for key, record in sliced.items():
                index.set(key, record)
        return index, sliced

    def due(self, tenant: str, until: int) -> Due:
        """The tenant's dirty entries due by ``until`` (see ``StateView.due``): the committed
        ones from the index, the batch's buffered writes over them. Only the due entries and
        the first waiting one are read, never the whole set."""
        index, sliced = self._dirty_index(tenant)
        mine = self._pending_keys.get((tenant, DIRTY))
        if not mine:
            return due_from(index, until, sliced.__getitem__)
        entries = {key: sliced[key] for key in index.due_keys(until) if key not in mine}
        first: tuple[int, str, Record] | None = None
        for key in index.waiting(until):
            if key not in mine:
                first = (dirty_since(sliced[key]), key, sliced[key])
                break
        for key in mine:
            value = self.pending[(tenant, DIRTY, key)]
            if value is None:
                continue
            since = dirty_since(value)
            if since <= until:
                entries[key] = value
            elif first is None or (since, key) < first[:2]:
                first = (since, key, value)
        return Due(sorted(entries.items()), None if first is None else (first[1], first[2]))

    def put(self, tenant: str, kind: str, key: str, value: Record | None) -> None:
        self.pending[(tenant, kind, key)] = value
        keys = self._pending_keys.get((tenant, kind))
        if keys is None:
            self._pending_keys[(tenant, kind)] = {key}
        else:
            keys.add(key)

    def flush(self) -> None:
        """Write the buffer inside the caller's transaction."""
        if not self.pending:
            return
        upserts = [
            (t, k, key, _encode(v)) for (t, k, key), v in self.pending.items() if v is not None
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
        if len(self._cache) + len(self.pending) > CACHE_LIMIT:
            self._cache.clear()
            self._slices.clear()
            self._dirty.clear()
        self._cache.update(self.pending)
        for (tenant, kind), keys in self._pending_keys.items():
            sliced = self._slices.get((tenant, kind))
            if sliced is None:
                continue
            index = self._dirty.get(tenant) if kind == DIRTY else None
            for key in keys:
                value = self.pending[(tenant, kind, key)]
                if value is None:
                    sliced.pop(key, None)
                else:
                    sliced[key] = value
                if index is not None:
                    index.set(key, value)
        self.pending.clear()
        self._pending_keys.clear()

    def rolled_back(self) -> None:
        self.pending.clear()
        self._pending_keys.clear()
        self._cache.clear()
        self._slices.clear()
        self._dirty.clear()

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

    def due(self, until: int) -> Due:
        return self.store.due(self.tenant, until)
