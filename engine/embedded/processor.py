"""Runs the reconcilers over the log: guarantee 1 (exactly-once state).

A batch of log records is reconciled, and the state changes, the commands (appended to their
topics and to the outbox), the wake-up times and the consumed offsets commit in ONE SQLite
transaction. A crash anywhere replays from the last commit and reaches the same state.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from pydantic import ValidationError

from engine.store.db import Database
from engine.store.log import Log, LogRecord, Offsets
from engine.store.outbox import DeadLetters, Outbox
from engine.store.state import StateStore
from reconcilers.dispatch import reconcile
from reconcilers.state import Note
from topics import registry
from topics.errors import ErrorKind, shop_error
from topics.names import RECONCILED_TOPICS, Topic

log = structlog.get_logger("kassasync.processor")

CONSUMER = "reconciler"


@dataclass(slots=True)
class BatchResult:
    processed: int = 0
    commands: int = 0
    dead_letters: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    commands_by_type: dict[str, int] = field(default_factory=dict)


class Processor:
    def __init__(
        self,
        db: Database,
        *,
        consumer: str = CONSUMER,
        on_batch: Callable[[BatchResult], None] | None = None,
        log_notes: bool = True,
    ) -> None:
        self.db = db
        self.log = Log(db)
        self.offsets = Offsets(db)
        self.store = StateStore(db)
        self.outbox = Outbox(db)
        self.dead = DeadLetters(db)
        self.consumer = consumer
        self.on_batch = on_batch
        self.log_notes = log_notes

    def lag(self) -> dict[Topic, int]:
        ends = self.log.end_offsets()
        done = self.offsets.get(self.consumer)
        return {t: ends[t] - done.get(t, 0) for t in RECONCILED_TOPICS}

    def step(self, limit: int = 1000) -> BatchResult:
        offsets = self.offsets.get(self.consumer)
        records = self.log.read(RECONCILED_TOPICS, offsets, limit)
        result = BatchResult()
        if not records:
            return result
        notes: list[Note] = []
        try:
            with self.db.transaction():
                consumed = dict(offsets)
                wakes: dict[str, dt.datetime] = {}
                for record in records:
                    consumed[record.topic] = record.offset
                    self._one(record, result, notes, wakes)
                self.store.flush()
                self.offsets.commit(self.consumer, consumed)
                for tenant, at in wakes.items():
                    self.db.conn.execute(
                        "INSERT INTO wake (tenant, at) VALUES (?, ?) ON CONFLICT (tenant) DO "
                        "UPDATE SET at = MIN(at, excluded.at)",
                        (tenant, at.astimezone(dt.UTC).isoformat()),
                    )
        except BaseException:
            self.store.rolled_back()
            raise
        self.store.committed()
        if self.log_notes:
            for note in notes:
                log.info(note.event, **note.fields)
        if self.on_batch is not None:
            self.on_batch(result)
        return result

    def _one(
        self,
        record: LogRecord,
        result: BatchResult,
        notes: list[Note],
        wakes: dict[str, dt.datetime],
    ) -> None:
        try:
            message = record.message()
            decision = reconcile(self.store.view(record.tenant), message)
        except (ValidationError, ValueError, KeyError, TypeError, AssertionError) as failed:
            # A message no reconciler can handle must not stop the others: park it, say why.
            error = shop_error(ErrorKind.INVALID_INPUT, detail=f"{type(failed).__name__}: {failed}")
            self.dead.add(
                f"msg:{record.topic.value}:{record.offset}",
                record.tenant,
                record.topic.value,
                record.type,
                record.payload,
                error,
            )
            result.dead_letters += 1
            log.error(
                "message.dead_lettered",
                tenant=record.tenant,
                message_id=record.msg_id,
                topic=record.topic.value,
                error=error.message,
            )
            return
        for (kind, key), value in decision.puts.items():
            self.store.put(record.tenant, kind, key, value)
        for command in decision.commands:
            payload = registry.dump(command)
            self.log.append_raw(Topic(command.TOPIC), command, payload)
            self.outbox.enqueue(command, payload)
            result.commands += 1
            ctype = command.type  # type: ignore[attr-defined]
            result.commands_by_type[ctype] = result.commands_by_type.get(ctype, 0) + 1
        if decision.wake_at is not None:
            current = wakes.get(record.tenant)
            if current is None or decision.wake_at < current:
                wakes[record.tenant] = decision.wake_at
        notes.extend(decision.notes)
        result.processed += 1
        result.by_type[record.type] = result.by_type.get(record.type, 0) + 1
