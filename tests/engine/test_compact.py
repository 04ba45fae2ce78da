"""Log rows and outbox commands are kept packed (engine/store/compact.py): readers see exactly
the envelopes that were written, rows written before packing still read, and the bytes a packed
row depends on never change."""

from __future__ import annotations

import datetime as dt
import hashlib
import zlib
from decimal import Decimal
from pathlib import Path

import pytest

from engine.embedded.edge import Edge
from engine.embedded.processor import Processor
from engine.gateway.ingest import store
from engine.store import compact
from engine.store.db import Database, log_table
from engine.store.log import Log, LogRecord
from engine.store.outbox import Outbox
from engine.store.retention import Retention, RetentionPolicy
from tests.reconcilers.test_replay_properties import mixed_run
from topics import registry
from topics.envelope import Envelope
from topics.names import RECONCILED_TOPICS, Topic
from topics.outcomes import Tick
from topics.settings import CustomerMaster

AT = dt.datetime(2026, 3, 14, 9, 30, 12, 345678, tzinfo=dt.timezone(dt.timedelta(hours=1)))


def sale(n: int, delta: str = "-1") -> Envelope:
    return registry.parse_obj(
        {
            "id": f"movement-{n}",
            "tenant": "shop-a",
            "type": "till.stock.movement",
            "occurred_at": (AT + dt.timedelta(seconds=n)).isoformat(),
            "source": "till",
            "data": {
                "article_number": f"A{n:04d}",
                "movement_id": f"mv-{n}",
                "delta": delta,
                "reason": "sale",
            },
        }
    )


def customer() -> Envelope:
    return registry.parse_obj(
        {
            "id": "customer-1",
            "tenant": "shop-a",
            "type": "till.customer.upserted",
            "occurred_at": AT.isoformat(),
            "source": "till",
            "data": {
                "till_customer_id": "C1",
                "customer": {"name": "Åsa Öberg — Café «Blå»", "email": "asa@example.se"},
            },
        }
    )


def command(n: int) -> Envelope:
    return registry.parse_obj(
        {
            "id": f"stock.fx:A{n:04d}@abc",
            "tenant": "shop-a",
            "type": "fortnox.stock.apply",
            "occurred_at": AT.isoformat(),
            "source": "kassasync",
            "caused_by": f"tick-{n}",
            "data": {"article_number": f"A{n:04d}", "delta": "-2"},
        }
    )


def old_row(db: Database, seq: int, message: Envelope) -> None:
    """A row as every version before packing wrote it: columns filled, the envelope as JSON."""
    db.conn.execute(
        f"INSERT INTO {log_table(Topic(message.TOPIC))} "
        "(seq, tenant, type, msg_id, at, payload) VALUES (?, ?, ?, ?, ?, ?)",
        (
            seq,
            message.tenant,
            message.type,  # type: ignore[attr-defined]
            message.id,
            message.occurred_at.isoformat(),
            registry.dump(message),
        ),
    )
    db.conn.execute("UPDATE meta SET value = ? WHERE name = 'seq'", (str(seq),))


def without_position(record: LogRecord) -> tuple[object, ...]:
    return (record.topic, record.tenant, record.type, record.msg_id, record.at, record.payload)


# -- the format -------------------------------------------------------------------------------


def test_the_dictionary_and_the_format_never_change() -> None:
    """Every packed row on disk depends on these: a change makes them unreadable."""
    assert compact.FORMAT == 1
    assert compact.WBITS == -13
    assert len(compact.DICTIONARY) == 8192
    assert (
        hashlib.sha256(compact.DICTIONARY).hexdigest()
        == "181e89d802869082589bdadc441d96ac7e9446a69a9c97dc10ce3e467b73a347"
    )


def test_a_blob_packed_by_this_version_reads_for_ever() -> None:
    """Bytes packed when the format was made (deflate's output may differ from one zlib to
    another; what it wrote must read the same everywhere)."""
    blob = bytes.fromhex(
        "01c31b92e690b03300d67426a074656c606568a9676c626a666ea16d60882deccc31422b917068e1b180aa41668e2dc0cc09051100"
    )
    row = compact.unpack(blob)
    assert row == (
        "till.stock.movement",
        "movement-7",
        "2026-03-14T09:30:19.345678+01:00",
        registry.dump(sale(7)),
    )


