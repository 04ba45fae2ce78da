"""Durable where it matters (issue 13): commits survive an OS crash, and a voucher whose record of
its first attempt was lost (rolled back by a power loss) is found in Fortnox, not posted twice."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from engine.store.db import Database
from tests.scenarios.harness import EmbeddedRuntime
from tests.scenarios.test_bookkeeping import _vouchers, worked_example

#: PRAGMA synchronous values: 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA.
NORMAL, FULL = 1, 2


def synchronous(db: Database) -> int:
    return int(db.conn.execute("PRAGMA synchronous").fetchone()[0])


def test_a_durable_transaction_is_fsynced_before_it_returns(tmp_path: Path) -> None:
    """WAL is sequential: fsyncing a durable commit makes every commit before it durable too."""
    db = Database(tmp_path / "kassasync.db")
    try:
        assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert synchronous(db) == NORMAL
        with db.transaction(durable=True):
            assert synchronous(db) == FULL
        assert synchronous(db) == NORMAL
        # Joined by a durable one, the outer commit is followed by a checkpoint (which syncs the
        # WAL): nothing is left in the WAL that was not synced.
        with db.transaction() as conn:
            conn.execute("INSERT INTO meta (name, value) VALUES ('x', '1')")
            with db.transaction(durable=True):
                pass
        busy, wal_frames, checkpointed = db.conn.execute(
            "PRAGMA wal_checkpoint(PASSIVE)"
        ).fetchone()
        assert busy == 0 and wal_frames == checkpointed
        assert synchronous(db) == NORMAL
        try:
            with db.transaction(durable=True):
                raise ValueError("rolled back")
        except ValueError:
            pass
        assert synchronous(db) == NORMAL
    finally:
        db.close()


async def test_a_voucher_whose_attempt_was_forgotten_is_found_not_posted_again(
    tmp_path: Path,
) -> None:
    async with EmbeddedRuntime(tmp_path / "run") as rt:
        await rt.settle()
        db = rt.engine.db
        real = db.transaction
        flags: list[bool] = []

        def spy(*, durable: bool = False) -> Any:
            flags.append(durable)
            return real(durable=durable)

        db.transaction = spy  # type: ignore[method-assign]
        assert (await rt.send(worked_example())).status_code == 202
        db.transaction = real  # type: ignore[method-assign]
        assert flags and flags[0] is True, "the events are stored durably before the 202"
        await rt.settle()
        year = dt.date.today().year
        assert len(await _vouchers(rt, year)) == 1
        # What a power loss under synchronous=NORMAL could do: the voucher reached Fortnox, but
        # the commits recording the attempt (its intent, its outcome) were rolled back.
        with rt.engine.db.transaction() as conn:
            forgotten = conn.execute(
                "UPDATE outbox SET status = 'pending', attempts = 0, intent = NULL, next_at = 0, "
                "done_at = NULL WHERE type = 'fortnox.voucher.create'"
            ).rowcount
        assert forgotten == 1
        for session in rt.engine.sessions.values():
            session.wakeup.set()
        await rt.settle()
        assert len(await _vouchers(rt, year)) == 1
        row = rt.engine.db.conn.execute(
            "SELECT status, attempts FROM outbox WHERE type = 'fortnox.voucher.create'"
        ).fetchone()
        assert tuple(row) == ("done", 1)
