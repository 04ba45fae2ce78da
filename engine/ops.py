"""Operations: a read model over the sync state and the operator's actions.

What the dashboard, ``/metrics`` and the ``kassasync`` ops commands show comes from here, and so
do the actions an operator takes (resume or pause a tenant, retry or discard a dead letter).

Two protocols keep it runtime-agnostic:

* :class:`OpsStore` reads the state records, poll cursors, outbox and dead letters, and performs
  the few writes an action needs (append a control message, requeue or discard an outbox
  command, mark a dead letter). :class:`SqliteOpsStore` implements it over the embedded
  runtime's database; the Kafka runtime implements it over its tables and topics.
* :class:`RuntimeProbe` reports what only a running runtime knows: consumer lag (per partition
  when it has partitions), throughput, worker assignment and the Fortnox request budget.

:class:`Ops` derives everything else (status lights, drift, the pages' views) the same way for
both, as plain functions of what those two report.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Literal, Protocol

import structlog
from pydantic import ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from engine.clock import utcnow
from engine.fortnox.limiter import LimiterRegistry
from engine.store.db import Database
from engine.store.log import Log, Offsets
from engine.store.outbox import DeadLetters, Outbox, OutboxRow
from reconcilers import dispatch
from reconcilers.queries import article_drifts, stock_drifts
from reconcilers.state import Record
from topics import registry
from topics.envelope import Envelope, Source
from topics.errors import ErrorKind, ShopError, shop_error
from topics.names import RECONCILED_TOPICS, Topic
from topics.outcomes import (
    DeadLetterAction,
    DeadLetterActionData,
    TenantPaused,
    TenantPausedData,
    TenantResumed,
    TenantResumedData,
)
from topics.settings import TenantSettings

log = structlog.get_logger("kassasync.ops")

FLOWS: tuple[str, ...] = dispatch.FLOWS
FLOW_TITLES: dict[str, str] = {
    "customers": "Customers",
    "articles": "Articles",
    "stock": "Stock",
    "zreports": "Z-reports",
    "invoices": "Invoices",
    "payments": "Payments",
    "ledger": "Ledger",
}
#: Flows the reconcilers retry themselves when an operator retries one of their dead letters
#: (a new command is made from the current state); the others get their old command requeued.
RETRY_FLOWS: frozenset[str] = frozenset(dispatch.RETRY)
#: The Fortnox poll stream (``fx_cursor.resource``) each flow depends on.
POLLED_BY: dict[str, str] = {
    "articles": "articles",
    "customers": "customers",
    "payments": "payments",
}

#: A command pending longer than this turns its flow amber, and red after RED_PENDING_SECONDS.
AMBER_PENDING_SECONDS = 300.0
RED_PENDING_SECONDS = 3600.0
#: A Fortnox poll stream whose last successful poll is older than this turns its flow amber.
STALE_POLL_SECONDS = 900.0

COMMAND_TOPICS = frozenset({Topic.FORTNOX_COMMANDS.value, Topic.TILL_COMMANDS.value})

_FLOW_OF_TYPE: tuple[tuple[str, str], ...] = (
    ("fortnox.customer.", "customers"),
    ("till.customer.", "customers"),
    ("fortnox.article.", "articles"),
    ("till.article.", "articles"),
    ("fortnox.stock.", "stock"),
    ("till.stock.", "stock"),
    ("fortnox.voucher.create", "zreports"),
    ("till.zreport.", "zreports"),
    ("fortnox.order.", "invoices"),
    ("till.invoice.", "invoices"),
    ("fortnox.payment.", "payments"),
    ("till.payment.", "payments"),
    ("fortnox.voucher.changed", "ledger"),
    ("till.ledger.", "ledger"),
)


def flow_of(message_type: str) -> str | None:
    """The flow a message or command type belongs to (None for control and master data)."""
    for prefix, flow in _FLOW_OF_TYPE:
        if message_type.startswith(prefix):
            return flow
    return None


def topic_of(message_type: str) -> str:
    """The topic a message type travels on ('unknown' for a type the contract does not know)."""
    model = registry.BY_TYPE.get(message_type)
    return "unknown" if model is None else str(model.TOPIC)


class OpsError(Exception):
    """An action that cannot be done; ``status`` is the HTTP status that says why."""

    status = 400


class NotFound(OpsError):
    status = 404


class Conflict(OpsError):
    status = 409


# --- what the stores and runtimes report ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TenantRef:
    id: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    id: str
    tenant: str
    topic: str
    type: str
    status: str
    created_at: float
    resolved_at: float | None
    error: ShopError
    payload: bytes

    @property
    def flow(self) -> str | None:
        return flow_of(self.type)

    @property
    def is_command(self) -> bool:
        return self.topic in COMMAND_TOPICS

    def message(self) -> Any:
        try:
            return json.loads(self.payload)
        except ValueError:
            return self.payload.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class PendingGroup:
    """Pending outbox commands of one tenant, target and command type."""

    tenant: str
    target: str
    type: str
    count: int
    oldest: float


@dataclass(frozen=True, slots=True)
class PendingCommand:
    command_id: str
    tenant: str
    target: str
    type: str
    attempts: int
    created_at: float
    next_at: float
    last_error: str | None
    #: Which of the tenant's commands it holds back (engine/store/lanes.py).
    lane: str = ""


@dataclass(frozen=True, slots=True)
class Cursor:
    """A Fortnox poll stream's position (``fx_cursor``)."""

    resource: str
    since: str | None
    seen: int
    last_ok: float | None
    full_sync_at: float | None


