"""The transactional outbox: commands wait here, in order per tenant, target and lane
(engine/store/lanes.py), until an executor has delivered them (or an operator has dealt with
them)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.store import compact
from engine.store.db import Database
from engine.store.lanes import lane_of
from topics import registry
from topics.envelope import Envelope
from topics.errors import ShopError
from topics.names import Topic

TARGETS = {Topic.FORTNOX_COMMANDS.value: "fortnox", Topic.TILL_COMMANDS.value: "till"}


@dataclass(frozen=True, slots=True)
class Pending:
    seq: int
    command_id: str
    tenant: str
    target: str
    type: str
    payload: bytes
    attempts: int
    next_at: float
    last_error: str | None
    #: What an earlier attempt was about to do (JSON), written before it left.
    intent: str | None = None

    def command(self) -> Envelope:
        return registry.parse(self.payload)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    pending: Pending
    status: str
    lane: str
    created_at: float


_COLUMNS = (
    "o.seq, o.command_id, o.tenant, o.target, o.type, o.payload, o.attempts, o.next_at, "
    "o.last_error, o.intent"
)
#: No earlier pending command in the same lane.
_FIRST_IN_LANE = (
    "NOT EXISTS (SELECT 1 FROM outbox p WHERE p.target = o.target AND p.tenant = o.tenant "
    "AND p.lane = o.lane AND p.status = 'pending' AND p.seq < o.seq)"
)


def _pending(row: Sequence[Any]) -> Pending:
    return Pending(
        seq=row[0],
        command_id=row[1],
        tenant=row[2],
        target=row[3],
        type=row[4],
        payload=compact.payload_of(bytes(row[5])),
        attempts=row[6],
        next_at=row[7],
        last_error=row[8],
        intent=row[9],
    )


def _packed(command: Envelope, payload: bytes) -> bytes:
    kind: str = command.type  # type: ignore[attr-defined]
    at = command.occurred_at.isoformat()
    if not compact.packable(kind, command.id, at):
        return payload
    return compact.pack(kind, command.id, at, payload)


class Outbox:
    def __init__(self, db: Database) -> None:
        self.db = db

    def enqueue(self, command: Envelope, payload: bytes) -> None:
        """Inside the reconciler's transaction. A command already queued is not queued twice."""
        self.enqueue_many([(command, payload)])

    def enqueue_many(
        self, commands: Sequence[tuple[Envelope, bytes]], stored: Sequence[bytes] | None = None
    ) -> None:
        """:meth:`enqueue` for several commands, in order, in one statement. A command is kept
        packed (engine/store/compact.py), as its log row is; ``stored``: what the commands' log
        rows keep (``Log.append_many``'s answer), kept as it is instead of packed again."""
        if stored is not None and len(stored) != len(commands):
            raise ValueError("one stored payload per command")
        now = time.time()
        self.db.conn.executemany(
            "INSERT OR IGNORE INTO outbox "
            "(command_id, tenant, target, type, payload, created_at, lane) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    command.id,
                    command.tenant,
                    TARGETS[str(command.TOPIC)],
                    command.type,  # type: ignore[attr-defined]
                    _packed(command, payload) if stored is None else stored[n],
                    now,
                    lane_of(command.type, command),  # type: ignore[attr-defined]
                )
                for n, (command, payload) in enumerate(commands)
            ],
        )

    def head(self, target: str, tenant: str, now: float | None = None) -> Pending | None:
        """The command of a tenant for a target to execute next: the oldest one that is due and
        first in its lane; when none is due, the first of a lane that is due soonest (the caller
        waits for its ``next_at``). A command waiting to be retried holds back its lane only."""
        moment = time.time() if now is None else now
        row = self.db.conn.execute(
            f"SELECT {_COLUMNS} FROM outbox o WHERE target = ? AND tenant = ? "
            f"AND status = 'pending' AND next_at <= ? AND {_FIRST_IN_LANE} ORDER BY seq LIMIT 1",
            (target, tenant, moment),
        ).fetchone()
        if row is None:
            row = self.db.conn.execute(
                f"SELECT {_COLUMNS} FROM outbox o WHERE target = ? AND tenant = ? "
                f"AND status = 'pending' AND {_FIRST_IN_LANE} ORDER BY next_at, seq LIMIT 1",
                (target, tenant),
            ).fetchone()
        return None if row is None else _pending(row)

    def retrying(self, tenant: str | None = None, limit: int | None = None) -> list[Pending]:
        """Commands still pending after at least one failed attempt, oldest first."""
        sql = f"SELECT {_COLUMNS} FROM outbox o WHERE status = 'pending' AND attempts > 0"
        params: list[object] = []
        if tenant is not None:
            sql += " AND tenant = ?"
            params.append(tenant)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_pending(row) for row in self.db.conn.execute(sql, params).fetchall()]

    def get(self, command_id: str) -> OutboxRow | None:
        """A command of the outbox, whatever its status."""
        row = self.db.conn.execute(
            f"SELECT {_COLUMNS}, o.status, o.lane, o.created_at FROM outbox o WHERE command_id = ?",
            (command_id,),
        ).fetchone()
        if row is None:
            return None
        return OutboxRow(_pending(row), str(row[10]), str(row[11]), float(row[12]))

    def retry_now(self, command_id: str) -> bool:
        """A pending command is due at once (its backoff is cut short)."""
        cur = self.db.conn.execute(
            "UPDATE outbox SET next_at = 0 WHERE command_id = ? AND status = 'pending'",
            (command_id,),
        )
        return cur.rowcount > 0

    def tenants_with_work(self, target: str) -> list[str]:
        rows = self.db.conn.execute(
            "SELECT DISTINCT tenant FROM outbox WHERE target = ? AND status = 'pending'", (target,)
        ).fetchall()
        return [r[0] for r in rows]

    def done(self, command_id: str) -> None:
        self.db.conn.execute(
            "UPDATE outbox SET status = 'done', done_at = ?, attempts = attempts + 1 "
            "WHERE command_id = ?",
            (time.time(), command_id),
        )

    def dead(self, command_id: str, error: str) -> None:
        self.db.conn.execute(
            "UPDATE outbox SET status = 'dead', last_error = ?, attempts = attempts + 1 "
            "WHERE command_id = ?",
            (error, command_id),
        )

    def retry_later(self, command_id: str, delay: float, error: str) -> int:
        row = self.db.conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, next_at = ?, last_error = ? "
            "WHERE command_id = ? RETURNING attempts",
            (time.time() + delay, error, command_id),
        ).fetchone()
        return int(row[0]) if row else 0

    def requeue(self, command_id: str) -> bool:
        cur = self.db.conn.execute(
            "UPDATE outbox SET status = 'pending', next_at = 0 WHERE command_id = ? "
            "AND status = 'dead'",
            (command_id,),
        )
        return cur.rowcount > 0

    def discard(self, command_id: str) -> bool:
        cur = self.db.conn.execute(
            "UPDATE outbox SET status = 'discarded' WHERE command_id = ? AND status = 'dead'",
            (command_id,),
        )
        return cur.rowcount > 0

    def depth(self, tenant: str | None = None) -> dict[str, int]:
        sql = "SELECT target, COUNT(*) FROM outbox WHERE status = 'pending'"
        params: tuple[str, ...] = ()
        if tenant is not None:
            sql += " AND tenant = ?"
            params = (tenant,)
        rows = self.db.conn.execute(sql + " GROUP BY target", params).fetchall()
        return {t: int(n) for t, n in rows}

    def oldest_pending(self, tenant: str) -> float | None:
        row = self.db.conn.execute(
            "SELECT MIN(created_at) FROM outbox WHERE tenant = ? AND status = 'pending'", (tenant,)
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])


