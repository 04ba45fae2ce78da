"""An indexed, in-memory register of Fortnox records, built for paging 100 000 rows cheaply.

* records live in a dict by key; a parallel sorted key list gives the default order
  (maintained with :mod:`bisect`, so an insert is a memmove, not a sort);
* a modification log ``(wall-clock modified, seq, key)`` sorted by Swedish wall-clock time
  answers ``lastmodified`` with a binary search instead of a scan (stale entries are skipped
  and compacted away);
* query results (the ordered key list for one set of list parameters) are cached until the
  register changes, so paging through 200 pages of the same query filters once;
* each record caches the JSON bytes of its list view, so a page of 500 is a ``b",".join``.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sandbox.fortnox.clock import wall_seconds

SortKey = tuple[Any, ...]


def natural_key(key: str) -> SortKey:
    """Numbers in numeric order first, then everything else as text."""
    if key.isdigit() and len(key) < 19:
        return (0, int(key), key)
    return (1, 0, key)


@dataclass(slots=True, eq=False)
class Record:
    """One Fortnox record: its Fortnox-shaped data plus sandbox bookkeeping."""

    key: str
    data: dict[str, Any]
    modified: float
    created: float
    seq: int
    sortkey: SortKey
    cache: dict[Hashable, bytes] = field(default_factory=dict)
    internal: dict[str, Any] = field(default_factory=dict)


Predicate = Callable[[Record], bool]
SortValue = Callable[[Record], Any]


class Collection:
    """A register (customers, articles, ...) of one tenant."""

    QUERY_CACHE_SIZE = 8

    def __init__(self, name: str, *, sort_key: Callable[[str], SortKey] = natural_key) -> None:
        self.name = name
        self._sort_key = sort_key
        self._items: dict[str, Record] = {}
        self._sorted: list[SortKey] = []
        self._keys: list[str] = []
        self._modlog: list[tuple[float, int, str]] = []
        self._seq = 0
        self.version = 0
        self._qcache: OrderedDict[Hashable, list[str]] = OrderedDict()

    # --- reading ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[Record]:
        """Records in default (key) order."""
        items = self._items
        return (items[k] for k in list(self._keys))

    def get(self, key: str) -> Record | None:
        return self._items.get(key)

    def keys_sorted(self) -> list[str]:
        return list(self._keys)

    # --- writing ---------------------------------------------------------------------------
    def insert(self, key: str, data: dict[str, Any], *, now: float) -> Record:
        if key in self._items:
            raise KeyError(key)
        self._seq += 1
        sk = self._sort_key(key)
        rec = Record(key, data, now, now, self._seq, sk)
        self._items[key] = rec
        i = bisect.bisect_left(self._sorted, sk)
        self._sorted.insert(i, sk)
        self._keys.insert(i, key)
        self._log(rec)
        return rec

    def bulk_insert(self, rows: Iterable[tuple[str, dict[str, Any]]], *, now: float) -> int:
        """Insert many records at once (one sort instead of one insort each); for seeding."""
        wall = wall_seconds(now)
        items = self._items
        fresh: list[tuple[SortKey, str]] = []
        for key, data in rows:
            if key in items:
                raise KeyError(key)
            self._seq += 1
            sk = self._sort_key(key)
            items[key] = Record(key, data, now, now, self._seq, sk)
            fresh.append((sk, key))
            self._modlog.append((wall, self._seq, key))
        if fresh:
            merged = sorted([*zip(self._sorted, self._keys, strict=True), *fresh])
            self._sorted = [sk for sk, _ in merged]
            self._keys = [key for _, key in merged]
            self._modlog.sort()
            self._changed()
        return len(fresh)

    def touch(self, rec: Record, *, now: float) -> None:
        """Mark ``rec`` as changed: new lastmodified, cached views dropped."""
        self._seq += 1
        rec.seq = self._seq
        rec.modified = max(now, rec.modified)
        rec.cache.clear()
        self._log(rec)

    def invalidate(self, rec: Record) -> None:
        """Drop cached views of ``rec`` without changing its lastmodified."""
        rec.cache.clear()
        self._changed()

    def delete(self, key: str) -> Record:
        rec = self._items.pop(key)
        i = bisect.bisect_left(self._sorted, rec.sortkey)
        while self._keys[i] != key:
            i += 1
        del self._sorted[i]
        del self._keys[i]
        self._changed()
        return rec

    def _log(self, rec: Record) -> None:
        entry = (wall_seconds(rec.modified), rec.seq, rec.key)
        if not self._modlog or self._modlog[-1] <= entry:
            self._modlog.append(entry)
        else:
            bisect.insort(self._modlog, entry)
        if len(self._modlog) > 2 * len(self._items) + 1024:
            self._compact()
        self._changed()

    def _compact(self) -> None:
        self._modlog = sorted(
            (wall_seconds(r.modified), r.seq, r.key) for r in self._items.values()
        )

    def _changed(self) -> None:
        self.version += 1
        self._qcache.clear()

    # --- querying --------------------------------------------------------------------------
    def modified_since(self, since: float) -> list[str]:
        """Keys of live records modified at or after wall-clock ``since`` (in log order)."""
        start = bisect.bisect_left(self._modlog, (since, -1, ""))
        items = self._items
        out: list[str] = []
        for _ts, seq, key in self._modlog[start:]:
            rec = items.get(key)
            if rec is not None and rec.seq == seq:
                out.append(key)
        return out

    def query(
        self,
        *,
        cache_key: Hashable,
        since: float | None = None,
        predicate: Predicate | None = None,
        sort_value: SortValue | None = None,
        descending: bool = False,
    ) -> list[str]:
        """The ordered keys matching a list request (cached until the register changes).

        ``cache_key`` must identify ``predicate`` and ``sort_value`` (e.g. the normalised
        query parameters); ``since`` and ``descending`` are added to it here.
        """
        ck = (cache_key, since, descending)
        hit = self._qcache.get(ck)
        if hit is not None:
            self._qcache.move_to_end(ck)
            return hit
        items = self._items
        if since is not None:
            keys = self.modified_since(since)
            if predicate is not None:
                keys = [k for k in keys if predicate(items[k])]
            keys.sort(key=lambda k: items[k].sortkey)
        elif predicate is not None:
            keys = [k for k in self._keys if predicate(items[k])]
        else:
            keys = list(self._keys)
        if sort_value is not None:
            keys.sort(key=lambda k: (sort_value(items[k]), items[k].sortkey))
        if descending:
            keys.reverse()
        self._qcache[ck] = keys
        if len(self._qcache) > self.QUERY_CACHE_SIZE:
            self._qcache.popitem(last=False)
        return keys
