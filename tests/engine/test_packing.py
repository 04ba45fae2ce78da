"""The state table's layout (engine/store/packing.py): one row per entity, its records deflated
together. What is stored must read back exactly, whatever mix of writes, unwritten changes and
evictions made it; a database of the layout before families is moved to it on open; and the
format's dictionary never changes."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.store import packing
from engine.store.db import SCHEMA_VERSION, Database
from engine.store.packing import StateTable, family_of, kinds_of, pack, unpack
from engine.store.state import StateStore
from tests.engine.stores import commit


def test_the_dictionary_of_format_1_never_changes() -> None:
    """Rows on disk were deflated with it: a changed dictionary makes them unreadable. A new
    dictionary needs a new format byte, the old one kept for reading."""
    assert packing.FORMAT == 1
    assert hashlib.sha256(packing._DICTIONARY).hexdigest() == (
        "ba70a7c936659ce694b860fe268fabe40146b40f5633b43e36b8c6a544e00b38"
    )


def test_families_keep_their_members_in_place() -> None:
    """The bit of a kind is stored in every row: members are only ever appended."""
    assert packing.FAMILIES["art"][:5] == ("art.fx", "art.till", "art.want", "stock", "stock.merge")
    assert packing.FAMILIES["ean"][:4] == ("barcode", "barcode.wait", "till.ean", "till.ean.wait")
    assert packing.FAMILIES["cust"][:2] == ("cust.fx", "cust.pending")
    assert family_of("stock") == ("art", 8)
    assert family_of("stock.mv") == ("stock.mv", 1)  # a kind of no family is its own
    with pytest.raises(ValueError, match="names a family"):
        family_of("art")


def test_a_row_reads_back_its_records_and_names_its_kinds() -> None:
    fx = {"article": {"description": "Kaffe ä å \u2603", "price": "12.50"}, "deleted": None}
    kinds, value = pack("art", {"art.fx": fx, "stock": {"base": "3"}})
    assert kinds_of("art", kinds) == ["art.fx", "stock"]
    assert unpack(value).records == {"art.fx": fx, "stock": {"base": "3"}}
    assert value[0] == packing.FORMAT
    with pytest.raises(ValueError, match="family"):
        pack("art", {"barcode": {}})
    with pytest.raises(ValueError, match="known format"):
        unpack(b'{"art.fx":{}}')


def test_an_article_takes_a_fraction_of_its_json() -> None:
    article = {
        "article_number": "B-77",
        "description": "Trädgårdsstol grön",
        "ean": "7310000770001",
        "active": True,
        "stock_goods": True,
        "quantity_in_stock": "4",
        "unit": "st",
        "vat": "25",
        "price": "1299.00",
        "price_list": "A",
    }
    records = {
        "art.fx": {"fx_seq": 9, "seen": "articles-4", "article": article, "deleted": None},
        "art.want": {"in_till": True, "reason": "fortnox", "article": article},
        "art.till": {"eans": ["7310000770001"], "inflight": [], "sent": article},
    }
    _, value = pack("art", records)
    assert len(value) * 3 < sum(len(json.dumps(r)) for r in records.values())


def test_putting_one_record_keeps_the_others_of_its_row() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute(packing.DDL)
    table = StateTable(conn)
    table.put("shop", "art.fx", "A1", {"v": 1})
    table.put("shop", "stock", "A1", {"base": "2"})
    table.put("shop", "barcode", "731", {"holder": "A1"})
    assert table.get("shop", "art.fx", "A1") == {"v": 1}
    assert table.counts("shop") == {"art.fx": 1, "stock": 1, "barcode": 1}
    assert conn.execute("SELECT COUNT(*) FROM state").fetchone()[0] == 2
    table.put("shop", "art.fx", "A1", None)
    assert table.records("shop") == {
        ("stock", "A1"): {"base": "2"},
        ("barcode", "731"): {"holder": "A1"},
    }
    table.put("shop", "stock", "A1", None)
    assert conn.execute("SELECT COUNT(*) FROM state").fetchone()[0] == 1  # no records, no row
    assert list(table.scan("shop", "barcode")) == [("731", {"holder": "A1"})]
    assert list(table.scan("shop", "till.ean")) == []


def test_a_database_of_one_row_per_record_is_moved_on_open(tmp_path: Path) -> None:
    """A store made before families (schema 1) opens with its records as they were."""
    path = tmp_path / "kassasync.db"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE state (tenant TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, "
        "value TEXT NOT NULL, PRIMARY KEY (tenant, kind, key)) WITHOUT ROWID"
    )
    conn.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    old = {
        ("shop", "art.fx", "A1"): {"article": {"description": "Åsa"}},
        ("shop", "stock", "A1"): {"base": "4"},
        ("shop", "barcode", "7310"): {"holder": "A1"},
        ("shop", "stock.mv", "mv-1"): {"delta": "-1"},
        ("other", "art.fx", "A1"): {"article": {"description": "B"}},
    }
    conn.executemany(
        "INSERT INTO state VALUES (?, ?, ?, ?)",
        [(*k, json.dumps(v)) for k, v in old.items()],
    )
    conn.commit()
    conn.close()
    db = Database(path)
    try:
        assert SCHEMA_VERSION == 2
        assert (
            db.conn.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()[0]
            == "2"
        )
        store = StateStore(db)
        for (tenant, kind, key), value in old.items():
            assert store.get(tenant, kind, key) == value
        assert store.all_records("shop") == {
            (kind, key): v for (t, kind, key), v in old.items() if t == "shop"
        }
        assert db.conn.execute("SELECT COUNT(*) FROM state").fetchone()[0] == 4
    finally:
        db.close()
    Database(path).close()  # opening again moves nothing


KINDS = ["art.fx", "art.till", "stock", "barcode", "till.ean", "stock.mv", "cmd"]
_change = st.tuples(
    st.sampled_from(["s1", "s2", "s3"]),
    st.sampled_from(KINDS),
    st.sampled_from(["A1", "A2", "7310"]),
    st.one_of(st.none(), st.integers(0, 99).map(lambda n: {"n": n, "pad": "x" * n})),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batches=st.lists(
        st.tuples(st.lists(_change, max_size=6), st.booleans(), st.booleans()), max_size=25
    ),
    cache_bytes=st.sampled_from([0, 300, 10**6]),
)
def test_the_store_reads_back_what_it_was_given_through_writes_and_evictions(
    batches: list[tuple[list[tuple[str, str, str, Any]], bool, bool]], cache_bytes: int
) -> None:
    """Batches of puts and deletes, committed with or without a write, some rolled back, with
    tenants evicted as memory fills: the store and the table read what a dict would hold."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "kassasync.db")
        try:
            store = StateStore(db, cache_bytes=cache_bytes)
            model: dict[tuple[str, str, str], Any] = {}
            for changes, write, roll_back in batches:
                for tenant, kind, key, _ in changes:  # read first, as reconcilers do
                    store.get(tenant, kind, key)
                for tenant, kind, key, value in changes:
                    store.put(tenant, kind, key, value)
                if roll_back:
                    store.rolled_back()
                else:
                    with db.transaction():
                        store.stage()
                        if write:
                            store.write()
                    store.committed(written=write)
                    for tenant, kind, key, value in changes:
                        model[(tenant, kind, key)] = value
                for (tenant, kind, key), value in model.items():
                    assert store.get(tenant, kind, key) == value
                    assert dict(store.scan(tenant, kind)).get(key) == value
            with db.transaction():
                store.write()
            store.committed(written=True)
            table = StateTable(db.conn)
            for tenant in ("s1", "s2", "s3"):
                expected = {(k, key): v for (t, k, key), v in model.items() if t == tenant and v}
                assert table.records(tenant) == expected
                assert StateStore(db).all_records(tenant) == expected
        finally:
            db.close()


