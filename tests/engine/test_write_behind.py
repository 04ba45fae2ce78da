"""The state written behind (hypothesis): the processor keeps the reconcilers' records in memory
and writes them to the table every few seconds while it works through a backlog. A crash between
two writes loses the records in memory; the next processor starts from the table's offsets, runs
the records since again and must reach the state the reconcilers reach in memory, with every
command on the log and in the outbox exactly once, and nothing written twice."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from engine.embedded.processor import CONSUMER, Processor
from engine.store.db import Database
from engine.store.log import Log, Offsets, effects_consumer
from engine.store.retention import Retention, RetentionPolicy, marks
from engine.store.state import StateStore
from tests.reconcilers.test_replay_properties import mixed_action, mixed_run
from topics.names import Topic
from topics.settings import CustomerMaster


@contextlib.contextmanager
def _backlog() -> Iterator[tuple[Database, Processor]]:
    """A store whose log holds a backlog of 39 polled customers (a till-master tenant), and a
    processor that has handled none of it."""
    world = mixed_run(CustomerMaster.TILL, [("a", ("poll", f"A{n}")) for n in range(1, 40)])
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "kassasync.db")
        try:
            Log(db).append_many(world.processed)
            yield db, Processor(db, log_notes=False)
        finally:
            db.close()


def _commands(db: Database) -> list[str]:
    log = Log(db)
    records = log.read([Topic.FORTNOX_COMMANDS, Topic.TILL_COMMANDS], {}, 10**9)
    return [r.payload.decode() for r in sorted(records, key=lambda r: r.seq)]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    master_mode=st.sampled_from(list(CustomerMaster)),
    actions=st.lists(mixed_action, min_size=20, max_size=60),
    batch=st.integers(1, 20),
    crashes=st.lists(st.integers(0, 12), max_size=4),
    written_every=st.integers(1, 300),
)
def test_a_crash_between_state_writes_reaches_the_same_state_and_commands_once(
    master_mode: CustomerMaster,
    actions: list[tuple[Any, ...]],
    batch: int,
    crashes: list[int],
    written_every: int,
) -> None:
    """``crashes``: how many batches each processor runs before it dies (its memory lost);
    ``written_every``: the state is written every this many changed records (and when caught
    up), so crashes fall between writes."""
    note(f"master_mode={master_mode!r} batch={batch} crashes={crashes}")
    note(f"written_every={written_every} actions={actions!r}")
    every = {"write_records": written_every, "write_seconds": 3600.0}
    world = mixed_run(master_mode, actions)
    tenant = world.processed[0].tenant
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "kassasync.db")
        try:
            Log(db).append_many(world.processed)
            for batches in crashes:
                dying = Processor(db, log_notes=False, **every)
                for _ in range(batches):
                    dying.step(limit=batch)
                # SIGKILL: the processor's memory is gone, the table is what it wrote.
            processor = Processor(db, log_notes=False, **every)
            while any(processor.lag().values()):
                assert processor.step(limit=batch).dead_letters == 0
            assert processor.step(limit=batch).processed == 0  # caught up: state written
            state = StateStore(db).all_records(tenant)
            commands = _commands(db)
            outbox = [
                str(row[0]) for row in db.conn.execute("SELECT command_id FROM outbox ORDER BY seq")
            ]
            offsets = Offsets(db)
            written, effects = offsets.get(CONSUMER), offsets.get(effects_consumer(CONSUMER))
        finally:
            db.close()
    assert state == world.state.records
    assert commands == [c.model_dump_json() for c in world.emitted]
    assert outbox == [c.id for c in world.emitted]
    assert written == effects  # caught up: the state covers every record the effects do


def test_a_backlog_is_written_behind_and_once_caught_up() -> None:
    """While a backlog is worked through the table lags the memory (the state is written every
    WRITE_SECONDS or WRITE_RECORDS), the effects do not; the batch that catches up writes."""
    with _backlog() as (db, processor):
        offsets = Offsets(db)
        processor.step(limit=5)
        assert offsets.get(CONSUMER) == {}  # nothing written yet ...
        assert offsets.get(effects_consumer(CONSUMER)) == processor.position()  # ... but these
        assert processor.store.unwritten > 0
        processor.step(limit=5)
        processor.write_state()  # what a graceful stop does
        assert offsets.get(CONSUMER) == processor.position()
        assert processor.store.unwritten == 0
        processor.step(limit=5)
        assert offsets.get(CONSUMER) != processor.position()
        while any(processor.lag().values()):
            processor.step(limit=5)
        assert offsets.get(CONSUMER) == processor.position()
        assert processor.store.unwritten == 0


def test_memory_is_bounded_by_bytes_and_an_evicted_tenant_reads_what_it_committed() -> None:
    """The least recently used tenants leave memory once the cached records pass the budget;
    their records are read again from what is unwritten and from the table, unchanged."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "kassasync.db")
        try:
            store = StateStore(db, cache_bytes=20_000)
            expected: dict[tuple[str, str], dict[str, str]] = {}
            for n in range(41):
                tenant = f"shop-{n}"
                for key in range(10):
                    value = {"note": f"{tenant}/{key}", "padding": "x" * 80}
                    store.put(tenant, "thing", str(key), value)
                    expected[(tenant, str(key))] = value
                with db.transaction():
                    store.stage()
                    if n % 3 == 0:  # some batches written, the others held unwritten
                        store.write()
                store.committed(written=n % 3 == 0)
                assert store.cached_bytes <= 20_000 + 10 * 120  # the batch just made may stay
            assert store.unwritten > 0
            for (tenant, key), value in expected.items():
                assert store.get(tenant, "thing", key) == value
                assert dict(store.scan(tenant, "thing"))[key] == value
        finally:
            db.close()


def test_records_known_to_be_absent_count_against_the_budget() -> None:
    """Looking up keys that hold nothing (a new movement id, an unknown command) keeps an entry
    per key in memory: they count, so a stream of them cannot grow memory past the budget."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "kassasync.db")
        try:
            store = StateStore(db, cache_bytes=50_000)
            for n in range(20):
                tenant = f"shop-{n}"
                for key in range(100):
                    assert store.get(tenant, "nothing", f"{n}-{key}") is None
                store.committed()  # a batch that only read
            assert store.cached_bytes <= 50_000 + 100 * 64
            assert store.held_records <= 50_000 // 64 + 100  # not the 2,000 looked up
        finally:
            db.close()


def test_retention_marks_the_log_only_where_the_state_is_written() -> None:
    """A retention mark splits the log by the state's offsets and by the sequence number (the
    command topics are trimmed below it): while the state is written behind its commands the
    two disagree, so the mark waits for the processor to catch up."""
    with _backlog() as (db, processor):
        retention = Retention(db, RetentionPolicy())
        processor.step(limit=5)  # commands out, the state not written yet
        assert processor.store.unwritten > 0
        retention.run_once()
        assert marks(db) == []
        while any(processor.lag().values()):
            processor.step(limit=5)
        retention.run_once()
        (mark,) = marks(db)
        assert mark.offsets == processor.position()
