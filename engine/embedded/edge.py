"""What the I/O edges (executors, pollers, ingest) write to the embedded log, atomically."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import structlog

from engine.clock import utcnow
from engine.executors.pauses import Pauses
from engine.executors.ports import CursorUpdate
from engine.executors.settle import log_settled, settle_command
from engine.store.db import Database
from engine.store.log import Log
from engine.store.outbox import DeadLetters, Outbox, Pending
from engine.store.state import StateStore
from topics import registry
from topics.envelope import Envelope
from topics.errors import ErrorKind, ShopError, shop_error
from topics.outcomes import OutcomeStatus
from topics.registry import Packed

log = structlog.get_logger("kassasync.edge")


class Edge:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.log = Log(db)
        self.outbox = Outbox(db)
        self.dead = DeadLetters(db)
        self._pauses = Pauses(
            lambda tenant: StateStore(db).get(tenant, "tenant", "status"),
            lambda message: self.publish([message]),
        )

    # -- Fortnox facts, in the tenant's one I/O sequence -------------------------------------

    def next_fx_seq(self, tenant: str, count: int = 1) -> int:
        row = self.db.conn.execute(
            "INSERT INTO fx_seq (tenant, seq) VALUES (?, ?) ON CONFLICT (tenant) DO UPDATE "
            "SET seq = seq + excluded.seq RETURNING seq",
            (tenant, count),
        ).fetchone()
        return int(row[0]) - count + 1

    def publish(
        self,
        messages: Sequence[Envelope | Packed],
        *,
        cursor: CursorUpdate | None = None,
        fingerprint: tuple[str, str, str, str] | None = None,
    ) -> None:
        with self.db.transaction() as conn:
            self.log.append_many(messages)
            if cursor is not None:
                now = utcnow().timestamp()
                conn.execute(
                    "INSERT INTO fx_cursor (tenant, resource, cursor, last_ok, full_sync_at) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant, resource) DO UPDATE SET "
                    "cursor = excluded.cursor, last_ok = excluded.last_ok, "
                    "full_sync_at = COALESCE(excluded.full_sync_at, fx_cursor.full_sync_at)",
                    (
                        cursor.tenant,
                        cursor.resource,
                        cursor.cursor,
                        now,
                        now if cursor.full_sync else None,
                    ),
                )
            if fingerprint is not None:
                conn.execute(
                    "INSERT INTO fx_seen (tenant, resource, key, fingerprint) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (tenant, resource, key) DO UPDATE SET "
                    "fingerprint = excluded.fingerprint",
                    fingerprint,
                )

    def cursor(self, tenant: str, resource: str) -> tuple[str | None, float | None]:
        row = self.db.conn.execute(
            "SELECT cursor, full_sync_at FROM fx_cursor WHERE tenant = ? AND resource = ?",
            (tenant, resource),
        ).fetchone()
        return (None, None) if row is None else (row[0], row[1])

    def fingerprint(self, tenant: str, resource: str, key: str) -> str | None:
        row = self.db.conn.execute(
            "SELECT fingerprint FROM fx_seen WHERE tenant = ? AND resource = ? AND key = ?",
            (tenant, resource, key),
        ).fetchone()
        return None if row is None else str(row[0])

    def head(self, target: str, tenant: str) -> Pending | None:
        return self.outbox.head(target, tenant)

    def tenants_with_work(self, target: str) -> list[str]:
        return self.outbox.tenants_with_work(target)

    # -- outcomes -----------------------------------------------------------------------------

    def settle(
        self,
        pending: Pending,
        status: OutcomeStatus,
        *,
        result: dict[str, str] | None = None,
        error: ShopError | None = None,
        facts: list[Envelope] | None = None,
        retry_in: float = 0.0,
    ) -> None:
        """Record what happened to a command (:func:`settle_command` decides what that is):
        facts, outcome, dead letter and outbox row in one transaction."""
        with self.db.transaction():
            attempt: int | None = None
            if status is OutcomeStatus.DONE:
                self.outbox.done(pending.command_id)
            elif status is OutcomeStatus.REJECTED:
                self.outbox.dead(pending.command_id, error.message if error else "refused")
            elif status is OutcomeStatus.RETRYING:
                # The outbox counts the attempts (the row's count, should it be ahead).
                attempt = self.outbox.retry_later(
                    pending.command_id, retry_in, error.message if error else "retrying"
                )
            settled = settle_command(
                pending,
                status,
                at=utcnow(),
                attempt=attempt,
                result=result,
                error=error,
                facts=facts or (),
            )
            for fact in settled.facts:
                self.log.append(fact)
            if settled.dead_letter is not None:
                letter = settled.dead_letter.data
                self.dead.add(
                    letter.dead_letter_id,
                    settled.dead_letter.tenant,
                    letter.topic,
                    letter.message_type,
                    pending.payload,
                    letter.error,
                )
            if settled.logged:
                self.log.append(settled.outcome)
        log_settled(log, settled)

    def cancel(self, command_id: str, reason: str) -> Pending | None:
        """An operator gives up on a command that is waiting to be retried: it is settled as
        refused (an outcome the reconcilers handle as a refusal, and a dead letter the operator
        can retry or discard later). None when it is not waiting (done, dead, never tried, or
        due — an executor may be attempting it right now)."""
        with self.db.transaction():
            found = self.outbox.get(command_id)
            if found is None:
                return None
            pending, status = found.pending, found.status
            if status != "pending" or pending.attempts == 0 or pending.next_at <= time.time():
                return None
            error = shop_error(ErrorKind.CANCELLED_BY_OPERATOR, detail=reason)
            self.settle(pending, OutcomeStatus.REJECTED, error=error)
        log.warning(
            "command.cancelled",
            tenant=pending.tenant,
            command_id=command_id,
            command_type=pending.type,
            attempts=pending.attempts,
            reason=reason,
        )
        return pending

    def remember_intent(self, command_id: str, intent: dict[str, Any]) -> None:
        """Write down what a write is about to do, before it leaves (read back after a crash);
        durable: it must survive a power loss, or the write could be repeated blindly."""
        with self.db.transaction(durable=True) as conn:
            conn.execute(
                "UPDATE outbox SET intent = ? WHERE command_id = ?",
                (json.dumps(intent), command_id),
            )

    def intent(self, pending: Pending) -> dict[str, Any] | None:
        if not pending.intent:
            return None
        data = json.loads(pending.intent)
        return data if isinstance(data, dict) else None

    # -- tenants ------------------------------------------------------------------------------

    def paused(self, tenant: str) -> ShopError | None:
        return self._pauses.paused(tenant)

    def pause(self, tenant: str, error: ShopError) -> None:
        self._pauses.pause(tenant, error)


def dump(message: Envelope) -> bytes:
    return registry.dump(message)
