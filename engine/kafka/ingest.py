"""The till ingest API in Kafka mode: the same endpoint, validation and answers as the embedded
API (``engine.gateway.ingest``), with accepted events produced to ``till.events`` keyed by
tenant and acknowledged by every in-sync replica before the till gets its 202.

Idempotency by message id, at the door as ``docs/contract.md`` says: :class:`SeenIds` reads
``till.events`` (every event any door put there, within its retention) into an index of message
ids per tenant with a by-value digest of each (``topics.registry.fingerprint``). Before a batch
is stored the door catches up with the tenant's partition; an event received before with the
same content is a duplicate (not stored again: ``200 {"accepted": 0, "duplicates": n}`` when
all are), and a known id with other content refuses the whole batch with 409. Per partition,
checking and storing are one step in a process, so two requests of one door cannot both store
an id. Two doors racing with the same id, or a resend after ``till.events``' retention, get
past; the worker's ``~seen`` record is the second line: it skips the resend and dead-letters a
changed one, keeping the first.

The till-PC agent's door (``PUT /v1/sie-files/{tenant}/{name}``, engine/gateway/sie_files.py)
is served here too, with the embedded door's code: :class:`SieFileDoor` imports an uploaded file
as ``kassasync import-sie --runtime kafka`` does (the deployment's read model brought up to date,
then the vouchers produced onto ``till.events``) and keeps the uploads in that read model's
database, beside the projection, where the Kafka dashboard shows their reports.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import structlog
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from prometheus_client import make_asgi_app
from pydantic import ValidationError

from engine.gateway import sie_files
from engine.gateway.ingest import (
    MAX_BODY_BYTES,
    Conflict,
    Stored,
    conflict,
    parse_body,
    problem,
    read_capped,
    validate_batch,
)
from engine.kafka.bookkeeping import KafkaBooks
from engine.kafka.config import KafkaConfig
from engine.kafka.directory import KafkaTenantDirectory
from engine.kafka.topics import partition_for
from topics import registry
from topics.common import TENANT_PATTERN
from topics.envelope import Envelope
from topics.names import Topic, message_key

log = structlog.get_logger("kassasync.kafka.ingest")


class EventSink(Protocol):
    """Where the ingest API puts accepted events: ``store`` returns once they are durable, with
    what was stored (nothing at all when an id was received before with other content)."""

    async def store(self, tenant: str, events: list[Envelope]) -> Stored: ...


@dataclass(frozen=True, slots=True)
class Seen:
    """A message id on ``till.events``: the digest of its content and where the first one is."""

    digest: bytes
    offset: int


class SeenIds:
    """The till events' message ids on ``till.events``, per tenant, as far as this process has
    read the topic (it catches up with a partition before each check)."""

    def __init__(self, config: KafkaConfig) -> None:
        self.config = config
        self.topic = config.topic(Topic.TILL_EVENTS)
        self._consumer: KafkaConsumer | None = None
        self._ids: dict[tuple[str, str], Seen] = {}
        self._read = threading.Lock()
        self._partitions = [threading.Lock() for _ in range(config.partitions)]

    def partition(self, tenant: str) -> threading.Lock:
        """Held while a batch of the tenant's partition is checked and stored."""
        return self._partitions[partition_for(tenant, self.config.partitions)]

    def _open(self) -> KafkaConsumer:
        if self._consumer is None:
            consumer = KafkaConsumer(bootstrap_servers=self.config.bootstrap)
            parts = [TopicPartition(self.topic, p) for p in range(self.config.partitions)]
            consumer.assign(parts)
            consumer.seek_to_beginning(*parts)
            self._consumer = consumer
        return self._consumer

    def catch_up(self, tenant: str, timeout: float = 30.0) -> None:
        """Read the tenant's partition up to its end as it is now."""
        tp = TopicPartition(self.topic, partition_for(tenant, self.config.partitions))
        with self._read:
            consumer = self._open()
            end = consumer.end_offsets([tp])[tp]
            deadline = time.monotonic() + timeout
            while consumer.position(tp) < end:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.topic} could not be read within {timeout:.0f} s")
                for records in consumer.poll(timeout_ms=200, max_records=5000).values():
                    for record in records:
                        self._index(record.key, record.value, record.offset)

    def _index(self, key: bytes | None, value: bytes | None, offset: int) -> None:
        if key is None or value is None:
            return
        try:
            event = registry.parse(value)
        except (ValidationError, ValueError):
            return  # not a message the door stored; the worker dead-letters it
        self.remember(event, offset)

    def remember(self, event: Envelope, offset: int) -> None:
        """The first event with an id is the one kept (as the worker keeps it)."""
        where = (event.tenant, event.id)
        known = self._ids.get(where)
        if known is None or offset < known.offset:
            self._ids[where] = Seen(bytes.fromhex(registry.fingerprint(event)), offset)

    def get(self, tenant: str, message_id: str) -> Seen | None:
        return self._ids.get((tenant, message_id))

    def __len__(self) -> int:
        return len(self._ids)

    def close(self) -> None:
        with self._read:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None


