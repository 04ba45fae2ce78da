"""The dirty index (hypothesis): every store's ``due`` (the embedded SQLite store written
behind, the Kafka runtime's tenant tables, the in-memory state, retention's roll-forward state,
and a transaction over each) answers what a scan of the whole dirty set answers, whatever the
order of writes, deletes, commits (written to the table or not) and roll-backs, and whatever the
UTC offsets of the times."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.kafka.store import TenantData
from engine.store.db import Database
from engine.store.retention import _TenantState
from engine.store.state import StateStore
from reconcilers.state import DIRTY, Due, MemoryState, Record, Txn, due_in, instant

T0 = dt.datetime(2026, 3, 14, 9, 0, tzinfo=dt.UTC)
KEYS = [f"{flow}:{n}" for flow in ("articles", "customers", "stock") for n in ("A1", "A2", "B")]
OFFSETS = [dt.timezone(dt.timedelta(hours=h)) for h in (-5, 0, 1, 2)]

at = st.builds(
    lambda ms, tz: (T0 + dt.timedelta(milliseconds=ms)).astimezone(tz),
    st.integers(0, 5_000),
    st.sampled_from(OFFSETS),
)
op = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(KEYS), at),
    st.tuples(st.just("delete"), st.sampled_from(KEYS)),
    st.tuples(st.just("other"), st.sampled_from(KEYS)),  # a record of another kind
    st.tuples(st.just("commit"), st.booleans()),  # written to the table, or kept unwritten
    st.tuples(st.just("rollback")),
    st.tuples(st.just("due"), at),
)


def _expected(records: dict[tuple[str, str], Record], until: int) -> Due:
    return due_in(sorted((k, v) for (kind, k), v in records.items() if kind == DIRTY), until)


def _same(got: Due, want: Due) -> None:
    assert got.entries == want.entries
    assert got.first_waiting == want.first_waiting


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, max_size=60))
def test_every_store_s_due_entries_are_the_scan_s(ops: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "state.db")
        try:
            store = StateStore(db)
            memory = MemoryState()
            kafka = TenantData("shop")
            rolled = _TenantState({})  # retention's roll-forward state
            committed: dict[tuple[str, str], Record] = {}
            buffered: dict[tuple[str, str], Record | None] = {}
            for act in ops:
                if act[0] in ("put", "delete", "other"):
                    kind = "report" if act[0] == "other" else DIRTY
                    value = {"since": act[2].isoformat()} if act[0] == "put" else None
                    if act[0] == "other":
                        value = {"since": T0.isoformat()}
                    store.put("shop", kind, act[1], value)
                    buffered[(kind, act[1])] = value
                elif act[0] == "commit":
                    with db.transaction():
                        store.stage()
                        if act[1]:
                            store.write()
                    store.committed(written=act[1])
                    memory.apply_puts(buffered)
                    rolled.apply_puts(buffered)
                    for (kind, key), value in buffered.items():
                        kafka.set(kind, key, value)
                        if value is None:
                            committed.pop((kind, key), None)
                        else:
                            committed[(kind, key)] = value
                    buffered.clear()
                elif act[0] == "rollback":
                    store.rolled_back()
                    buffered.clear()
                else:
                    until = instant(act[1])
                    seen = {**committed, **buffered}
                    now = {k: v for k, v in seen.items() if v is not None}
                    _same(store.due("shop", until), _expected(now, until))
                    _same(store.view("shop").due(until), _expected(now, until))
                    for view in (memory, kafka, rolled):
                        _same(view.due(until), _expected(committed, until))
                        # Through a transaction; one that changed dirty entries itself reads
                        # the merged set.
                        txn = Txn(view)
                        _same(txn.due(until), _expected(committed, until))
                        txn.delete(DIRTY, KEYS[0])
                        merged = {k: v for k, v in committed.items() if k != (DIRTY, KEYS[0])}
                        _same(txn.due(until), _expected(merged, until))
        finally:
            db.close()


def test_due_entries_are_a_prefix_in_time_and_come_out_in_key_order() -> None:
    state = MemoryState()
    state.apply_puts(
        {
            (DIRTY, "stock:B"): {"since": "2026-03-14T10:00:01+01:00"},  # 09:00:01 UTC
            (DIRTY, "stock:A"): {"since": "2026-03-14T09:00:03+00:00"},
            (DIRTY, "articles:Z"): {"since": "2026-03-14T04:00:00-05:00"},  # 09:00:00 UTC
            (DIRTY, "customers:t:1"): {"since": "2026-03-14T09:00:02+00:00"},
        }
    )
    due = state.due(instant(T0 + dt.timedelta(seconds=2)))
    assert [key for key, _ in due.entries] == ["articles:Z", "customers:t:1", "stock:B"]
    assert due.first_waiting == ("stock:A", {"since": "2026-03-14T09:00:03+00:00"})
    state.apply_puts({(DIRTY, "stock:A"): None})
    due = state.due(instant(T0))
    assert [key for key, _ in due.entries] == ["articles:Z"]
    assert due.first_waiting == ("stock:B", {"since": "2026-03-14T10:00:01+01:00"})
