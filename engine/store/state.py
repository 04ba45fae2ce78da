"""The state store: the reconcilers' records, by tenant, kind and key, kept in memory and written
behind to SQLite (one row per entity, its records compressed together: engine/store/packing.py).

Three layers, each the truth for what the one below has not caught up with:

* **memory** (:class:`_Tenant`, one per tenant, least recently used evicted first once the
  cached records pass a byte budget): the records as the reconcilers last left them, read and
  changed in place, so a message costs dict lookups;
* **unwritten**: the records a committed batch changed and no state write has carried to the
  table yet, encoded (an encoding fault surfaces in the batch that made the record, so the
  processor can dead-letter the message at fault);
* **the ``state`` table**, written by :meth:`StateStore.write` together with the consumed
  offsets it covers (the processor's snapshot), every few seconds while a backlog is worked
  through and after every batch once caught up. Reading one record of a row holds the row's
  other records too.

A tenant with nothing committed when memory first misses one of its records (a new shop, a
replay into an empty store) has all its records in memory from then on: it does not read the
table again, and a record it makes and deletes again between two writes is never written.

A batch that rolls back forgets the tenants it touched from memory: they are read again from
the unwritten records and the table, which hold exactly what the batches before it committed.
This store must be the only writer of the ``state`` table while it is open (the processor's
store is).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import structlog
from pydantic_core import from_json, to_json

from engine.store import packing
from engine.store.db import Database
from reconcilers.state import DIRTY, Due, DueIndex, Record, due_from

log = structlog.get_logger("kassasync.state")

Key = tuple[str, str, str]

#: The bytes of cached records (their JSON's length) memory may hold before the least recently
#: used tenants are forgotten (they are read again from the table when next needed). As Python
#: objects records take two to three times their JSON: 128 MB is some 600,000 records.
CACHE_BYTES = 128 * 1024 * 1024
#: What a record known to be absent counts for (its entry in memory: the key and a slot).
ABSENT_BYTES = 64
_MISSING: Any = object()
_NOTHING: dict[tuple[str, str], bytes | None] = {}


def _encode(value: Record) -> bytes:
    # pydantic-core's serialiser: the same JSON as json.dumps (UTF-8 instead of \u escapes),
    # several times faster. Kept as UTF-8 bytes until written (most are replaced before) into
    # the entity's row.
    return to_json(value)


class _Tenant:
    """One tenant's records in memory: what was read (``None``: known absent) or changed."""

    __slots__ = ("born", "bytes", "complete", "dirty", "records", "sizes", "slices")

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], Record | None] = {}
        #: The JSON length of each record held, as last read or encoded.
        self.sizes: dict[tuple[str, str], int] = {}
        #: Every record of the kinds scanned so far (``kind -> key -> record``).
        self.slices: dict[str, dict[str, Record]] = {}
        #: The dirty entries by due time, once the dirty kind has been loaded.
        self.dirty: DueIndex | None = None
        #: The sum of ``sizes``: what eviction counts.
        self.bytes = 0
        #: Whether memory holds every record the tenant has (``None``: not known yet), learnt at
        #: the first record memory misses. True when the tenant had then no row in the table
        #: and no unwritten change: every record it has came through :meth:`StateStore.apply`,
        #: and a record not held is absent without asking the table (a replay into an empty
        #: store, a new shop). Stays true while the tenant is held (this store is the table's
        #: only writer, and writes what memory holds); a tenant evicted or rolled back is read
        #: again and learns anew.
        self.complete: bool | None = None
        #: Of a complete tenant: the records changed since the last write that the table does
        #: not hold (absent when first changed since). One deleted again before the write is
        #: nothing to write: a command's bookkeeping, a dirty mark written out by a tick.
        self.born: set[tuple[str, str]] = set()

    def size(self, where: tuple[str, str], new: int) -> None:
        """Account ``new`` bytes as the size of the record at ``where``."""
        self.bytes += new - self.sizes.get(where, 0)
        self.sizes[where] = new


