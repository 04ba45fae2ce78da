"""The state written behind (hypothesis): the processor keeps the reconcilers' records in memory
and writes them to the table every few seconds while it works through a backlog. A crash between
two writes loses the records in memory; the next processor starts from the table's offsets, runs
the records since again and must reach the state the reconcilers reach in memory, with every
command on the log and in the outbox exactly once, and nothing written twice."""

from __future__ import annotations

import contextlib
import gc
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from engine.embedded.processor import CONSUMER, GC_YOUNG, Processor
from engine.store.db import Database
from engine.store.log import Log, Offsets, effects_consumer
from engine.store.retention import Retention, RetentionPolicy, marks
from engine.store.state import StateStore
from tests.engine.stores import commit
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


def _state_reads(db: Database) -> list[str]:
    """The statements that read the ``state`` table from now on, as SQLite runs them."""
    seen: list[str] = []
    db.conn.set_trace_callback(
        lambda sql: seen.append(sql) if "FROM state" in sql and "SELECT" in sql else None
    )
    return seen


def test_a_tenant_with_nothing_committed_asks_the_table_once() -> None:
    """A tenant with no row and no unwritten change as it comes into memory has all its records
    there: after one look at the table, a record memory lacks is absent without a read (a
    replay into an empty store, a new shop), through writes, and none is kept in memory."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "kassasync.db")
        try:
            store = StateStore(db)
            reads = _state_reads(db)
            for n in range(50):
                assert store.get("shop", "cmd", f"c{n}") is None
                store.put("shop", "cmd", f"c{n}", {"n": n})
                with db.transaction():
                    store.stage()
                    if n % 10 == 9:
                        store.write()
                store.committed(written=n % 10 == 9)
            assert len(reads) == 2  # the first miss: the entity's row, then the tenant's rows
            assert store.get("shop", "stock", "A1") is None
            assert dict(store.scan("shop", "cmd"))["c3"] == {"n": 3}
            assert len(reads) == 2
            assert store.held_records == 50  # the absent ones are not held
            db.conn.set_trace_callback(None)
            assert len(StateStore(db).all_records("shop")) == 50
        finally:
            db.close()


def test_a_tenant_read_back_with_records_committed_is_not_taken_for_empty() -> None:
    """A tenant that comes back into memory with records unwritten (evicted before the write)
    or in the table (a new processor) reads them, and a write keeps them, whatever key memory
    missed first."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "kassasync.db")
        try:
            store = StateStore(db, cache_bytes=0)  # every tenant but the last used leaves
            store.put("s1", "cmd", "kept", {"v": 1})
            store.put("s1", "stock", "A1", {"base": "1"})
            commit(db, store, write=False)
            assert store.get("s2", "cmd", "x") is None  # s1 leaves memory, unwritten
            store.committed()
            assert store.get("s1", "cmd", "missing") is None  # the first miss
            assert store.get("s1", "cmd", "kept") == {"v": 1}
            assert dict(store.scan("s1", "stock")) == {"A1": {"base": "1"}}
            store.put("s1", "cmd", "new", {"v": 2})
            commit(db, store, write=True)
            fresh = StateStore(db)  # a new processor: s1's records are in the table
            assert fresh.get("s1", "cmd", "missing") is None  # the first miss
            assert fresh.get("s1", "cmd", "kept") == {"v": 1}
            fresh.put("s1", "cmd", "third", {"v": 3})
            commit(db, fresh, write=True)
            assert StateStore(db).all_records("s1") == {
                ("cmd", "kept"): {"v": 1},
                ("stock", "A1"): {"base": "1"},
                ("cmd", "new"): {"v": 2},
                ("cmd", "third"): {"v": 3},
            }
        finally:
            db.close()


def test_the_processor_lets_the_young_generation_grow() -> None:
    """The processor raises the collector's first threshold (full collections walk every record
    held), and keeps a higher one set by someone else."""
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, *before[1:])
        with _backlog():
            assert gc.get_threshold()[0] == GC_YOUNG
        gc.set_threshold(GC_YOUNG * 2, *before[1:])
        with _backlog():
            assert gc.get_threshold()[0] == GC_YOUNG * 2
    finally:
        gc.set_threshold(*before)


#: Batches of changes to one complete tenant's records (``None``: delete), each committed with
#: a write (True) or without; a batch may change a record twice.
_BORN_CASES: dict[str, list[tuple[list[tuple[str, dict[str, int] | None]], bool]]] = {
    "made and deleted between two writes": [([("k", {"v": 1})], False), ([("k", None)], False)],
    "made and deleted in one batch": [([("k", {"v": 1}), ("k", None)], False)],
    "in the table, deleted": [([("k", {"v": 1})], True), ([("k", None)], False)],
    "in the table, deleted, made and deleted again": [
        ([("k", {"v": 1})], True),
        ([("k", None)], False),
        ([("k", {"v": 2})], False),
        ([("k", None)], False),
    ],
    "in the table, deleted and made in one batch, then deleted": [
        ([("k", {"v": 1})], True),
        ([("k", None), ("k", {"v": 2})], False),
        ([("k", None)], False),
    ],
    "made, written, deleted": [
        ([("k", {"v": 1})], False),
        ([("other", {"v": 0})], True),
        ([("k", None)], False),
    ],
}


@pytest.mark.parametrize("case", list(_BORN_CASES))
def test_a_record_deleted_since_the_last_write_leaves_the_table_only_if_it_was_there(
    case: str,
) -> None:
    """A record made and deleted again between two writes is nothing to write (no change
    waits, no statement runs for it); one the table holds is deleted from it, whatever
    happened to it in between."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "kassasync.db")
        try:
            store = StateStore(db)
            assert store.get("shop", "cmd", "k") is None  # complete: nothing committed
            model: dict[str, dict[str, int] | None] = {}
            in_table: set[str] = set()
            for changes, write in _BORN_CASES[case]:
                for key, value in changes:
                    store.put("shop", "cmd", key, value)
                    model[key] = value
                commit(db, store, write=write)
                if write:
                    in_table = {key for key, value in model.items() if value is not None}
            was_there = "k" in in_table
            assert store.unwritten == (1 if was_there else 0)
            statements = _statements(db)
            commit(db, store, write=True)
            assert any("DELETE" in sql for sql in statements) == was_there
            expected = {("cmd", k): v for k, v in model.items() if v is not None}
            assert StateStore(db).all_records("shop") == expected
            assert store.get("shop", "cmd", "k") is None
        finally:
            db.close()


def _statements(db: Database) -> list[str]:
    seen: list[str] = []
    db.conn.set_trace_callback(seen.append)
    return seen
