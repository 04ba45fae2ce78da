"""The :class:`~engine.ops.ports.OpsStore` over an embedded-shaped SQLite database (the
embedded runtime's, or the Kafka deployment's read model)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import structlog
from pydantic_core import to_json

from engine.ops.records import Cursor, DeadLetterRow, Drift, PendingCommand, PendingGroup, TenantRef
from engine.store.db import Database
from engine.store.log import Log
from engine.store.outbox import DeadLetters, Outbox, OutboxRow
from engine.store.packing import ARTICLE_FAMILY, StateTable
from reconcilers.articles import TILL, WANT
from reconcilers.queries import article_drifts, stock_drifts
from reconcilers.state import Record
from reconcilers.stock import KIND as STOCK
from topics import registry
from topics.envelope import Envelope
from topics.errors import ShopError
from topics.names import Topic

log = structlog.get_logger("kassasync.ops")


def _matches(value: object, wanted: Sequence[str | int | bool]) -> bool:
    """A record's field is one of ``wanted`` (a JSON value: text only equals text, a number or
    a truth value only a number or a truth value)."""
    return any(value == want and isinstance(value, str) == isinstance(want, str) for want in wanted)


def _texts(wanted: Sequence[str | int | bool]) -> list[bytes]:
    """The JSON of wanted strings, each in any record text whose field equals it (none when a
    number or truth value is wanted: ``1`` and ``true`` match each other)."""
    if not all(isinstance(want, str) for want in wanted):
        return []
    return [to_json(want) for want in wanted]


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
        self.state = StateTable(db.conn)

    # -- reads -----------------------------------------------------------------------------

    def tenants(self) -> list[TenantRef]:
        rows = self.db.conn.execute(
            "SELECT id, COALESCE(json_extract(config, '$.name'), '') FROM tenants "
            "UNION SELECT DISTINCT tenant, '' FROM dead_letters "
            "WHERE tenant NOT IN (SELECT id FROM tenants) ORDER BY 1"
        ).fetchall()
        return [TenantRef(str(r[0]), str(r[1] or "")) for r in rows]

    def record(self, tenant: str, kind: str, key: str) -> Record | None:
        found = self.state.get(tenant, kind, key)
        return None if found is None else dict(found)

    def records(
        self,
        tenant: str,
        kind: str,
        *,
        where: Mapping[str, Sequence[str | int | bool]] | None = None,
        limit: int | None = None,
    ) -> list[tuple[str, Record]]:
        conditions = list((where or {}).items())
        found: list[tuple[str, Record]] = []
        # Rows that cannot hold a wanted text are not decoded (the dashboard asks this of every
        # article of every tenant): a string field equal to one holds the string's JSON.
        holding = [] if not conditions else _texts(conditions[0][1])
        for key, record in self.state.scan(tenant, kind, holding=holding):
            if limit is not None and len(found) >= limit:
                break
            if all(_matches(record.get(name), values) for name, values in conditions):
                found.append((key, dict(record)))
        if kind == "report" and not where:
            found += self._sie_file_reports(tenant)
        return found

    def _sie_file_reports(self, tenant: str) -> list[tuple[str, Record]]:
        """What became of the SIE files the till-PC agent uploaded (engine/gateway/sie_files.py
        keeps them beside the state: a refused file puts nothing on the log to replay)."""
        try:
            rows = self.db.conn.execute(
                "SELECT name, value FROM sie_file_reports WHERE tenant = ? ORDER BY name",
                (tenant,),
            ).fetchall()
        except sqlite3.OperationalError:  # a database no upload has touched: no table
            return []
        return [(f"sie-file:{name}", dict(json.loads(value))) for name, value in rows]

    def kind_counts(self, tenant: str) -> dict[str, int]:
        return self.state.counts(tenant)

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
        # An article's records share a row: one pass over the tenant's articles.
        stock: list[str] = []
        articles: list[str] = []
        for key, row in self.state.rows(tenant, ARTICLE_FAMILY):
            want = row.get(WANT)
            counted = row.get(STOCK)
            if counted is not None and stock_drifts(counted, want):
                stock.append(key)
            if want is not None and article_drifts(want, row.get(TILL)):
                articles.append(key)
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

    def settled_since(self, since: float) -> dict[str, int]:
        rows = self.db.conn.execute(
            "SELECT tenant, COUNT(*) FROM outbox WHERE status = 'done' AND done_at > ? "
            "GROUP BY tenant",
            (since,),
        ).fetchall()
        return {str(tenant): int(n) for tenant, n in rows}

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
        if row.unreadable() is not None:
            return False
        self.log.append_raw(Topic(row.topic), registry.parse(row.payload), row.payload)
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