def test_packing_keeps_every_byte_and_takes_a_fraction_of_them() -> None:
    for message in (sale(3), sale(4, "-12.5"), customer(), command(9)):
        payload = registry.dump(message)
        kind, ident, at = message.type, message.id, message.occurred_at.isoformat()  # type: ignore[attr-defined]
        blob = compact.pack(kind, ident, at, payload)
        assert blob[0] == compact.FORMAT
        assert compact.unpack(blob) == (kind, ident, at, payload)
        assert compact.payload_of(blob) == payload
        # The type, id and time are in the envelope already: the whole row packs to less than
        # half of the envelope alone.
        assert len(blob) * 2 < len(payload), (len(blob), len(payload))
    # Any bytes after the head, NUL included.
    assert compact.unpack(compact.pack("t", "i", "a", b"\x00{\x00}")) == (
        "t",
        "i",
        "a",
        b"\x00{\x00}",
    )


def test_what_was_not_packed_reads_as_it_is() -> None:
    envelope = registry.dump(sale(1))
    for blob in (envelope, b"", b"not json"):
        assert compact.unpack(blob) is None
        assert compact.payload_of(blob) == blob


def test_a_damaged_packed_blob_is_an_error_not_another_message() -> None:
    blob = compact.pack("till.stock.movement", "m-1", "2026", registry.dump(sale(1)))
    for damaged in (blob[:-3], blob + b"\x00", blob[:1] + b"\xff" + blob[2:]):
        with pytest.raises((ValueError, zlib.error)):
            compact.unpack(damaged)


# -- the log ----------------------------------------------------------------------------------


def test_a_log_row_keeps_its_columns_packed_and_reads_them_back(tmp_path: Path) -> None:
    db = Database(tmp_path / "k.db")
    log = Log(db)
    messages: list[Envelope] = [
        sale(1),
        customer(),
        Tick(id="tick-1", tenant="shop-a", occurred_at=AT),
    ]
    log.append(messages[0])
    log.append_many(messages[1:])
    stored = db.conn.execute(
        f'SELECT type, msg_id, at, payload FROM {log_table(Topic.TILL_EVENTS)} ORDER BY "offset"'
    ).fetchall()
    assert [(t, m, a) for t, m, a, _ in stored] == [("", "", ""), ("", "", "")]
    assert all(bytes(p)[0] == compact.FORMAT for *_, p in stored)
    records = log.read(RECONCILED_TOPICS, {}, 10)
    assert [without_position(r) for r in records] == [
        (
            Topic(m.TOPIC),
            m.tenant,
            m.type,  # type: ignore[attr-defined]
            m.id,
            m.occurred_at.isoformat(),
            registry.dump(m),
        )
        for m in messages
    ]
    assert [r.message() for r in records] == messages


def test_rows_written_before_packing_still_read_beside_new_ones(tmp_path: Path) -> None:
    """A store from an earlier version: its rows read as they did, and the rows appended after
    the upgrade come after them, each exactly as written."""
    db = Database(tmp_path / "k.db")
    with db.transaction():
        old_row(db, 1, sale(1))
        old_row(db, 2, customer())
    log = Log(db)
    log.append(sale(2))
    records = log.read([Topic.TILL_EVENTS], {}, 10, tenant="shop-a")
    assert [r.msg_id for r in records] == ["movement-1", "customer-1", "movement-2"]
    assert [r.seq for r in records] == [1, 2, 3]
    assert [r.message() for r in records] == [sale(1), customer(), sale(2)]
    assert [r.payload for r in records] == [
        registry.dump(m) for m in (sale(1), customer(), sale(2))
    ]
    assert [r.at for r in records] == [
        m.occurred_at.isoformat() for m in (sale(1), customer(), sale(2))
    ]
    # The same message appended the old way and the new way reads the same.
    fresh = Log(Database(tmp_path / "new.db"))
    fresh.append(sale(1))
    fresh.append(customer())
    assert [without_position(r) for r in fresh.read([Topic.TILL_EVENTS], {}, 10)] == [
        without_position(r) for r in records[:2]
    ]


def test_a_resend_of_an_event_stored_before_packing_is_still_a_duplicate(tmp_path: Path) -> None:
    """Ingest compares a resend with the event on the log by value, packed or not."""
    db = Database(tmp_path / "k.db")
    edge = Edge(db)
    with db.transaction():
        old_row(db, 1, sale(1))
        db.conn.execute(
            'INSERT INTO ingest_seen (tenant, msg_id, "offset", at, digest) VALUES (?, ?, ?, ?, ?)',
            ("shop-a", "movement-1", 1, 0.0, None),
        )
    again = store(edge, "shop-a", [sale(1), sale(2)])
    assert (again.accepted, again.duplicates, again.conflicts) == (1, 1, [])
    # Both forms: a changed event under either id is a conflict.
    changed = [sale(1, "-5"), sale(2, "-5")]
    for event in changed:
        assert len(store(edge, "shop-a", [event]).conflicts) == 1
    assert store(edge, "shop-a", [sale(2)]).duplicates == 1


