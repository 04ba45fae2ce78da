"""Head-of-line: a command waiting for its retry holds back only its own lane (the same entity,
or the same flow where the books need one order); a back office that fails every command is
probed one command at a time."""

from __future__ import annotations

import datetime as dt
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.embedded.edge import Edge
from engine.executors.breaker import Breaker
from engine.store.db import Database
from engine.store.lanes import lane_of
from engine.store.outbox import Pending
from tests.reconcilers.test_replay_properties import mixed_action, mixed_run
from topics import commands as cm
from topics import registry
from topics.errors import ErrorKind, shop_error
from topics.fortnox import FortnoxPayment
from topics.outcomes import OutcomeStatus
from topics.settings import CustomerMaster

TENANT = "shop"


def stock(command_id: str, article: str) -> cm.ApplyFortnoxStock:
    return cm.ApplyFortnoxStock.model_validate(
        {
            "id": command_id,
            "tenant": TENANT,
            "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
            "data": {"article_number": article, "delta": "-1"},
        }
    )


def payment(command_id: str, number: str) -> cm.RegisterTillPayment:
    return cm.RegisterTillPayment(
        id=command_id,
        tenant=TENANT,
        occurred_at=dt.datetime.now(dt.UTC),
        data=cm.RegisterTillPaymentData(
            payment=FortnoxPayment(
                number=number,
                invoice_number=1,
                amount=Decimal("10.00"),
                payment_date=dt.date(2026, 12, 1),
            )
        ),
    )


@pytest.fixture
def edge(tmp_path: Path) -> Edge:
    return Edge(Database(tmp_path / "kassasync.db"))


def enqueue(edge: Edge, *commands: cm.Command) -> None:
    with edge.db.transaction():
        for command in commands:
            edge.outbox.enqueue(command, registry.dump(command))


def fail(edge: Edge, command_id: str, target: str, retry_in: float) -> None:
    pending = edge.head(target, TENANT)
    assert pending is not None and pending.command_id == command_id
    error = shop_error(ErrorKind.TILL_UNREACHABLE, detail="HTTP 503")
    edge.settle(pending, OutcomeStatus.RETRYING, error=error, retry_in=retry_in)


def test_lanes_name_the_entity_or_the_flow() -> None:
    assert lane_of("fortnox.stock.apply", registry.dump(stock("c", "1001"))) == "article:1001"
    assert lane_of("till.payment.register", registry.dump(payment("c", "77"))) == "payment:77"
    assert lane_of("fortnox.voucher.create", b"{}") == "vouchers"
    assert lane_of("till.ledger.voucher", b"{}") == "ledger"
    order = {"data": {"customer_number": "K1"}}
    create = {"data": {"customer_number": "K1", "till_customer_id": "c1"}}
    # An order waits behind the creation of its customer: one lane.
    assert lane_of("fortnox.order.create", order) == lane_of("fortnox.customer.create", create)
    assert lane_of("some.future.command", b"{}") == "type:some.future.command"


def test_a_retrying_command_holds_back_only_its_lane(edge: Edge) -> None:
    enqueue(
        edge,
        stock("a1", "1001"),
        stock("b1", "1002"),
        stock("a2", "1001"),
        stock("c1", "1003"),
    )
    fail(edge, "a1", "fortnox", retry_in=3600)
    # a2 is behind a1 in lane article:1001; b1 and c1 are not.
    assert [pending.command_id for pending in drain(edge, "fortnox")] == ["b1", "c1"]
    waiting = edge.head("fortnox", TENANT)
    assert waiting is not None and waiting.command_id == "a1"  # soonest due: the caller waits
    assert waiting.next_at > time.time() + 3000
    with edge.db.transaction():
        assert edge.outbox.retry_now("a1")
    assert [pending.command_id for pending in drain(edge, "fortnox")] == ["a1", "a2"]


def drain(edge: Edge, target: str) -> list[Pending]:
    """Deliver every due command as an executor does (head, then settle DONE)."""
    done: list[Pending] = []
    while True:
        pending = edge.head(target, TENANT)
        if pending is None or pending.next_at > time.time():
            return done
        edge.settle(pending, OutcomeStatus.DONE)
        done.append(pending)


