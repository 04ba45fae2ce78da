"""The Kafka deployment's read model: its topics projected into the embedded runtime's tables, so
the operator surface (dashboard, ``/metrics``, ``status``, ``deadletters``) reads a Kafka
deployment exactly as it reads an embedded one (:class:`engine.ops.SqliteOpsStore`).

What is projected, from every partition:

* the state changelog: the reconcilers' records into ``state``; the runtime's ``~cmd`` records
  (commands not yet done) into ``outbox``, with their last failed attempt, retry time and error
  from the executors' ``~exec`` marks; the Fortnox session's ``~cursor`` records into
  ``fx_cursor``;
* ``sync.deadletters`` into ``dead_letters``; an operator's ``sync.deadletter.action`` on
  ``sync.control`` resolves its dead letter;
* the tenants topic into ``tenants`` (secrets stay sealed: only the name is read);
* the runtime's ``~seen`` records (till event ids a worker admitted, with their fingerprints)
  into ``kafka_seen``, and each tenant's consumed offsets (its ``~meta`` record) into
  ``kafka_consumed``: ``import-sie`` tells a voucher queued before from a new one with these
  (:mod:`engine.kafka.bookkeeping`).

Every record is projected from the ``~journal`` of its batch too, which precedes it on the
changelog: the worker writes the records behind their journals, up to a second later.

Delivered commands stay in ``outbox`` as long as the embedded store keeps them
(:attr:`engine.store.retention.RetentionPolicy.delivered_for`, 27 hours by default), their
payload an hour: a catch-up deletes older ones every :data:`EXPIRE_EVERY` seconds
(:meth:`KafkaReadModel.expire`), so the file stops growing; dead and discarded commands and
dead letters stay, the operator's to deal with.

The read model is a cache: delete its file and it is rebuilt from the topics. Its positions
commit with what they brought, so a restarted projection resumes where it stopped. It may start
before the topics it reads exist (the first worker makes the state changelog): a topic that
appears later is read from its start at the next catch-up (:meth:`KafkaReadModel.missing`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from kafka import KafkaConsumer, TopicPartition
from pydantic import ValidationError

from engine.kafka.config import KafkaConfig
from engine.kafka.store import CMD, CURSOR, EXEC, JOURNAL, META, SEEN, decode_key, is_internal
from engine.store.db import Database
from engine.store.lanes import lane_of
from engine.store.packing import RowEdits, StateTable
from engine.store.retention import RetentionPolicy
from topics import registry
from topics.names import Topic
from topics.outcomes import DeadLetter, DeadLetterAction

log = structlog.get_logger("kassasync.kafka.readmodel")

#: How long delivered commands (and, shorter, their payloads) are kept, as in the embedded store.
DELIVERED_FOR = RetentionPolicy().delivered_for.total_seconds()
SLIM_AFTER = RetentionPolicy().slim_after.total_seconds()
#: A catch-up expires delivered commands at most this often (seconds).
EXPIRE_EVERY = 600.0

#: The read model's positions in ``offsets``. Version 2 projects ``~seen`` and the consumed
#: offsets too: a file of version 1 is read again from the start (every projection is
#: idempotent), so that it holds them.
CONSUMER = "kafka-readmodel-2"

_DDL = (
    """CREATE TABLE IF NOT EXISTS kafka_seen (
        tenant TEXT NOT NULL, msg_id TEXT NOT NULL, fp TEXT,
        PRIMARY KEY (tenant, msg_id)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS kafka_consumed (
        tenant TEXT NOT NULL, topic TEXT NOT NULL, "offset" INTEGER NOT NULL,
        PRIMARY KEY (tenant, topic)) WITHOUT ROWID""",
)

M = TypeVar("M", DeadLetter, DeadLetterAction)


@dataclass(frozen=True, slots=True)
class Projected:
    """How many records one catch-up brought, by source."""

    state: int = 0
    dead_letters: int = 0
    actions: int = 0
    tenants: int = 0

    @property
    def total(self) -> int:
        return self.state + self.dead_letters + self.actions + self.tenants


class KafkaReadModel:
    """Tails the deployment's topics into ``db`` (one SQLite file, the embedded schema)."""

    def __init__(self, config: KafkaConfig, db: Database) -> None:
        self.config = config
        self.db = db
        self._consumer: KafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []
        #: What :meth:`missing` said at the last look (logged when it changes).
        self._waiting: list[str] = []
        #: When :meth:`expire` last ran (``time.monotonic``; None: not yet).
        self._expired_at: float | None = None
        with db.transaction() as conn:
            for ddl in _DDL:
                conn.execute(ddl)

    # -- positions --------------------------------------------------------------------------

    def _sources(self) -> list[TopicPartition]:
        c = self.config
        topics = [c.state_changelog, c.topic(Topic.DEAD_LETTERS), c.topic(Topic.SYNC_CONTROL)]
        parts = [TopicPartition(t, p) for t in topics for p in range(c.partitions)]
        return [*parts, TopicPartition(c.tenants_topic, 0)]

    def _positions(self) -> dict[str, int]:
        rows = self.db.conn.execute(
            'SELECT topic, "offset" FROM offsets WHERE consumer = ?', (CONSUMER,)
        ).fetchall()
        return {str(t): int(o) for t, o in rows}

    def missing(self) -> list[str]:
        """The source topics (or some of their partitions) not read because they did not exist
        at the last look: the state changelog until a worker first starts, every topic before
        ``kafka init``. Looked for again at each catch-up while any is missing."""
        assigned = set(self._partitions)
        return sorted({tp.topic for tp in self._sources() if tp not in assigned})

    def _open(self) -> KafkaConsumer:
        if self._consumer is None:
            self._consumer = KafkaConsumer(
                bootstrap_servers=self.config.bootstrap,
                enable_auto_commit=False,
                isolation_level="read_committed",
            )
            self._partitions = []
        if self.missing():
            self._assign_new(self._consumer)
        return self._consumer

    def _assign_new(self, consumer: KafkaConsumer) -> None:
        """Add the sources that exist now to the assignment, each from its committed position.

        The read model may well start before the topics it reads: the worker makes the state
        changelog when it first starts, and an ops service or an ingest may start before any
        worker (or before ``kafka init``). So the assignment is not fixed when the consumer
        opens: while a source is missing, each catch-up asks the broker again and reads what
        has appeared since (the partitions already assigned keep their positions).
        """
        assigned = set(self._partitions)
        wanted = [tp for tp in self._sources() if tp not in assigned]
        known = consumer.topics()  # a metadata request to the broker, not the client's cache
        ready = [
            tp
            for tp in wanted
            if tp.topic in known and tp.partition in (consumer.partitions_for_topic(tp.topic) or ())
        ]
        if ready:
            self._partitions = [*self._partitions, *ready]
            consumer.assign(self._partitions)
            positions = self._positions()
            for tp in ready:
                consumer.seek(tp, positions.get(_where(tp), 0))
            log.info(
                "readmodel.topics_assigned",
                topics=sorted({tp.topic for tp in ready}),
                partitions=len(ready),
            )
        waiting = self.missing()
        if waiting != self._waiting:
            log.info("readmodel.topics_missing", topics=waiting)
            self._waiting = waiting

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    # -- catching up ------------------------------------------------------------------------

    def catch_up(self, timeout: float = 30.0) -> Projected:
        """Project everything up to the topics' ends as they are now."""
        consumer = self._open()
        if not self._partitions:
            return Projected()
        ends: dict[TopicPartition, int] = consumer.end_offsets(self._partitions)
        deadline = time.monotonic() + timeout
        counts = Projected()
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the read model did not catch up within {timeout:.0f} s")
            polled = consumer.poll(timeout_ms=500, max_records=5000)
            if polled:
                counts = _add(counts, self._apply(polled))
        if self._expired_at is None or time.monotonic() - self._expired_at >= EXPIRE_EVERY:
            self.expire()
        return counts

    def expire(self, now: float | None = None) -> tuple[int, int]:
        """Delete the delivered commands done more than :data:`DELIVERED_FOR` ago and drop the
        payloads of those done more than :data:`SLIM_AFTER` ago; (deleted, slimmed)."""
        moment = time.time() if now is None else now
        with self.db.transaction() as conn:
            deleted = conn.execute(
                "DELETE FROM outbox WHERE status = 'done' AND done_at < ?",
                (moment - DELIVERED_FOR,),
            ).rowcount
            slimmed = conn.execute(
                "UPDATE outbox SET payload = x'' WHERE status = 'done' AND done_at < ? "
                "AND length(payload) > 0",
                (moment - SLIM_AFTER,),
            ).rowcount
        self._expired_at = time.monotonic()
        if deleted or slimmed:
            log.info("kafka.readmodel.expired", deleted=deleted, slimmed=slimmed)
        return deleted, slimmed

    def _apply(self, polled: dict[TopicPartition, list[Any]]) -> Projected:
        c = self.config
        state = dead = actions = tenants = 0
        with self.db.transaction() as conn:
            # A poll's records of one entity (its journal's and its own) are one row write.
            edits = RowEdits(StateTable(conn))
            for tp, records in polled.items():
                for record in records:
                    if tp.topic == c.state_changelog:
                        state += self._state(conn, edits, record.key, record.value)
                    elif tp.topic == c.topic(Topic.DEAD_LETTERS):
                        dead += self._dead_letter(conn, record.value)
                    elif tp.topic == c.topic(Topic.SYNC_CONTROL):
                        actions += self._action(conn, record.value)
                    elif tp.topic == c.tenants_topic:
                        tenants += self._tenant(conn, record.key, record.value)
                if records:
                    conn.execute(
                        'INSERT INTO offsets (consumer, topic, "offset") VALUES (?, ?, ?) '
                        'ON CONFLICT (consumer, topic) DO UPDATE SET "offset" = excluded."offset"',
                        (CONSUMER, _where(tp), records[-1].offset + 1),
                    )
            edits.flush()
        return Projected(state, dead, actions, tenants)

    def _state(self, conn: Any, edits: RowEdits, key: bytes | None, value: bytes | None) -> int:
        if key is None:
            return 0
        try:
            tenant, kind, rkey = decode_key(key)
        except (UnicodeDecodeError, ValueError):
            return 0
        if tenant.startswith("~"):
            return 0  # a partition's read position, not a tenant
        record = None if value is None else json.loads(value)
        if kind == JOURNAL:
            # A batch's journal is acknowledged before anything of the batch leaves, and its
            # records are written behind it: what it carries is the tenant's state now.
            for put in [] if record is None else record.get("puts", []):
                if isinstance(put, list) and len(put) == 3 and isinstance(put[0], str):
                    self._record(conn, edits, tenant, put[0], str(put[1]), put[2])
            return 1
        return self._record(conn, edits, tenant, kind, rkey, record)

    def _record(
        self, conn: Any, edits: RowEdits, tenant: str, kind: str, rkey: str, record: Any
    ) -> int:
        if kind == CMD:
            self._command(conn, tenant, rkey, record)
        elif kind == EXEC:
            self._attempt(conn, rkey, record)
        elif kind == CURSOR:
            if record is None:
                conn.execute(
                    "DELETE FROM fx_cursor WHERE tenant = ? AND resource = ?", (tenant, rkey)
                )
            else:
                conn.execute(
                    "INSERT OR REPLACE INTO fx_cursor "
                    "(tenant, resource, cursor, last_ok, full_sync_at) VALUES (?, ?, ?, ?, ?)",
                    (
                        tenant,
                        rkey,
                        record.get("cursor"),
                        record.get("last_ok"),
                        record.get("full_sync_at"),
                    ),
                )
        elif kind in (SEEN, META):
            _admitted(conn, tenant, kind, rkey, record)
        elif is_internal(kind):
            return 0
        else:
            edits.put(tenant, kind, rkey, record)
        return 1

    def _command(self, conn: Any, tenant: str, command_id: str, record: Any) -> None:
        """A ``~cmd`` record is a command not yet done; its deletion means it was done."""
        if record is None:
            conn.execute(
                # Once: a batch's journal says it first, its record again a second later.
                "UPDATE outbox SET status = 'done', done_at = ? WHERE command_id = ? "
                "AND status NOT IN ('discarded', 'done')",
                (time.time(), command_id),
            )
            return
        status = str(record.get("status", "pending"))
        conn.execute(
            "INSERT INTO outbox (command_id, tenant, target, type, payload, status, attempts, "
            "created_at, lane) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (command_id) DO "
            "UPDATE SET status = excluded.status, "
            "attempts = MAX(outbox.attempts, excluded.attempts)",
            (
                command_id,
                tenant,
                str(record.get("target", "?")),
                str(record.get("type", "?")),
                str(record.get("payload", "")).encode(),
                status,
                int(record.get("attempts", 0)),
                time.time(),
                _lane(record),
            ),
        )

    def _attempt(self, conn: Any, command_id: str, marks: Any) -> None:
        """A command's ``~exec`` marks: its last failed attempt, when it is retried and why it
        failed (the agent's ``~cmd`` count lags: retries are published on some attempts only)."""
        settled = (marks or {}).get("settled") if isinstance(marks, dict) else None
        if not isinstance(settled, dict) or settled.get("status") != "retrying":
            return
        try:
            error = registry.parse(str(settled["outcome"])).data.error  # type: ignore[attr-defined]
        except (KeyError, ValidationError, ValueError):
            error = None
        conn.execute(
            "UPDATE outbox SET attempts = MAX(attempts, ?), next_at = ?, "
            "last_error = COALESCE(?, last_error) WHERE command_id = ? AND status = 'pending'",
            (
                int(settled.get("attempt", 0)),
                float(settled.get("retry_at", 0.0)),
                None if error is None else error.message,
                command_id,
            ),
        )

    def _dead_letter(self, conn: Any, value: bytes | None) -> int:
        letter = _parse(value, DeadLetter)
        if letter is None:
            return 0
        data = letter.data
        conn.execute(
            "INSERT INTO dead_letters (id, tenant, topic, type, payload, error, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET status = 'open', "
            "error = excluded.error, created_at = excluded.created_at, resolved_at = NULL "
            "WHERE dead_letters.status != 'open' "
            "AND excluded.created_at > dead_letters.resolved_at",
            (
                data.dead_letter_id,
                letter.tenant,
                data.topic,
                data.message_type,
                _payload(data.message),
                data.error.model_dump_json(),
                letter.occurred_at.timestamp(),
            ),
        )
        return 1

    def _action(self, conn: Any, value: bytes | None) -> int:
        action = _parse(value, DeadLetterAction)
        if action is None:
            return 0
        status = "retried" if action.data.action == "retry" else "discarded"
        conn.execute(
            "UPDATE dead_letters SET status = ?, resolved_at = ? WHERE id = ? AND status = 'open'",
            (status, action.occurred_at.timestamp(), action.data.dead_letter_id),
        )
        if action.data.action == "discard":
            conn.execute(
                "UPDATE outbox SET status = 'discarded' WHERE command_id = ? AND status = 'dead'",
                (action.data.dead_letter_id,),
            )
        return 1

    def _tenant(self, conn: Any, key: bytes | None, value: bytes | None) -> int:
        if key is None:
            return 0
        tenant = key.decode(errors="replace")
        if value is None:
            conn.execute("DELETE FROM tenants WHERE id = ?", (tenant,))
            return 1
        data = json.loads(value)
        # The sealed config stays sealed: the read model needs only the tenant's name.
        shown = {"id": tenant, "name": (data.get("config") or {}).get("name")}
        conn.execute(
            "INSERT INTO tenants (id, api_key_hash, config, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET config = excluded.config",
            (tenant, "", json.dumps(shown), time.time()),
        )
        return 1


def _admitted(conn: Any, tenant: str, kind: str, key: str, record: Any) -> None:
    """What a worker admitted of a tenant's messages: the till event ids (``~seen``) and the
    offsets consumed per topic (``~meta``)."""
    if kind == SEEN:
        if record is None:
            conn.execute("DELETE FROM kafka_seen WHERE tenant = ? AND msg_id = ?", (tenant, key))
        else:
            conn.execute(
                "INSERT OR REPLACE INTO kafka_seen (tenant, msg_id, fp) VALUES (?, ?, ?)",
                (tenant, key, record.get("fp")),
            )
    elif kind == META and record is not None:
        for topic, offset in (record.get("offsets") or {}).items():
            conn.execute(
                'INSERT INTO kafka_consumed (tenant, topic, "offset") VALUES (?, ?, ?) '
                'ON CONFLICT (tenant, topic) DO UPDATE SET "offset" = '
                'MAX("offset", excluded."offset")',
                (tenant, str(topic), int(offset)),
            )


def _where(tp: TopicPartition) -> str:
    return f"{tp.topic}:{tp.partition}"


def _lane(record: Any) -> str:
    """The command's lane (engine/store/lanes.py), shown with the commands being retried."""
    try:
        return lane_of(str(record.get("type", "?")), str(record.get("payload", "{}")))
    except ValueError:  # a payload that is not JSON: no lane to show
        return ""


def _parse(value: bytes | None, kind: type[M]) -> M | None:
    if value is None:
        return None
    try:
        message = registry.parse(value)
    except (ValidationError, ValueError):
        log.warning("readmodel.unreadable_record", expected=kind.__name__)
        return None
    return message if isinstance(message, kind) else None


def _payload(message: object) -> bytes:
    if isinstance(message, str):
        return message.encode()
    return json.dumps(message, separators=(",", ":")).encode()


def _add(a: Projected, b: Projected) -> Projected:
    return Projected(
        a.state + b.state,
        a.dead_letters + b.dead_letters,
        a.actions + b.actions,
        a.tenants + b.tenants,
    )
