"""The reconcilers' view of state, and what they decide.

State is a set of JSON records addressed by ``(kind, key)`` within one tenant. A reconciler reads
through a :class:`Txn` (read-your-writes over a read-only :class:`StateView`) and returns a
:class:`Decision`: the records to put or delete, the commands to emit and notes explaining why.
The engine applies a decision, together with the input offset, in one transaction.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from topics.envelope import Envelope

Record = dict[str, Any]

#: The kind of the entities waiting to be written out (``"<flow>:<key>"`` -> ``{"since": iso}``,
#: the time of the message that first left them waiting). Every store keeps them in a
#: :class:`DueIndex` as well, so a tick reads only the entries that are due.
DIRTY = "dirty"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)


def instant(at: dt.datetime) -> int:
    """``at`` as whole microseconds since the epoch: exact, and ordered as the instants are
    whatever their UTC offsets (an ISO text of another offset does not sort by time)."""
    return (at - _EPOCH) // _MICROSECOND


def dirty_since(record: Record) -> int:
    """The instant a dirty record has been waiting since."""
    return instant(dt.datetime.fromisoformat(record["since"]))


@dataclass(frozen=True, slots=True)
class Due:
    """What a tick may write out: the due dirty entries in key order (the order the flush has
    always run in, so the commands are the same), and the first entry left waiting (its key and
    record), from which the next wake-up time is computed."""

    entries: list[tuple[str, Record]]
    first_waiting: tuple[str, Record] | None


class DueIndex:
    """The keys of one tenant's dirty entries ordered by ``(since, key)``: the entries due by a
    time are a prefix, found by bisection, so a tick touches those and not the whole set."""

    __slots__ = ("_order", "_since")

    def __init__(self) -> None:
        self._since: dict[str, int] = {}
        self._order: list[tuple[int, str]] = []

    def set(self, key: str, record: Record | None) -> None:
        """``key`` now holds ``record`` (``None``: it was deleted)."""
        old = self._since.pop(key, None)
        if old is not None:
            del self._order[bisect_left(self._order, (old, key))]
        if record is not None:
            since = dirty_since(record)
            self._since[key] = since
            insort(self._order, (since, key))

    def _end(self, until: int) -> int:
        return bisect_right(self._order, until, key=_since_of)

    def due_keys(self, until: int) -> list[str]:
        """The keys waiting since ``until`` or before, by time."""
        return [key for _, key in self._order[: self._end(until)]]

    def waiting(self, until: int) -> Iterator[str]:
        """The keys not yet due by ``until``, by time (lazily, and without copying the rest of
        the order: a caller takes the first)."""
        order = self._order
        for i in range(self._end(until), len(order)):
            yield order[i][1]


def _since_of(entry: tuple[int, str]) -> int:
    return entry[0]


class StateView(Protocol):
    """Read access to one tenant's state."""

    def get(self, kind: str, key: str) -> Record | None: ...

    def scan(self, kind: str) -> Iterable[tuple[str, Record]]: ...

    def due(self, until: int) -> Due:
        """The :data:`DIRTY` entries waiting since ``until`` (an :func:`instant`) or before:
        read from the store's :class:`DueIndex`, not by a scan."""
        ...


class MemoryState:
    """A tenant's state in a dict: used by tests, replays and the Kafka runtime's tables."""

    def __init__(self, records: Mapping[tuple[str, str], Record] | None = None) -> None:
        self.records: dict[tuple[str, str], Record] = dict(records or {})
        self.dirty = DueIndex()
        for (kind, key), value in self.records.items():
            if kind == DIRTY:
                self.dirty.set(key, value)

    def get(self, kind: str, key: str) -> Record | None:
        return self.records.get((kind, key))

    def scan(self, kind: str) -> Iterator[tuple[str, Record]]:
        for (k, key), value in sorted(self.records.items()):
            if k == kind:
                yield key, value

    def due(self, until: int) -> Due:
        records = self.records
        return due_from(self.dirty, until, lambda key: records[(DIRTY, key)])

    def apply(self, decision: Decision) -> None:
        self.apply_puts(decision.puts)

    def apply_puts(self, puts: Mapping[tuple[str, str], Record | None]) -> None:
        for (kind, key), value in puts.items():
            if value is None:
                self.records.pop((kind, key), None)
            else:
                self.records[(kind, key)] = value
            if kind == DIRTY:
                self.dirty.set(key, value)