# -- the outbox -------------------------------------------------------------------------------


def test_the_outbox_keeps_a_command_packed_and_hands_it_out_as_written(tmp_path: Path) -> None:
    db = Database(tmp_path / "k.db")
    outbox = Outbox(db)
    with db.transaction():
        outbox.enqueue(command(1), registry.dump(command(1)))
        # A row queued by an earlier version (or by the Kafka read model): plain JSON.
        db.conn.execute(
            "INSERT INTO outbox (command_id, tenant, target, type, payload, created_at, lane) "
            "VALUES (?, ?, 'fortnox', ?, ?, 0, ?)",
            (command(2).id, "shop-a", command(2).type, registry.dump(command(2)), "article:A0002"),
        )
    stored = db.conn.execute("SELECT payload FROM outbox ORDER BY seq").fetchall()
    assert bytes(stored[0][0])[0] == compact.FORMAT
    assert bytes(stored[1][0]) == registry.dump(command(2))
    for n in (1, 2):
        row = outbox.get(command(n).id)
        assert row is not None
        assert row.pending.payload == registry.dump(command(n))
        assert row.pending.command() == command(n)
    head = outbox.head("fortnox", "shop-a")
    assert head is not None and head.payload == registry.dump(command(1))
    assert outbox.get(command(1).id).lane == "article:A0001"  # type: ignore[union-attr]


def test_the_processor_packs_a_command_once_for_its_log_row_and_its_outbox_row(
    tmp_path: Path,
) -> None:
    """A command's outbox row keeps the bytes its log row keeps; both hand out the envelope the
    reconciler made."""
    puts = [("a", ("put", f"A{n}", 0, None, Decimal("12.50"), None, True)) for n in (1, 2, 3)]
    world = mixed_run(CustomerMaster.TILL, [*puts, *[("a", ("poll", f"A{n}")) for n in (1, 2, 3)]])
    db = Database(tmp_path / "kassasync.db")
    Log(db).append_many(world.processed)
    processor = Processor(db, log_notes=False)
    while any(processor.lag().values()):
        processor.step()
    commands = Log(db).read([Topic.FORTNOX_COMMANDS, Topic.TILL_COMMANDS], {}, 10**6)
    assert commands
    outbox = Outbox(db)
    for record in commands:
        table = log_table(record.topic)
        logged = db.conn.execute(
            f'SELECT payload FROM {table} WHERE "offset" = ?', (record.offset,)
        ).fetchone()[0]
        queued = db.conn.execute(
            "SELECT payload FROM outbox WHERE command_id = ?", (record.msg_id,)
        ).fetchone()[0]
        assert bytes(queued) == bytes(logged) and bytes(logged)[0] == compact.FORMAT
        row = outbox.get(record.msg_id)
        assert row is not None and row.pending.payload == record.payload
        assert registry.parse(record.payload).id == record.msg_id


def test_a_slimmed_delivered_command_keeps_what_recognises_it_and_no_lane(tmp_path: Path) -> None:
    """An hour after delivery retention drops a command's payload and its lane (the lane only
    orders pending commands): the command is still recognised, the pending one behind it in the
    same lane keeps its lane and goes first."""
    db = Database(tmp_path / "k.db")
    outbox = Outbox(db)
    first, second = command(1), command(1).model_copy(update={"id": "stock.fx:A0001@def"})
    with db.transaction():
        outbox.enqueue(first, registry.dump(first))
        outbox.enqueue(second, registry.dump(second))
        outbox.done(first.id)
    delivered = outbox.get(first.id)
    assert delivered is not None
    policy = RetentionPolicy()
    later = delivered.created_at + policy.slim_after.total_seconds() + 60
    Retention(db, policy, clock=lambda: later).run_once()
    slim = db.conn.execute(
        "SELECT payload, lane, type, tenant, status FROM outbox WHERE command_id = ?", (first.id,)
    ).fetchone()
    assert (bytes(slim[0]), slim[1:]) == (b"", ("", "fortnox.stock.apply", "shop-a", "done"))
    with db.transaction():  # made again (a replay after a crash): recognised, not queued again
        outbox.enqueue(first, registry.dump(first))
    assert db.conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 2
    waiting = outbox.get(second.id)
    assert waiting is not None and waiting.lane == "article:A0001"
    head = outbox.head("fortnox", "shop-a")
    assert head is not None and head.command_id == second.id
    assert head.payload == registry.dump(second)
