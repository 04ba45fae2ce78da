"""The one processing step (engine.core.process): every fault of a message is its dead letter,
faults of the machine propagate, and admission decides duplicates."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterator

import pytest

from engine.core import process as core
from engine.core.process import Admitted, Inbound, Outcome, process
from reconcilers import dispatch
from reconcilers.context import Ctx
from reconcilers.state import Due, MemoryState, Record
from topics.envelope import Envelope
from topics.names import Topic

TENANT = "shop1"


def movement(occurred_at: str = "2026-12-04T10:00:00+01:00", **data: object) -> bytes:
    body = {
        "id": "e1",
        "tenant": TENANT,
        "type": "till.stock.movement",
        "occurred_at": occurred_at,
        "source": "till",
        "data": {
            "article_number": "A1",
            "movement_id": "m1",
            "delta": "-1",
            "reason": "sale",
            **data,
        },
    }
    return json.dumps(body).encode()


def inbound(payload: bytes, tenant: str = TENANT) -> Inbound:
    return Inbound(Topic.TILL_EVENTS, tenant, "till.events:7", payload)


def test_a_valid_message_is_applied() -> None:
    step = process(MemoryState(), inbound(movement()))
    assert step.outcome is Outcome.APPLIED
    assert step.message_type == "till.stock.movement"
    assert step.puts  # the movement is recorded
    assert step.error is None
    assert step.wake_at is None or step.wake_at.tzinfo is dt.UTC


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe not json", "ValidationError"),
        (b'{"type": "till.stock.movement"}', "ValidationError"),
        (b'{"id": "x", "type": "no.such.type"}', "ValidationError"),
        (b"[" * 100_000, ""),
    ],
)
def test_a_message_that_does_not_parse_is_a_dead_letter(payload: bytes, reason: str) -> None:
    step = process(MemoryState(), inbound(payload))
    assert step.outcome is Outcome.DEAD
    assert step.error is not None
    assert reason in (step.error.message)
    assert not step.puts and not step.commands


def test_a_message_filed_under_another_tenant_is_a_dead_letter() -> None:
    step = process(MemoryState(), inbound(movement(), tenant="shop2"))
    assert step.outcome is Outcome.DEAD
    assert step.error is not None and "differs from its key" in step.error.message


def test_any_exception_of_a_reconciler_is_a_dead_letter(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: object) -> None:
        raise ZeroDivisionError("the reconciler divided by zero")

    monkeypatch.setitem(dispatch._HANDLERS, "till.stock.movement", boom)
    step = process(MemoryState(), inbound(movement()))
    assert step.outcome is Outcome.DEAD
    assert step.error is not None and "ZeroDivisionError" in step.error.message


def test_a_wake_time_beyond_utc_is_a_dead_letter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Year 1 at +01:00 is year 0 in UTC: the step that once killed the processor for good (the
    door now refuses such dates; a reconciler computing one must still not stop anything)."""

    def wake_early(ctx: Ctx, msg: Envelope) -> None:
        ctx.txn.wake(dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))))

    monkeypatch.setitem(dispatch._HANDLERS, "till.stock.movement", wake_early)
    step = process(MemoryState(), inbound(movement()))
    assert step.outcome is Outcome.DEAD
    assert step.error is not None and "Overflow" in step.error.message


def test_a_long_reason_is_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: object) -> None:
        raise ValueError("x" * 100_000)

    monkeypatch.setitem(dispatch._HANDLERS, "till.stock.movement", boom)
    step = process(MemoryState(), inbound(movement()))
    assert step.error is not None
    assert len(step.error.message) < core.MAX_REASON + 100


class BrokenStore:
    """A state view whose disk has gone: reads raise as SQLite does."""

    def get(self, kind: str, key: str) -> Record | None:
        raise sqlite3.OperationalError("disk I/O error")

    def scan(self, kind: str) -> Iterator[tuple[str, Record]]:
        raise sqlite3.OperationalError("disk I/O error")

    def due(self, until: int) -> Due:
        raise sqlite3.OperationalError("disk I/O error")


def test_a_fault_of_the_machine_is_not_the_message_s_fault() -> None:
    with pytest.raises(sqlite3.OperationalError):
        process(BrokenStore(), inbound(movement()))


def test_admission_decides_duplicates_and_its_bookkeeping_survives_a_dead_letter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: set[str] = set()

    def admit(state: object, topic: Topic, message: Envelope) -> Admitted | None:
        if message.id in seen:
            return None
        seen.add(message.id)
        return Admitted({("~seen", message.id): {"at": "now"}})

    first = process(MemoryState(), inbound(movement()), admit)
    assert first.outcome is Outcome.APPLIED and first.admitted == {("~seen", "e1"): {"at": "now"}}
    again = process(MemoryState(), inbound(movement()), admit)
    assert again.outcome is Outcome.DUPLICATE

    def boom(*_: object) -> None:
        raise RuntimeError("poison")

    monkeypatch.setitem(dispatch._HANDLERS, "till.stock.movement", boom)
    seen.clear()
    dead = process(MemoryState(), inbound(movement()), admit)
    assert dead.outcome is Outcome.DEAD
    assert dead.admitted == {("~seen", "e1"): {"at": "now"}}
