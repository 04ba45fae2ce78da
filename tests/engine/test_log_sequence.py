"""Every writer of the embedded log draws from one sequence, in this process or another."""

from __future__ import annotations

from pathlib import Path

from engine.clock import utcnow
from engine.store.db import Database
from engine.store.log import Log
from topics.names import RECONCILED_TOPICS
from topics.outcomes import Tick
from topics.registry import pack


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


def test_packed_messages_are_filed_as_the_messages_themselves(tmp_path: Path) -> None:
    """A full pass packs its records ahead of the append: the log cannot tell them apart."""
    packed_log = Log(Database(tmp_path / "packed.db"))
    plain_log = Log(Database(tmp_path / "plain.db"))
    messages = [tick(n) for n in range(5)]
    assert pack(pack(messages[0])) == pack(messages[0])
    packed_log.append_many([pack(m) if n % 2 else m for n, m in enumerate(messages)])
    plain_log.append_many(messages)
    packed = packed_log.read(RECONCILED_TOPICS, {}, 100)
    plain = plain_log.read(RECONCILED_TOPICS, {}, 100)
    assert packed == plain
    assert [r.message() for r in packed] == messages
