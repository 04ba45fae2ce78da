"""One settle (issue 12): the embedded edge and the Kafka ports settle a command's attempt with
the same function (engine/executors/settle.py), so the same attempt comes to the same outcome
message, the same decision to log it or not, and the same dead letter on both runtimes. No
broker needed: the Kafka ports' producer is a recorder."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from engine.clock import utcnow
from engine.embedded.edge import Edge
from engine.executors.settle import outcome_logged, settle_command
from engine.kafka.config import KafkaConfig
from engine.kafka.ports import KafkaPorts
from engine.kafka.store import CMD, EXEC, Mirror
from engine.store.db import Database
from engine.store.log import Log
from engine.store.outbox import Pending
from topics import registry
from topics.commands import RegisterTillPayment, RegisterTillPaymentData
from topics.errors import ErrorKind, shop_error
from topics.fortnox import FortnoxPayment
from topics.names import Topic
from topics.outcomes import DeadLetter, OutcomeStatus, SyncOutcome

TENANT = "shop-a"


def _command() -> RegisterTillPayment:
    return RegisterTillPayment(
        id="pay-901",
        tenant=TENANT,
        occurred_at=dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC),
        data=RegisterTillPaymentData(
            payment=FortnoxPayment(
                number="901",
                invoice_number=1901,
                amount=Decimal("125.00"),
                payment_date=dt.date(2026, 11, 20),
            )
        ),
    )


class _Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None]] = []

    def send(self, topic: str, *, key: bytes, value: bytes | None, partition: int) -> Any:
        self.sent.append((topic, value))
        return self

    def get(self, timeout: float | None = None) -> None:
        return None

    def flush(self, timeout: float | None = None) -> None:
        return None


def _embedded(tmp_path: Path, attempts: int) -> tuple[Edge, Pending]:
    db = Database(tmp_path / "engine.db")
    edge = Edge(db)
    command = _command()
    with db.transaction():
        edge.outbox.enqueue(command, registry.dump(command))
        db.conn.execute("UPDATE outbox SET attempts = ?", (attempts,))
    pending = edge.outbox.head("till", TENANT)
    assert pending is not None and pending.attempts == attempts
    return edge, pending


def _kafka(attempts: int) -> tuple[KafkaPorts, _Recorder, Pending]:
    config = KafkaConfig(bootstrap="127.0.0.1:9", prefix="t.", data_dir=Path("/nonexistent"))
    recorder = _Recorder()
    ports = KafkaPorts(
        config,
        Mirror(config.partitions),
        lambda _: True,
        lambda *_: None,
        recorder,  # type: ignore[arg-type]
    )
    command = _command()
    cmd = {
        "seq": 1,
        "target": "till",
        "type": command.type,
        "payload": registry.dump(command).decode(),
        "status": "pending",
        "attempts": attempts,
    }
    ports._data(TENANT).set(CMD, command.id, cmd)
    ports.enqueue(TENANT, "till", command.id, 1)
    pending = ports.head("till", TENANT)
    assert pending is not None and pending.attempts == attempts
    return ports, recorder, pending


def _embedded_messages(edge: Edge) -> tuple[list[SyncOutcome], list[dict[str, Any]]]:
    log = Log(edge.db)
    records = log.read([Topic.SYNC_OUTCOMES], {}, 100)
    outcomes = [m for m in (r.message() for r in records) if isinstance(m, SyncOutcome)]
    letters = [dict(row) for row in edge.dead.list(TENANT)]
    return outcomes, letters


@pytest.mark.parametrize(
    ("status", "before"),
    [
        (OutcomeStatus.DONE, 0),
        (OutcomeStatus.REJECTED, 1),
        (OutcomeStatus.RETRYING, 0),  # attempt 1: logged
        (OutcomeStatus.RETRYING, 2),  # attempt 3: not logged (a long outage must not flood)
        (OutcomeStatus.RETRYING, 15),  # attempt 16: logged again
    ],
)
def test_the_same_attempt_settles_the_same_on_both_runtimes(
    tmp_path: Path, status: OutcomeStatus, before: int
) -> None:
    error = None
    if status is not OutcomeStatus.DONE:
        error = shop_error(ErrorKind.TILL_UNREACHABLE, detail="HTTP 503")
        if status is OutcomeStatus.REJECTED:
            error = shop_error(ErrorKind.TILL_REFUSED, subject="payment", detail="HTTP 400")
    result = {"ok": "true"} if status is OutcomeStatus.DONE else None
    attempt = before + 1

    edge, pending = _embedded(tmp_path, before)
    edge.settle(pending, status, result=result, error=error, retry_in=30.0)
    outcomes, letters = _embedded_messages(edge)

    ports, recorder, kpending = _kafka(before)
    ports.settle(kpending, status, result=result, error=error, retry_in=30.0)
    changelog = ports.config.state_changelog
    produced = [registry.parse(v) for t, v in recorder.sent if v and t != changelog]
    k_outcomes = [m for m in produced if isinstance(m, SyncOutcome)]
    k_letters = [m for m in produced if isinstance(m, DeadLetter)]

    logged = outcome_logged(status, attempt)
    assert len(outcomes) == len(k_outcomes) == (1 if logged else 0)
    for embedded, kafka in zip(outcomes, k_outcomes, strict=True):
        assert embedded.id == kafka.id == f"outcome-pay-901-{attempt}"
        assert embedded.data == kafka.data
        assert embedded.data.attempt == attempt and embedded.data.status is status
    assert len(letters) == len(k_letters) == (1 if status is OutcomeStatus.REJECTED else 0)
    for row, letter in zip(letters, k_letters, strict=True):
        assert row["id"] == letter.data.dead_letter_id == "pay-901"
        assert row["topic"] == letter.data.topic == "till.commands"
        assert row["type"] == letter.data.message_type == "till.payment.register"
        assert row["message"] == letter.data.message
        assert row["error"]["kind"] == letter.data.error.kind.value
    # Each runtime's own record of the attempt: the outbox row, the ``~exec`` mark.
    row = edge.outbox.get("pay-901")
    assert row is not None
    marks = ports._data(TENANT).get(EXEC, "pay-901")
    assert marks is not None and marks["settled"]["attempt"] == attempt
    if status is OutcomeStatus.RETRYING:
        assert row.status == "pending" and row.pending.attempts == attempt
        assert row.pending.next_at == pytest.approx(marks["settled"]["retry_at"], abs=5)
    else:
        assert row.status == ("done" if status is OutcomeStatus.DONE else "dead")


def test_a_refusal_without_its_error_is_a_programming_error() -> None:
    pending = Pending(1, "c1", TENANT, "till", "till.payment.register", b"{}", 0, 0.0, None)
    with pytest.raises(ValueError, match="needs its error"):
        settle_command(pending, OutcomeStatus.REJECTED, at=utcnow())
