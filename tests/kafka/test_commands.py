"""Head-of-line on Kafka, from outside (issue 12): a till that keeps answering 5xx for one
payment does not hold back the tenant's other payments, and the operator sees the command that
is still being retried and retries it now or cancels it — with ``kassasync commands --runtime
kafka`` and through the ops API — as on the embedded runtime
(tests/reliability/test_head_of_line.py). The action is a ``sync.command.action`` message; the
worker that owns the tenant applies it to the command's ``~cmd`` record."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from engine.clock import utcnow
from engine.kafka.config import KafkaConfig
from engine.kafka.ops import KafkaOps, create_ops_app
from engine.kafka.ports import KafkaPorts
from engine.kafka.runtime import admit
from engine.kafka.store import CMD, EXEC, Mirror, TenantData
from engine.secrets import SecretBox, generate_key
from tests.kafka.harness import KafkaHarness, World, eventually, running
from tests.kafka.test_ops_surface import cli
from topics import fortnox as fx
from topics.names import Topic
from topics.outcomes import CommandAction, OutcomeStatus
from topics.settings import TenantSettings

TENANT = "shop-a"


@dataclass
class Till:
    """A back office that answers 503 for the payments in ``failing`` and 200 for the rest."""

    failing: set[str]
    received: list[str] = field(default_factory=list)
    refused: dict[str, int] = field(default_factory=dict)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/kassasync/commands")
        async def command(request: Request) -> JSONResponse:
            body = await request.json()
            if body.get("type") != "till.payment.register":
                return JSONResponse({"result": {}})
            number = str(body["data"]["payment"]["number"])
            if number in self.failing:
                self.refused[number] = self.refused.get(number, 0) + 1
                return JSONResponse({"error": "ledger locked"}, status_code=503)
            self.received.append(number)
            return JSONResponse({"result": {"ok": "true"}})

        return app


def payment(number: str) -> fx.FortnoxPaymentChanged:
    """Fortnox shows a payment: the payments flow hands it to the till."""
    return fx.FortnoxPaymentChanged(
        id=f"fx-pay-{TENANT}-{number}",
        tenant=TENANT,
        occurred_at=utcnow(),
        data=fx.FortnoxPaymentData(
            payment=fx.FortnoxPayment(
                number=number,
                invoice_number=1000 + int(number),
                amount=Decimal("125.00"),
                payment_date=dt.date(2026, 11, 20),
            ),
            observed=fx.Observation(seq=int(number)),
        ),
    )


async def test_retry_now_and_cancel_a_retrying_command_on_kafka(
    tmp_path: Path, bootstrap: str, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    till = Till(failing={"901"})
    world = await World([TENANT], tills={TENANT: till.app()}).start()
    config = KafkaConfig(bootstrap=bootstrap, prefix=prefix, data_dir=tmp_path / "kafka")
    harness = KafkaHarness(config, SecretBox.from_env())
    where = ["--runtime", "kafka", "--bootstrap", bootstrap, "--prefix", prefix]
    where += ["--data", str(tmp_path / "cli")]
    settings = TenantSettings.model_validate({"payments": {"enabled": True}})
    ops = KafkaOps(config, tmp_path / "ops" / "ops.db")
    token = generate_key()
    try:
        async with running(harness):
            tenant = world.config(TENANT).model_copy(update={"fortnox": None, "settings": settings})
            await harness.add_tenant(tenant)
            harness.runtime.ports.publish([payment(n) for n in ("901", "902", "903")])
            await asyncio.to_thread(harness.runtime.producer.flush, 30)

            # The first one fails again and again; the two behind it are delivered meanwhile.
            await eventually(
                lambda: asyncio.sleep(0, sorted(till.received) == ["902", "903"]), 30, "902, 903"
            )
            assert till.refused["901"] >= 1 and "901" not in till.received

            # The operator sees it with the CLI: its lane, attempts, error and next attempt.
            async def listed() -> list[dict[str, Any]]:
                _, out = await asyncio.to_thread(cli, capsys, "commands", "list", *where, "--json")
                return list(out["commands"])

            async def waiting_long() -> bool:
                rows = await listed()
                return len(rows) == 1 and rows[0]["next_at"] > time.time() + 3.0

            # Its backoff grows until the next attempt is seconds away.
            await eventually(waiting_long, 60, "a backoff of more than 3 s")
            [command] = await listed()
            assert command["tenant"] == TENANT and command["type"] == "till.payment.register"
            assert command["lane"] == "payment:901" and command["attempts"] >= 1
            assert "HTTP 503" in command["last_error"]
            command_id = command["command_id"]

            # Retry now, from the CLI: attempted at once, long before its backoff ends.
            before = till.refused["901"]
            code, out = await asyncio.to_thread(
                cli, capsys, "commands", "retry", command_id, *where
            )
            assert code == 0 and f"{command_id}: will be attempted at once" in out
            asked = time.time()
            await eventually(
                lambda: asyncio.sleep(0, till.refused["901"] > before), 10, "the retry now"
            )
            assert time.time() < command["next_at"], "attempted before its backoff ended"
            assert time.time() - asked < 3.0

            # The ops API of the Kafka deployment: list, retry now, cancel.
            app = create_ops_app(ops, token)
            bearer = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app), base_url="http://ops", headers=bearer
            ) as api:
                await asyncio.to_thread(ops.catch_up)
                rows = (await api.get("/ops/api/commands", params={"tenant": TENANT})).json()
                assert [r["command_id"] for r in rows["commands"]] == [command_id]
                page = (await api.get(f"/tenants/{TENANT}")).text
                assert "Commands being retried" in page and command_id in page
                assert "Retry now" in page
                before = till.refused["901"]
                answer = await api.post(f"/ops/api/commands/{command_id}/retry")
                assert answer.status_code == 200, answer.text
                assert answer.json()["action"] == "retry_now"
                await eventually(
                    lambda: asyncio.sleep(0, till.refused["901"] > before), 10, "API retry now"
                )

                # Cancel: it becomes a dead letter with the operator's reason, and is never
                # attempted again.
                answer = await api.post(
                    f"/ops/api/commands/{command_id}/cancel", json={"reason": "paid by hand"}
                )
                assert answer.status_code == 200, answer.text

                async def cancelled() -> bool:
                    await asyncio.to_thread(ops.catch_up)
                    letters = (await api.get("/ops/api/deadletters")).json()["dead_letters"]
                    return any(d["id"] == command_id for d in letters)

                await eventually(cancelled, 20, "the cancelled command's dead letter")
                letters = (await api.get("/ops/api/deadletters")).json()["dead_letters"]
                [letter] = [d for d in letters if d["id"] == command_id]
                assert letter["error"]["kind"] == "cancelled_by_operator"
                assert "paid by hand" in letter["error"]["message"]
                refused = till.refused["901"]
                await eventually(
                    lambda: asyncio.sleep(0, harness.runtime.pending() == 0), 20, "no pending"
                )
                assert (await api.get("/ops/api/commands")).json()["commands"] == []
                # Cancelling it again is refused: it is not being retried any more.
                answer = await api.post(f"/ops/api/commands/{command_id}/cancel")
                assert answer.status_code == 409

            assert await listed() == []
            code, _ = await asyncio.to_thread(cli, capsys, "commands", "cancel", command_id, *where)
            assert code == 1  # not pending any more
            code, _ = await asyncio.to_thread(
                cli, capsys, "commands", "retry", "no-such-command", *where
            )
            assert code == 1
            await asyncio.sleep(2.0)
        assert till.refused["901"] == refused  # never tried again after the cancel
        assert sorted(till.received) == ["902", "903"]
    finally:
        ops.close()
        await world.stop()


def _action(action: str, reason: str = "paid by hand") -> CommandAction:
    return CommandAction.model_validate(
        {
            "id": f"a-{action}",
            "tenant": TENANT,
            "occurred_at": "2026-12-04T10:00:00+00:00",
            "data": {"command_id": "c1", "action": action, "reason": reason},
        }
    )


def _retrying(data: TenantData, *, attempt: int, retry_at: float) -> None:
    data.set(
        EXEC,
        "c1",
        {
            "inflight": attempt,
            "settled": {
                "attempt": attempt,
                "status": OutcomeStatus.RETRYING.value,
                "retry_at": retry_at,
                "outcome": "{}",
                "facts": [],
            },
        },
    )


def test_the_worker_records_an_operators_action_on_a_pending_command_only() -> None:
    """The agent's side: a retry-now marks the latest attempt that ended (the executor's, ahead
    of the agent's count); a cancel keeps the reason; a command not pending is left alone."""
    data = TenantData(TENANT)
    cmd = {"seq": 1, "target": "till", "type": "till.payment.register", "payload": "{}"}
    data.set(CMD, "c1", {**cmd, "status": "pending", "attempts": 2})
    _retrying(data, attempt=3, retry_at=time.time() + 60)
    now = admit(data, Topic.SYNC_CONTROL, _action("retry_now"))
    assert now is not None and now.puts[(CMD, "c1")]["retry_now"] == 3
    cancel = admit(data, Topic.SYNC_CONTROL, _action("cancel"))
    assert cancel is not None and cancel.puts[(CMD, "c1")]["cancel"] == "paid by hand"
    data.set(CMD, "c1", {**cmd, "status": "dead", "attempts": 4})
    ignored = admit(data, Topic.SYNC_CONTROL, _action("cancel"))
    assert ignored is not None and ignored.puts == {}


