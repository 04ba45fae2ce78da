"""The reconciler state of the tenants a worker owns, kept in memory and made durable in the
``state`` table's changelog topic (compacted, co-partitioned with the topics).

Keys are ``tenant \\x1f kind \\x1f key`` and values JSON, so a tenant's records all live in the
tenant's partition and move with it. A per-tenant, per-kind key index keeps ``scan(kind)``
cheap; it is rebuilt from the table after every recovery.

Kinds that start with ``~`` are the runtime's own: ``~meta`` (consumed offsets, command
sequence), ``~journal`` (one record per batch not yet written out, keyed by its number: see
:func:`journal_key`), ``~cmd`` (command status, owned by
the reconciling agent), ``~exec`` (execution marks, owned by the executors), ``~wake``, ``~seen``
(till event ids), ``~seq``, ``~cursor`` and ``~fp`` (the Fortnox session's poll state).

The till event ids in ``~seen`` are bounded like the embedded store's ``ingest_seen``: on the
first till event of a later day, :func:`forget_seen` deletes the ids of events older than the
redelivery window (``docs/contract.md``), which the door refuses anyway; the deletes are
tombstones on the compacted changelog, so recovery reads a bounded table too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic_core import from_json, to_json

from reconcilers.state import DIRTY, Due, DueIndex, Record, StateView, due_from
from topics.common import REDELIVERY_WINDOW_DAYS

SEP = "\x1f"
META = "~meta"
JOURNAL = "~journal"
CMD = "~cmd"
EXEC = "~exec"
WAKE = "~wake"
SEEN = "~seen"
SEQ = "~seq"
CURSOR = "~cursor"
FINGERPRINT = "~fp"
#: Written by the agent and covered by the journal; the executors' kinds are not.
AGENT_KINDS = frozenset({META, CMD, WAKE, SEEN})


#: Ids of vouchers queued from SIE files: the import's record of what was booked, never
#: forgotten (``engine.gateway.ingest.SIE_IDS``).
SIE_IDS = "sie-"
#: The ``~seen`` record (empty key: no message id is empty) holding the day it was last swept.
SWEPT = ""


def forget_seen(data: StateView, at: dt.datetime) -> dict[tuple[str, str], Record | None]:
    """The puts that forget a tenant's till event ids older than the redelivery window, once a
    day: on the first till event (at ``at``, its ``occurred_at``) of a day later than the last
    sweep. Nothing else on other events, so a replay forgets the same ids at the same message."""
    day = at.date().isoformat()
    swept = data.get(SEEN, SWEPT)
    if swept is not None and str(swept["day"]) >= day:
        return {}
    puts: dict[tuple[str, str], Record | None] = {(SEEN, SWEPT): {"day": day}}
    cutoff = (at.date() - dt.timedelta(days=REDELIVERY_WINDOW_DAYS + 1)).isoformat()
    for key, record in data.scan(SEEN):
        # ``at`` is the event's occurred_at in ISO form: its first ten characters are its day.
        if key == SWEPT or key.startswith(SIE_IDS):  # the SIE import's, kept for ever
            continue
        if str(record.get("at", ""))[:10] < cutoff:
            puts[(SEEN, key)] = None
    return puts


def encode_key(tenant: str, kind: str, key: str) -> bytes:
    return f"{tenant}{SEP}{kind}{SEP}{key}".encode()


def decode_key(raw: bytes) -> tuple[str, str, str]:
    tenant, kind, key = raw.decode().split(SEP, 2)
    return tenant, kind, key


def encode_value(value: Record | None) -> bytes | None:
    # pydantic-core's serialiser: the JSON of json.dumps (UTF-8 rather than \u escapes), several
    # times faster; values written by json.dumps read back the same.
    return None if value is None else to_json(value)


def decode_value(raw: bytes | None) -> Record | None:
    return None if raw is None else from_json(raw)


def journal_key(number: int) -> str:
    """The ``~journal`` key of a tenant's batch ``number``: fixed width, so that key order is
    the order of the batches (an engine before numbered journals wrote its one under "")."""
    return f"{number:012d}"


def journal_number(key: str) -> int:
    return int(key) if key.isdigit() else 0


def redo(records: dict[tuple[str, str], Record], journal: Record) -> None:
    """Apply one journal's puts to ``records``."""
    for kind, key, value in journal["puts"]:
        if value is None:
            records.pop((kind, key), None)
        else:
            records[(kind, key)] = value


def is_internal(kind: str) -> bool:
    return kind.startswith("~")


class TenantData:
    """One tenant's records; the reconcilers' ``StateView``."""

    __slots__ = ("dirty", "index", "records", "tenant")

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.records: dict[tuple[str, str], Record] = {}
        self.index: dict[str, set[str]] = {}
        #: The dirty entries by time, so a tick reads only the due ones.
        self.dirty = DueIndex()

    def get(self, kind: str, key: str) -> Record | None:
        return self.records.get((kind, key))

    def scan(self, kind: str) -> Iterator[tuple[str, Record]]:
        keys = self.index.get(kind)
        if not keys:
            return
        for key in sorted(keys):
            yield key, self.records[(kind, key)]

    def due(self, until: int) -> Due:
        records = self.records
        return due_from(self.dirty, until, lambda key: records[(DIRTY, key)])

    def set(self, kind: str, key: str, value: Record | None) -> None:
        if kind == DIRTY:
            self.dirty.set(key, value)
        if value is None:
            if self.records.pop((kind, key), None) is not None:
                keys = self.index.get(kind)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del self.index[kind]
            return
        self.records[(kind, key)] = value
        self.index.setdefault(kind, set()).add(key)

    def reconciler_records(self) -> dict[tuple[str, str], Record]:
        return {k: v for k, v in self.records.items() if not is_internal(k[0])}


class Mirror:
    """Tenants by partition, as the worker owns them."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.tenants: dict[str, TenantData] = {}
        self.partition_of: dict[str, int] = {}

    def tenant(self, tenant: str, partition: int) -> TenantData:
        data = self.tenants.get(tenant)
        if data is None:
            data = self.tenants[tenant] = TenantData(tenant)
            self.partition_of[tenant] = partition
        return data

    def clear(self) -> None:
        self.tenants.clear()
        self.partition_of.clear()

    def load(self, items: Iterable[tuple[bytes, bytes | None]], owned: set[int], part: Any) -> None:
        """Rebuild from the table's items for the owned partitions (``part(tenant)`` -> int)."""
        self.clear()
        for raw_key, raw_value in items:
            if raw_value is None:
                continue
            tenant, kind, key = decode_key(raw_key)
            partition = part(tenant)
            if partition not in owned:
                continue
            value = decode_value(raw_value)
            self.tenant(tenant, partition).set(kind, key, value)
