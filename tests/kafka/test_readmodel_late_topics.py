"""The read model follows topics created after it started (found from outside: an ops service
started before the first worker showed a tenant's counts at 0 and an empty depth for minutes,
while ``/healthz`` said 200, because the worker creates the state changelog when it starts and
the read model had assigned itself only the topics that existed when it opened)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaAdminClient

from engine.kafka.config import KafkaConfig
from engine.kafka.directory import KafkaTenantDirectory
from engine.kafka.ops import KafkaOps, create_ops_app
from engine.kafka.readmodel import KafkaReadModel
from engine.kafka.topics import init_topics
from engine.secrets import SecretBox, generate_key
from engine.store.db import Database
from tests.kafka.harness import KafkaHarness, World, eventually
from tests.kafka.poison import customer

#: How long the ops service may take to show what a worker wrote (it catches up every 0.2 s).
BOUND = 30.0


def _topics(bootstrap: str) -> set[str]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


async def test_an_ops_service_started_before_the_worker_shows_what_the_worker_does(
    tmp_path: Path, bootstrap: str, prefix: str
) -> None:
    """`kafka init`, a tenant, the ops service; then the worker and the ingest, then one event:
    the ops API's tenant page shows it (counts, the command to Fortnox) within the bound."""
    world = await World(["k9"]).start()
    config = KafkaConfig(bootstrap=bootstrap, prefix=prefix, data_dir=tmp_path / "kafka")
    harness = KafkaHarness(config, SecretBox.from_env())
    ops = KafkaOps(config, tmp_path / "ops" / "ops.db")
    stop = asyncio.Event()
    following: asyncio.Task[None] | None = None
    started = False
    try:
        await asyncio.to_thread(init_topics, config)
        key = await harness.add_tenant(world.config("k9"))
        following = asyncio.create_task(ops.follow(stop, every=0.2))
        token = generate_key()
        bearer = {"Authorization": f"Bearer {token}"}
        app = create_ops_app(ops, token)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://ops"
        ) as http:

            async def tenant() -> dict[str, Any]:
                answer = await http.get("/ops/api/tenants/k9", headers=bearer)
                return dict(answer.json()) if answer.status_code == 200 else {}

            async def listed() -> bool:
                return bool(await tenant())

            await eventually(listed, BOUND, "the ops service to list k9 (from the tenants topic)")
            # The order the tester used: no worker has run, so its changelog does not exist yet.
            assert config.state_changelog not in await asyncio.to_thread(_topics, bootstrap)
            before = await http.get("/healthz")
            assert before.status_code == 200

            await harness.start()
            started = True
            # The worker's first poll of the sandbox Fortnox copies its customers to the till
            # too: the event's own customer is told apart by its till id.
            assert await harness.ingest("k9", key, [customer("k9", "tester-1")]) < 300

            async def shown() -> bool:
                detail = await tenant()
                return (
                    bool(detail)
                    and detail["counts"]["till customers"] >= 1
                    and ops.ops.store.record("k9", "cust.till", "tester-1") is not None
                )

            await eventually(shown, BOUND, "the ops service to show k9's till customer")

            async def delivered() -> bool:
                rows = ops.db.conn.execute(
                    "SELECT target, status FROM outbox WHERE tenant = 'k9'"
                ).fetchall()
                done = ("fortnox", "done") in {(str(t), str(s)) for t, s in rows}
                return done and (await tenant())["depth"] == {}

            await harness.wait_quiet()
            await eventually(delivered, BOUND, "the command to Fortnox done, no depth left")
            # /healthz named the topic the pages were waiting for, and names none now.
            assert before.json().get("waiting_for_topics") == [config.state_changelog]
            health = await http.get("/healthz")
            assert health.status_code == 200 and "waiting_for_topics" not in health.json()
    finally:
        stop.set()
        if following is not None:
            await following
        ops.close()
        if started:
            await harness.stop()
        await world.stop()


async def test_a_read_model_opened_before_kafka_init_reads_the_topics_made_after(
    tmp_path: Path, bootstrap: str, prefix: str
) -> None:
    """Any order: a read model (an ops service, the ingest's) that opened before `kafka init`
    made any topic reads them once they exist, without being restarted."""
    config = KafkaConfig(bootstrap=bootstrap, prefix=prefix, data_dir=tmp_path / "kafka")
    model = KafkaReadModel(config, Database(tmp_path / "r.db"))
    world = await World(["k9"]).start()
    try:
        assert (await asyncio.to_thread(model.catch_up)).total == 0
        await asyncio.to_thread(init_topics, config)
        directory = KafkaTenantDirectory(config, SecretBox.from_env())
        await asyncio.to_thread(directory.upsert, world.config("k9"))

        async def tenants() -> bool:
            await asyncio.to_thread(model.catch_up)
            rows = model.db.conn.execute("SELECT id FROM tenants").fetchall()
            return [str(r[0]) for r in rows] == ["k9"]

        await eventually(tenants, BOUND, "the read model to read the tenants topic made later")
        # Only the worker's changelog is still to come.
        assert model.missing() == [config.state_changelog]
    finally:
        model.close()
        await world.stop()