def due_in(entries: Iterable[tuple[str, Record]], until: int) -> Due:
    """A :class:`Due` from a whole dirty set (in key order): what an index must agree with."""
    due: list[tuple[str, Record]] = []
    first: tuple[int, str, Record] | None = None
    for key, record in entries:
        since = dirty_since(record)
        if since <= until:
            due.append((key, record))
        elif first is None or (since, key) < first[:2]:
            first = (since, key, record)
    return Due(due, None if first is None else (first[1], first[2]))


def due_from(index: DueIndex, until: int, record_of: Callable[[str], Record]) -> Due:
    """A :class:`Due` from a store's index and its dirty records (``record_of(key)``)."""
    keys = index.due_keys(until)
    keys.sort()
    waiting = next(index.waiting(until), None)
    return Due(
        [(key, record_of(key)) for key in keys],
        None if waiting is None else (waiting, record_of(waiting)),
    )


@dataclass(frozen=True, slots=True)
class Note:
    """One decision worth logging and showing: ``event`` names it, ``fields`` explain it;
    ``level`` is the log level it deserves (``info``, or ``warning`` for what a shop or a till
    vendor must look at)."""

    event: str
    fields: dict[str, Any]
    level: Literal["info", "warning"] = "info"


@dataclass(slots=True)
class Decision:
    puts: dict[tuple[str, str], Record | None] = field(default_factory=dict)
    commands: list[Envelope] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    #: The earliest time a tick is needed to flush what this decision left pending.
    wake_at: dt.datetime | None = None

    @property
    def empty(self) -> bool:
        return not (self.puts or self.commands)


class Txn:
    """Read-your-writes over a :class:`StateView`; collects the decision."""

    __slots__ = ("_base", "decision")

    def __init__(self, base: StateView) -> None:
        self._base = base
        self.decision = Decision()

    def get(self, kind: str, key: str) -> Record | None:
        puts = self.decision.puts
        if (kind, key) in puts:
            value = puts[(kind, key)]
            return None if value is None else dict(value)
        found = self._base.get(kind, key)
        return None if found is None else dict(found)

    def put(self, kind: str, key: str, value: Record) -> None:
        self.decision.puts[(kind, key)] = value

    def delete(self, kind: str, key: str) -> None:
        self.decision.puts[(kind, key)] = None

    def scan(self, kind: str) -> list[tuple[str, Record]]:
        merged: dict[str, Record] = {k: v for k, v in self._base.scan(kind)}
        for (k, key), value in self.decision.puts.items():
            if k != kind:
                continue
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        return sorted(((k, dict(v)) for k, v in merged.items()), key=lambda kv: kv[0])

    def due(self, until: int) -> Due:
        """The dirty entries due by ``until`` as this transaction sees them, copied like
        :meth:`get`'s records: from the store's index while this transaction has not changed a
        dirty entry itself (a tick flushes before it changes any), else from the merged set."""
        if not any(kind == DIRTY for kind, _ in self.decision.puts):
            base = self._base.due(until)
            waiting = base.first_waiting
            return Due(
                [(key, dict(value)) for key, value in base.entries],
                None if waiting is None else (waiting[0], dict(waiting[1])),
            )
        return due_in(self.scan(DIRTY), until)

    def emit(self, command: Envelope) -> None:
        self.decision.commands.append(command)

    def note(self, event: str, **fields: Any) -> None:
        self.decision.notes.append(Note(event, fields))

    def warn(self, event: str, **fields: Any) -> None:
        self.decision.notes.append(Note(event, fields, "warning"))

    def wake(self, at: dt.datetime) -> None:
        current = self.decision.wake_at
        if current is None or at < current:
            self.decision.wake_at = at
