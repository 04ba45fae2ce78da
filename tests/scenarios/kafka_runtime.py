"""The scenario runtime on Kafka: one in-process worker (the faust app) on the real broker that
``make test`` starts, the Kafka ingest API on loopback, and the same sandbox and till as the
embedded runtime. A scenario runs unchanged on both."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Mapping
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from engine.executors.fortnox import FortnoxSession
from engine.fortnox.api import FortnoxApi
from engine.kafka.config import KafkaConfig
from engine.kafka.ingest import EventProducer, create_app
from engine.kafka.ops import KafkaOps
from engine.kafka.runtime import KafkaRuntime, quiet_faust_logs
from engine.kafka.store import CURSOR
from engine.kafka.topics import init_topics
from engine.ops import Drift
from engine.secrets import SecretBox, generate_key
from tests.scenarios.harness import TENANT, ScenarioRuntime, merged
from topics.envelope import Envelope
from topics.names import RECONCILED_TOPICS
from topics.settings import TenantSettings

BOOTSTRAP_ENV = "KASSASYNC_KAFKA_BOOTSTRAP"


def kafka_bootstrap() -> str:
    value = os.environ.get(BOOTSTRAP_ENV, "").strip()
    if not value:
        pytest.fail(
            f"{BOOTSTRAP_ENV} is not set: the Kafka runtime's tests need a real broker "
            "(`make test` starts one; see docs/kafka.md)",
            pytrace=False,
        )
    return value


class KafkaScenarioRuntime(ScenarioRuntime):
    name = "kafka"

    async def __aenter__(self) -> KafkaScenarioRuntime:
        await self._start_world()
        quiet_faust_logs()
        self.config = KafkaConfig(
            bootstrap=kafka_bootstrap(),
            prefix=f"s{uuid.uuid4().hex[:10]}.",
            partitions=2,
            data_dir=self.data / "kafka",
        )
        await asyncio.to_thread(init_topics, self.config)
        self.box = SecretBox(generate_key())
        self.worker = KafkaRuntime(self.config, self.box, timing=self.timing)
        key = await asyncio.to_thread(self.worker.directory.upsert, self.tenant_config())
        assert key is not None
        self.api_key = key
        await self.worker.start()
        self.events = EventProducer(self.config)
        self.engine_url = await self._serve(create_app(self.worker.directory, self.events))
        self._consumer = KafkaConsumer(bootstrap_servers=self.config.bootstrap)
        return self

    async def restart(self) -> None:
        """Stop the worker and start a new one on the same topics and data folder (the sandbox,
        the till and the ingest API go on), as after a deploy."""
        await self.worker.stop()
        self.worker = KafkaRuntime(self.config, self.box, timing=self.timing)
        await self.worker.start()

    async def __aexit__(self, *exc: object) -> None:
        await self._stop_world()
        await self.worker.stop()
        self.events.close()
        self._consumer.close()

    @property
    def api(self) -> FortnoxApi:
        return self.worker.sessions[TENANT].api

    @property
    def session(self) -> FortnoxSession:
        return self.worker.sessions[TENANT]

    def full_passes(self) -> dict[str, float | None]:
        """Resource -> when its last full pass was saved (the dashboard's last full pass)."""
        data = self.worker.mirror.tenants.get(TENANT)
        cursors = [] if data is None else data.scan(CURSOR)
        return {resource: cursor.get("full_sync_at") for resource, cursor in cursors}

    def publish(self, messages: list[Envelope]) -> None:
        self.worker.ports.publish(messages)
        self.worker.producer.flush(timeout=30)

    def records(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        data = self.worker.mirror.tenants.get(TENANT)
        return [] if data is None else list(data.scan(kind))

    def state(self, kind: str, key: str) -> dict[str, Any] | None:
        data = self.worker.mirror.tenants.get(TENANT)
        return None if data is None else data.get(kind, key)

    def force_full_sync(self) -> None:
        data = self.worker.mirror.tenants[TENANT]
        for resource, cursor in list(data.scan(CURSOR)):
            self.worker.ports.write(
                TENANT, CURSOR, resource, {**cursor, "full_sync_at": 0}, durable=True
            )

    async def update_settings(self, override: dict[str, Any]) -> None:
        config = self.worker.directory.get(TENANT)
        assert config is not None
        settings = merged(config.settings.model_dump(mode="json"), override)
        self.settings = TenantSettings.model_validate(settings)
        updated = config.model_copy(update={"settings": self.settings})
        await asyncio.to_thread(self.worker.directory.upsert, updated)

    def _behind(self) -> int:
        tps = [
            TopicPartition(self.config.topic(t), p)
            for t in RECONCILED_TOPICS
            for p in range(self.config.partitions)
        ]
        ends = self._consumer.end_offsets(tps)
        done = self.worker.read_up_to()
        return sum(max(0, end - done.get((tp.topic, tp.partition), 0)) for tp, end in ends.items())

    @property
    def sessions(self) -> Mapping[str, FortnoxSession]:
        return self.worker.sessions

    async def quiet(self) -> bool:
        # What the worker's executors published is sent in the background: on the broker first,
        # so a change still in the producer's buffer is not taken for nothing left to apply.
        await asyncio.to_thread(self.worker.producer.flush, 30)
        behind = await asyncio.to_thread(self._behind)
        return (
            self.worker.ready
            and not behind
            and not self.worker.pending()
            and not self.worker.wakes()
        )

    async def drift(self) -> Drift:
        ops = KafkaOps(self.config, self.data / "ops.db")
        try:
            await asyncio.to_thread(ops.catch_up)
            return ops.ops.store.drift(TENANT)
        finally:
            ops.close()

    def feed_offsets(self) -> int:
        db = self.worker._feed_db
        if db is None:
            return 0
        return int(db.conn.execute("SELECT COUNT(*) FROM feed_offsets").fetchone()[0])

    def backlog(self) -> str:
        return f"pending={self.worker.pending()} wakes={self.worker.wakes()}"