@dataclass(frozen=True, slots=True)
class Drift:
    """A cheap proxy for drift between till and Fortnox: work not yet settled.

    ``unsettled_stock``: articles whose stock merge still owes a delta to one side or has a
    write in flight. ``unsent_articles``: articles the till should have (or have in a newer
    version) that were not sent yet.
    """

    unsettled_stock: int
    unsent_articles: int
    stock_samples: tuple[str, ...] = ()
    article_samples: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return self.unsettled_stock + self.unsent_articles


@dataclass(frozen=True, slots=True)
class TopicLag:
    topic: str
    partition: int | None
    end: int
    committed: int

    @property
    def lag(self) -> int:
        return max(0, self.end - self.committed)


@dataclass(frozen=True, slots=True)
class WorkerAssignment:
    worker: str
    partitions: tuple[int, ...] | None
    tenants: int | None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Budget:
    """Fortnox request budget of one (client id, tenant): its limiter's sliding window."""

    client_id: str
    tenant: str
    in_window: int
    limit: int
    window_seconds: float
    acquired: int
    waited: int
    mean_wait: float
    max_wait: float
    penalties: int
    waiting_now: int

    @property
    def used(self) -> float:
        return self.in_window / self.limit if self.limit else 0.0


class OpsStore(Protocol):
    """Reads and the few writes the operator's actions need, over one runtime's store."""

    def tenants(self) -> list[TenantRef]: ...

    def record(self, tenant: str, kind: str, key: str) -> Record | None: ...

    def records(
        self,
        tenant: str,
        kind: str,
        *,
        where: Mapping[str, Sequence[str | int | bool]] | None = None,
        limit: int | None = None,
    ) -> list[tuple[str, Record]]:
        """Records of a kind; ``where`` keeps those whose top-level field has one of the values."""

    def count_by(self, tenant: str, kind: str, field: str) -> dict[str, int]:
        """How many records of a kind have each value of a top-level field ('' for none)."""

    def kind_counts(self, tenant: str) -> dict[str, int]: ...

    def cursors(self, tenant: str) -> list[Cursor]: ...

    def drift(self, tenant: str, samples: int = 10) -> Drift: ...

    def pending(self, tenant: str | None = None) -> list[PendingGroup]: ...

    def oldest_pending(self, tenant: str) -> PendingCommand | None: ...

    def dead_letters(
        self, *, tenant: str | None = None, status: str = "open", limit: int | None = None
    ) -> list[DeadLetterRow]: ...

    def dead_letter(self, dead_letter_id: str) -> DeadLetterRow | None: ...

    def open_dead_letters(self) -> dict[str, dict[str, int]]:
        """Open dead letters: tenant -> message or command type -> count."""

    # -- writes ---------------------------------------------------------------------------

    def atomic(self) -> AbstractContextManager[Any]:
        """The writes inside commit together."""

    def append(self, message: Envelope) -> None: ...

    def requeue(self, command_id: str) -> bool:
        """A dead outbox command becomes pending again (False if there is none)."""

    def discard(self, command_id: str) -> bool: ...

    def resolve_dead_letter(self, dead_letter_id: str, status: str) -> bool: ...

    def replay(self, row: DeadLetterRow) -> bool:
        """Append a dead-lettered message to its topic again (False if it cannot be parsed)."""

    # -- commands still being retried ------------------------------------------------------

    def retrying(self, tenant: str | None = None, limit: int | None = None) -> list[PendingCommand]:
        """Pending commands that failed at least once, oldest first."""

    def command(self, command_id: str) -> tuple[PendingCommand, str] | None:
        """(a command of the outbox, its status), whatever the status."""

    def retry_command_now(self, command_id: str) -> bool:
        """A pending command is due at once (False if it is not pending)."""

    def cancel_command(self, command_id: str, reason: str) -> bool:
        """Settle a command waiting for its retry as refused by the operator (it becomes a dead
        letter); False if it is not waiting for a retry (an executor may be attempting it)."""


class RuntimeProbe(Protocol):
    """What a running runtime knows about itself."""

    @property
    def name(self) -> str: ...

    def lag(self) -> list[TopicLag]: ...

    def throughput(self) -> dict[str, float]:
        """Messages per second reconciled over the last minute, by topic."""

    def workers(self) -> list[WorkerAssignment]: ...

    def budgets(self) -> list[Budget]: ...


# --- the SQLite implementation (embedded runtime) ---------------------------------------------


def _json_path(field_name: str) -> str:
    if not field_name.replace("_", "").isalnum():
        raise ValueError(f"not a record field: {field_name!r}")
    return f"$.{field_name}"


def _sql_value(value: str | int | bool) -> str | int:
    return int(value) if isinstance(value, bool) else value


