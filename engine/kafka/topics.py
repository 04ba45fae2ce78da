"""Topic creation (``kassasync kafka init``) and the partition a tenant lives in.

Every topic has the same number of partitions and every message is keyed by tenant, so a
tenant's messages on every topic, and its records in the state changelog, are in the partition
with the same number: one worker owns all of a tenant (co-partitioning)."""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError
from kafka.partitioner.default import murmur2

from engine.kafka.config import KafkaConfig
from topics.names import TOPICS, Topic, message_key


@functools.lru_cache(maxsize=65_536)
def partition_for(tenant: str, partitions: int) -> int:
    """Kafka's default partitioner (murmur2 of the key), as Java, kafka-python and aiokafka.
    Cached: the worker asks it for every message and every record it writes."""
    return (murmur2(message_key(tenant)) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True)
class TopicPlan:
    name: str
    partitions: int
    replication: int
    configs: dict[str, str]


def plan(config: KafkaConfig) -> list[TopicPlan]:
    out = [
        TopicPlan(
            config.topic(spec.topic),
            config.partitions,
            config.replication,
            {
                "cleanup.policy": config.cleanup_policy(spec.topic),
                "retention.ms": str(spec.retention_ms),
            },
        )
        for spec in TOPICS
    ]
    out.append(
        TopicPlan(config.tenants_topic, 1, config.replication, {"cleanup.policy": "compact"})
    )
    out.append(
        TopicPlan(
            config.order_topic,
            config.partitions,
            config.replication,
            {"cleanup.policy": "delete", "retention.ms": str(TOPICS[0].retention_ms)},
        )
    )
    return out


def init_topics(config: KafkaConfig, *, timeout: float = 30.0) -> dict[str, str]:
    """Create every topic that is missing; returns ``{name: "created" | "exists"}``."""
    admin = KafkaAdminClient(
        bootstrap_servers=config.bootstrap, request_timeout_ms=int(timeout * 1000)
    )
    try:
        existing = set(admin.list_topics())
        result: dict[str, str] = {}
        wanted = []
        for item in plan(config):
            if item.name in existing:
                result[item.name] = "exists"
                continue
            wanted.append(
                NewTopic(
                    item.name,
                    num_partitions=item.partitions,
                    replication_factor=item.replication,
                    topic_configs=item.configs,
                )
            )
            result[item.name] = "created"
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):  # created meanwhile elsewhere
                admin.create_topics(wanted, timeout_ms=int(timeout * 1000))
        return result
    finally:
        admin.close()


def command_topics() -> tuple[Topic, Topic]:
    return (Topic.FORTNOX_COMMANDS, Topic.TILL_COMMANDS)