class StateStore:
    def __init__(self, db: Database, *, cache_bytes: int = CACHE_BYTES) -> None:
        self.db = db
        self.cache_bytes = cache_bytes
        #: The tenants in memory, least recently used first.
        self._tenants: OrderedDict[str, _Tenant] = OrderedDict()
        #: What the batch under way changed, per tenant (kind, key).
        self._batch: dict[str, set[tuple[str, str]]] = {}
        #: The batch's changes encoded by :meth:`stage`, per tenant, kept on :meth:`committed`.
        self._staged: dict[str, dict[tuple[str, str], bytes | None]] = {}
        #: Committed and not yet in the table, per tenant (``None``: deleted).
        self._unwritten: dict[str, dict[tuple[str, str], bytes | None]] = {}
        self._unwritten_count = 0
        #: The tenants whose ``born`` holds anything.
        self._born: set[str] = set()
        self._table = packing.StateTable(db.conn)

    # -- reading -------------------------------------------------------------------------

    def view(self, tenant: str) -> TenantView:
        """The reconcilers' view of one tenant (marks it most recently used)."""
        return TenantView(self, tenant, self._tenant(tenant))

    def _tenant(self, tenant: str) -> _Tenant:
        found = self._tenants.get(tenant)
        if found is None:
            found = self._tenants[tenant] = _Tenant()
        else:
            self._tenants.move_to_end(tenant)
        return found

    def get(self, tenant: str, kind: str, key: str) -> Record | None:
        held = self._tenant(tenant)
        value = held.records.get((kind, key), _MISSING)
        return self._load(tenant, held, kind, key) if value is _MISSING else value

    def _load(self, tenant: str, held: _Tenant, kind: str, key: str) -> Record | None:
        """A record not held yet: absent if memory holds all the tenant has; else from the
        kind's slice if it is held, else as committed (the unwritten change, else the table's
        row, whose other records are held too)."""
        if held.complete:
            return None  # not kept: a stream of unknown ids must not fill memory
        sliced = held.slices.get(kind)
        if sliced is not None:
            value = sliced.get(key)
            if value is None:  # held in the slice, and counted there, if present
                held.size((kind, key), ABSENT_BYTES)
        else:
            changes = self._unwritten.get(tenant)
            text = _MISSING if changes is None else changes.get((kind, key), _MISSING)
            if text is _MISSING:
                return self._load_row(tenant, held, kind, key)
            value = None if text is None else from_json(text)
            held.size((kind, key), ABSENT_BYTES if text is None else len(text))
        held.records[(kind, key)] = value
        return value

    def _load_row(self, tenant: str, held: _Tenant, kind: str, key: str) -> Record | None:
        """``kind``'s record from the table's row for ``key``; the row's other kinds are held
        as well (a message about an article reads its copies together), unless memory or the
        unwritten changes know them better. The tenant's first row read tells whether memory
        holds all it has (:attr:`_Tenant.complete`)."""
        family, _ = packing.family_of(kind)
        row = self._table.row(tenant, family, key)
        if held.complete is None:
            # Decided at the first record memory misses. A slice read before may hold records
            # of the table that memory does not: then it stays undecided (False).
            held.complete = row is None and not held.slices and self._absent(tenant)
            if held.complete:
                return None
        found = {} if row is None else row.records
        share = 0 if row is None else row.size // len(found)
        records, slices, sizes = held.records, held.slices, held.sizes
        unwritten = self._unwritten.get(tenant, {})
        added = 0
        for member in packing.members(family):
            where = (member, key)
            if where in records or member in slices or where in unwritten:
                continue
            value = records[where] = found.get(member)
            size = ABSENT_BYTES if value is None else share
            added += size - sizes.get(where, 0)
            sizes[where] = size
        held.bytes += added
        return records[(kind, key)]

    def _absent(self, tenant: str) -> bool:
        """Whether ``tenant`` has nothing committed: no row in the table, no unwritten change."""
        if tenant in self._unwritten:
            return False
        found = self.db.conn.execute(
            "SELECT 1 FROM state WHERE tenant = ? LIMIT 1", (tenant,)
        ).fetchone()
        return found is None

    def _slice(self, tenant: str, held: _Tenant, kind: str) -> dict[str, Record]:
        sliced = held.slices.get(kind)
        if sliced is not None:
            return sliced
        found: dict[str, tuple[Record | None, int]] = {}
        if not held.complete:
            family, bit = packing.family_of(kind)
            rows = self.db.conn.execute(
                "SELECT key, value FROM state WHERE tenant = ? AND family = ? AND kinds & ?",
                (tenant, family, bit),
            ).fetchall()
            for key, value in rows:
                row = packing.unpack(value)
                found[str(key)] = (row.records[kind], row.size // len(row.records))
            for (k, key), text in self._unwritten.get(tenant, {}).items():
                if k == kind:
                    found[key] = (None, 0) if text is None else (from_json(text), len(text))
        sliced = {}
        for key, (value, size) in found.items():
            if value is not None and (kind, key) not in held.records:
                sliced[key] = value
                held.size((kind, key), size)
        # What is held already (this batch's changes included) is as new as anything committed.
        for (k, key), value in held.records.items():
            if k == kind:
                if value is None:
                    sliced.pop(key, None)
                else:
                    sliced[key] = value
        held.slices[kind] = sliced
        return sliced

    def scan(self, tenant: str, kind: str) -> Iterator[tuple[str, Record]]:
        return self._scan(tenant, self._tenant(tenant), kind)

    def _scan(self, tenant: str, held: _Tenant, kind: str) -> Iterator[tuple[str, Record]]:
        sliced = self._slice(tenant, held, kind)
        for key in sorted(sliced):
            yield key, sliced[key]

    def due(self, tenant: str, until: int) -> Due:
        """The tenant's dirty entries due by ``until`` (see ``StateView.due``), from its index:
        only the due entries and the first waiting one are read, never the whole set."""
        return self._due(tenant, self._tenant(tenant), until)

    def _due(self, tenant: str, held: _Tenant, until: int) -> Due:
        sliced = self._slice(tenant, held, DIRTY)
        if held.dirty is None:
            held.dirty = DueIndex()
            for key, record in sliced.items():
                held.dirty.set(key, record)
        return due_from(held.dirty, until, sliced.__getitem__)

    # -- writing ---------------------------------------------------------------------------

    def put(self, tenant: str, kind: str, key: str, value: Record | None) -> None:
        """Change a record in memory, as part of the batch under way."""
        self.apply(tenant, {(kind, key): value})

    def apply(self, tenant: str, puts: dict[tuple[str, str], Record | None]) -> None:
        """Change records in memory, as part of the batch under way."""
        held = self._tenant(tenant)
        records, slices, dirty = held.records, held.slices, held.dirty
        touched = self._batch.get(tenant)
        if touched is None:
            touched = self._batch[tenant] = set()
        if held.complete:
            # A record first changed since the last write: the table holds what memory held.
            born, unwritten = held.born, self._unwritten.get(tenant, _NOTHING)
            for where in puts:
                if where not in touched and where not in unwritten and records.get(where) is None:
                    born.add(where)
            if born:
                self._born.add(tenant)
        records.update(puts)
        touched.update(puts)
        if not slices and dirty is None:
            return
        for where, value in puts.items():
            kind = where[0]
            sliced = slices.get(kind)
            if sliced is not None:
                if value is None:
                    sliced.pop(where[1], None)
                else:
                    sliced[where[1]] = value
            if kind == DIRTY and dirty is not None:
                dirty.set(where[1], value)

    def stage(self) -> None:
        """Encode what the batch changed (an unencodable record fails its batch here)."""
        staged = self._staged
        encode = _encode
        for tenant, touched in self._batch.items():
            held = self._tenants[tenant]
            records, sizes = held.records, held.sizes
            changes = staged.get(tenant)
            if changes is None:
                changes = staged[tenant] = {}
            added = 0
            for where in touched:
                value = records[where]
                if value is None:
                    changes[where] = None
                    size = ABSENT_BYTES
                else:
                    text = changes[where] = encode(value)
                    size = len(text)
                # Counted now: a batch that rolls back forgets the tenant and its sizes.
                added += size - sizes.get(where, 0)
                sizes[where] = size
            held.bytes += added

    @property
    def unwritten(self) -> int:
        """How many committed changes the table does not hold yet."""
        return self._unwritten_count + sum(len(changes) for changes in self._staged.values())

    def write(self) -> None:
        """Write every committed change (and the batch's staged ones) to the table, inside the
        caller's transaction; they count as written once it commits (:meth:`committed`).

        A change rewrites its entity's row (engine/store/packing.py) from memory, which holds
        what committed; for a tenant evicted since, from the row as stored with the unwritten
        changes over it."""
        families: dict[str, str] = {}
        rows: set[tuple[str, str, str]] = set()
        for changed in (self._unwritten, self._staged):
            for tenant, changes in changed.items():
                for kind, key in changes:
                    family = families.get(kind)
                    if family is None:
                        family = families[kind] = packing.family_of(kind)[0]
                    rows.add((tenant, family, key))
        members = {family: packing.members(family) for family in families.values()}
        # In key order: the table's pages are visited once each, in order.
        self._table.write(
            [
                (tenant, family, key, self._row(tenant, family, members[family], key))
                for tenant, family, key in sorted(rows)
            ]
        )

    def _row(
        self, tenant: str, family: str, members: tuple[str, ...], key: str
    ) -> dict[str, Record]:
        """The records of an entity's row (a ``family`` of ``members``) as committed."""
        found: dict[str, Record] = {}
        held = self._tenants.get(tenant)
        if held is not None:
            records = held.records
            if held.complete:  # what is not held is absent
                for kind in members:
                    value = records.get((kind, key))
                    if value is not None:
                        found[kind] = value
                return found
            slices = held.slices
            for kind in members:
                value = records.get((kind, key), _MISSING)
                if value is _MISSING:
                    sliced = slices.get(kind)
                    if sliced is None:
                        break
                    value = sliced.get(key)
                if value is not None:
                    found[kind] = value
            else:
                return found
        row = self._table.row(tenant, family, key)
        found = {} if row is None else row.records
        staged = self._staged.get(tenant, {})
        unwritten = self._unwritten.get(tenant, {})
        for kind in members:
            where = (kind, key)
            text = staged.get(where, _MISSING)
            if text is _MISSING:
                text = unwritten.get(where, _MISSING)
            if text is None:
                found.pop(kind, None)
            elif text is not _MISSING:
                found[kind] = from_json(text)
        return found

    def committed(self, *, written: bool = False) -> None:
        """The batch's transaction committed (``written``: with :meth:`write`)."""
        if written:
            self._unwritten.clear()
            self._unwritten_count = 0
            for tenant in self._born:
                held = self._tenants.get(tenant)
                if held is not None:
                    held.born.clear()
            self._born.clear()
        else:
            unwritten = self._unwritten
            for tenant, changes in self._staged.items():
                if tenant in self._born:
                    self._unborn(tenant, changes)
                known = unwritten.get(tenant)
                if known is None:
                    unwritten[tenant] = changes
                else:
                    known.update(changes)
            self._unwritten_count = sum(len(changes) for changes in unwritten.values())
        self._staged = {}
        self._batch.clear()
        self._evict()

    def _unborn(self, tenant: str, changes: dict[tuple[str, str], bytes | None]) -> None:
        """Drop from ``changes`` (a committed batch's) and from the unwritten ones the records
        deleted again since the last write that the table does not hold, and forget them."""
        held = self._tenants[tenant]
        born = held.born
        gone = [where for where, text in changes.items() if text is None and where in born]
        if not gone:
            return
        known = self._unwritten.get(tenant, {})
        records, sizes = held.records, held.sizes
        for where in gone:
            del changes[where]
            known.pop(where, None)
            born.discard(where)
            del records[where]  # absent: a complete tenant does not keep it
            held.bytes -= sizes.pop(where, 0)

    def rolled_back(self) -> None:
        """The batch's transaction rolled back: forget the tenants it touched from memory (the
        unwritten records and the table hold what committed before it)."""
        for tenant in self._batch:
            self._forget(tenant)
        self._staged = {}
        self._batch.clear()

    def _forget(self, tenant: str) -> None:
        self._tenants.pop(tenant, None)
        self._born.discard(tenant)

    def _evict(self) -> None:
        """Forget the least recently used tenants while memory holds more than the budget."""
        held = self.cached_bytes
        while held > self.cache_bytes and len(self._tenants) > 1:
            tenant, oldest = next(iter(self._tenants.items()))
            log.debug("state.tenant_evicted", tenant=tenant, bytes=oldest.bytes)
            held -= oldest.bytes
            self._forget(tenant)

    @property
    def cached_bytes(self) -> int:
        """The bytes memory holds, as eviction counts them."""
        return sum(held.bytes for held in self._tenants.values())

    @property
    def held_records(self) -> int:
        """How many records (present or known absent) memory holds."""
        return sum(len(held.records) for held in self._tenants.values())

    # -- whole tenants (tools) -----------------------------------------------------------

    def all_records(self, tenant: str) -> dict[tuple[str, str], Any]:
        """Every committed record of ``tenant`` (the table with the unwritten ones over it)."""
        records: dict[tuple[str, str], Any] = self._table.records(tenant)
        for where, text in self._unwritten.get(tenant, {}).items():
            if text is None:
                records.pop(where, None)
            else:
                records[where] = json.loads(text)
        return records

    def tenants(self) -> list[str]:
        return self._table.tenants()


class TenantView:
    """One tenant's slice of the store, as the reconcilers' ``StateView``."""

    __slots__ = ("_held", "store", "tenant")

    def __init__(self, store: StateStore, tenant: str, held: _Tenant) -> None:
        self.store = store
        self.tenant = tenant
        self._held = held

    def get(self, kind: str, key: str) -> Record | None:
        value = self._held.records.get((kind, key), _MISSING)
        if value is _MISSING:
            return self.store._load(self.tenant, self._held, kind, key)
        return value

    def scan(self, kind: str) -> Iterator[tuple[str, Record]]:
        return self.store._scan(self.tenant, self._held, kind)

    def due(self, until: int) -> Due:
        return self.store._due(self.tenant, self._held, until)
