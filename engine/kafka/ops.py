"""The operator surface of a Kafka deployment: :class:`engine.ops.Ops` over the read model
(:mod:`engine.kafka.readmodel`), with the operator's actions published as messages.

* reads: :class:`KafkaOpsStore` is the embedded store's SQL over the projected tables;
* actions: ``resume``, ``pause``, dead-letter ``retry``/``discard`` and a retrying command's
  ``retry now``/``cancel`` go onto ``sync.control`` (the worker that owns the tenant applies
  them to the command's ``~cmd`` record: a dead command is requeued or dropped there, a retrying
  one is attempted at once or settled as cancelled); a parked message is produced again onto its
  own topic;
* :class:`KafkaProbe`: lag of the workers' consumer group per partition, the group's members
  and their partitions, and throughput from the growth of the topics' end offsets.

``kassasync kafka ops`` serves the dashboard, the ops API and ``/metrics`` from this;
``kassasync status`` and ``kassasync deadletters`` use it with ``--runtime kafka``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Literal

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from engine.clock import utcnow
from engine.kafka.config import KafkaConfig
from engine.kafka.readmodel import KafkaReadModel
from engine.kafka.topics import partition_for
from engine.metrics import EngineMetrics
from engine.ops import (
    Budget,
    DeadLetterRow,
    Ops,
    SqliteOpsStore,
    TopicLag,
    WorkerAssignment,
)
from engine.store.db import Database
from engine.web import mount
from engine.web.auth import AdminAuth, NeedLogin
from engine.web.html import esc, html_response, layout
from topics import registry
from topics.envelope import Envelope
from topics.names import RECONCILED_TOPICS, Topic, message_key
from topics.outcomes import CommandAction, CommandActionData

log = structlog.get_logger("kassasync.kafka.ops")

#: ``/healthz`` of the ops service turns red when the read model is older than this.
STALE_AFTER = 10.0


class Producer:
    """A Kafka producer made on first use."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._producer: KafkaProducer | None = None

    def get(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        return self._producer

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
            self._producer = None


class KafkaOpsStore(SqliteOpsStore):
    """Reads from the read model; writes go to Kafka for the owning worker to apply."""

    def __init__(self, config: KafkaConfig, db: Database, producer: Producer) -> None:
        super().__init__(db)
        self.config = config
        self.producer = producer

    def _send(self, topic: Topic | str, tenant: str, payload: bytes) -> None:
        self.producer.get().send(
            self.config.topic(topic),
            value=payload,
            key=message_key(tenant),
            partition=partition_for(tenant, self.config.partitions),
        ).get(timeout=30)

    def atomic(self) -> AbstractContextManager[Any]:
        # Kafka has no transaction spanning the read model: each write is acknowledged alone.
        return contextlib.nullcontext()

    def append(self, message: Envelope) -> None:
        self._send(Topic(message.TOPIC), message.tenant, registry.dump(message))

    def requeue(self, command_id: str) -> bool:
        """The owning worker requeues the dead command when it sees the retry action."""
        row = self.db.conn.execute(
            "SELECT status FROM outbox WHERE command_id = ?", (command_id,)
        ).fetchone()
        return row is not None and row[0] == "dead"

    def discard(self, command_id: str) -> bool:
        with self.db.transaction():
            return self.outbox.discard(command_id)

    def _command_action(
        self, command_id: str, action: Literal["retry_now", "cancel"], reason: str
    ) -> bool:
        """Publish an operator's action on a pending command for the worker that owns its
        tenant (it records it in the command's ``~cmd`` record and carries it out there)."""
        row = self.db.conn.execute(
            "SELECT tenant FROM outbox WHERE command_id = ? AND status = 'pending'", (command_id,)
        ).fetchone()
        if row is None:
            return False
        message = CommandAction(
            id=f"ops-{action.replace('_', '-')}-{uuid.uuid4().hex}",
            tenant=str(row[0]),
            occurred_at=utcnow(),
            data=CommandActionData(
                command_id=command_id, action=action, reason=reason[:200] or "cancelled"
            ),
        )
        self.append(message)
        log.info(
            "ops.command.action_published",
            tenant=message.tenant,
            command_id=command_id,
            action=action,
            message_id=message.id,
        )
        return True

    def retry_command_now(self, command_id: str) -> bool:
        return self._command_action(command_id, "retry_now", "")

    def cancel_command(self, command_id: str, reason: str) -> bool:
        return self._command_action(command_id, "cancel", reason)

    def replay(self, row: DeadLetterRow) -> bool:
        if row.unreadable() is not None or Topic(row.topic) not in RECONCILED_TOPICS:
            return False
        self._send(Topic(row.topic), row.tenant, row.payload)
        return True


class KafkaProbe:
    """:class:`engine.ops.RuntimeProbe` of a Kafka deployment, from the broker's point of view."""

    def __init__(self, config: KafkaConfig, *, window: float = 60.0) -> None:
        self.config = config
        self.window = window
        self._admin: KafkaAdminClient | None = None
        self._consumer: KafkaConsumer | None = None
        self._ends: deque[tuple[float, dict[str, int]]] = deque()

    @property
    def name(self) -> str:
        return "kafka"

    def _clients(self) -> tuple[KafkaAdminClient, KafkaConsumer]:
        if self._admin is None:
            self._admin = KafkaAdminClient(bootstrap_servers=self.config.bootstrap)
        if self._consumer is None:
            self._consumer = KafkaConsumer(bootstrap_servers=self.config.bootstrap)
        return self._admin, self._consumer

    def close(self) -> None:
        for client in (self._admin, self._consumer):
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
        self._admin = self._consumer = None

    def _partitions(self) -> list[TopicPartition]:
        return [
            TopicPartition(self.config.topic(t), p)
            for t in RECONCILED_TOPICS
            for p in range(self.config.partitions)
        ]

    def lag(self) -> list[TopicLag]:
        try:
            admin, consumer = self._clients()
            tps = self._partitions()
            ends = consumer.end_offsets(tps)
            committed = admin.list_group_offsets({self.config.app_id: tps}).get(
                self.config.app_id, {}
            )
        except KafkaError as failed:
            log.warning("ops.kafka_unreachable", error=repr(failed))
            return []
        self._remember(ends)
        out: list[TopicLag] = []
        for tp in tps:
            meta = committed.get(tp)
            done = 0 if meta is None or meta.offset < 0 else int(meta.offset)
            out.append(
                TopicLag(self.config.unprefixed(tp.topic), tp.partition, int(ends[tp]), done)
            )
        return out

    def _remember(self, ends: dict[TopicPartition, int]) -> None:
        now = time.monotonic()
        by_topic: dict[str, int] = {}
        for tp, end in ends.items():
            name = self.config.unprefixed(tp.topic)
            by_topic[name] = by_topic.get(name, 0) + int(end)
        self._ends.append((now, by_topic))
        while self._ends and now - self._ends[0][0] > self.window:
            self._ends.popleft()

    def throughput(self) -> dict[str, float]:
        """Messages per second into each reconciled topic over the last minute."""
        if len(self._ends) < 2:
            return {}
        (t0, first), (t1, last) = self._ends[0], self._ends[-1]
        elapsed = max(t1 - t0, 1e-6)
        return {topic: (last[topic] - first.get(topic, 0)) / elapsed for topic in last}

    def workers(self) -> list[WorkerAssignment]:
        try:
            admin, _ = self._clients()
            groups = admin.describe_groups([self.config.app_id])
        except KafkaError as failed:
            log.warning("ops.kafka_unreachable", error=repr(failed))
            return []
        reconciled = {self.config.topic(t) for t in RECONCILED_TOPICS}
        out: list[WorkerAssignment] = []
        for group_id, group in groups.items():
            for member in group.get("members") or []:
                parts = {
                    p
                    for topic, partitions in _assigned(member.get("member_assignment"))
                    if topic in reconciled
                    for p in partitions
                }
                out.append(
                    WorkerAssignment(
                        worker=f"{member.get('client_id')}@{member.get('client_host')}",
                        partitions=tuple(sorted(parts)),
                        tenants=None,
                        detail=f"group {group_id} ({group.get('group_state', '?')})",
                    )
                )
        return out

    def budgets(self) -> list[Budget]:
        # Each worker keeps its own limiters: their figures are on the worker's /metrics.
        return []


def _assigned(assignment: Any) -> Iterator[tuple[str, list[int]]]:
    """(topic, partitions) pairs of a member's decoded assignment, whatever its shape."""
    if assignment is None:
        return
    if hasattr(assignment, "to_dict"):
        assignment = assignment.to_dict()
    if isinstance(assignment, dict):
        topic = assignment.get("topic")
        partitions = assignment.get("partitions")
        if isinstance(topic, str) and isinstance(partitions, list):
            yield topic, [int(p) for p in partitions]
            return
        for value in assignment.values():
            yield from _assigned(value)
    elif isinstance(assignment, list | tuple):
        if len(assignment) == 2 and isinstance(assignment[0], str):
            yield str(assignment[0]), [int(p) for p in assignment[1]]
            return
        for item in assignment:
            yield from _assigned(item)


class KafkaOps:
    """The Kafka deployment's :class:`Ops`, its read model and the loop that keeps it fresh."""

    #: The topics the read model read nothing of at its last catch-up because they did not
    #: exist yet (the state changelog until a worker first starts): ``/healthz`` names them.
    waiting_for: tuple[str, ...] = ()

    def __init__(self, config: KafkaConfig, path: Path | None = None) -> None:
        self.config = config
        where = path or config.data_dir / "ops" / f"{config.app_id}.db"
        self.db = Database(where)
        self.readmodel = KafkaReadModel(config, self.db)
        #: Connected on the first action: reading (status, lists, the dashboard) needs none.
        self.producer = Producer(config.bootstrap)
        self.probe = KafkaProbe(config)
        self.ops = Ops(KafkaOpsStore(config, self.db, self.producer), self.probe)
        self.last_caught_up: float | None = None
        self.last_error: str | None = None

    def catch_up(self, timeout: float = 30.0) -> None:
        self.readmodel.catch_up(timeout)
        self.waiting_for = tuple(self.readmodel.missing())
        self.last_caught_up = time.time()
        self.last_error = None

    async def follow(self, stop: asyncio.Event, every: float = 1.0) -> None:
        """Keep the read model fresh until ``stop`` (runs the blocking reads in a thread).

        A failure (the broker unreachable, the disk full) is logged at error and retried with
        backoff; ``/healthz`` says why while it lasts.
        """
        backoff = every
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.catch_up)
                backoff = every
            except Exception as failed:  # the loop must not die: say why, try again
                self.last_error = f"read model: {type(failed).__name__}: {failed}"[:500]
                log.error("ops.readmodel_failed", error=self.last_error, exc_info=True)
                self.readmodel.close()
                backoff = min(backoff * 2, 30.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=backoff)

    def close(self) -> None:
        self.readmodel.close()
        self.probe.close()
        self.producer.close()
        self.db.close()


