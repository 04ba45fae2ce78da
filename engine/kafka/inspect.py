"""Reading the Kafka runtime's topics from outside a worker (kafka-python): one partition from
the beginning to its current end, and a tenant's reconciler state from the state changelog."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from engine.kafka.config import KafkaConfig
from engine.kafka.store import JOURNAL, decode_key, decode_value, is_internal, redo
from engine.kafka.topics import partition_for
from reconcilers.state import Record


def read_partition(config: KafkaConfig, topic: str, partition: int) -> Iterator[Any]:
    consumer = KafkaConsumer(
        bootstrap_servers=config.bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        end = consumer.end_offsets([tp])[tp]
        consumer.seek_to_beginning(tp)
        while consumer.position(tp) < end:
            for batch in consumer.poll(timeout_ms=1000).values():
                yield from (r for r in batch if r.offset < end)
    finally:
        consumer.close()


def tenant_records(config: KafkaConfig, tenant: str) -> dict[tuple[str, str], Record]:
    """Every record of a tenant (internal kinds included), journals redone in order as a worker
    would."""
    records: dict[tuple[str, str], Record] = {}
    partition = partition_for(tenant, config.partitions)
    for record in read_partition(config, config.state_changelog, partition):
        owner, kind, key = decode_key(record.key)
        if owner != tenant:
            continue
        value = decode_value(record.value)
        if value is None:
            records.pop((kind, key), None)
        else:
            records[(kind, key)] = value
    journals = sorted(key for kind, key in records if kind == JOURNAL)
    for key in journals:
        redo(records, records.pop((JOURNAL, key)))
    return records


def tenant_state(config: KafkaConfig, tenant: str) -> dict[tuple[str, str], Record]:
    return {k: v for k, v in tenant_records(config, tenant).items() if not is_internal(k[0])}
