"""Every writer of the embedded log draws from one sequence, in this process or another."""

from __future__ import annotations

from pathlib import Path

from engine.clock import utcnow
from engine.store.db import Database
from engine.store.log import Log
from topics.names import RECONCILED_TOPICS
from topics.outcomes import Tick


def tick(n: int) -> Tick:
    return Tick(id=f"t{n}", tenant="shop", occurred_at=utcnow())


def test_two_logs_on_one_database_never_reuse_a_sequence_number(tmp_path: Path) -> None:
    first = Database(tmp_path / "k.db")
    second = Database(tmp_path / "k.db")  # as another process would open it
    a, b = Log(first), Log(second)
    for n in range(10):
        (a if n % 3 else b).append(tick(n))
    records = a.read(RECONCILED_TOPICS, {}, 100)
    assert [r.msg_id for r in records] == [f"t{n}" for n in range(10)]
    assert len({r.seq for r in records}) == 10
    # A log opened later carries on after the highest number.
    Log(Database(tmp_path / "k.db")).append(tick(10))
    assert a.read(RECONCILED_TOPICS, {}, 100)[-1].msg_id == "t10"