def test_a_change_to_an_evicted_entity_keeps_the_rest_of_its_row(tmp_path: Path) -> None:
    """A change committed unwritten, its tenant evicted before the write: the write rebuilds the
    entity's row from the table's row, not from a memory that no longer holds it."""
    db = Database(tmp_path / "kassasync.db")
    try:
        store = StateStore(db, cache_bytes=0)  # every tenant but the last used leaves memory
        store.put("s1", "stock", "A1", {"base": "5"})
        commit(db, store, write=True)
        store.put("s1", "art.fx", "A1", {"v": 2})
        commit(db, store, write=False)
        store.put("s2", "cmd", "c1", {"n": 1})  # s1 leaves memory
        commit(db, store, write=False)
        commit(db, store, write=True)
        assert StateTable(db.conn).records("s1") == {
            ("stock", "A1"): {"base": "5"},
            ("art.fx", "A1"): {"v": 2},
        }
    finally:
        db.close()


def test_reading_a_row_does_not_hide_an_unwritten_change_of_another_kind(tmp_path: Path) -> None:
    """An entity's row is read whole, but a record of it changed since the last write is read
    from the unwritten changes, not from the older row."""
    db = Database(tmp_path / "kassasync.db")
    try:
        store = StateStore(db, cache_bytes=0)
        store.put("s1", "stock", "A1", {"base": "1"})
        store.put("s1", "art.fx", "A1", {"v": 1})
        commit(db, store, write=True)
        store.put("s1", "stock", "A1", {"base": "2"})
        commit(db, store, write=False)
        store.get("s2", "cmd", "c1")  # s1 leaves memory
        store.committed()
        assert store.get("s1", "art.fx", "A1") == {"v": 1}  # reads the row (stock "1" in it)
        assert store.get("s1", "stock", "A1") == {"base": "2"}
    finally:
        db.close()


