"""Runs the processing core over the embedded log: guarantee 1 (exactly-once state).

A batch of log records goes through :func:`engine.core.process.process` one by one, and the state
changes, the commands (appended to their topics and to the outbox), the wake-up times, the dead
letters and the consumed offsets commit in ONE SQLite transaction. A crash anywhere replays from
the last commit and reaches the same state.

No record can stop the loop: the core turns any fault of a message into a dead letter, and should
committing a batch fail for a reason that is not the machine's (a record the store cannot write),
the batch is applied again one record at a time, so only the record at fault is dead-lettered.
Faults of the machine (disk full, store unreadable) propagate: nothing is committed and the
supervisor runs the same records again once the fault is gone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from engine.core.process import (
    INFRASTRUCTURE,
    Inbound,
    Outcome,
    Step,
    dead_letter,
    log_decisions,
    process,
)
from engine.store.db import Database
from engine.store.log import Log, LogRecord, Offsets
from engine.store.outbox import DeadLetters, Outbox
from engine.store.state import StateStore
from reconcilers.state import Note
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


def inbound(record: LogRecord) -> Inbound:
    return Inbound(
        record.topic, record.tenant, f"{record.topic.value}:{record.offset}", record.payload
    )


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
        if not records:
            return BatchResult()
        try:
            result, notes = self._commit(records, offsets)
        except INFRASTRUCTURE:
            raise
        except Exception as failed:  # find the record at fault, keep the rest
            log.error("batch.failed_to_commit", records=len(records), error=repr(failed)[:500])
            result, notes = BatchResult(), []
            for record in records:
                one, one_notes = self._commit_alone(record)
                _merge(result, one)
                notes.extend(one_notes)
        if self.log_notes:
            log_decisions(log, notes)
        if self.on_batch is not None:
            self.on_batch(result)
        return result

    def _commit_alone(self, record: LogRecord) -> tuple[BatchResult, list[Note]]:
        offsets = self.offsets.get(self.consumer)
        try:
            return self._commit([record], offsets)
        except INFRASTRUCTURE:
            raise
        except Exception as failed:  # this record cannot be committed: park it
            step = dead_letter(inbound(record), failed)
            return self._commit([record], offsets, forced=step)

    def _commit(
        self,
        records: list[LogRecord],
        offsets: dict[Topic, int],
        *,
        forced: Step | None = None,
    ) -> tuple[BatchResult, list[Note]]:
        result = BatchResult()
        notes: list[Note] = []
        try:
            with self.db.transaction():
                consumed = dict(offsets)
                wakes: dict[str, dt.datetime] = {}
                for record in records:
                    consumed[record.topic] = record.offset
                    step = forced or process(self.store.view(record.tenant), inbound(record))
                    self._apply(record, step, result, wakes)
                    notes.extend(step.notes)
                self.store.flush()
                self.offsets.commit(self.consumer, consumed)
                for tenant, at in wakes.items():
                    self.db.conn.execute(
                        "INSERT INTO wake (tenant, at) VALUES (?, ?) ON CONFLICT (tenant) DO "
                        "UPDATE SET at = MIN(at, excluded.at)",
                        (tenant, at.isoformat()),
                    )
        except BaseException:
            self.store.rolled_back()
            raise
        self.store.committed()
        return result, notes

    def _apply(
        self,
        record: LogRecord,
        step: Step,
        result: BatchResult,
        wakes: dict[str, dt.datetime],
    ) -> None:
        if step.outcome is Outcome.DEAD:
            assert step.error is not None
            self.dead.add(
                f"msg:{step.inbound.position}",
                record.tenant,
                record.topic.value,
                record.type,
                record.payload,
                step.error,
            )
            result.dead_letters += 1
            return
        if step.outcome is Outcome.DUPLICATE:
            return
        for (kind, key), value in step.puts.items():
            self.store.put(record.tenant, kind, key, value)
        for emitted in step.commands:
            self.log.append_raw(emitted.topic, emitted.command, emitted.payload)
            self.outbox.enqueue(emitted.command, emitted.payload)
            result.commands += 1
            result.commands_by_type[emitted.type] = result.commands_by_type.get(emitted.type, 0) + 1
        if step.wake_at is not None:
            current = wakes.get(record.tenant)
            if current is None or step.wake_at < current:
                wakes[record.tenant] = step.wake_at
        result.processed += 1
        result.by_type[record.type] = result.by_type.get(record.type, 0) + 1


def _merge(into: BatchResult, one: BatchResult) -> None:
    into.processed += one.processed
    into.commands += one.commands
    into.dead_letters += one.dead_letters
    for kind, n in one.by_type.items():
        into.by_type[kind] = into.by_type.get(kind, 0) + n
    for kind, n in one.commands_by_type.items():
        into.commands_by_type[kind] = into.commands_by_type.get(kind, 0) + n
