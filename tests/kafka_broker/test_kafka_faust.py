"""faust-streaming (0.15, on aiokafka 0.14) end to end against the real Kafka 4.x broker.

An in-process faust.App with a topic, an agent and a Table (memory store, changelog topic on
the broker): messages produced with kafka-python are processed, the table is checked, the
changelog topic is checked on the broker, and a second app instance with the same id
recovers the table from that changelog.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import faust
import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType

pytestmark = pytest.mark.kafka

PARTITIONS = 8
SALES = [("shop-1", 100), ("shop-2", 250), ("shop-1", 40), ("shop-3", 5), ("shop-2", 50)]
EXPECTED = {"shop-1": 140, "shop-2": 300, "shop-3": 5}


def make_app(app_id: str, bootstrap: str, datadir: Path) -> faust.App:
    return faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=str(datadir),  # default is ./<id>-data in the cwd
        web_enabled=False,
        autodiscover=False,
        topic_partitions=PARTITIONS,
        topic_replication_factor=1,
        table_standby_replicas=0,
        broker_session_timeout=10,
        broker_heartbeat_interval=1,
        consumer_auto_offset_reset="earliest",
    )


@contextlib.asynccontextmanager
async def started(app: faust.App) -> AsyncIterator[faust.App]:
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


async def eventually(check: Callable[[], bool], timeout: float, what: str) -> float:
    started_at = time.monotonic()
    while not check():
        if time.monotonic() - started_at > timeout:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - started_at


def table_items(table: Any) -> dict[str, int]:
    return {key: table[key] for key in table}


async def test_faust_agent_and_table_end_to_end(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    app_id = unique_name("faust-app")
    source = unique_name("sales")
    # Source topics must exist before the worker joins its group: faust's assignor ignores
    # a missing topic ("Ignoring missing topic") and the agent only gets its partitions at
    # the next rebalance/metadata refresh (up to 5 min). Create them up front, as infra will.
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics(
        {source: {"num_partitions": PARTITIONS, "replication_factor": 1}},
        wait_for_metadata=True,
    )

    app = make_app(app_id, kafka_bootstrap, tmp_path / "first")
    sales_topic = app.topic(source, key_type=str, value_type=bytes, value_serializer="raw")
    totals = app.Table("totals", default=int, partitions=PARTITIONS)
    processed: list[tuple[str, int]] = []

    @app.agent(sales_topic)
    async def tally(stream: Any) -> None:
        async for shop, payload in stream.items():
            amount = json.loads(payload)["amount"]
            totals[shop] += amount
            processed.append((shop, amount))

    async with started(app):
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        for shop, amount in SALES:
            producer.send(source, key=shop.encode(), value=json.dumps({"amount": amount}).encode())
        producer.flush(timeout=30)
        producer.close()
        # ...and through faust's own (aiokafka) producer as well.
        await sales_topic.send(key="shop-3", value=json.dumps({"amount": 7}).encode())
        expected = {**EXPECTED, "shop-3": EXPECTED["shop-3"] + 7}

        await eventually(lambda: len(processed) == len(SALES) + 1, 60, "the agent")
        assert table_items(totals) == expected
        # Let the changelog records (sent by the table on commit) reach the broker.
        await app.commit(app.consumer.assignment())
        await asyncio.sleep(1)

    changelog = f"{app_id}-totals-changelog"
    described = {t["name"]: t for t in admin.describe_topics([changelog])}
    assert len(described[changelog]["partitions"]) == PARTITIONS
    configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, changelog)])
    assert configs["topic"][changelog]["cleanup.policy"]["value"] == "compact"
    admin.close()

    # A fresh worker with the same app id rebuilds the table from the changelog topic.
    again = make_app(app_id, kafka_bootstrap, tmp_path / "second")
    again.topic(source, key_type=str, value_type=bytes, value_serializer="raw")
    recovered = again.Table("totals", default=int, partitions=PARTITIONS)
    async with started(again):
        await eventually(
            lambda: table_items(recovered) == expected, 60, "table recovery from the changelog"
        )