class _Producer:
    """Records what the ports produce (no broker: the queue logic alone)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None]] = []

    def send(self, topic: str, *, key: bytes, value: bytes | None, partition: int) -> Any:
        self.sent.append((topic, value))
        return _Done()

    def flush(self, timeout: float | None = None) -> None:
        return None


class _Done:
    def get(self, timeout: float | None = None) -> None:
        return None


def _ports() -> tuple[KafkaPorts, TenantData, _Producer]:
    config = KafkaConfig(bootstrap="127.0.0.1:9", prefix="t.", data_dir=Path("/nonexistent"))
    mirror = Mirror(config.partitions)
    producer = _Producer()
    ports = KafkaPorts(config, mirror, lambda _: True, lambda *_: None, producer)  # type: ignore[arg-type]
    data = ports._data(TENANT)
    return ports, data, producer


def test_the_queue_honours_backoff_retry_now_and_a_cancel_after_the_attempt_under_way() -> None:
    ports, data, producer = _ports()
    cmd = {"seq": 1, "target": "till", "type": "till.payment.register", "payload": "{}"}
    data.set(CMD, "c1", {**cmd, "status": "pending", "attempts": 1})
    ports.enqueue(TENANT, "till", "c1", 1)
    ports.enqueue(TENANT, "till", "c1", 1)  # queued once, however often it is enqueued
    assert ports.depth() == 1

    # Attempt 1 failed and the agent has seen its outcome: it waits for its retry time.
    later = time.time() + 60
    _retrying(data, attempt=1, retry_at=later)
    head = ports.head("till", TENANT)
    assert head is not None and head.next_at == later and head.attempts == 1

    # An operator's retry-now makes it due at once (not attempts ahead of it).
    data.set(CMD, "c1", {**data.get(CMD, "c1"), "retry_now": 1})  # type: ignore[dict-item]
    head = ports.head("till", TENANT)
    assert head is not None and head.next_at == 0.0 and head.attempts == 1
    # It is being attempted now (inflight 2): a cancel waits for the attempt to end.
    data.set(CMD, "c1", {**data.get(CMD, "c1"), "cancel": "paid by hand"})  # type: ignore[dict-item]
    assert not ports.cancel_now(TENANT, "c1")
    assert not any(b"cancelled_by_operator" in (v or b"") for _, v in producer.sent)

    # The attempt ends, failed again: its own retry time again (retry_now was for attempt 1),
    # and now the cancel settles it as refused by the operator.
    _retrying(data, attempt=2, retry_at=time.time() + 60)
    assert ports.head("till", TENANT) is None  # settled as cancelled: nothing to execute
    outcomes = [json.loads(v) for t, v in producer.sent if v and t.endswith("sync.outcomes")]
    letters = [json.loads(v) for t, v in producer.sent if v and t.endswith("sync.deadletters")]
    assert [o["data"]["status"] for o in outcomes] == ["rejected"]
    assert outcomes[0]["data"]["attempt"] == 3
    assert letters[0]["data"]["error"]["kind"] == "cancelled_by_operator"
    assert "paid by hand" in letters[0]["data"]["error"]["message"]

    # The agent applies the refusal: dead, without the operator's requests (a later retry
    # from the dead letters starts afresh).
    outcome = admit(data, Topic.SYNC_OUTCOMES, _outcome(outcomes[0]))
    assert outcome is not None
    record = outcome.puts[(CMD, "c1")]
    assert record is not None and record["status"] == "dead" and record["attempts"] == 3
    assert "cancel" not in record and "retry_now" not in record


def _outcome(raw: dict[str, Any]) -> Any:
    from topics import registry

    return registry.parse_obj(raw)
