"""Retention of the embedded store (engine/store/retention.py): the log is trimmed below a base
state that replay starts from, de-duplication records and delivered commands expire after the
redelivery window, and the store stops growing.

The simulation is the retention benchmark's (``bench/retention.py``) at a small size: shops'
days of till events through the ingest door's store, Fortnox changes, the real processor,
commands settled at once, retention every simulated hour on the simulated clock.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from bench.gen import TenantPlan, tenant_id
from bench.retention import PASS_EVERY, Shop, _days
from engine.gateway.ingest import REDELIVERY_WINDOW, SEEN_FOR
from engine.replay import embedded_replay
from engine.store.db import log_table
from engine.store.log import Log
from engine.store.retention import RetentionPolicy, base_mark, base_state
from topics.names import RECONCILED_TOPICS, Topic

SMALL = TenantPlan(
    articles=20,
    customers=5,
    polls=20,
    till_customers=3,
    edits=2,
    invoices=2,
    zreports=1,
    ticks=10,
    movements=150,
)
POLICY = RetentionPolicy(log_keep=dt.timedelta(days=1), seen_for=SEEN_FOR)
TENANTS = (tenant_id(0), tenant_id(1))


def simulate(folder: Path, days: int, *, retention: bool = True) -> Shop:
    shop = Shop(folder, retention, POLICY)
    for day, messages in _days(len(TENANTS), days, SMALL):
        for start in range(0, len(messages), 100):
            shop.feed(messages[start : start + 100])
        shop.close_day(day)
    return shop


def oldest_at(shop: Shop, topic: Topic) -> str | None:
    first = Log(shop.db).read([topic], {}, 1)
    return first[0].at if first else None


def test_replay_from_the_base_and_the_kept_log_is_exact(tmp_path: Path) -> None:
    shop = simulate(tmp_path / "on", days=4)
    assert shop.retention is not None
    status = shop.retention.status
    assert status.log_rows_trimmed > 0
    base = base_mark(shop.db)
    assert base is not None
    # The kept log starts about a day (plus up to one mark interval) before the last pass.
    keep_from = shop.now - POLICY.log_keep - POLICY.mark_every - PASS_EVERY
    for topic in RECONCILED_TOPICS:
        first = oldest_at(shop, topic)
        if first is not None and topic is not Topic.SYNC_CONTROL:
            assert dt.datetime.fromisoformat(first) >= keep_from, topic
    for tenant in TENANTS:
        offsets, records = base_state(shop.db, tenant)
        assert offsets and records
        result = embedded_replay(tmp_path / "on", tenant)
        assert result.messages > 0
        assert result.differences == []
        assert result.new_commands == []
    shop.db.close()


def test_the_store_stops_growing_and_nothing_outlives_the_window(tmp_path: Path) -> None:
    shop = simulate(tmp_path / "on", days=6)
    assert shop.retention is not None
    cutoff = shop.now.timestamp() - REDELIVERY_WINDOW.total_seconds() - 3600
    seen_oldest = shop.db.conn.execute("SELECT MIN(at) FROM ingest_seen").fetchone()[0]
    assert seen_oldest is not None and seen_oldest >= cutoff
    # Delivered commands are kept as long as the log keeps the messages that made them.
    delivered_cutoff = shop.now.timestamp() - POLICY.delivered_for.total_seconds() - 3600
    done_oldest = shop.db.conn.execute(
        "SELECT MIN(done_at) FROM outbox WHERE status = 'done'"
    ).fetchone()[0]
    assert done_oldest is not None and done_oldest >= delivered_cutoff
    assert POLICY.delivered_for == POLICY.log_keep + POLICY.mark_every
    # Every command the command topics' log still holds (made after the base) still has its
    # outbox row: it cannot be queued twice, and operators find it.
    kept = Log(shop.db).read([Topic.FORTNOX_COMMANDS, Topic.TILL_COMMANDS], {}, 10**7)
    ids = {str(r[0]) for r in shop.db.conn.execute("SELECT command_id FROM outbox").fetchall()}
    assert len(kept) > 100
    assert [r.msg_id for r in kept[1:] if r.msg_id not in ids] == []
    slim_before = shop.now.timestamp() - POLICY.slim_after.total_seconds() - 3600
    full = shop.db.conn.execute(
        "SELECT COUNT(*) FROM outbox WHERE status = 'done' AND length(payload) > 0 AND done_at < ?",
        (slim_before,),
    ).fetchone()[0]
    assert full == 0  # delivered commands keep their id, not their payload
    slim = shop.db.conn.execute(
        "SELECT COUNT(*) FROM outbox WHERE status = 'done' AND length(payload) = 0"
    ).fetchone()[0]
    assert slim > 0
    status = shop.retention.status
    assert status.seen_expired > 0 and status.outbox_deleted > 0
    # Days 5 and 6 are alike: past the window the store holds the same amount of everything.
    fifth = shop.size()
    shop.db.close()
    again = simulate(tmp_path / "again", days=5)
    assert again.size() <= fifth * 1.1
    again.db.close()


def test_offsets_are_never_handed_out_twice_after_a_trim(tmp_path: Path) -> None:
    shop = simulate(tmp_path / "on", days=3)
    for topic in Topic:
        table = log_table(topic)
        count, top = shop.db.conn.execute(f'SELECT COUNT(*), MAX("offset") FROM {table}').fetchone()
        if top is None:
            continue
        assert count >= 1  # the last row of every topic stays
    before = shop.db.conn.execute(
        f'SELECT MAX("offset") FROM {log_table(Topic.TILL_EVENTS)}'
    ).fetchone()[0]
    *_, (_, fourth) = _days(len(TENANTS), 4, SMALL)  # a day the store has not seen yet
    shop.feed([m for m in fourth if m[0] == "till.events"][:5])
    after = shop.db.conn.execute(
        f'SELECT MIN("offset") FROM {log_table(Topic.TILL_EVENTS)} WHERE "offset" > ?', (before,)
    ).fetchone()[0]
    assert after == before + 1
    shop.db.close()


def test_the_sie_imports_ids_are_kept_for_ever(tmp_path: Path) -> None:
    """A till's message ids expire after the window; the ids of vouchers queued from SIE files
    are that import's record of what was booked (a re-import posts nothing), kept for ever."""
    shop = Shop(tmp_path / "on", True, POLICY)
    with shop.db.transaction() as conn:
        conn.executemany(
            'INSERT INTO ingest_seen (tenant, msg_id, "offset", at) VALUES (?, ?, 0, 0)',
            [("shop", "sie-v1-abc"), ("shop", "ev-1")],
        )
    assert shop.retention is not None
    shop.retention.run_once()
    kept = shop.db.conn.execute("SELECT msg_id FROM ingest_seen").fetchall()
    assert kept == [("sie-v1-abc",)]
    shop.db.close()


async def test_the_engine_runs_retention_as_a_supervised_loop(tmp_path: Path) -> None:
    import asyncio

    from engine.embedded.runtime import EmbeddedEngine
    from engine.secrets import SecretBox, generate_key

    engine = EmbeddedEngine(tmp_path, SecretBox(generate_key()), retention_seconds=0.05)
    stop = asyncio.Event()
    running = asyncio.create_task(engine.run(stop, serve_http=False))
    try:
        for _ in range(200):
            if engine.retention.status.passes >= 2:
                break
            await asyncio.sleep(0.05)
        assert engine.retention.status.passes >= 2
        assert "retention" in engine.supervisor.loops
        assert engine.health().ok
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=30)
    off = EmbeddedEngine(tmp_path / "off", SecretBox(generate_key()), retention_seconds=0)
    stop = asyncio.Event()
    running = asyncio.create_task(off.run(stop, serve_http=False))
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.wait_for(running, timeout=30)
    assert off.retention.status.passes == 0
    assert "retention" not in off.supervisor.loops