class EventProducer:
    """Stores accepted till events: the ones not received before, all or nothing, produced and
    acknowledged before ``store`` returns."""

    def __init__(self, config: KafkaConfig) -> None:
        self.config = config
        self.producer = KafkaProducer(
            bootstrap_servers=config.bootstrap, acks="all", linger_ms=1, retries=10
        )
        self.seen = SeenIds(config)

    def _store(self, tenant: str, events: list[Envelope]) -> Stored:
        result = Stored()
        with self.seen.partition(tenant):
            self.seen.catch_up(tenant)
            fresh: list[Envelope] = []
            for index, event in enumerate(events):
                known = self.seen.get(tenant, event.id)
                if known is None:
                    fresh.append(event)
                elif known.digest == bytes.fromhex(registry.fingerprint(event)):
                    result.duplicates += 1
                else:
                    result.conflicts.append(Conflict(index, event.id, known.offset))
            if result.conflicts:
                result.duplicates = 0
                return result
            futures = [
                (
                    event,
                    self.producer.send(
                        self.config.topic(Topic.TILL_EVENTS),
                        key=message_key(tenant),
                        value=registry.dump(event),
                        partition=partition_for(tenant, self.config.partitions),
                    ),
                )
                for event in fresh
            ]
            for event, future in futures:
                self.seen.remember(event, future.get(timeout=30).offset)
                result.accepted += 1
        return result

    async def store(self, tenant: str, events: list[Envelope]) -> Stored:
        return await asyncio.to_thread(self._store, tenant, events)

    def close(self) -> None:
        self.producer.close()
        self.seen.close()


class SieFileDoor:
    """The till-PC agent's uploads on a Kafka deployment: each file imported as
    ``import-sie --runtime kafka`` imports it, one at a time (the read model is caught up before
    each, so the vouchers any import or upload queued before are known as duplicates)."""

    def __init__(self, books: KafkaBooks) -> None:
        self.books = books
        self._one = threading.Lock()
        sie_files.ensure_table(books.ops.db)

    def _receive(self, tenant: str, name: str, data: bytes) -> sie_files.Upload:
        with self._one:
            try:
                self.books.catch_up()
            except (KafkaError, TimeoutError) as failed:
                raise sie_files.Unavailable(f"the deployment cannot be read: {failed}") from None
            try:
                return sie_files.receive(
                    self.books.ops.db, self.books.vouchers(), tenant, name, data
                )
            except KafkaError as failed:  # till.events did not take or deliver the vouchers
                raise sie_files.Unavailable(f"till.events: {failed}") from None

    async def receive(self, tenant: str, name: str, data: bytes) -> sie_files.Upload:
        return await asyncio.to_thread(self._receive, tenant, name, data)

    def close(self) -> None:
        self.books.close()


#: The longest a till waits for an answer while the deployment does not answer (a broker that
#: hangs): then 503, send again later. A store that completes after that is not doubled by the
#: resend: the id is known by then, and the resend is a duplicate.
ANSWER_SECONDS = 20.0


class DoorUnavailable(Exception):
    """The tenants' keys cannot be read from the deployment now."""


def create_app(
    directory: KafkaTenantDirectory,
    events: EventSink,
    uploads: SieFileDoor | None = None,
    *,
    answer_seconds: float = ANSWER_SECONDS,
) -> FastAPI:
    """The ingest API: the till events' door, and the till-PC agent's with ``uploads``."""
    app = FastAPI(title="Kassasync ingest (Kafka)", version="0.1.0")

    @app.exception_handler(DoorUnavailable)
    async def unavailable(_request: Request, _failed: DoorUnavailable) -> JSONResponse:
        return problem(503, "the deployment cannot be read now; send again later")

    async def authorised(tenant: str, authorization: str | None) -> bool:
        key = (authorization or "")[len("Bearer ") :].strip()
        if not (authorization or "").startswith("Bearer "):
            return False
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(directory.verify_key, tenant, key), answer_seconds
            )
        except (KafkaError, TimeoutError, OSError) as failed:
            log.error("ingest.keys_unavailable", tenant=tenant, error=type(failed).__name__)
            raise DoorUnavailable from failed

    @app.post("/v1/tenants/{tenant}/events", tags=["ingest"])
    async def ingest(
        tenant: str, request: Request, authorization: str | None = Header(default=None)
    ) -> JSONResponse:
        if not re.match(TENANT_PATTERN, tenant):
            return problem(404, "unknown tenant")
        if not await authorised(tenant, authorization):
            return problem(401, "missing or wrong API key for this tenant")
        raw = await read_capped(request)
        if raw is None:
            return problem(413, f"body is larger than {MAX_BODY_BYTES} bytes; send smaller batches")
        items = parse_body(raw)
        if isinstance(items, JSONResponse):
            return items
        accepted_events, problems = validate_batch(tenant, items)
        if problems:
            log.info("ingest.rejected", tenant=tenant, problems=len(problems))
            return problem(422, "the batch was not stored: fix these events and resend", problems)
        try:
            stored = await asyncio.wait_for(events.store(tenant, accepted_events), answer_seconds)
        except Exception as failed:  # the broker refused, failed or hung: nothing was promised
            log.error("ingest.unavailable", tenant=tenant, error=type(failed).__name__)
            return problem(503, "the event log is unavailable; resend later")
        if stored.conflicts:
            return conflict(tenant, stored.conflicts)
        log.info(
            "ingest.accepted", tenant=tenant, accepted=stored.accepted, duplicates=stored.duplicates
        )
        return JSONResponse(
            status_code=202 if stored.accepted else 200,
            content={"accepted": stored.accepted, "duplicates": stored.duplicates},
        )

    if uploads is not None:
        sie_files.add_upload_route(app, authorised, uploads.receive)

    # Prometheus scrapes the API's process (deploy/prometheus/prometheus.yml).
    app.mount("/metrics", make_asgi_app())

    @app.get("/healthz")
    async def healthz() -> dict[str, object]:
        return {"ok": True, "tenants": len(directory.ids())}

    return app