@contextlib.contextmanager
def kafka_ops(config: KafkaConfig, path: Path | None = None) -> Iterator[KafkaOps]:
    """A caught-up :class:`KafkaOps` for one command (``status``, ``deadletters``)."""
    ops = KafkaOps(config, path)
    try:
        ops.catch_up()
        yield ops
    finally:
        ops.close()


def create_ops_app(kafka: KafkaOps, admin_token: str) -> FastAPI:
    """The Kafka deployment's dashboard, ops API and ``/metrics`` (every ``kassasync_*`` gauge
    the read model holds), with ``/healthz`` red while the read model cannot catch up."""
    app = FastAPI(title="Kassasync ops (Kafka)", docs_url=None, redoc_url=None)
    metrics = EngineMetrics()
    metrics.watch(kafka.ops)
    _onboarding_elsewhere(app, AdminAuth(admin_token))  # before /tenants/{tenant} matches "new"
    mount(app, ops=kafka.ops, auth=AdminAuth(admin_token), metrics=metrics)

    app.get("/healthz")(health_of(kafka))
    return app


def _onboarding_elsewhere(app: FastAPI, auth: AdminAuth) -> None:
    """The dashboard's "Add a shop" and a tenant's "Fortnox connection" and "Settings" say how
    it is done on a Kafka deployment (connecting from a consent link and the settings page run
    on the embedded engine only, yet)."""
    text = (
        "<h1>Shops on a Kafka deployment</h1>"
        "<p>Add or change shops with <code>kassasync kafka tenants add --config FILE</code> "
        "(docs/kafka.md). Connecting a Fortnox company from a consent link, and deactivating "
        "one, are not available on a Kafka deployment yet: they run on the embedded engine "
        "(<code>kassasync connect TENANT</code>). So is the settings page that picks a "
        "shop's series, accounts and cost centres from its Fortnox: change a Kafka "
        "deployment's settings in the configuration file and add it again.</p>"
    )

    def page(request: Request, back: str = "") -> HTMLResponse:
        if auth.authenticate(request, api=False) is None:
            raise NeedLogin(api=False, path=request.url.path)
        return html_response(layout("Shops", text + back))

    @app.get("/tenants/new", include_in_schema=False)
    async def add_a_shop(request: Request) -> HTMLResponse:
        return page(request)

    @app.get("/tenants/{tenant}/connection", include_in_schema=False)
    async def connection(request: Request, tenant: str) -> HTMLResponse:
        return page(request, f'<p><a href="/tenants/{esc(tenant)}">Back</a></p>')

    @app.get("/tenants/{tenant}/settings", include_in_schema=False)
    async def settings(request: Request, tenant: str) -> HTMLResponse:
        return page(request, f'<p><a href="/tenants/{esc(tenant)}">Back</a></p>')


def health_of(kafka: KafkaOps) -> Callable[[], Awaitable[JSONResponse]]:
    """``/healthz`` of the ops service: red (503, with the reason) while the read model is stale."""

    async def healthz() -> JSONResponse:
        age = None if kafka.last_caught_up is None else time.time() - kafka.last_caught_up
        ok = age is not None and age < STALE_AFTER
        body: dict[str, object] = {"ok": ok, "runtime": "kafka", "read_model_age_seconds": age}
        if kafka.waiting_for:
            # Not a fault (no worker has started yet, say), but what the pages cannot show yet.
            body["waiting_for_topics"] = list(kafka.waiting_for)
        if not ok:
            body["reason"] = kafka.last_error or "the read model has not caught up with Kafka yet"
        return JSONResponse(body, status_code=200 if ok else 503)

    return healthz
