"""The till ingest API in Kafka mode: the same endpoint, validation and answers as the embedded
API (``engine.gateway.ingest``), with accepted events produced to ``till.events`` keyed by
tenant and acknowledged by every in-sync replica before the till gets its 202.

Idempotency by message id is the worker's: it keeps the ids of the till events it reconciled
in the tenant's state (``~seen``) and skips a resent one, so a till that resends after a lost
answer changes nothing. The API cannot tell a resend from a new event without that state, so it
answers ``{"accepted": n, "duplicates": 0}`` where the embedded API counts duplicates itself.
"""

from __future__ import annotations

import asyncio
import re
from typing import Protocol

import structlog
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse
from kafka import KafkaProducer
from prometheus_client import make_asgi_app

from engine.gateway.ingest import (
    MAX_BODY_BYTES,
    parse_body,
    problem,
    read_capped,
    validate_batch,
)
from engine.kafka.config import KafkaConfig
from engine.kafka.directory import KafkaTenantDirectory
from engine.kafka.topics import partition_for
from topics import registry
from topics.common import TENANT_PATTERN
from topics.envelope import Envelope
from topics.names import Topic, message_key

log = structlog.get_logger("kassasync.kafka.ingest")


class EventSink(Protocol):
    """Where the ingest API puts accepted events: ``store`` returns once they are durable."""

    async def store(self, tenant: str, events: list[Envelope]) -> int: ...


class EventProducer:
    """Produces accepted till events; ``store`` returns once the broker has them."""

    def __init__(self, config: KafkaConfig) -> None:
        self.config = config
        self.producer = KafkaProducer(
            bootstrap_servers=config.bootstrap, acks="all", linger_ms=1, retries=10
        )

    def _store(self, tenant: str, events: list[Envelope]) -> int:
        futures = [
            self.producer.send(
                self.config.topic(Topic.TILL_EVENTS),
                key=message_key(tenant),
                value=registry.dump(event),
                partition=partition_for(tenant, self.config.partitions),
            )
            for event in events
        ]
        for future in futures:
            future.get(timeout=30)
        return len(futures)

    async def store(self, tenant: str, events: list[Envelope]) -> int:
        return await asyncio.to_thread(self._store, tenant, events)

    def close(self) -> None:
        self.producer.close()


def create_app(directory: KafkaTenantDirectory, events: EventSink) -> FastAPI:
    app = FastAPI(title="Kassasync ingest (Kafka)", version="0.1.0")

    @app.post("/v1/tenants/{tenant}/events", tags=["ingest"])
    async def ingest(
        tenant: str, request: Request, authorization: str | None = Header(default=None)
    ) -> JSONResponse:
        if not re.match(TENANT_PATTERN, tenant):
            return problem(404, "unknown tenant")
        key = (authorization or "")[len("Bearer ") :].strip()
        if not (authorization or "").startswith("Bearer ") or not await asyncio.to_thread(
            directory.verify_key, tenant, key
        ):
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
            accepted = await events.store(tenant, accepted_events)
        except Exception as failed:
            log.error("ingest.unavailable", tenant=tenant, error=type(failed).__name__)
            return problem(503, "the event log is unavailable; resend later")
        log.info("ingest.accepted", tenant=tenant, accepted=accepted)
        return JSONResponse(status_code=202, content={"accepted": accepted, "duplicates": 0})

    # Prometheus scrapes the API's process (deploy/prometheus/prometheus.yml).
    app.mount("/metrics", make_asgi_app())

    @app.get("/healthz")
    async def healthz() -> dict[str, object]:
        return {"ok": True, "tenants": len(directory.ids())}

    return app