def test_per_lane_order_holds_with_many_retries(edge: Edge) -> None:
    """Whatever fails and when, each lane's commands are delivered in their order."""
    commands = [payment(f"p{n}-{i}", str(n)) for i in range(3) for n in range(4)]
    enqueue(edge, *commands)
    delivered: list[str] = []
    rounds = 0
    while len(delivered) < len(commands):
        rounds += 1
        pending = edge.head("till", TENANT)
        assert pending is not None
        if pending.next_at > time.time():
            with edge.db.transaction():
                edge.outbox.retry_now(pending.command_id)
            continue
        if rounds % 3 == 0:  # every third attempt fails
            error = shop_error(ErrorKind.TILL_UNREACHABLE, detail="HTTP 503")
            edge.settle(pending, OutcomeStatus.RETRYING, error=error, retry_in=60)
            continue
        edge.settle(pending, OutcomeStatus.DONE)
        delivered.append(pending.command_id)
    for n in range(4):
        mine = [c for c in delivered if c.startswith(f"p{n}-")]
        assert mine == [f"p{n}-{i}" for i in range(3)]


def test_cancel_settles_a_waiting_command_as_refused_and_frees_its_lane(edge: Edge) -> None:
    enqueue(edge, payment("p1", "1"), payment("p1-again", "1"))
    assert edge.cancel("p1", "never tried") is None  # not retrying yet: nothing to cancel
    fail(edge, "p1", "till", retry_in=3600)
    cancelled = edge.cancel("p1", "the till will never take it")
    assert cancelled is not None
    found = edge.outbox.get("p1")
    assert found is not None and found.status == "dead"
    [letter] = edge.dead.list(tenant=TENANT)
    assert letter["id"] == "p1"
    error = letter["error"]
    assert isinstance(error, dict) and error["kind"] == "cancelled_by_operator"
    assert "the till will never take it" in json.dumps(error)
    head = edge.head("till", TENANT)
    assert head is not None and head.command_id == "p1-again"  # its lane goes on
    assert edge.cancel("p1", "twice") is None


def test_a_due_command_cannot_be_cancelled_while_it_may_be_in_flight(edge: Edge) -> None:
    enqueue(edge, payment("p1", "1"))
    fail(edge, "p1", "till", retry_in=0)  # due again at once: an executor may hold it
    assert edge.cancel("p1", "too late") is None
    found = edge.outbox.get("p1")
    assert found is not None and found.status == "pending"


def test_the_breaker_tells_a_down_target_from_one_bad_command() -> None:
    now = [0.0]
    breaker = Breaker(first=1.0, cap=8.0, clock=lambda: now[0])
    breaker.failed()
    assert not breaker.down and breaker.wait() == 0  # one command failing: go on with others
    breaker.succeeded()
    breaker.failed()
    breaker.failed()  # two in a row: the target is down
    assert breaker.down and 0.5 <= breaker.wait() <= 1.5
    waits = []
    for _ in range(8):
        now[0] += 100
        breaker.failed()
        waits.append(breaker.wait())
    assert max(waits) <= 8 * 1.5 and waits[-1] >= 4  # doubling, capped
    breaker.succeeded()
    assert not breaker.down and breaker.wait() == 0
    breaker.failed(30.0)
    breaker.failed(7.0)  # down: wait for the failed command's own backoff, then probe
    assert breaker.wait() == 7.0


class _Sent:
    def get(self, timeout: float | None = None) -> None:
        return None


class _Producer:
    """Stands in for the Kafka producer: the ports' marks go nowhere in this test."""

    def send(self, *args: object, **kwargs: object) -> _Sent:
        return _Sent()

    def flush(self, timeout: float | None = None) -> None:
        return None


