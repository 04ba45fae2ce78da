"""Runs the processing core over the embedded log: guarantee 1 (exactly-once state).

A batch of log records goes through :func:`engine.core.process.process` one by one. Its effects —
the commands (appended to their topics and to the outbox), the wake-up times and the dead letters
— commit in ONE SQLite transaction with the offsets they cover (``<consumer>~effects``), so a
command is on its way as soon as its batch ends.

The state is written behind (``engine/store/state.py``): the records live in memory and go to the
table, with the offsets they cover (``<consumer>``), every :data:`WRITE_SECONDS` or
:data:`WRITE_RECORDS` changes while a backlog is worked through, and with every batch once the
processor has caught up. After a crash the processor starts from the state's offsets and runs the
records since again: the reconcilers are pure and the command ids derive from the message that
caused them, so it reaches the same state and makes the same commands, which it does not write a
second time (their records are at or below the effects offsets). The live engine's state table is
therefore at most a few seconds behind while it catches up, and current once it has.

No record can stop the loop: the core turns any fault of a message into a dead letter, and should
committing a batch fail for a reason that is not the machine's (a record the store cannot write),
the batch is applied again one record at a time, so only the record at fault is dead-lettered.
Faults of the machine (disk full, store unreadable) propagate: nothing is committed and the
supervisor runs the same records again once the fault is gone.
"""

from __future__ import annotations

import datetime as dt
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from engine.core.process import (
    INFRASTRUCTURE,
    Emitted,
    Inbound,
    Outcome,
    Step,
    dead_letter,
    log_decisions,
    process,
)
from engine.store.db import Database
from engine.store.log import Log, LogRecord, Offsets, effects_consumer
from engine.store.outbox import DeadLetters, Outbox
from engine.store.state import CACHE_BYTES, StateStore
from reconcilers.state import Note
from topics.names import RECONCILED_TOPICS, Topic
from topics.registry import pack

log = structlog.get_logger("kassasync.processor")

CONSUMER = "reconciler"

#: While working through a backlog, the state is written at least this often ...
WRITE_SECONDS = 5.0
#: ... and once this many changed records wait to be written.
WRITE_RECORDS = 100_000


#: How many new container objects the garbage collector's youngest generation takes before it
#: runs (CPython's default is 700). The processor keeps its tenants' records in memory, and a
#: collection that reaches the oldest generation walks every one of them: with the default,
#: such collections came about every 10,000 messages of a replay and cost 12-18 % of its CPU
#: time (docs/performance.md, issue 15). The records hold no reference cycles; what does is
#: collected as before, in bigger and fewer rounds.
GC_YOUNG = 20_000


