"""Tenants in Kafka mode: a compacted topic (``kassasync.tenants``) holds each tenant's
configuration, secrets sealed as in the embedded directory, and the hash of its ingest key.
Every worker and ingest server reads the whole topic; ``upsert`` also publishes the tenant's
settings to ``sync.control`` so the reconcilers see them, as the embedded directory does."""

from __future__ import annotations

import hmac
import json
import secrets
import threading
import time
import uuid
from typing import Any

import structlog
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from engine.clock import utcnow
from engine.kafka.config import KafkaConfig
from engine.kafka.topics import partition_for
from engine.secrets import SecretBox, SecretDecryptError
from engine.supervision import describe
from engine.tenants import (
    ConfigError,
    TenantConfig,
    hash_key,
    new_api_key,
    sealed_with_another_key,
)
from topics import registry
from topics.names import Topic, message_key
from topics.outcomes import SettingsChanged, SettingsChangedData

log = structlog.get_logger("kassasync.kafka.tenants")


class KafkaTenantDirectory:
    def __init__(self, config: KafkaConfig, box: SecretBox, *, refresh_every: float = 2.0) -> None:
        self.config = config
        self.box = box
        self.refresh_every = refresh_every
        self._configs: dict[str, TenantConfig] = {}
        self._hashes: dict[str, str] = {}
        #: Tenants whose configuration cannot be opened (a wrong KASSASYNC_SECRET_KEY): the
        #: cause, reported by the worker's health; their API keys still work for ingest.
        self.unreadable: dict[str, str] = {}
        self._position = 0
        self._checked = 0.0
        self._lock = threading.Lock()

    # -- reading ----------------------------------------------------------------------------

    def refresh(self, *, force: bool = False) -> None:
        """Read what was added to the topic since the last look (at most every few seconds)."""
        if not force and time.monotonic() - self._checked < self.refresh_every:
            return
        with self._lock:
            consumer = KafkaConsumer(
                bootstrap_servers=self.config.bootstrap,
                enable_auto_commit=False,
                consumer_timeout_ms=200,
            )
            try:
                tp = TopicPartition(self.config.tenants_topic, 0)
                consumer.assign([tp])
                end = consumer.end_offsets([tp])[tp]
                if end > self._position:
                    consumer.seek(tp, self._position)
                    while consumer.position(tp) < end:
                        for batch in consumer.poll(timeout_ms=500).values():
                            for record in batch:
                                self._apply(record.key, record.value)
                    self._position = end
            finally:
                consumer.close()
            self._checked = time.monotonic()

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        tenant = key.decode()
        if value is None:
            self._configs.pop(tenant, None)
            self._hashes.pop(tenant, None)
            self.unreadable.pop(tenant, None)
            return
        data = json.loads(value)
        self._hashes[tenant] = data["api_key_hash"]
        try:
            self._configs[tenant] = self._open(data["config"])
        except SecretDecryptError as failed:
            # One tenant the key cannot open must not hide every later tenant of the topic.
            self._configs.pop(tenant, None)
            self.unreadable[tenant] = describe(failed)
            log.error("tenants.config_unreadable", tenant=tenant, cause=self.unreadable[tenant])
        else:
            self.unreadable.pop(tenant, None)

    def get(self, tenant: str) -> TenantConfig | None:
        self.refresh()
        return self._configs.get(tenant)

    def cached(self, tenant: str) -> TenantConfig | None:
        """Without looking at the topic (for hot paths; a background refresh keeps it fresh)."""
        return self._configs.get(tenant)

    def ids(self) -> list[str]:
        self.refresh()
        return sorted(self._configs)

    def verify_key(self, tenant: str, key: str) -> bool:
        self.refresh()
        expected = self._hashes.get(tenant) or hash_key("no such tenant " + secrets.token_hex(8))
        return hmac.compare_digest(expected, hash_key(key)) and tenant in self._hashes

    # -- writing ----------------------------------------------------------------------------

    def _seal(self, config: TenantConfig) -> dict[str, Any]:
        data = config.model_dump(mode="json")
        if config.till.token is not None:
            data["till"]["token"] = self.box.seal(config.till.token, f"{config.id}:till")
        if config.fortnox is not None and config.fortnox.client_secret is not None:
            data["fortnox"]["client_secret"] = self.box.seal(
                config.fortnox.client_secret, f"{config.id}:fortnox"
            )
        return data

    def _open(self, data: dict[str, Any]) -> TenantConfig:
        tenant = data["id"]
        if data["till"].get("token"):
            data["till"]["token"] = self.box.open(data["till"]["token"], f"{tenant}:till").reveal()
        if data.get("fortnox") and data["fortnox"].get("client_secret"):
            data["fortnox"]["client_secret"] = self.box.open(
                data["fortnox"]["client_secret"], f"{tenant}:fortnox"
            ).reveal()
        return TenantConfig.model_validate(data)

    def upsert(self, config: TenantConfig, api_key: str | None = None) -> str | None:
        """Add or update a tenant; returns the new ingest key when one was created."""
        self.refresh(force=True)
        if config.id in self.unreadable:
            raise ConfigError(sealed_with_another_key(config.id))
        created: str | None = None
        if api_key is not None:
            key_hash = hash_key(api_key)
            created = api_key
        elif config.id in self._hashes:
            key_hash = self._hashes[config.id]
        else:
            created = new_api_key(config.id)
            key_hash = hash_key(created)
        settings = SettingsChanged(
            id=f"settings-{uuid.uuid4().hex}",
            tenant=config.id,
            occurred_at=utcnow(),
            source="operator",
            data=SettingsChangedData(settings=config.settings),
        )
        producer = KafkaProducer(bootstrap_servers=self.config.bootstrap, acks="all")
        try:
            producer.send(
                self.config.tenants_topic,
                key=message_key(config.id),
                value=json.dumps({"config": self._seal(config), "api_key_hash": key_hash}).encode(),
                partition=0,
            )
            producer.send(
                self.config.topic(Topic.SYNC_CONTROL),
                key=message_key(config.id),
                value=registry.dump(settings),
                partition=partition_for(config.id, self.config.partitions),
            )
            producer.flush(timeout=30)
        finally:
            producer.close()
        self._configs[config.id] = config
        self._hashes[config.id] = key_hash
        return created
