"""The reconcilers' view of state, and what they decide.

State is a set of JSON records addressed by ``(kind, key)`` within one tenant. A reconciler reads
through a :class:`Txn` (read-your-writes over a read-only :class:`StateView`) and returns a
:class:`Decision`: the records to put or delete, the commands to emit and notes explaining why.
The engine applies a decision, together with the input offset, in one transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from topics.envelope import Envelope

Record = dict[str, Any]


class StateView(Protocol):
    """Read access to one tenant's state."""

    def get(self, kind: str, key: str) -> Record | None: ...

    def scan(self, kind: str) -> Iterable[tuple[str, Record]]: ...


class MemoryState:
    """A tenant's state in a dict: used by tests, replays and the Kafka runtime's tables."""

    def __init__(self, records: Mapping[tuple[str, str], Record] | None = None) -> None:
        self.records: dict[tuple[str, str], Record] = dict(records or {})

    def get(self, kind: str, key: str) -> Record | None:
        return self.records.get((kind, key))

    def scan(self, kind: str) -> Iterator[tuple[str, Record]]:
        for (k, key), value in sorted(self.records.items()):
            if k == kind:
                yield key, value

    def apply(self, decision: Decision) -> None:
        self.apply_puts(decision.puts)

    def apply_puts(self, puts: Mapping[tuple[str, str], Record | None]) -> None:
        for (kind, key), value in puts.items():
            if value is None:
                self.records.pop((kind, key), None)
            else:
                self.records[(kind, key)] = value


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