class SqliteOpsStore:
    """:class:`OpsStore` over the embedded runtime's database.

    Give it the :class:`Log` the runtime appends with (``engine.edge.log``), so control messages
    take their sequence numbers from the same counter as the runtime's own appends.
    """

    def __init__(self, db: Database, log: Log | None = None) -> None:
        self.db = db
        self.log = log or Log(db)
        self.outbox = Outbox(db)
        self.dead = DeadLetters(db)

    # -- reads -----------------------------------------------------------------------------

    def tenants(self) -> list[TenantRef]:
        rows = self.db.conn.execute(
            "SELECT id, COALESCE(json_extract(config, '$.name'), '') FROM tenants "
            "UNION SELECT DISTINCT tenant, '' FROM dead_letters "
            "WHERE tenant NOT IN (SELECT id FROM tenants) ORDER BY 1"
        ).fetchall()
        return [TenantRef(str(r[0]), str(r[1] or "")) for r in rows]

    def record(self, tenant: str, kind: str, key: str) -> Record | None:
        row = self.db.conn.execute(
            "SELECT value FROM state WHERE tenant = ? AND kind = ? AND key = ?",
            (tenant, kind, key),
        ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def records(
        self,
        tenant: str,
        kind: str,
        *,
        where: Mapping[str, Sequence[str | int | bool]] | None = None,
        limit: int | None = None,
    ) -> list[tuple[str, Record]]:
        sql = "SELECT key, value FROM state WHERE tenant = ? AND kind = ?"
        params: list[object] = [tenant, kind]
        for name, values in (where or {}).items():
            if not values:
                return []
            marks = ", ".join("?" for _ in values)
            sql += f" AND json_extract(value, ?) IN ({marks})"
            params.append(_json_path(name))
            params.extend(_sql_value(v) for v in values)
        sql += " ORDER BY key"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = self.db.conn.execute(sql, params).fetchall()
        return [(str(k), dict(json.loads(v))) for k, v in rows]

    def count_by(self, tenant: str, kind: str, field: str) -> dict[str, int]:
        rows = self.db.conn.execute(
            "SELECT json_extract(value, ?), COUNT(*) FROM state WHERE tenant = ? AND kind = ? "
            "GROUP BY 1",
            (_json_path(field), tenant, kind),
        ).fetchall()
        return {("" if v is None else str(v)): int(n) for v, n in rows}

    def kind_counts(self, tenant: str) -> dict[str, int]:
        rows = self.db.conn.execute(
            "SELECT kind, COUNT(*) FROM state WHERE tenant = ? GROUP BY kind", (tenant,)
        ).fetchall()
        return {str(k): int(n) for k, n in rows}

    def cursors(self, tenant: str) -> list[Cursor]:
        rows = self.db.conn.execute(
            "SELECT resource, cursor, last_ok, full_sync_at FROM fx_cursor WHERE tenant = ? "
            "ORDER BY resource",
            (tenant,),
        ).fetchall()
        out: list[Cursor] = []
        for resource, text, last_ok, full_at in rows:
            since: str | None = None
            seen = 0
            if text:
                try:
                    data = json.loads(text)
                except ValueError:
                    data = {}
                if isinstance(data, dict):
                    since = None if data.get("since") is None else str(data["since"])
                    seen = len(data.get("seen") or {})
            out.append(Cursor(str(resource), since, seen, last_ok, full_at))
        return out

    def drift(self, tenant: str, samples: int = 10) -> Drift:
        # Candidates by SQL, then the reconcilers' own definition decides.
        rows = self.db.conn.execute(
            "SELECT key, value FROM state WHERE tenant = ? AND kind = 'stock' AND ("
            "CAST(json_extract(value, '$.to_fx') AS REAL) != 0 OR "
            "CAST(json_extract(value, '$.to_till') AS REAL) != 0 OR "
            "json_extract(value, '$.fx_inflight') IS NOT NULL OR "
            "json_extract(value, '$.till_inflight') IS NOT NULL) ORDER BY key",
            (tenant,),
        ).fetchall()
        stock: list[str] = []
        for key, value in rows:
            if stock_drifts(json.loads(value), self.record(tenant, "art.want", str(key))):
                stock.append(str(key))
        rows = self.db.conn.execute(
            "SELECT w.key, w.value, t.value FROM state w LEFT JOIN state t ON "
            "t.tenant = w.tenant AND t.kind = 'art.till' AND t.key = w.key "
            "WHERE w.tenant = ? AND w.kind = 'art.want' ORDER BY w.key",
            (tenant,),
        ).fetchall()
        articles = [
            str(key)
            for key, want_text, till_text in rows
            if article_drifts(json.loads(want_text), json.loads(till_text) if till_text else None)
        ]
        return Drift(len(stock), len(articles), tuple(stock[:samples]), tuple(articles[:samples]))

    def pending(self, tenant: str | None = None) -> list[PendingGroup]:
        sql = (
            "SELECT tenant, target, type, COUNT(*), MIN(created_at) FROM outbox "
            "WHERE target IN ('fortnox', 'till') AND status = 'pending'"
        )
        params: tuple[str, ...] = ()
        if tenant is not None:
            sql += " AND tenant = ?"
            params = (tenant,)
        rows = self.db.conn.execute(sql + " GROUP BY tenant, target, type", params).fetchall()
        return [PendingGroup(r[0], r[1], r[2], int(r[3]), float(r[4])) for r in rows]

    def oldest_pending(self, tenant: str) -> PendingCommand | None:
        row = self.db.conn.execute(
            "SELECT command_id, tenant, target, type, attempts, created_at, next_at, last_error "
            "FROM outbox WHERE target IN ('fortnox', 'till') AND tenant = ? "
            "AND status = 'pending' ORDER BY created_at, seq LIMIT 1",
            (tenant,),
        ).fetchone()
        if row is None:
            return None
        return PendingCommand(
            row[0], row[1], row[2], row[3], int(row[4]), float(row[5]), float(row[6]), row[7]
        )

    def _dead_letter(self, row: Sequence[Any]) -> DeadLetterRow:
        return DeadLetterRow(
            id=row[0],
            tenant=row[1],
            topic=row[2],
            type=row[3],
            payload=bytes(row[4]),
            error=ShopError.model_validate_json(row[5]),
            status=row[6],
            created_at=float(row[7]),
            resolved_at=None if row[8] is None else float(row[8]),
        )

    _DL_COLUMNS = "id, tenant, topic, type, payload, error, status, created_at, resolved_at"

    def dead_letters(
        self, *, tenant: str | None = None, status: str = "open", limit: int | None = None
    ) -> list[DeadLetterRow]:
        sql = f"SELECT {self._DL_COLUMNS} FROM dead_letters WHERE status = ?"
        params: list[object] = [status]
        if tenant is not None:
            sql += " AND tenant = ?"
            params.append(tenant)
        sql += " ORDER BY created_at, id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [self._dead_letter(r) for r in self.db.conn.execute(sql, params).fetchall()]

    def dead_letter(self, dead_letter_id: str) -> DeadLetterRow | None:
        row = self.db.conn.execute(
            f"SELECT {self._DL_COLUMNS} FROM dead_letters WHERE id = ?", (dead_letter_id,)
        ).fetchone()
        return None if row is None else self._dead_letter(row)

    def open_dead_letters(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        rows = self.db.conn.execute(
            "SELECT tenant, type, COUNT(*) FROM dead_letters WHERE status = 'open' "
            "GROUP BY tenant, type"
        ).fetchall()
        for tenant, type_, n in rows:
            out.setdefault(str(tenant), {})[str(type_)] = int(n)
        return out

    # -- writes ----------------------------------------------------------------------------

    def atomic(self) -> AbstractContextManager[Any]:
        return self.db.transaction()

    def append(self, message: Envelope) -> None:
        # The log draws sequence numbers from the database, so any writer may append.
        self.log.append(message)

    def requeue(self, command_id: str) -> bool:
        with self.db.transaction():
            return self.outbox.requeue(command_id)

    def discard(self, command_id: str) -> bool:
        with self.db.transaction():
            return self.outbox.discard(command_id)

    def resolve_dead_letter(self, dead_letter_id: str, status: str) -> bool:
        with self.db.transaction():
            return self.dead.resolve(dead_letter_id, status)

    def replay(self, row: DeadLetterRow) -> bool:
        try:
            message = registry.parse(row.payload)
            topic = Topic(row.topic)
        except (ValidationError, ValueError):
            return False
        self.log.append_raw(topic, message, row.payload)
        return True

    def retrying(self, tenant: str | None = None, limit: int | None = None) -> list[PendingCommand]:
        rows = (self.outbox.get(p.command_id) for p in self.outbox.retrying(tenant, limit))
        return [_pending_command(row) for row in rows if row is not None]

    def command(self, command_id: str) -> tuple[PendingCommand, str] | None:
        row = self.outbox.get(command_id)
        return None if row is None else (_pending_command(row), row.status)

    def retry_command_now(self, command_id: str) -> bool:
        with self.db.transaction():
            return self.outbox.retry_now(command_id)

    def cancel_command(self, command_id: str, reason: str) -> bool:
        from engine.embedded.edge import Edge  # the embedded runtime's one settle

        return Edge(self.db).cancel(command_id, reason) is not None


def _pending_command(row: OutboxRow) -> PendingCommand:
    pending = row.pending
    return PendingCommand(
        command_id=pending.command_id,
        tenant=pending.tenant,
        target=pending.target,
        type=pending.type,
        attempts=pending.attempts,
        created_at=row.created_at,
        next_at=pending.next_at,
        last_error=pending.last_error,
        lane=row.lane,
    )


# --- runtime probes ---------------------------------------------------------------------------


class Throughput:
    """Messages per second over a sliding window, by topic (fed by the runtime)."""

    def __init__(self, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._clock = clock
        self._started = clock()
        self._events: deque[tuple[float, str, int]] = deque()

    def add(self, topic: str, count: int) -> None:
        if count > 0:
            self._events.append((self._clock(), topic, count))
            self._trim(self._clock())

    def add_types(self, by_type: Mapping[str, int]) -> None:
        for message_type, count in by_type.items():
            self.add(topic_of(message_type), count)

    def _trim(self, now: float) -> None:
        while self._events and self._events[0][0] < now - self.window:
            self._events.popleft()

    def rates(self) -> dict[str, float]:
        now = self._clock()
        self._trim(now)
        span = max(1.0, min(self.window, now - self._started))
        totals: dict[str, int] = {}
        for _, topic, count in self._events:
            totals[topic] = totals.get(topic, 0) + count
        return {topic: n / span for topic, n in sorted(totals.items())}


class EmbeddedProbe:
    """:class:`RuntimeProbe` of the embedded runtime: one process, one partition per topic.

    Without ``limiters`` and ``throughput`` (the CLI reading a database) it reports lag only.
    """

    def __init__(
        self,
        db: Database,
        *,
        consumer: str = "reconciler",
        limiters: LimiterRegistry | None = None,
        throughput: Throughput | None = None,
        running: bool = True,
    ) -> None:
        self.db = db
        self.consumer = consumer
        self.limiters = limiters
        self._throughput = throughput
        self.running = running
        self._log = Log(db)
        self._offsets = Offsets(db)

    @property
    def name(self) -> str:
        return "embedded" if self.running else "embedded (not running)"

    def lag(self) -> list[TopicLag]:
        ends = self._log.end_offsets()
        done = self._offsets.get(self.consumer)
        return [
            TopicLag(topic.value, None, ends.get(topic, 0), done.get(topic, 0))
            for topic in RECONCILED_TOPICS
        ]

    def throughput(self) -> dict[str, float]:
        return {} if self._throughput is None else self._throughput.rates()

    def workers(self) -> list[WorkerAssignment]:
        if not self.running:
            return []
        tenants = int(self.db.conn.execute("SELECT COUNT(*) FROM tenants").fetchone()[0])
        return [
            WorkerAssignment(
                worker=f"embedded@{socket.gethostname()}:{os.getpid()}",
                partitions=None,
                tenants=tenants,
                detail="one process runs every tenant (no partitions)",
            )
        ]

    def budgets(self) -> list[Budget]:
        if self.limiters is None:
            return []
        out: list[Budget] = []
        for (client_id, tenant), stats in sorted(self.limiters.stats().items()):
            limiter = self.limiters.get(client_id, tenant)
            out.append(
                Budget(
                    client_id=client_id,
                    tenant=tenant,
                    in_window=limiter.in_window(),
                    limit=limiter.limit,
                    window_seconds=limiter.period,
                    acquired=stats.acquired,
                    waited=stats.waited,
                    mean_wait=stats.mean_wait,
                    max_wait=stats.max_wait,
                    penalties=stats.penalties,
                    waiting_now=stats.waiting_now,
                )
            )
        return out


# --- status lights ----------------------------------------------------------------------------


class Light(StrEnum):
    GREEN = "green"
    AMBER = "amber"
    RED = "red"
    #: The flow is turned off in the tenant's settings (and nothing is wrong with it).
    OFF = "off"

    @property
    def rank(self) -> int:
        return {Light.OFF: 0, Light.GREEN: 1, Light.AMBER: 2, Light.RED: 3}[self]


def worst(lights: Sequence[Light]) -> Light:
    return max(lights, key=lambda light: light.rank, default=Light.OFF)


@dataclass(frozen=True, slots=True)
class FlowFacts:
    """Everything a flow's light is judged on."""

    flow: str
    enabled: bool
    paused: ShopError | None = None
    record: Record | None = None
    dead_letters: int = 0
    pending: int = 0
    oldest_pending: float | None = None
    #: Items waiting on an error the shop must fix (Z-reports, invoices).
    blocked: int = 0
    blocked_error: str | None = None
    #: Items waiting for something that comes by itself (master data, a customer).
    waiting: int = 0
    #: Articles held back by a barcode conflict.
    conflicts: int = 0
    poll_last_ok: float | None = None


@dataclass(frozen=True, slots=True)
class FlowStatus:
    flow: str
    light: Light
    reasons: tuple[str, ...]
    last_ok: str | None = None
    done: int = 0
    rejected: int = 0
    retrying: int = 0
    error: ShopError | None = None

    @property
    def title(self) -> str:
        return FLOW_TITLES.get(self.flow, self.flow)


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def age_text(seconds: float | None) -> str:
    return "—" if seconds is None else _age(seconds)


def _iso_ts(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def judge_flow(facts: FlowFacts, now: float) -> FlowStatus:
    """A flow's light and the reasons for it.

    red: a person must act — the tenant is paused, dead letters are open, items wait on an error
    the shop must fix, or a command has been pending for an hour.
    amber: degraded but self-healing or informational — commands are being retried, a command
    has been pending for 5 minutes, items wait for master data or a customer, articles are held
    back by a barcode conflict, the last command failed with no success since, or the Fortnox
    poll stream has not succeeded for 15 minutes.
    green: none of that. off: the flow is turned off and nothing above applies.
    """
    red: list[str] = []
    amber: list[str] = []
    record = facts.record or {}
    if facts.paused is not None and facts.enabled:
        red.append(f"tenant paused: {facts.paused.message}")
    if facts.dead_letters:
        red.append(f"{facts.dead_letters} dead letter(s) waiting for an operator")
    if facts.blocked:
        detail = f": {facts.blocked_error}" if facts.blocked_error else ""
        red.append(f"{facts.blocked} item(s) waiting on an error the shop must fix{detail}")
    if facts.oldest_pending is not None:
        age = now - facts.oldest_pending
        if age >= RED_PENDING_SECONDS:
            red.append(f"oldest pending command waits for {_age(age)}")
        elif age >= AMBER_PENDING_SECONDS:
            amber.append(f"oldest pending command waits for {_age(age)}")
    last_ok = _iso_ts(record.get("last_ok"))
    last_error = _iso_ts(record.get("last_error"))
    failing_since_ok = last_error is not None and (last_ok is None or last_error > last_ok)
    if failing_since_ok and record.get("error") and not facts.dead_letters:
        amber.append("the last command failed and nothing succeeded since")
    elif failing_since_ok and int(record.get("retrying", 0)):
        amber.append("commands are being retried")
    if facts.waiting:
        amber.append(f"{facts.waiting} item(s) waiting for Fortnox data or a customer")
    if facts.conflicts:
        amber.append(f"{facts.conflicts} article(s) held back by a barcode conflict")
    if facts.enabled and facts.paused is None and facts.poll_last_ok is not None:
        since_poll = now - facts.poll_last_ok
        if since_poll >= STALE_POLL_SECONDS:
            amber.append(f"no successful Fortnox poll for {_age(since_poll)}")
    error = None
    if isinstance(record.get("error"), dict):
        try:
            error = ShopError.model_validate(record["error"])
        except ValidationError:
            error = None
    if red:
        light, reasons = Light.RED, red + amber
    elif amber:
        light, reasons = Light.AMBER, amber
    elif not facts.enabled:
        light, reasons = Light.OFF, ["turned off in the tenant's settings"]
    else:
        light = Light.GREEN
        ok = record.get("last_ok")
        reasons = [f"last success {ok}" if ok else "nothing to do yet"]
        if facts.pending:
            reasons.append(f"{facts.pending} command(s) on their way")
    return FlowStatus(
        flow=facts.flow,
        light=light,
        reasons=tuple(reasons),
        last_ok=record.get("last_ok"),
        done=int(record.get("done", 0)),
        rejected=int(record.get("rejected", 0)),
        retrying=int(record.get("retrying", 0)),
        error=error,
    )


# --- views ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TenantSummary:
    tenant: str
    name: str
    paused: ShopError | None
    paused_at: str | None
    flows: tuple[FlowStatus, ...]
    dead_letters: int
    pending: int
    oldest_pending: float | None

    @property
    def light(self) -> Light:
        return worst([f.light for f in self.flows])


@dataclass(frozen=True, slots=True)
class TenantDetail:
    summary: TenantSummary
    cursors: tuple[Cursor, ...]
    counts: dict[str, int]
    drift: Drift
    depth: dict[str, int]
    oldest: PendingCommand | None
    dead_letters: tuple[DeadLetterRow, ...]
    merges: tuple[tuple[str, Record], ...]
    conflicts: tuple[tuple[str, Record], ...]
    queues: tuple[tuple[str, Record], ...]
    exclusions: tuple[str, ...]
    zreports_waiting: tuple[tuple[str, Record], ...]
    invoices_waiting: tuple[tuple[str, Record], ...]
    reports: tuple[tuple[str, Record], ...]
    warnings: tuple[str, ...]
    #: Absolute stock writes a foreign change overlapped (possible lost sales), newest first.
    possible_lost_sales: tuple[tuple[str, Record], ...] = ()
    #: The tenant's ``stock.mode`` ("off" when stock sync is off).
    stock_mode: str = "off"


@dataclass(frozen=True, slots=True)
class SystemView:
    runtime: str
    lag: tuple[TopicLag, ...]
    throughput: dict[str, float]
    budgets: tuple[Budget, ...]
    workers: tuple[WorkerAssignment, ...]
    pending: dict[str, int]
    oldest_pending: dict[str, float]
    dead_letters: int
    tenants: int
    paused: int


@dataclass(frozen=True, slots=True)
class ActionResult:
    action: str
    tenant: str
    dead_letter_id: str | None
    message_id: str
    requeued: bool = False
    replayed: bool = False

    def as_dict(self) -> dict[str, object]:
        return {
            "action": self.action,
            "tenant": self.tenant,
            "dead_letter_id": self.dead_letter_id,
            "message_id": self.message_id,
            "requeued": self.requeued,
            "replayed": self.replayed,
        }


#: Counts shown on the tenant page: record kind -> label.
COUNTED_KINDS: dict[str, str] = {
    "art.fx": "Fortnox articles known",
    "art.till": "articles sent to the till",
    "cust.till": "till customers",
    "cust.fx": "Fortnox customers known",
    "stock": "stock articles",
    "zr": "Z-reports",
    "inv": "invoices",
    "pay": "payments",
    "ledger": "ledger vouchers",
    "cmd": "commands awaiting an outcome",
}


def _shop_error(value: object) -> ShopError | None:
    if not isinstance(value, dict):
        return None
    try:
        return ShopError.model_validate(value)
    except ValidationError:
        return None


class Ops:
    """The read model and the operator's actions, over any runtime."""

    def __init__(
        self,
        store: OpsStore,
        probe: RuntimeProbe,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.probe = probe
        self.clock = clock

    # -- reads -----------------------------------------------------------------------------

    def settings(self, tenant: str) -> TenantSettings:
        record = self.store.record(tenant, "tenant", "settings")
        if record is None:
            return TenantSettings()
        try:
            return TenantSettings.model_validate(record["settings"])
        except (ValidationError, KeyError):
            return TenantSettings()

    def overview(self) -> list[TenantSummary]:
        dead = self.store.open_dead_letters()
        pending: dict[str, list[PendingGroup]] = {}
        for group in self.store.pending():
            pending.setdefault(group.tenant, []).append(group)
        return [
            self._summary(ref, dead.get(ref.id, {}), pending.get(ref.id, []))
            for ref in self.store.tenants()
        ]

    def summary(self, tenant: str) -> TenantSummary | None:
        ref = next((t for t in self.store.tenants() if t.id == tenant), None)
        if ref is None:
            return None
        dead = self.store.open_dead_letters().get(tenant, {})
        return self._summary(ref, dead, self.store.pending(tenant))

    def _summary(
        self, ref: TenantRef, dead: Mapping[str, int], pending: Sequence[PendingGroup]
    ) -> TenantSummary:
        tenant = ref.id
        now = self.clock()
        status = self.store.record(tenant, "tenant", "status") or {}
        paused = _shop_error(status.get("error")) if status.get("paused") else None
        if status.get("paused") and paused is None:
            paused = shop_error(ErrorKind.PAUSED_BY_OPERATOR, detail="no reason was recorded")
        settings = self.settings(tenant)
        records = dict(self.store.records(tenant, "flow"))
        cursors = {c.resource: c for c in self.store.cursors(tenant)}
        waiting = {
            "zreports": self.store.records(tenant, "zr", where={"status": ["waiting"]}),
            "invoices": self.store.records(tenant, "inv", where={"status": ["waiting"]}),
        }
        conflicts = self.store.count_by(tenant, "art.want", "reason").get("barcode_conflict", 0)
        flows: list[FlowStatus] = []
        for flow in FLOWS:
            dead_n = sum(n for t, n in dead.items() if flow_of(t) == flow)
            groups = [g for g in pending if flow_of(g.type) == flow]
            blocked = [r for _, r in waiting.get(flow, []) if _shop_error(r.get("error"))]
            first_error = _shop_error(blocked[0].get("error")) if blocked else None
            cursor = cursors.get(POLLED_BY.get(flow, ""))
            facts = FlowFacts(
                flow=flow,
                enabled=bool(getattr(settings, flow).enabled),
                paused=paused,
                record=records.get(flow),
                dead_letters=dead_n,
                pending=sum(g.count for g in groups),
                oldest_pending=min((g.oldest for g in groups), default=None),
                blocked=len(blocked),
                blocked_error=None if first_error is None else first_error.message,
                waiting=len(waiting.get(flow, [])) - len(blocked),
                conflicts=conflicts if flow == "articles" else 0,
                poll_last_ok=None if cursor is None else cursor.last_ok,
            )
            flows.append(judge_flow(facts, now))
        return TenantSummary(
            tenant=tenant,
            name=ref.name,
            paused=paused,
            paused_at=status.get("at") if paused else None,
            flows=tuple(flows),
            dead_letters=sum(dead.values()),
            pending=sum(g.count for g in pending),
            oldest_pending=min((g.oldest for g in pending), default=None),
        )

    def tenant(self, tenant: str, *, limit: int = 25) -> TenantDetail | None:
        summary = self.summary(tenant)
        if summary is None:
            return None
        store = self.store
        kinds = store.kind_counts(tenant)
        counts = {label: kinds.get(kind, 0) for kind, label in COUNTED_KINDS.items()}
        depth: dict[str, int] = {}
        for group in store.pending(tenant):
            depth[group.target] = depth.get(group.target, 0) + group.count
        merges = sorted(
            store.records(tenant, "stock.merge"), key=lambda kv: str(kv[1].get("at")), reverse=True
        )[:limit]
        reports = sorted(
            store.records(tenant, "report"), key=lambda kv: str(kv[1].get("at")), reverse=True
        )[:limit]
        overlaps = sorted(
            store.records(tenant, "stock.overlap"),
            key=lambda kv: str(kv[1].get("at")),
            reverse=True,
        )[:limit]
        warnings = (store.record(tenant, "tenant", "warnings") or {}).get("warnings") or []
        return TenantDetail(
            summary=summary,
            cursors=tuple(store.cursors(tenant)),
            counts=counts,
            drift=store.drift(tenant),
            depth=depth,
            oldest=store.oldest_pending(tenant),
            dead_letters=tuple(store.dead_letters(tenant=tenant, limit=200)),
            merges=tuple(merges),
            conflicts=tuple(
                store.records(tenant, "art.want", where={"reason": ["barcode_conflict"]})[:limit]
            ),
            queues=tuple(store.records(tenant, "barcode.wait", limit=limit)),
            exclusions=tuple(
                k for k, _ in store.records(tenant, "art.want", where={"reason": ["excluded"]})
            ),
            zreports_waiting=tuple(
                store.records(tenant, "zr", where={"status": ["waiting"]}, limit=limit)
            ),
            invoices_waiting=tuple(
                store.records(tenant, "inv", where={"status": ["waiting"]}, limit=limit)
            ),
            reports=tuple(reports),
            warnings=tuple(str(w) for w in warnings),
            possible_lost_sales=tuple(overlaps),
            stock_mode=self._stock_mode(tenant),
        )

    def _stock_mode(self, tenant: str) -> str:
        stock = self.settings(tenant).stock
        return stock.mode.value if stock.enabled else "off"

    def system(self) -> SystemView:
        pending: dict[str, int] = {}
        oldest: dict[str, float] = {}
        for group in self.store.pending():
            pending[group.target] = pending.get(group.target, 0) + group.count
            oldest[group.target] = min(oldest.get(group.target, group.oldest), group.oldest)
        dead = self.store.open_dead_letters()
        tenants = self.store.tenants()
        paused = sum(
            1 for t in tenants if (self.store.record(t.id, "tenant", "status") or {}).get("paused")
        )
        return SystemView(
            runtime=self.probe.name,
            lag=tuple(self.probe.lag()),
            throughput=self.probe.throughput(),
            budgets=tuple(self.probe.budgets()),
            workers=tuple(self.probe.workers()),
            pending=pending,
            oldest_pending=oldest,
            dead_letters=sum(sum(v.values()) for v in dead.values()),
            tenants=len(tenants),
            paused=paused,
        )

    def dead_letters(
        self, *, tenant: str | None = None, status: str = "open", limit: int | None = None
    ) -> list[DeadLetterRow]:
        return self.store.dead_letters(tenant=tenant, status=status, limit=limit)

    # -- actions ---------------------------------------------------------------------------

    def _known(self, tenant: str) -> None:
        if not any(t.id == tenant for t in self.store.tenants()):
            raise NotFound(f"no tenant {tenant!r}")

    def resume(self, tenant: str, reason: str = "resumed by operator") -> ActionResult:
        self._known(tenant)
        message = TenantResumed(
            id=f"ops-resume-{uuid.uuid4().hex}",
            tenant=tenant,
            occurred_at=utcnow(),
            source=Source.OPERATOR,
            data=TenantResumedData(reason=reason[:200] or "resumed by operator"),
        )
        self.store.append(message)
        log.info("ops.tenant.resumed", tenant=tenant, message_id=message.id, reason=reason)
        return ActionResult("resume", tenant, None, message.id)

    def pause(self, tenant: str, reason: str) -> ActionResult:
        """Pause a tenant's Fortnox session by hand (the shop sees ``reason``)."""
        self._known(tenant)
        text = reason.strip()[:300] or "maintenance"
        error = shop_error(ErrorKind.PAUSED_BY_OPERATOR, detail=text, paused_by="operator")
        message = TenantPaused(
            id=f"ops-pause-{uuid.uuid4().hex}",
            tenant=tenant,
            occurred_at=utcnow(),
            source=Source.OPERATOR,
            data=TenantPausedData(error=error),
        )
        self.store.append(message)
        log.info("ops.tenant.paused", tenant=tenant, message_id=message.id, reason=text)
        return ActionResult("pause", tenant, None, message.id)

    def _open_letter(self, dead_letter_id: str) -> DeadLetterRow:
        row = self.store.dead_letter(dead_letter_id)
        if row is None:
            raise NotFound(f"no dead letter {dead_letter_id!r}")
        if row.status != "open":
            raise Conflict(f"dead letter {dead_letter_id!r} is already {row.status}")
        return row

    def _action(self, row: DeadLetterRow, action: Literal["retry", "discard"]) -> DeadLetterAction:
        return DeadLetterAction(
            id=f"ops-{action}-{uuid.uuid4().hex}",
            tenant=row.tenant,
            occurred_at=utcnow(),
            data=DeadLetterActionData(dead_letter_id=row.id, action=action),
        )

    def retry(self, dead_letter_id: str) -> ActionResult:
        """Retry a dead letter.

        A ``sync.deadletter.action`` (retry) goes on the control topic: a flow with its own retry
        makes a new command from its current state. When there is none (no ``cmd`` record for
        the command, or a flow without retry), the dead command itself is requeued. A parked
        message (not a command) is appended to its topic again.
        """
        row = self._open_letter(dead_letter_id)
        message = self._action(row, "retry")
        requeued = replayed = False
        with self.store.atomic():
            self.store.append(message)
            if row.is_command:
                cmd = self.store.record(row.tenant, "cmd", row.id)
                if cmd is None or cmd.get("flow") not in RETRY_FLOWS:
                    requeued = self.store.requeue(row.id)
            else:
                replayed = self.store.replay(row)
            self.store.resolve_dead_letter(row.id, "retried")
        log.info(
            "ops.deadletter.retried",
            tenant=row.tenant,
            message_id=message.id,
            dead_letter_id=row.id,
            command_type=row.type,
            requeued=requeued,
            replayed=replayed,
        )
        return ActionResult("retry", row.tenant, row.id, message.id, requeued, replayed)

    # -- commands still being retried ---------------------------------------------------------

    def retrying(self, tenant: str | None = None, limit: int | None = None) -> list[PendingCommand]:
        """Commands that failed and wait for their next attempt (head-of-line: each holds back
        only the later commands of its lane)."""
        return self.store.retrying(tenant, limit)

    def _pending_command(self, command_id: str) -> PendingCommand:
        found = self.store.command(command_id)
        if found is None:
            raise NotFound(f"no command {command_id!r}")
        command, status = found
        if status != "pending":
            raise Conflict(f"command {command_id!r} is {status}, not waiting to be retried")
        return command

    def retry_command(self, command_id: str) -> ActionResult:
        """Attempt a pending command at once instead of at the end of its backoff."""
        command = self._pending_command(command_id)
        if not self.store.retry_command_now(command_id):
            raise Conflict(f"command {command_id!r} is no longer pending")
        log.info(
            "ops.command.retry_now",
            tenant=command.tenant,
            command_id=command_id,
            command_type=command.type,
            attempts=command.attempts,
        )
        return ActionResult("retry_now", command.tenant, None, command_id)

    def cancel_command(
        self, command_id: str, reason: str = "cancelled by operator"
    ) -> ActionResult:
        """Stop retrying a command: it is settled as refused and becomes a dead letter (retry
        or discard it there), and the commands behind it in its lane go on."""
        command = self._pending_command(command_id)
        if command.attempts == 0:
            raise Conflict(f"command {command_id!r} has not failed yet; it is not being retried")
        if not self.store.cancel_command(command_id, reason):
            raise Conflict(
                f"command {command_id!r} is being attempted right now; cancel it once the "
                "attempt is over"
            )
        log.info(
            "ops.command.cancelled", tenant=command.tenant, command_id=command_id, reason=reason
        )
        return ActionResult("cancel", command.tenant, command_id, command_id)

    def discard(self, dead_letter_id: str) -> ActionResult:
        row = self._open_letter(dead_letter_id)
        message = self._action(row, "discard")
        with self.store.atomic():
            self.store.append(message)
            if row.is_command:
                self.store.discard(row.id)
            self.store.resolve_dead_letter(row.id, "discarded")
        log.info(
            "ops.deadletter.discarded",
            tenant=row.tenant,
            message_id=message.id,
            dead_letter_id=row.id,
            command_type=row.type,
        )
        return ActionResult("discard", row.tenant, row.id, message.id)


# --- progress bars for long jobs --------------------------------------------------------------


@dataclass
class ProgressHandle:
    """What :func:`progress` yields: ``advance()`` after each item, ``note()`` to say what."""

    _progress: Progress | None
    _task: Any
    done: int = 0
    notes: list[str] = field(default_factory=list)

    def advance(self, steps: int = 1) -> None:
        self.done += steps
        if self._progress is not None:
            self._progress.advance(self._task, steps)

    def note(self, text: str) -> None:
        self.notes.append(text)
        if self._progress is not None:
            self._progress.update(self._task, description=text)


@contextmanager
def progress(
    total: int | None,
    description: str,
    *,
    console: Console | None = None,
    enabled: bool = True,
) -> Iterator[ProgressHandle]:
    """A rich progress bar on stderr for a long job::

        with progress(len(items), "retrying dead letters") as bar:
            for item in items:
                ...
                bar.advance()

    ``total=None`` shows a spinner without an end. With ``enabled=False`` (or when stderr is
    not a terminal and no ``console`` is given) nothing is drawn, but counting still works.
    """
    out = console or Console(stderr=True)
    if not enabled or (console is None and not out.is_terminal):
        yield ProgressHandle(None, None)
        return
    columns = [
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=out, transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield ProgressHandle(bar, task)


def money(value: object) -> str:
    """A decimal from a record, shown as the reconcilers keep it."""
    try:
        return format(Decimal(str(value)).normalize(), "f")
    except (InvalidOperation, ValueError):
        return str(value)
