"""The Kafka runtime is a whole product (issue 12): ``kassasync status``, ``deadletters
list|retry|discard``, the ops API, ``/healthz`` and ``/metrics`` work against a Kafka deployment
with the real broker — reading a read model of its topics, acting through messages."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.cli.main import build_parser
from engine.kafka.config import KafkaConfig
from engine.kafka.ops import KafkaOps, create_ops_app
from engine.kafka.runtime import admit
from engine.kafka.store import CMD, TenantData
from engine.secrets import SecretBox, generate_key
from tests.kafka.harness import KafkaHarness, World, eventually, running
from tests.kafka.poison import POISON, customer, has_customer, inject
from topics.names import Topic
from topics.outcomes import DeadLetterAction

UNPARSEABLE = b'{"id": "x", "tenant": "shop-a", "type": "till.nonsense"}'


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    args = build_parser().parse_args(list(argv))
    code = args.func(args)
    out = capsys.readouterr().out
    # The JSON document is what follows the first line that is exactly "{" (log lines may precede).
    lines = out.splitlines()
    if "{" not in lines:
        return code, out
    return code, json.loads("\n".join(lines[lines.index("{") :]))


async def test_status_deadletters_dashboard_and_metrics_on_kafka(
    tmp_path: Path, bootstrap: str, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    world = await World(["shop-a", "shop-b"]).start()
    config = KafkaConfig(bootstrap=bootstrap, prefix=prefix, data_dir=tmp_path / "kafka")
    harness = KafkaHarness(config, SecretBox.from_env())
    where = ["--runtime", "kafka", "--bootstrap", bootstrap, "--prefix", prefix]
    where += ["--data", str(tmp_path / "cli")]
    try:
        async with running(harness):
            keys = {t: await harness.add_tenant(world.config(t)) for t in world.tenants}
            await asyncio.to_thread(inject, harness, config, json.dumps(POISON).encode(), "shop-a")
            await asyncio.to_thread(inject, harness, config, UNPARSEABLE, "shop-a")
            assert await harness.ingest("shop-b", keys["shop-b"], [customer("shop-b", "7")]) < 300
            await eventually(
                lambda: asyncio.sleep(0, has_customer(harness, "shop-b", "7")), 30, "shop-b"
            )
            await harness.wait_quiet()

            # The CLI, as an operator types it, against the Kafka deployment.
            code, status = await asyncio.to_thread(cli, capsys, "status", *where, "--json")
            by_tenant = {t["tenant"]: t for t in status["tenants"]}
            assert set(by_tenant) == {"shop-a", "shop-b"}
            assert by_tenant["shop-a"]["dead_letters"] == 2
            assert by_tenant["shop-b"]["dead_letters"] == 0
            _, listed = await asyncio.to_thread(
                cli, capsys, "deadletters", "list", *where, "--json"
            )
            letters = {d["type"]: d for d in listed["dead_letters"]}
            assert set(letters) == {"till.stock.movement", "till.nonsense"}
            assert all(d["tenant"] == "shop-a" for d in letters.values())
            year_1 = letters["till.stock.movement"]["id"]
            nonsense = letters["till.nonsense"]["id"]
            code, out = await asyncio.to_thread(
                cli, capsys, "deadletters", "discard", year_1, *where
            )
            assert code == 0 and f"{year_1}: discard done" in out
            # Neither parked message can be read: a retry sends nothing and says so (it used
            # to say "retry done"); the operator discards it.
            code, out = await asyncio.to_thread(
                cli, capsys, "deadletters", "retry", nonsense, *where
            )
            assert code == 0 and f"{nonsense}: Nothing was sent again" in out, out
            code, out = await asyncio.to_thread(
                cli, capsys, "deadletters", "discard", nonsense, *where
            )
            assert code == 0 and f"{nonsense}: discard done" in out

            # A fresh read model (another operator's machine) sees both actions: they are on
            # Kafka, not only in the local file.
            fresh = KafkaOps(config, tmp_path / "other" / "ops.db")
            try:
                await asyncio.to_thread(fresh.catch_up)
                assert fresh.ops.dead_letters(status="open") == []
                resolved = {r.id: r.status for r in fresh.ops.dead_letters(status="discarded")}
                assert resolved == {year_1: "discarded", nonsense: "discarded"}

                # The ops service: health, the ops API and Prometheus series.
                token = generate_key()
                app = create_ops_app(fresh, token)
                transport = httpx.ASGITransport(app)
                async with httpx.AsyncClient(transport=transport, base_url="http://ops") as http:
                    assert (await http.get("/healthz")).status_code == 200
                    bearer = {"Authorization": f"Bearer {token}"}
                    system = (await http.get("/ops/api/system", headers=bearer)).json()
                    assert system["runtime"] == "kafka"
                    assert system["tenants"] == 2
                    assert system["workers"], "the worker of the consumer group is listed"
                    overview = (await http.get("/ops/api/overview", headers=bearer)).json()
                    assert {t["tenant"] for t in overview["tenants"]} == {"shop-a", "shop-b"}
                    assert (await http.get("/ops/api/overview")).status_code == 401
                    page = await http.get("/tenants/new", headers=bearer)
                    assert page.status_code == 200 and "kafka tenants add" in page.text
                    page = await http.get("/tenants/shop-a/connection", headers=bearer)
                    assert page.status_code == 200 and "not available on a Kafka" in page.text
                    assert (await http.get("/tenants/new")).status_code == 401
                    # The dashboard's pages on Kafka: the overview, the dead letters of every
                    # tenant, a tenant's documents and history, the system's history.
                    for path, text in (
                        ("/?q=shop-", "page 1 of 1"),
                        ("/deadletters?status=discarded", nonsense),
                        ("/tenants/shop-a", 'id="chart-errors"'),
                        ("/system", 'id="chart-lag"'),
                    ):
                        page = await http.get(path, headers=bearer)
                        assert page.status_code == 200 and text in page.text, path
                    assert fresh.ops.history.samples(), "the pages took a sample"
                    metrics = (await http.get("/metrics")).text
                    assert "kassasync_tenants" in metrics
                    assert "kassasync_dead_letters_open" in metrics
            finally:
                fresh.close()
    finally:
        await world.stop()


async def test_ops_healthz_is_red_while_the_read_model_cannot_reach_kafka(tmp_path: Path) -> None:
    config = KafkaConfig(bootstrap="127.0.0.1:9", prefix="nowhere.", data_dir=tmp_path)
    kafka = KafkaOps.__new__(KafkaOps)  # no broker to connect to: only the health rule
    kafka.last_caught_up = None
    kafka.last_error = "read model: NoBrokersAvailable: NoBrokersAvailable"
    kafka.config = config
    app = create_ops_app_for_health(kafka)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://ops") as c:
        answer = await c.get("/healthz")
    assert answer.status_code == 503
    assert "NoBrokersAvailable" in answer.json()["reason"]


def create_ops_app_for_health(kafka: KafkaOps) -> Any:
    from fastapi import FastAPI

    from engine.kafka import ops as ops_module

    app = FastAPI()
    health = ops_module.health_of(kafka)
    app.get("/healthz")(health)
    return app


def test_an_operator_action_on_a_dead_command_requeues_or_drops_it_in_the_worker() -> None:
    """The worker's side of ``deadletters retry|discard`` for a command (Kafka's outbox is the
    ``~cmd`` records in state): retry requeues it unless its flow makes a fresh command."""
    data = TenantData("shop-a")
    dead = {"seq": 3, "target": "till", "type": "till.payment.register", "status": "dead"}
    data.set(CMD, "c1", {**dead, "attempts": 2, "payload": "{}"})

    def action(kind: str) -> DeadLetterAction:
        return DeadLetterAction.model_validate(
            {
                "id": f"a-{kind}",
                "tenant": "shop-a",
                "occurred_at": "2026-12-04T10:00:00+00:00",
                "data": {"dead_letter_id": "c1", "action": kind},
            }
        )

    retried = admit(data, Topic.SYNC_CONTROL, action("retry"))
    assert retried is not None
    assert retried.puts[(CMD, "c1")]["status"] == "pending"
    discarded = admit(data, Topic.SYNC_CONTROL, action("discard"))
    assert discarded is not None and discarded.puts == {(CMD, "c1"): None}
    # A flow with its own retry (a fresh command from its state) is left to the reconciler.
    data.set("cmd", "c1", {"flow": "articles", "key": "1001", "type": "till.article.upsert"})
    again = admit(data, Topic.SYNC_CONTROL, action("retry"))
    assert again is not None and again.puts == {}


def test_a_kafka_deployment_that_cannot_be_read_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Seen from outside: a wrong --bootstrap ended in kafka-python's traceback."""
    from kafka.errors import KafkaTimeoutError

    from engine.cli.main import main

    def unreachable(self: KafkaOps, timeout: float = 30.0) -> None:
        raise KafkaTimeoutError("Unable to bootstrap from 127.0.0.1:9")

    monkeypatch.setattr(KafkaOps, "catch_up", unreachable)
    argv = ["status", "--runtime", "kafka", "--bootstrap", "127.0.0.1:9", "--data", str(tmp_path)]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("kassasync: cannot read the Kafka deployment at 127.0.0.1:9")
    assert "Traceback" not in "\n".join(err)