def test_record_edits_reach_the_table_once_per_row_at_the_flush() -> None:
    """The Kafka read model's way: a poll's puts (a journal's, then each record's own) are
    gathered by row, last one winning, and written when the poll's transaction ends."""
    conn = sqlite3.connect(":memory:")
    conn.execute(packing.DDL)
    table = StateTable(conn)
    table.put("shop", "barcode", "731", {"holder": "A0"})
    edits = packing.RowEdits(table)
    edits.put("shop", "art.fx", "A1", {"v": 1})
    edits.put("shop", "stock", "A1", {"base": "1"})
    edits.put("shop", "art.fx", "A1", {"v": 2})
    edits.put("shop", "barcode", "731", None)
    edits.put("shop", "till.ean", "731", {"articles": ["A1"]})
    assert table.records("shop") == {("barcode", "731"): {"holder": "A0"}}  # nothing yet
    edits.flush()
    assert table.records("shop") == {
        ("art.fx", "A1"): {"v": 2},
        ("stock", "A1"): {"base": "1"},
        ("till.ean", "731"): {"articles": ["A1"]},
    }
    edits.put("shop", "till.ean", "731", None)
    edits.flush()
    assert conn.execute("SELECT COUNT(*) FROM state WHERE family = 'ean'").fetchone()[0] == 0


def test_a_scan_for_a_text_decodes_only_rows_that_hold_it_and_misses_none(tmp_path: Path) -> None:
    """The dashboard's filter on a field (``where``) skips the rows whose JSON cannot hold the
    wanted string, and still finds every record whose field equals it, however the string is
    written in JSON (quotes, backslashes, non-ASCII)."""
    from engine.ops.sqlite import SqliteOpsStore

    db = Database(tmp_path / "kassasync.db")
    try:
        table = StateTable(db.conn)
        odd = 'kö "x" \\ ok'
        wanted = {"A1": "barcode_conflict", "A3": odd, "A5": "till_refuses"}
        others = {"A2": "fortnox", "A4": "barcode_conflict_old", "A6": 1}
        for key, reason in {**wanted, **others}.items():
            table.put("shop", "art.want", key, {"reason": reason})
            table.put("shop", "art.fx", key, {"note": "barcode_conflict" if key == "A2" else ""})
        found = SqliteOpsStore(db).records(
            "shop", "art.want", where={"reason": ["barcode_conflict", odd, "till_refuses"]}
        )
        assert {key: r["reason"] for key, r in found} == wanted
        held = list(table.scan("shop", "art.want", holding=[b'"barcode_conflict"']))
        assert [key for key, _ in held] == ["A1", "A2"]  # A2's art.fx holds the text
        numbers = SqliteOpsStore(db).records("shop", "art.want", where={"reason": [True]})
        assert [key for key, _ in numbers] == ["A6"]  # 1 equals true, as json_extract had it
    finally:
        db.close()