def test_the_kafka_ports_keep_the_same_lanes(tmp_path: Path) -> None:
    from engine.kafka.config import KafkaConfig
    from engine.kafka.ports import KafkaPorts
    from engine.kafka.store import CMD, Mirror
    from engine.kafka.topics import partition_for

    config = KafkaConfig(data_dir=tmp_path)
    mirror = Mirror(config.partitions)
    ports = KafkaPorts(config, mirror, lambda _t: True, lambda _k, _v: None, _Producer())  # type: ignore[arg-type]
    data = mirror.tenant(TENANT, partition_for(TENANT, config.partitions))
    for seq, command in enumerate(
        [stock("a1", "1001"), stock("b1", "1002"), stock("a2", "1001"), stock("c1", "1003")], 1
    ):
        record = {
            "seq": seq,
            "target": "fortnox",
            "type": command.type,
            "payload": registry.dump(command).decode(),
            "status": "pending",
            "attempts": 0,
        }
        data.set(CMD, command.id, record)
        ports.enqueue(TENANT, "fortnox", command.id, seq)

    def settle_head(expected: str, status: OutcomeStatus, retry_in: float = 0.0) -> None:
        pending = ports.head("fortnox", TENANT)
        assert pending is not None and pending.command_id == expected
        assert pending.next_at <= time.time()
        error = shop_error(ErrorKind.FORTNOX_UNAVAILABLE, detail="503")
        ports.settle(pending, status, error=error, retry_in=retry_in)
        if status is OutcomeStatus.DONE:  # what the agent does when it sees the outcome
            data.set(CMD, expected, None)

    settle_head("a1", OutcomeStatus.RETRYING, retry_in=3600)
    settle_head("b1", OutcomeStatus.DONE)
    settle_head("c1", OutcomeStatus.DONE)  # a2 waits behind a1 in lane article:1001
    waiting = ports.head("fortnox", TENANT)
    assert waiting is not None and waiting.command_id == "a1"
    assert waiting.next_at > time.time() + 3000


def test_an_operators_retry_now_probes_a_target_taken_for_down(tmp_path: Path) -> None:
    """Embedded as on Kafka (tests/kafka/test_commands.py): "retry now" on a command whose
    target was taken for down lets it be tried at once, rather than when the breaker's backoff
    (up to the failed command's own) ends."""
    from typing import Any, cast

    from engine.embedded.runtime import EmbeddedEngine
    from engine.executors.fortnox import FortnoxSession
    from engine.secrets import SecretBox, generate_key
    from topics.settings import TenantSettings

    engine = EmbeddedEngine(tmp_path / "run", SecretBox(generate_key()))
    try:
        session = FortnoxSession(TENANT, cast(Any, None), engine.ports, TenantSettings)
        engine.sessions[TENANT] = session
        edge = engine.edge
        enqueue(edge, stock("a1", "1001"), stock("b1", "1002"))
        fail(edge, "a1", "fortnox", retry_in=3600)
        session.breaker.failed(3600)
        session.breaker.failed(3600)  # two commands failed in a row: Fortnox taken for down
        assert session.breaker.wait() > 3000 and not session.wakeup.is_set()
        result = engine.ops.retry_command("a1")
        assert (result.action, result.message_id) == ("retry_now", "a1")
        assert session.breaker.wait() == 0 and session.wakeup.is_set()
        head = edge.head("fortnox", TENANT)
        assert head is not None and head.command_id == "a1" and head.next_at <= time.time()
    finally:
        engine.db.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    master_mode=st.sampled_from(list(CustomerMaster)),
    actions=st.lists(mixed_action, min_size=5, max_size=40),
)
def test_a_commands_lane_is_the_same_from_the_command_and_from_its_json(
    master_mode: CustomerMaster, actions: list[tuple[Any, ...]]
) -> None:
    """The processor's outbox takes a command's lane from the command it made, the Kafka
    runtime and the tools from its JSON: every command of every flow gets one lane both ways."""
    world = mixed_run(master_mode, actions)
    for command in world.emitted:
        kind = str(command.type)  # type: ignore[attr-defined]
        assert lane_of(kind, command) == lane_of(kind, registry.dump(command))


def _command(model: type[cm.Command], data: dict[str, Any]) -> cm.Command:
    envelope = {"id": "c", "tenant": TENANT, "occurred_at": "2026-12-01T10:00:00+00:00"}
    return model.model_validate({**envelope, "data": data})


def test_a_lane_from_a_command_names_its_entity() -> None:
    """The lanes the flows above do not make, from the command and from its JSON."""
    expected: list[tuple[cm.Command, str]] = [
        (stock("c", "1001"), "article:1001"),
        (payment("c", "77"), "payment:77"),
        (_command(cm.DeactivateFortnoxCustomer, {"customer_number": "K7"}), "customer:K7"),
        (
            _command(cm.DeleteTillCustomer, {"till_customer_id": "t9", "reason": "gone"}),
            "customer:t9",
        ),
        (
            _command(cm.RemoveTillArticle, {"article_number": "A5", "reason": "excluded"}),
            "article:A5",
        ),
        (
            _command(cm.RemoveTillPayment, {"number": "P3", "invoice_number": 12}),
            "payment:P3",
        ),
    ]
    for command, lane in expected:
        kind = str(command.type)  # type: ignore[attr-defined]
        assert lane_of(kind, command) == lane
        assert lane_of(kind, registry.dump(command)) == lane
