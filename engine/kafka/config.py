"""Settings of the Kafka runtime, from the command line or the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from topics.names import TOPICS, Topic

#: Compacted, one partition: tenant configurations (sealed secrets) and ingest key hashes.
TENANTS_TOPIC = "kassasync.tenants"
#: Per partition, the (topic, offset) of every message in the order the worker applied them (one
#: record per batch): replay reads the log in that order.
ORDER_TOPIC = "kassasync.order"
#: Name of the reconciler state table; its changelog topic is ``{app_id}-state-changelog``.
STATE_TABLE = "state"


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap: str = field(
        default_factory=lambda: os.environ.get("KASSASYNC_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    )
    #: Every topic, the consumer group and the changelog topics carry this prefix (tests use a
    #: fresh one per test; production leaves it empty).
    prefix: str = field(default_factory=lambda: os.environ.get("KASSASYNC_KAFKA_PREFIX", ""))
    partitions: int = field(default_factory=lambda: _env_int("KASSASYNC_KAFKA_PARTITIONS", 8))
    replication: int = field(default_factory=lambda: _env_int("KASSASYNC_KAFKA_REPLICATION", 1))
    #: Per-topic cleanup policy overrides (``till.events=compact,delete``); default from topics/.
    cleanup: dict[str, str] = field(default_factory=dict)
    #: Where the worker keeps local files: the shared Fortnox token store by default.
    data_dir: Path = field(
        default_factory=lambda: Path(os.environ.get("KASSASYNC_DATA", "var/kassasync"))
    )
    #: The Fortnox token store (SQLite, shared by the workers: see docs/kafka.md).
    tokens_path: Path | None = None
    session_timeout: float = 6.0
    heartbeat_interval: float = 1.0
    #: At most this many messages are reconciled per batch (one fetch; one journal record per
    #: tenant, acknowledged before the next batch). A fetch returns what has arrived, so a batch
    #: is this big only while a backlog is worked through.
    batch_max: int = 2000

    def topic(self, topic: Topic | str) -> str:
        return f"{self.prefix}{topic}"

    @property
    def app_id(self) -> str:
        return f"{self.prefix}kassasync"

    @property
    def tenants_topic(self) -> str:
        return f"{self.prefix}{TENANTS_TOPIC}"

    @property
    def order_topic(self) -> str:
        return f"{self.prefix}{ORDER_TOPIC}"

    @property
    def state_changelog(self) -> str:
        return f"{self.app_id}-{STATE_TABLE}-changelog"

    @property
    def tokens(self) -> Path:
        return self.tokens_path or self.data_dir / "tokens.db"

    def cleanup_policy(self, topic: Topic) -> str:
        if str(topic) in self.cleanup:
            return self.cleanup[str(topic)]
        return next(spec.cleanup_policy for spec in TOPICS if spec.topic is topic)

    def unprefixed(self, name: str) -> str:
        return name[len(self.prefix) :] if self.prefix and name.startswith(self.prefix) else name


def parse_cleanup(items: list[str] | None) -> dict[str, str]:
    """``["till.events=compact,delete"]`` -> ``{"till.events": "compact,delete"}``."""
    out: dict[str, str] = {}
    for item in items or []:
        name, _, policy = item.partition("=")
        if not policy or name not in {str(t) for t in Topic}:
            raise ValueError(
                f"--cleanup wants TOPIC=POLICY with a topic from topics/names.py: {item}"
            )
        out[name] = policy
    return out