def raise_gc_threshold(young: int = GC_YOUNG) -> None:
    """Let the youngest generation grow to ``young`` objects before a collection (a higher
    threshold set by someone else is kept)."""
    current = gc.get_threshold()
    if current[0] < young:
        gc.set_threshold(young, *current[1:])
        log.info("gc.threshold_raised", young=young, was=current[0])


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
        write_seconds: float = WRITE_SECONDS,
        write_records: int = WRITE_RECORDS,
        cache_bytes: int = CACHE_BYTES,
    ) -> None:
        self.db = db
        self.log = Log(db)
        self.offsets = Offsets(db)
        self.store = StateStore(db, cache_bytes=cache_bytes)
        self.outbox = Outbox(db)
        self.dead = DeadLetters(db)
        self.consumer = consumer
        self.on_batch = on_batch
        self.log_notes = log_notes
        self.write_seconds = write_seconds
        self.write_records = write_records
        #: What the state in memory has consumed, and what effects were written for (read from
        #: the table at the first step: a new processor starts from the written state).
        self._position: dict[Topic, int] | None = None
        self._effects: dict[Topic, int] = {}
        self._written_at = time.monotonic()
        raise_gc_threshold()

    def position(self) -> dict[Topic, int]:
        """The offsets the reconcilers' state has consumed (in memory: ahead of the table's)."""
        if self._position is None:
            self._position = self.offsets.get(self.consumer)
            self._effects = self.offsets.get(effects_consumer(self.consumer))
        return self._position

    def lag(self) -> dict[Topic, int]:
        ends = self.log.end_offsets()
        done = self.position()
        return {t: ends[t] - done.get(t, 0) for t in RECONCILED_TOPICS}

    def write_state(self) -> None:
        """Write the state held in memory to the table with the offsets it covers (a stop does,
        so the next start has nothing to run again)."""
        if self._position is None or not self.store.unwritten:
            return
        try:
            with self.db.transaction():
                self.store.write()
                self.offsets.commit(self.consumer, self._position)
        except BaseException:
            self.store.rolled_back()
            raise
        self.store.committed(written=True)
        self._written_at = time.monotonic()

    def _write_due(self, caught_up: bool) -> bool:
        return (
            caught_up
            or self.store.unwritten >= self.write_records
            or time.monotonic() - self._written_at >= self.write_seconds
        )

    def step(self, limit: int = 1000) -> BatchResult:
        position = self.position()
        # One record more than the batch: whether it is there tells if this batch catches up.
        records = self.log.read(RECONCILED_TOPICS, position, limit + 1)
        if not records:
            self.write_state()
            return BatchResult()
        write = self._write_due(len(records) <= limit)
        del records[limit:]
        try:
            result, notes = self._commit(records, write=write)
        except INFRASTRUCTURE:
            raise
        except Exception as failed:  # find the record at fault, keep the rest
            log.error("batch.failed_to_commit", records=len(records), error=repr(failed)[:500])
            result, notes = BatchResult(), []
            for record in records:
                one, one_notes = self._commit_alone(record, write=write)
                _merge(result, one)
                notes.extend(one_notes)
        if self.log_notes:
            log_decisions(log, notes)
        if self.on_batch is not None:
            self.on_batch(result)
        return result

    def _commit_alone(self, record: LogRecord, *, write: bool) -> tuple[BatchResult, list[Note]]:
        try:
            return self._commit([record], write=write)
        except INFRASTRUCTURE:
            raise
        except Exception as failed:  # this record cannot be committed: park it
            step = dead_letter(inbound(record), failed)
            return self._commit([record], write=write, forced=step)

    def _commit(
        self,
        records: list[LogRecord],
        *,
        write: bool,
        forced: Step | None = None,
    ) -> tuple[BatchResult, list[Note]]:
        result = BatchResult()
        notes: list[Note] = []
        consumed = dict(self.position())
        written = self._effects
        effects = dict(written)
        try:
            with self.db.transaction():
                wakes: dict[str, dt.datetime] = {}
                emitted: list[Emitted] = []
                for record in records:
                    topic = record.topic
                    consumed[topic] = record.offset
                    step = forced or process(self.store.view(record.tenant), inbound(record))
                    # Run again after a crash: its effects were written before it.
                    again = record.offset <= written.get(topic, 0)
                    if not again:
                        effects[topic] = record.offset
                        notes.extend(step.notes)
                    self._apply(record, step, result, wakes, None if again else emitted)
                self.store.stage()
                if emitted:
                    # Packed once (engine/store/compact.py): the outbox keeps the log's bytes.
                    stored = self.log.append_many(
                        [pack(one.command, one.payload) for one in emitted]
                    )
                    self.outbox.enqueue_many(
                        [(one.command, one.payload) for one in emitted], stored
                    )
                if effects != written:
                    self.offsets.commit(effects_consumer(self.consumer), effects)
                for tenant, at in wakes.items():
                    self.db.conn.execute(
                        "INSERT INTO wake (tenant, at) VALUES (?, ?) ON CONFLICT (tenant) DO "
                        "UPDATE SET at = MIN(at, excluded.at)",
                        (tenant, at.isoformat()),
                    )
                if write:
                    self.store.write()
                    self.offsets.commit(self.consumer, consumed)
        except BaseException:
            self.store.rolled_back()
            raise
        self.store.committed(written=write)
        self._position = consumed
        self._effects = effects
        if write:
            self._written_at = time.monotonic()
        return result, notes

    def _apply(
        self,
        record: LogRecord,
        step: Step,
        result: BatchResult,
        wakes: dict[str, dt.datetime],
        emitted: list[Emitted] | None,
    ) -> None:
        """Apply ``step``: its state changes, and its effects (its commands go to ``emitted``)
        unless ``emitted`` is ``None`` (they were written before a crash)."""
        if emitted is None:
            if step.outcome is Outcome.DEAD:
                result.dead_letters += 1
                return
            if step.puts:
                self.store.apply(record.tenant, step.puts)
            result.processed += 1
            return
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
        if step.puts:
            self.store.apply(record.tenant, step.puts)
        for one in step.commands:
            emitted.append(one)
            result.commands += 1
            result.commands_by_type[one.type] = result.commands_by_type.get(one.type, 0) + 1
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
