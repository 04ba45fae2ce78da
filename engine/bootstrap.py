"""The composition root: builds the embedded or the Kafka runtime, and what the CLI's commands
open, from one :class:`~engine.settings.Settings`.

A thin seam over the runtimes' own constructors: every value that comes from the environment or
a flag is passed explicitly from the settings, so no constructor has to fall back to
``os.environ``. The CLI (every command), the demo and tests that want the production wiring call
these; a test that wants fakes builds the runtime itself.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from engine.secrets import KEY_ENV, SecretBox, SecretKeyMissing
from engine.settings import Settings

if TYPE_CHECKING:
    from engine.embedded.runtime import EmbeddedEngine
    from engine.executors.fortnox import SessionTiming
    from engine.kafka.config import KafkaConfig
    from engine.kafka.directory import KafkaTenantDirectory
    from engine.kafka.runtime import KafkaRuntime
    from engine.store.db import Database
    from engine.tenants import TenantDirectory

log = structlog.get_logger("kassasync.bootstrap")

DATABASE = "kassasync.db"
TOKENS = "tokens.db"


def secret_box(settings: Settings) -> SecretBox:
    """The box that seals and opens secrets with ``KASSASYNC_SECRET_KEY`` (and the previous
    keys); :class:`SecretKeyMissing` with the fix when no key is set."""
    if settings.secret_key is None:
        raise SecretKeyMissing(
            f"{KEY_ENV} is not set. Kassasync encrypts Fortnox tokens and client secrets "
            f"at rest and needs a key: create one with `python -m engine.secrets` and export "
            f"it as {KEY_ENV}."
        )
    return SecretBox(
        settings.secret_key.get_secret_value(),
        [k.get_secret_value() for k in settings.secret_key_previous],
    )


def database_path(settings: Settings) -> Path:
    return settings.data / DATABASE


def open_database(settings: Settings, *, create: bool) -> Database:
    """The embedded runtime's database in the data folder; with ``create`` False a missing one
    is a :class:`FileNotFoundError` naming the path (a read must not create an empty engine)."""
    from engine.store.db import Database

    path = database_path(settings)
    if not create and not path.exists():
        raise FileNotFoundError(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return Database(path)


def tenant_directory(settings: Settings) -> TenantDirectory:
    """The embedded runtime's tenants (created with the database when there is none yet)."""
    from engine.tenants import TenantDirectory

    return TenantDirectory(open_database(settings, create=True), secret_box(settings))


def embedded_engine(
    settings: Settings,
    *,
    http_port: int = 8080,
    timing: SessionTiming | None = None,
) -> EmbeddedEngine:
    """The embedded runtime on the settings' data folder, secret key, admin token and host."""
    from engine.embedded.runtime import EmbeddedEngine

    settings.data.mkdir(parents=True, exist_ok=True)
    admin = settings.admin_token.get_secret_value() if settings.admin_token else None
    log.info("bootstrap.embedded", data_dir=str(settings.data), http_port=http_port)
    return EmbeddedEngine(
        settings.data,
        secret_box(settings),
        host=settings.http_host,
        http_port=http_port,
        timing=timing,
        admin_token=admin,
        log_keep=dt.timedelta(days=settings.log_keep_days),
        retention_seconds=settings.retention_interval_seconds,
        state_cache_bytes=int(settings.state_cache_mb * 1024 * 1024),
    )


def kafka_config(
    settings: Settings,
    *,
    cleanup: dict[str, str] | None = None,
    tokens: Path | None = None,
) -> KafkaConfig:
    """The Kafka runtime's configuration: every value from the settings."""
    from engine.kafka.config import KafkaConfig

    return KafkaConfig(
        bootstrap=settings.kafka_bootstrap,
        prefix=settings.kafka_prefix,
        partitions=settings.kafka_partitions,
        replication=settings.kafka_replication,
        cleanup=dict(cleanup or {}),
        data_dir=settings.data,
        tokens_path=tokens,
    )


def kafka_tenant_directory(settings: Settings) -> KafkaTenantDirectory:
    from engine.kafka.directory import KafkaTenantDirectory

    return KafkaTenantDirectory(kafka_config(settings), secret_box(settings))


def kafka_runtime(
    settings: Settings,
    *,
    tokens: Path | None = None,
    timing: SessionTiming | None = None,
    executors: bool = True,
    log_notes: bool = True,
    health_port: int | None = None,
) -> KafkaRuntime:
    """A Kafka worker for the tenants of the partitions it is assigned (with ``health_port``,
    serving its ``/healthz`` there)."""
    from engine.kafka.runtime import KafkaRuntime

    log.info("bootstrap.kafka", bootstrap=settings.kafka_bootstrap, prefix=settings.kafka_prefix)
    return KafkaRuntime(
        kafka_config(settings, tokens=tokens),
        secret_box(settings),
        timing=timing,
        executors=executors,
        log_notes=log_notes,
        health_port=health_port,
    )