class DeadLetters:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(
        self,
        dead_letter_id: str,
        tenant: str,
        topic: str,
        type_: str,
        payload: bytes,
        error: ShopError,
    ) -> None:
        # A letter that was retried (or discarded) and fails again is open again, with the new
        # error: a command refused a second time must not stay out of sight.
        self.db.conn.execute(
            "INSERT INTO dead_letters "
            "(id, tenant, topic, type, payload, error, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET status = 'open', error = excluded.error, "
            "created_at = excluded.created_at, resolved_at = NULL "
            "WHERE dead_letters.status != 'open'",
            (dead_letter_id, tenant, topic, type_, payload, error.model_dump_json(), time.time()),
        )

    def list(self, tenant: str | None = None, status: str = "open") -> list[dict[str, object]]:
        sql = "SELECT id, tenant, topic, type, payload, error, status, created_at FROM dead_letters"
        sql += " WHERE status = ?"
        params: list[object] = [status]
        if tenant is not None:
            sql += " AND tenant = ?"
            params.append(tenant)
        rows = self.db.conn.execute(sql + " ORDER BY created_at", params).fetchall()
        return [
            {
                "id": r[0],
                "tenant": r[1],
                "topic": r[2],
                "type": r[3],
                "message": _readable(bytes(r[4])),
                "error": json.loads(r[5]),
                "status": r[6],
                "created_at": r[7],
            }
            for r in rows
        ]

    def get(self, dead_letter_id: str) -> dict[str, object] | None:
        for status in ("open", "retried", "discarded"):
            for item in self.list(status=status):
                if item["id"] == dead_letter_id:
                    return item
        return None

    def resolve(self, dead_letter_id: str, status: str) -> bool:
        cur = self.db.conn.execute(
            "UPDATE dead_letters SET status = ?, resolved_at = ? WHERE id = ? AND status = 'open'",
            (status, time.time(), dead_letter_id),
        )
        return cur.rowcount > 0

    def count_open(self, tenant: str | None = None) -> int:
        if tenant is None:
            row = self.db.conn.execute(
                "SELECT COUNT(*) FROM dead_letters WHERE status = 'open'"
            ).fetchone()
        else:
            row = self.db.conn.execute(
                "SELECT COUNT(*) FROM dead_letters WHERE status = 'open' AND tenant = ?", (tenant,)
            ).fetchone()
        return int(row[0])


def _readable(payload: bytes) -> object:
    """A dead letter's message as JSON where it is JSON, else as text (it may be any bytes)."""
    try:
        return json.loads(payload)
    except (ValueError, RecursionError):
        return payload.decode(errors="replace")
