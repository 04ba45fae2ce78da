"""Records that get past the ingest door but cannot be applied, put straight onto either
runtime's log, and where each runtime keeps its dead letters."""

from __future__ import annotations

import json
from typing import Any

from kafka import KafkaProducer

from engine.kafka.config import KafkaConfig
from engine.kafka.inspect import read_partition
from engine.kafka.topics import partition_for
from engine.store.log import log_table
from engine.store.outbox import DeadLetters
from tests.kafka.harness import EmbeddedHarness, Harness
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
