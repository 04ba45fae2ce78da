"""The read model's projection of what a worker admitted (``~seen`` ids, consumed offsets), which
``import-sie --runtime kafka`` reads: from the records, and from the ``~journal`` the worker
acknowledges before it writes them (a reader between the two already sees the batch)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from engine.kafka.config import KafkaConfig
from engine.kafka.readmodel import DELIVERED_FOR, KafkaReadModel
from engine.kafka.store import CMD, JOURNAL, META, SEEN, encode_key, journal_key
from engine.store.db import Database
from engine.store.packing import RowEdits, StateTable
from engine.store.retention import RetentionPolicy


def _projected(tmp_path: Path, records: list[tuple[str, str, object]]) -> KafkaReadModel:
    model = KafkaReadModel(
        KafkaConfig(bootstrap="127.0.0.1:9", prefix="p."), Database(tmp_path / "r.db")
    )
    with model.db.transaction() as conn:
        edits = RowEdits(StateTable(conn))
        for kind, key, value in records:
            raw = None if value is None else json.dumps(value).encode()
            model._state(conn, edits, encode_key("shop", kind, key), raw)
        edits.flush()
    return model


def _seen(model: KafkaReadModel) -> dict[str, str | None]:
    rows = model.db.conn.execute("SELECT msg_id, fp FROM kafka_seen WHERE tenant = 'shop'")
    return {str(i): f for i, f in rows.fetchall()}


def _consumed(model: KafkaReadModel) -> dict[str, int]:
    rows = model.db.conn.execute(
        'SELECT topic, "offset" FROM kafka_consumed WHERE tenant = ?', ("shop",)
    )
    return {str(t): int(o) for t, o in rows.fetchall()}


def test_a_journal_alone_makes_its_batch_admitted(tmp_path: Path) -> None:
    journal = {
        "puts": [
            [META, "", {"offsets": {"till.events": 7}, "cmd_seq": 0}],
            [SEEN, "sie-abc", {"at": "2026-12-05T00:00:00+00:00", "fp": "f1"}],
            ["zr", "sie:abc", {"status": "before_start"}],
        ]
    }
    model = _projected(tmp_path, [(JOURNAL, "", journal)])
    assert _seen(model) == {"sie-abc": "f1"}
    assert _consumed(model) == {"till.events": 7}


def test_consumed_offsets_only_grow_and_a_deleted_id_is_forgotten(tmp_path: Path) -> None:
    model = _projected(
        tmp_path,
        [
            (META, "", {"offsets": {"till.events": 9, "sync.control": 2}, "cmd_seq": 1}),
            # An older record read after a newer journal (another changelog partition's order).
            (META, "", {"offsets": {"till.events": 4}, "cmd_seq": 0}),
            (SEEN, "sie-1", {"at": "2026-12-05T00:00:00+00:00", "fp": "a"}),
            (SEEN, "sie-2", {"at": "2026-12-05T00:00:00+00:00", "fp": "b"}),
            (SEEN, "sie-2", None),
        ],
    )
    assert _consumed(model) == {"till.events": 9, "sync.control": 2}
    assert _seen(model) == {"sie-1": "a"}


def test_the_journals_records_are_the_state_before_they_are_written_out(tmp_path: Path) -> None:
    """The worker writes records behind their journals: the dashboard reads a batch's records
    from its journal at once, and a later journal's values win, as on the worker."""
    model = _projected(
        tmp_path,
        [
            ("zr", "old", {"status": "posted"}),
            (JOURNAL, journal_key(1), {"puts": [["zr", "a", {"n": 1}], ["zr", "old", None]]}),
            (JOURNAL, journal_key(2), {"puts": [["zr", "a", {"n": 2}], [CMD, "c1", None]]}),
            (JOURNAL, journal_key(1), None),  # written out: the journal is deleted
        ],
    )
    assert StateTable(model.db.conn).records("shop") == {("zr", "a"): {"n": 2}}


def test_delivered_commands_expire_as_in_the_embedded_store(tmp_path: Path) -> None:
    """Delivered commands are deleted once they are older than the embedded store keeps them
    (their payload an hour after delivery); pending and dead ones stay: the read model stops
    growing with every command ever made."""
    command = {"target": "till", "type": "till.article.upsert", "payload": '{"x": 1}'}
    model = _projected(
        tmp_path,
        [
            (CMD, "old", command),
            (CMD, "hour", command),
            (CMD, "new", command),
            (CMD, "waiting", command),
            (CMD, "refused", {**command, "status": "dead"}),
            (CMD, "old", None),
            (CMD, "hour", None),
            (CMD, "new", None),
        ],
    )
    now = time.time()
    conn = model.db.conn
    with model.db.transaction():
        conn.execute("UPDATE outbox SET done_at = ? WHERE command_id = 'old'", (now - 28 * 3600,))
        conn.execute("UPDATE outbox SET done_at = ? WHERE command_id = 'hour'", (now - 7200,))
        conn.execute("UPDATE outbox SET done_at = ? WHERE command_id = 'refused'", (now - 1e6,))
    assert model.expire(now) == (1, 1)
    rows = conn.execute("SELECT command_id, status, length(payload) FROM outbox").fetchall()
    assert sorted(rows) == [
        ("hour", "done", 0),
        ("new", "done", 8),
        ("refused", "dead", 8),
        ("waiting", "pending", 8),
    ]
    assert DELIVERED_FOR == RetentionPolicy().delivered_for.total_seconds() == 27 * 3600
