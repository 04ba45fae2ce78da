"""Nothing stops (issue 12), on both runtimes: a message that got past the door but cannot be
applied is a dead letter of its tenant, and the other tenants' next events are processed within
seconds — as is the poisoned tenant's own next event."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from engine.kafka.config import KafkaConfig
from engine.kafka.inspect import read_partition
from engine.kafka.topics import partition_for
from engine.secrets import SecretBox
from engine.store.log import log_table
from engine.store.outbox import DeadLetters
from tests.kafka.harness import EmbeddedHarness, Harness, KafkaHarness, World, eventually, running
from tests.kafka.scenario import event
from topics.names import Topic, message_key

#: Year 1 at +01:00 is year 0 in UTC: this once killed the processor task for good, silently.
POISON = {
    "id": "poison-1",
    "tenant": "shop-a",
    "type": "till.stock.movement",
    "occurred_at": "0001-01-01T00:00:00+01:00",
    "source": "till",
    "data": {"article_number": "1001", "movement_id": "mv-poison", "delta": "-1", "reason": "sale"},
}


def customer(tenant: str, number: str) -> dict[str, Any]:
    return event(
        tenant,
        "till.customer.upserted",
        {"till_customer_id": number, "customer": {"name": f"Kund {number}", "city": "Växjö"}},
    )


def inject(harness: Harness, config: KafkaConfig, payload: bytes, tenant: str) -> None:
    """Put a record on the log as if it had slipped past the ingest door."""
    if isinstance(harness, EmbeddedHarness):
        db = harness.engine.db
        with db.transaction() as conn:
            seq = conn.execute(
                "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE name = 'seq' "
                "RETURNING value"
            ).fetchone()[0]
            conn.execute(
                f"INSERT INTO {log_table(Topic.TILL_EVENTS)} "
                "(seq, tenant, type, msg_id, at, payload) VALUES (?, ?, ?, ?, ?, ?)",
                (int(seq), tenant, "till.stock.movement", "poison-1", "0001-01-01", payload),
            )
        return
    producer = KafkaProducer(bootstrap_servers=config.bootstrap)
    try:
        producer.send(
            config.topic(Topic.TILL_EVENTS),
            value=payload,
            key=message_key(tenant),
            partition=partition_for(tenant, config.partitions),
        ).get(timeout=30)
    finally:
        producer.close()


def dead_letters(harness: Harness, config: KafkaConfig, tenant: str) -> list[dict[str, Any]]:
    if isinstance(harness, EmbeddedHarness):
        return [dict(row) for row in DeadLetters(harness.engine.db).list(tenant)]
    letters: list[dict[str, Any]] = []
    topic = config.topic(Topic.DEAD_LETTERS)
    for record in read_partition(config, topic, partition_for(tenant, config.partitions)):
        if record.key == message_key(tenant) and record.value is not None:
            letters.append(json.loads(record.value)["data"])
    return letters


def has_customer(harness: Harness, tenant: str, number: str) -> bool:
    return ("cust.till", number) in harness.state(tenant)


@pytest.mark.parametrize("kind", ["embedded", "kafka"])
@pytest.mark.parametrize(
    "poison",
    [json.dumps(POISON).encode(), b'{"id": "x", "tenant": "shop-a", "type": "till.nonsense"}'],
    ids=["year-1", "unparseable"],
)
async def test_poison_is_dead_lettered_and_everyone_goes_on(
    kind: str, poison: bytes, tmp_path: Path, bootstrap: str, prefix: str
) -> None:
    world = await World(["shop-a", "shop-b"]).start()
    box = SecretBox.from_env()
    config = KafkaConfig(bootstrap=bootstrap, prefix=prefix, data_dir=tmp_path / "kafka")
    harness: Harness = (
        EmbeddedHarness(tmp_path / "embedded", box)
        if kind == "embedded"
        else KafkaHarness(config, box)
    )
    try:
        async with running(harness):
            keys = {t: await harness.add_tenant(world.config(t)) for t in world.tenants}
            await asyncio.to_thread(inject, harness, config, poison, "shop-a")
            started = time.monotonic()
            assert await harness.ingest("shop-b", keys["shop-b"], [customer("shop-b", "501")]) < 300
            await eventually(
                lambda: asyncio.sleep(0, has_customer(harness, "shop-b", "501")),
                30,
                "the other tenant's event after the poison",
            )
            other_tenant_seconds = time.monotonic() - started
            assert await harness.ingest("shop-a", keys["shop-a"], [customer("shop-a", "502")]) < 300
            await eventually(
                lambda: asyncio.sleep(0, has_customer(harness, "shop-a", "502")),
                30,
                "the poisoned tenant's own next event",
            )
            letters = await asyncio.to_thread(dead_letters, harness, config, "shop-a")
    finally:
        await world.stop()
    assert other_tenant_seconds < 10
    assert len(letters) == 1, letters
    text = json.dumps(letters[0], default=str)
    assert "invalid_input" in text
