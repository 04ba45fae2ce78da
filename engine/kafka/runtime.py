"""The Kafka runtime: a faust-streaming app whose agent runs the reconcilers over the reconciled
topics, with the state in a changelog-backed table, and the executors, pollers and tick
scheduler for the tenants of the partitions this worker owns.

Exactly-once state without Kafka transactions (docs/kafka.md says why faust's
``exactly_once`` is not used): the agent reconciles a batch, then writes ONE journal record per
tenant (every record the batch changed, the tenant's consumed offsets included; numbered) to the
state changelog and waits for the broker's acknowledgement before anything of the batch leaves.
The records themselves are written behind: every ``FLUSH_SECONDS`` (or ``FLUSH_RECORDS``
records) each record the journals since the last flush changed is written once, with its latest
value, and once all are acknowledged the journals are deleted (tombstones, in the same
partition after the records). Records and journals share the tenant's changelog partition, so
recovery redoes the tenant's remaining journals in order on top of the records, and a
redelivered message whose offset the tenant's state has already consumed is skipped. Same
state, same commands, whatever crashed where; one changelog message per tenant and batch
instead of one per record changed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import faust
import httpx
import structlog
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.producer.message_accumulator import BatchBuilder
from fastapi import FastAPI, Response
from faust.transport.consumer import Consumer as FaustConsumer
from faust.types import TP
from kafka import KafkaProducer
from prometheus_client import CONTENT_TYPE_LATEST

from engine.clock import utcnow
from engine.core.process import Admitted, Inbound, Outcome, Step, log_decisions, process
from engine.executors.feed import DatabaseOffsets
from engine.executors.feeds import FeedKeeper
from engine.executors.fortnox import WATCH_FINISH_SECONDS, FortnoxSession, SessionTiming
from engine.executors.probe import probe_now
from engine.executors.sessions import SessionKeeper, session_loop
from engine.executors.till import TillDelivery
from engine.fortnox.api import FortnoxApi
from engine.fortnox.limiter import LimiterRegistry
from engine.fortnox.tokens import SqliteTokenStore
from engine.fortnox_factory import open_api
from engine.kafka.config import STATE_TABLE, KafkaConfig
from engine.kafka.directory import KafkaTenantDirectory
from engine.kafka.ports import KafkaPorts, attempts_made
from engine.kafka.store import (
    CMD,
    EXEC,
    JOURNAL,
    META,
    SEEN,
    WAKE,
    Mirror,
    TenantData,
    decode_key,
    encode_key,
    encode_value,
    forget_seen,
    journal_key,
    journal_number,
)
from engine.kafka.topics import partition_for
from engine.metrics import EngineMetrics
from engine.secrets import SecretBox
from engine.store.db import Database
from engine.store.outbox import TARGETS
from engine.supervision import DiskCheck, Health, RestartCounter, Supervisor, describe
from engine.tenants import TenantConfig
from engine.web.api import healthz_router
from engine.web.door import DoorSettings, server_config
from reconcilers.context import Refused
from reconcilers.dispatch import requeues_dead_command
from reconcilers.state import Note, Record, StateView
from topics import registry
from topics.envelope import Envelope
from topics.names import RECONCILED_TOPICS, Topic, message_key
from topics.outcomes import (
    CommandAction,
    DeadLetter,
    DeadLetterAction,
    DeadLetterData,
    OutcomeStatus,
    SyncOutcome,
    Tick,
)
from topics.settings import TenantSettings

log = structlog.get_logger("kassasync.kafka")

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
#: A partition's read position is kept under the pseudo-tenant "~p<partition>" (tenant ids
#: never start with "~"): every message before it is applied (journal acknowledged) or skipped.
MARKER_PREFIX = "~p"
MARKER = "~marker"
#: A tick not answered by a flush within this many seconds is sent again.
TICK_RESEND = 5.0
#: The records the journals changed are written out this often (and when this many wait): a
#: record changed by many batches meanwhile is written once.
FLUSH_SECONDS = 1.0
FLUSH_RECORDS = 20_000
#: The state producer's batches, per partition: a write-out's records in one or a few requests
#: (aiokafka's default, 16 KB, made a second's records a chain of requests per partition).
BATCH_BYTES = 1024 * 1024


@dataclass
class Counters:
    events_in: int = 0
    redelivered: int = 0
    commands_out: int = 0
    dead_letters: int = 0
    batches: int = 0
    recoveries: int = 0
    rereads: int = 0
    #: Messages faust delivered before its fetching was paused (read again by the reader).
    dropped_by_faust: int = 0
    #: Write-behinds of the journals' records, and the records they wrote.
    flushes: int = 0
    records_written: int = 0


@dataclass
class _Batch:
    puts: dict[str, dict[tuple[str, str], Record | None]] = field(default_factory=dict)
    out: list[tuple[Topic, str, bytes]] = field(default_factory=list)
    queued: list[tuple[str, str, str, int]] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    order: dict[int, list[tuple[str, int]]] = field(default_factory=dict)
    #: Operators' actions on commands being retried, carried out once the batch is durable.
    actions: list[CommandAction] = field(default_factory=list)
    #: What the batch reconciled, emitted and dead-lettered, counted in /metrics once durable.
    by_type: collections.Counter[str] = field(default_factory=collections.Counter)
    commands_by_type: collections.Counter[str] = field(default_factory=collections.Counter)
    dead_letters: int = 0

    def put(self, data: TenantData, kind: str, key: str, value: Record | None) -> None:
        data.set(kind, key, value)
        self.puts.setdefault(data.tenant, {})[(kind, key)] = value


class KafkaRuntime:
    def __init__(
        self,
        config: KafkaConfig,
        box: SecretBox,
        *,
        timing: SessionTiming | None = None,
        executors: bool = True,
        log_notes: bool = True,
        restarts: RestartCounter | None = None,
        health_port: int | None = None,
    ) -> None:
        self.config = config
        #: ``GET /healthz`` on 127.0.0.1:<port> while the worker runs (None: not served).
        self.health_port = health_port
        self._health_server: uvicorn.Server | None = None
        self._health_task: asyncio.Task[None] | None = None
        self.box = box
        self.timing = timing or SessionTiming()
        self.run_executors = executors
        self.log_notes = log_notes
        self.counters = Counters()
        (config.data_dir / "faust").mkdir(parents=True, exist_ok=True)
        self.directory = KafkaTenantDirectory(config, box)
        self.mirror = Mirror(config.partitions)
        self.owned_partitions: set[int] = set()
        self._ready = asyncio.Event()
        self._put_futures: list[asyncio.Future[Any]] = []
        #: Per tenant: the records changed since the last flush (latest values), the keys of
        #: the journals that carry them, and the number of its last journal.
        self._unflushed: dict[str, dict[tuple[str, str], Record | None]] = {}
        self._journals: dict[str, list[str]] = {}
        self._journal_seq: dict[str, int] = {}
        self._flushed_at = time.monotonic()
        #: Held by a batch and by a flush: a flush never interleaves with a batch's writes.
        self._writing = asyncio.Lock()
        self.aproducer: AIOKafkaProducer | None = None
        #: Reads the owned partitions of the reconciled topics (``_read``), from the durable
        #: positions; faust's own fetching of them is paused (``_agent``).
        self.reader: AIOKafkaConsumer | None = None
        self._reading: asyncio.Task[None] | None = None
        #: Changed by every revocation and recovery: a fetch that spans one is dropped.
        self._generation = 0
        #: The positions last committed as the group's offsets (``_commit_positions``).
        self._committed: dict[TP, int] = {}
        self._ticked: dict[str, tuple[str, float]] = {}
        #: Set when a batch wrote a wake-up time: the tick loop looks at once (a change with no
        #: flush window is due at the end of its batch) instead of at its next 0.2 s turn.
        self._wakes_changed = asyncio.Event()
        #: The tenants whose wake-up time a batch wrote since the tick loop last looked.
        self._woken: set[str] = set()
        #: Next offset to read per (topic, partition), as far as this worker has reconciled.
        self.positions: dict[tuple[str, int], int] = {}
        #: Per owned partition: {topic: next offset to read}, durable in the state changelog.
        self.markers: dict[int, dict[str, int]] = {}
        #: The next offset this worker must apply per (topic, partition): a message after it
        #: means faust skipped some (it can, around rebalances), so the partition is read again
        #: from there; a message before it was applied already.
        self.expected: dict[tuple[str, int], int] = {}
        self._rereading: dict[tuple[str, int], tuple[int, float]] = {}
        self._progress: dict[tuple[str, int], float] = {}
        self._watch: asyncio.Task[None] | None = None
        self._watchdog_stop = asyncio.Event()
        self._watchdog: asyncio.Task[None] | None = None
        self.app = faust.App(
            config.app_id,
            broker=f"kafka://{config.bootstrap}",
            store="memory://",
            datadir=str(config.data_dir / "faust"),
            web_enabled=False,
            autodiscover=False,
            topic_partitions=config.partitions,
            topic_replication_factor=config.replication,
            table_standby_replicas=0,
            broker_session_timeout=config.session_timeout,
            broker_heartbeat_interval=config.heartbeat_interval,
            consumer_auto_offset_reset="earliest",
            processing_guarantee="at_least_once",
            producer_max_request_size=MAX_MESSAGE_BYTES,
            key_serializer="raw",
            value_serializer="raw",
        )
        self.source_names = {config.topic(t) for t in RECONCILED_TOPICS}
        self.source = self.app.topic(
            *sorted(self.source_names),
            partitions=config.partitions,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )
        self.table = self.app.Table(
            STATE_TABLE,
            partitions=config.partitions,
            key_type=bytes,
            value_type=bytes,
            extra_topic_configs={"max.message.bytes": str(MAX_MESSAGE_BYTES)},
        )
        self.producer = KafkaProducer(
            bootstrap_servers=config.bootstrap,
            acks="all",
            linger_ms=2,
            max_request_size=MAX_MESSAGE_BYTES,
        )
        self.ports = KafkaPorts(config, self.mirror, self.owns, self._store_local, self.producer)
        self.table.on_recover(self._on_recovered)
        self.app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]
        self.app.agent(self.source, name="kassasync.reconcile")(self._agent)
        self._exec_stop = asyncio.Event()
        self._exec_tasks: list[asyncio.Task[None]] = []
        #: Every executor loop of this worker runs under it (see engine/supervision.py).
        #: The worker's own series (messages, commands, dead letters, loop restarts, health),
        #: served on its health port's /metrics.
        self.metrics = EngineMetrics()
        self.supervisor = Supervisor(restarts or self.metrics)
        self.metrics.watch_health(self.health)
        self.keeper = SessionKeeper(
            self.supervisor,
            self.directory.cached,
            self._api_for,
            self.ports,
            self._settings_for,
            self.timing,
        )
        self.sessions: dict[str, FortnoxSession] = self.keeper.sessions
        #: The topics feeds of the owned tenants' sessions; offsets in this worker's data folder.
        self.feeds = FeedKeeper(
            self.supervisor,
            self.directory.cached,
            None,
            self.ports,
            self.sessions,
            self._feed_offsets,
        )
        self._feed_db: Database | None = None
        #: (messages behind, messages consumed), sampled every second by _watch_positions.
        self._lag: tuple[int, int] = (0, 0)
        self.supervisor.watch("agent.lag", lambda: self._lag)
        self.supervisor.check("agent", self._agent_problem)
        #: The worker's own files (the Fortnox tokens, faust's table store, feed offsets).
        self.disk = DiskCheck(config.data_dir)
        self.supervisor.check("disk", self.disk)
        self._unreadable_reported: set[str] = set()
        self.token_store: SqliteTokenStore | None = None
        self.limiters = LimiterRegistry()
        self._http: httpx.AsyncClient | None = None
        #: The till delivery of the executors running now (an operator's retry-now probes it).
        self._delivery: TillDelivery | None = None

    # -- ownership ------------------------------------------------------------------------------

    def partition(self, tenant: str) -> int:
        if tenant.startswith(MARKER_PREFIX):  # a partition's own records ("~p3")
            return int(tenant[len(MARKER_PREFIX) :])
        return partition_for(tenant, self.config.partitions)

    def owns(self, tenant: str) -> bool:
        return self._ready.is_set() and self.partition(tenant) in self.owned_partitions

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def _store_local(self, key: bytes, value: bytes | None) -> None:
        if value is None:
            self.table.data.pop(key, None)
        else:
            self.table.data[key] = value

    def _state_record(
        self, tenant: str, kind: str, key: str, value: Record | None
    ) -> tuple[int, bytes, bytes | None]:
        """A record for the state changelog, stored locally at once: (partition, key, value)."""
        raw_key = encode_key(tenant, kind, key)
        raw_value = encode_value(value)
        self._store_local(raw_key, raw_value)
        return self.partition(tenant), raw_key, raw_value

    async def _send_many(
        self, topic: str, records: Iterable[tuple[int, bytes | None, bytes | None]]
    ) -> list[asyncio.Future[Any]]:
        """Send ``records`` (partition, key, value) to ``topic`` in one producer batch per
        partition (another when one is full), in their order within each partition; returns
        the batches' delivery futures. One future per batch instead of one per record: a
        write-out sends tens of thousands of records a second."""
        assert self.aproducer is not None
        producer = self.aproducer
        filling: dict[int, BatchBuilder] = {}
        ready: list[tuple[int, BatchBuilder]] = []
        for partition, key, value in records:
            batch = filling.get(partition)
            if batch is not None and batch.append(key=key, value=value, timestamp=None) is not None:
                continue
            if batch is not None:  # full: sent before the partition's next one
                ready.append((partition, batch))
            batch = filling[partition] = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None)  # a batch's first always fits
        ready.extend(filling.items())
        return [await producer.send_batch(b, topic, partition=p) for p, b in ready]

    async def _on_revoked(self, sender: Any, revoked: Iterable[Any], **_: Any) -> None:
        """Stop the executors and forget the mirror: the next assignment rebuilds both (the
        journals not yet written out are durable: whoever owns a tenant next redoes them)."""
        self._ready.clear()
        self._generation += 1
        # Not under the write lock: a batch still running may be waiting on the consumer, which
        # is waiting for this callback. That batch writes nothing out once ``_ready`` is clear,
        # and the next recovery rebuilds these from the changelog.
        self._unflushed, self._journals = {}, {}
        await self._stop_executors()
        log.info("kafka.partitions_revoked", owned=sorted(self.owned_partitions))

    async def _on_recovered(self) -> None:
        actives = self.app.assignor.assigned_actives()
        owned = {tp.partition for tp in actives if tp.topic in self.source_names}
        by_topic: dict[str, list[int]] = {}
        for tp in actives:
            if tp.topic in self.source_names:
                by_topic.setdefault(self.config.unprefixed(tp.topic), []).append(tp.partition)
        if any(len(parts) != len(owned) for parts in by_topic.values()):
            log.error("kafka.assignment_not_copartitioned", assigned=by_topic)
        self.mirror.load(list(self.table.data.items()), owned, self.partition)
        async with self._writing:
            redone = await self._redo_journals()
        self.owned_partitions = owned
        self.markers = {}
        self.expected = {}
        self._rereading = {}
        self._progress = {}
        for partition in owned:
            holder = self.mirror.tenants.get(f"{MARKER_PREFIX}{partition}")
            marker = None if holder is None else holder.get(MARKER, "")
            self.markers[partition] = dict(marker or {})
            for topic in RECONCILED_TOPICS:
                name = self.config.topic(topic)
                self.expected[(name, partition)] = self.markers[partition].get(topic.value, 0)
        self.counters.recoveries += 1
        self.ports.rebuild()
        self._committed = {}
        self._assign_reader()
        self._ready.set()
        log.info(
            "kafka.recovered",
            partitions=sorted(owned),
            assigned={t: sorted(p) for t, p in sorted(by_topic.items())},
            tenants=len(self.mirror.tenants),
            redone=redone,
            pending_commands=self.ports.depth(),
        )
        if self.run_executors:
            self._start_executors()

    async def _redo_journals(self) -> int:
        """After a recovery: every tenant's journals still in the table, redone in order on top
        of its records (a worker stopped before writing them out), then written out. Returns how
        many records they changed."""
        self._unflushed, self._journals, self._journal_seq = {}, {}, {}
        redone = 0
        for tenant, data in self.mirror.tenants.items():
            keys = [key for key, _ in data.scan(JOURNAL)]
            if not keys:
                continue
            puts = self._unflushed.setdefault(tenant, {})
            for key in keys:
                journal = data.get(JOURNAL, key) or {"puts": []}
                data.set(JOURNAL, key, None)  # deleted from the changelog by the flush
                for kind, rkey, value in journal["puts"]:
                    puts[(kind, rkey)] = value
            for (kind, rkey), value in puts.items():
                if data.get(kind, rkey) != value:
                    data.set(kind, rkey, value)
                    redone += 1
            self._journals[tenant] = keys
            self._journal_seq[tenant] = max(journal_number(key) for key in keys)
        await self._flush()
        return redone

    def _journal(
        self, tenant: str, puts: dict[tuple[str, str], Record | None]
    ) -> tuple[int, bytes, bytes | None]:
        """The changelog record of the batch's journal of ``tenant``."""
        number = self._journal_seq.get(tenant, 0) + 1
        self._journal_seq[tenant] = number
        key = journal_key(number)
        self._journals.setdefault(tenant, []).append(key)
        journal = {"puts": [[kind, rkey, value] for (kind, rkey), value in puts.items()]}
        return self._state_record(tenant, JOURNAL, key, journal)

    async def _flush(self) -> None:
        """Write every record the journals since the last flush changed, once, and once the
        broker has them all, delete those journals. A failure here stops the worker (as a
        failed batch does): the journals left are redone by the next owner."""
        self._flushed_at = time.monotonic()
        if not self._unflushed:
            return
        unflushed, self._unflushed = self._unflushed, {}
        journals, self._journals = self._journals, {}
        changelog = self.config.state_changelog
        records = [
            self._state_record(tenant, kind, key, value)
            for tenant, puts in unflushed.items()
            for (kind, key), value in puts.items()
        ]
        try:
            await asyncio.gather(*await self._send_many(changelog, records))
        except BaseException:
            # Not known to be written: kept for the next write-out (newer values win), and
            # its journals with it, so that none is deleted before its records are written.
            for tenant, puts in unflushed.items():
                self._unflushed[tenant] = {**puts, **self._unflushed.get(tenant, {})}
            for tenant, keys in journals.items():
                self._journals[tenant] = [*keys, *self._journals.get(tenant, [])]
            raise
        tombstones = [
            self._state_record(tenant, JOURNAL, key, None)
            for tenant, keys in journals.items()
            for key in keys
        ]
        self._put_futures.extend(await self._send_many(changelog, tombstones))
        self.counters.flushes += 1
        self.counters.records_written += len(records)
        log.debug("kafka.flushed", records=len(records), tenants=len(unflushed))

    def _flush_due(self) -> bool:
        if time.monotonic() - self._flushed_at >= FLUSH_SECONDS:
            return True
        return sum(len(puts) for puts in self._unflushed.values()) >= FLUSH_RECORDS

    # -- reconciling ----------------------------------------------------------------------------

    async def _gone(self, where: tuple[str, int], want: int) -> bool:
        """True when the messages from ``want`` on were deleted by retention (accept the gap)."""
        assert self.reader is not None
        tp = TopicPartition(*where)
        earliest = (await self.reader.beginning_offsets([tp])).get(tp, 0)
        if want < earliest:
            log.error("kafka.messages_expired", topic=where[0], partition=where[1], lost=want)
            return True
        return False

    async def check_positions(self, stall: float = 3.0) -> int:
        """Seek back every owned partition that has messages after this worker's position but
        delivered none for ``stall`` seconds (a safety net: the reader is placed at the durable
        positions at every recovery). Returns how many were moved."""
        if not self._ready.is_set() or not self.expected or self.reader is None:
            return 0
        now = time.monotonic()
        stalled = [w for w in self.expected if now - self._progress.get(w, now) > stall]
        for where in self.expected:
            self._progress.setdefault(where, now)
        if not stalled:
            return 0
        ends = await self.reader.end_offsets([TopicPartition(*w) for w in stalled])
        moved = 0
        for where in stalled:
            want = self.expected[where]
            if ends.get(TopicPartition(*where), 0) > want:
                log.warning("kafka.reread", topic=where[0], partition=where[1], offset=want)
                self.reader.seek(TopicPartition(*where), want)
                self._progress[where] = now
                self.counters.rereads += 1
                moved += 1
        return moved

    async def _agent(self, stream: Any) -> None:
        """faust's stream of the reconciled topics. It is kept so that the group assigns their
        partitions together with the state table's, but the worker reads them itself
        (``_read``: a batch per fetch, without faust's per-message stream machinery, which cost
        as much CPU as the reconciling). ``_read`` pauses faust's fetching of them; what faust
        delivers before that (just after an assignment) is dropped here, and read by ``_read``
        from the durable positions."""
        async for _event in stream:
            self.counters.dropped_by_faust += 1

    def _assign_reader(self) -> None:
        """Point the reader at the owned partitions, each at its durable position."""
        assert self.reader is not None
        self._generation += 1
        self.reader.assign([TopicPartition(*where) for where in self.expected])
        for where, offset in self.expected.items():
            self.reader.seek(TopicPartition(*where), offset)

    def _pause_faust(self) -> None:
        """faust resumes the assigned partitions after every recovery: paused again here."""
        self.app.consumer.pause_partitions({TP(*where) for where in self.expected})

    async def _read(self) -> None:
        """Reconcile the owned partitions' messages, a fetch (up to ``batch_max``) at a time. A
        batch that fails, or the reader failing otherwise than the broker being away, crashes
        the faust app (red on ``/healthz``): the partitions are read again from the durable
        positions, here after a restart or by the next owner."""
        try:
            await self._read_batches()
        except asyncio.CancelledError:
            raise
        except Exception as failed:
            log.exception("kafka.reader_failed", error=type(failed).__name__)
            await self.app.crash(failed)

    async def _read_batches(self) -> None:
        assert self.reader is not None
        reader = self.reader
        while True:
            if not self._ready.is_set():
                await self._ready.wait()
                continue
            generation = self._generation
            self._pause_faust()
            try:
                fetched = await reader.getmany(timeout_ms=200, max_records=self.config.batch_max)
            except KafkaError as failed:  # the broker away: the reader reconnects
                log.warning("kafka.read_failed", error=repr(failed))
                await asyncio.sleep(0.5)
                continue
            if generation != self._generation or not self._ready.is_set():
                continue  # revoked or reassigned meanwhile: read again from the positions
            messages = [message for records in fetched.values() for message in records]
            if not messages:
                continue
            task = asyncio.ensure_future(self.process(messages, generation))
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                # Stopping: the batch is finished first (its journals are its commit).
                with contextlib.suppress(Exception):
                    await task
                raise
            except Exception as failed:
                # Not applied: stop this worker, so the partitions are read again from the
                # durable positions (after a restart here, or by the next owner).
                log.exception("kafka.batch_failed", error=type(failed).__name__)
                await self.app.crash(failed)
                return

    async def process(self, messages: list[Any], generation: int | None = None) -> None:
        """Reconcile ``messages`` (records of the reconciled topics: topic, partition, offset,
        key, value), journal them, then send what they emitted. Fetched in ``generation``: not
        applied if a revocation or a recovery came since (read again from the positions)."""
        if not self._ready.is_set():
            await asyncio.wait_for(self._ready.wait(), timeout=120)
        async with self._writing:
            if generation is not None and generation != self._generation:
                return
            await self._process(messages)

    async def _process(self, messages: list[Any]) -> None:
        batch = _Batch()
        spans: dict[str, list[int]] = {}
        for msg in messages:
            spans.setdefault(f"{msg.topic}:{msg.partition}", []).append(msg.offset)
        log.debug("kafka.batch", spans={k: (min(v), max(v), len(v)) for k, v in spans.items()})
        reread: dict[tuple[str, int], int] = {}
        clock = time.monotonic()
        for msg in messages:
            where = (msg.topic, msg.partition)
            want = self.expected.get(where)
            if want is None or where in reread:
                continue  # not owned (any more), or being read again
            self._progress[where] = clock
            if msg.offset < want:
                self.counters.redelivered += 1
                continue
            if msg.offset > want:
                pending = self._rereading.get(where)
                if pending is not None and pending[0] == want and time.monotonic() < pending[1]:
                    continue  # already seeking back; these were fetched before the seek
                if not await self._gone(where, want):
                    reread[where] = want
                    self._rereading[where] = (want, time.monotonic() + 5.0)
                    continue
            self._rereading.pop(where, None)
            self._one(msg.topic, msg.partition, msg.offset, msg.key, msg.value, batch)
            self.expected[where] = msg.offset + 1
        self.counters.batches += 1
        if self._put_futures:
            await asyncio.gather(*self._put_futures)
            self._put_futures = []
        journals = [self._journal(tenant, puts) for tenant, puts in batch.puts.items()]
        sent = await self._send_many(self.config.state_changelog, journals)
        order = [
            (partition, None, json.dumps(applied, separators=(",", ":")).encode())
            for partition, applied in batch.order.items()
        ]
        sent += await self._send_many(self.config.order_topic, order)
        if sent:
            await asyncio.gather(*sent)
        # Durable now: the worker's /metrics counts it (the embedded engine's series).
        self.metrics.batch(batch.by_type, batch.commands_by_type, batch.dead_letters)
        markers = []
        # faust's check of its consumer's event path (``stream_processing_timeout``) looks for
        # its stream's activity on these partitions: it is the reader's.
        inbound, now = self.app.monitor.stream_inbound_time, time.monotonic()
        for partition, applied in batch.order.items():
            marker = self.markers.setdefault(partition, {})
            for topic, offset in applied:
                marker[topic] = max(marker.get(topic, 0), offset + 1)
            for topic in {topic for topic, _ in applied}:
                inbound[TP(self.config.topic(topic), partition)] = now
            markers.append(
                self._state_record(f"{MARKER_PREFIX}{partition}", MARKER, "", dict(marker))
            )
        self._put_futures.extend(await self._send_many(self.config.state_changelog, markers))
        for tenant, puts in batch.puts.items():
            self._unflushed.setdefault(tenant, {}).update(puts)
        if self._ready.is_set() and self._flush_due():
            # (Revoked meanwhile: the partitions may have a new owner already; its recovery
            # redoes these journals.)
            await self._flush()
        assert self.aproducer is not None
        for topic, tenant, payload in batch.out:
            await self.aproducer.send(
                self.config.topic(topic),
                value=payload,
                key=message_key(tenant),
                partition=self.partition(tenant),
            )
        for (topic_name, partition), offset in reread.items():
            self.counters.rereads += 1
            log.warning("kafka.reread", topic=topic_name, partition=partition, offset=offset)
            assert self.reader is not None
            self.reader.seek(TopicPartition(topic_name, partition), offset)
        for tenant, target, command_id, seq in batch.queued:
            self.ports.enqueue(tenant, target, command_id, seq)
        for action in batch.actions:
            self._command_action(action)
        if batch.queued:
            for session in list(self.sessions.values()):
                session.wakeup.set()
        woken = [tenant for tenant, puts in batch.puts.items() if (WAKE, "") in puts]
        if woken:
            self._woken.update(woken)
            self._wakes_changed.set()
        if self.log_notes:
            log_decisions(log, batch.notes)

    def _one(
        self,
        topic_name: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        batch: _Batch,
    ) -> None:
        topic = Topic(self.config.unprefixed(topic_name))
        self.positions[(topic_name, partition)] = offset + 1
        batch.order.setdefault(partition, []).append((topic.value, offset))
        if key is None or value is None:
            log.error("kafka.message_without_key", topic=topic.value, offset=offset)
            return
        tenant = key.decode(errors="replace")
        if self.partition(tenant) != partition:
            # Produced with another partitioner: move it to the tenant's partition.
            batch.out.append((topic, tenant, value))
            log.warning("kafka.message_forwarded", tenant=tenant, topic=topic.value)
            return
        data = self.mirror.tenant(tenant, partition)
        meta = data.get(META, "") or {"offsets": {}, "cmd_seq": 0}
        if offset <= int(meta["offsets"].get(topic.value, -1)):
            self.counters.redelivered += 1
            return
        batch.put(data, META, "", {**meta, "offsets": {**meta["offsets"], topic.value: offset}})
        where = f"{topic.value}:{partition}:{offset}"
        step = process(data, Inbound(topic, tenant, where, value), admit)
        if step.outcome is Outcome.DUPLICATE:
            self.counters.redelivered += 1
            return
        for (kind, rkey), rvalue in step.admitted.items():
            if kind == SEEN and step.outcome is Outcome.DEAD:
                continue  # a parked event the operator retries must not count as seen
            batch.put(data, kind, rkey, rvalue)
            if kind == CMD and rvalue is not None and rvalue.get("status") == "pending":
                # An operator's retry of a dead command: the executors send it again.
                batch.queued.append((tenant, str(rvalue["target"]), rkey, int(rvalue["seq"])))
        if step.outcome is Outcome.DEAD:
            self._dead_letter(step, batch)
            return
        if isinstance(step.message, CommandAction):
            batch.actions.append(step.message)
        for (kind, rkey), rvalue in step.puts.items():
            batch.put(data, kind, rkey, rvalue)
        batch.by_type[step.message_type] += 1
        for emitted in step.commands:
            batch.out.append((emitted.topic, tenant, emitted.payload))
            batch.commands_by_type[emitted.type] += 1
            self.counters.commands_out += 1
            if data.get(CMD, emitted.id) is not None:
                continue
            current = data.get(META, "") or {"offsets": {}, "cmd_seq": 0}
            seq = int(current.get("cmd_seq", 0)) + 1
            batch.put(data, META, "", {**current, "cmd_seq": seq})
            target = TARGETS[emitted.topic.value]
            batch.put(
                data,
                CMD,
                emitted.id,
                {
                    "seq": seq,
                    "target": target,
                    "type": emitted.type,
                    "payload": emitted.payload.decode(),
                    "status": "pending",
                    "attempts": 0,
                },
            )
            batch.queued.append((tenant, target, emitted.id, seq))
        if step.wake_at is not None:
            wake = data.get(WAKE, "")
            if wake is None or step.wake_at < dt.datetime.fromisoformat(wake["at"]):
                batch.put(data, WAKE, "", {"at": step.wake_at.isoformat()})
        batch.notes.extend(step.notes)
        self.counters.events_in += 1

    def _dead_letter(self, step: Step, batch: _Batch) -> None:
        assert step.error is not None
        tenant, topic, value = step.tenant, step.inbound.topic, step.inbound.payload
        try:
            message: Any = json.loads(value)
        except (ValueError, RecursionError):
            message = value.decode(errors="replace")
        letter_id = f"msg:{step.inbound.position}"
        letter = DeadLetter(
            id=f"dl-{letter_id}",
            tenant=tenant,
            occurred_at=utcnow(),
            data=DeadLetterData(
                dead_letter_id=letter_id,
                topic=topic.value,
                message_type=step.message_type,
                message=message,
                error=step.error,
            ),
        )
        batch.out.append((Topic.DEAD_LETTERS, tenant, registry.dump(letter)))
        batch.by_type[step.message_type] += 1
        batch.dead_letters += 1
        self.counters.dead_letters += 1

    def _command_action(self, action: CommandAction) -> None:
        """An operator's retry-now or cancel, now that it is recorded: a cancel is settled at
        once unless an attempt is under way; a retry-now wakes the executors."""
        tenant, command_id = action.tenant, action.data.command_id
        data = self.mirror.tenants.get(tenant) if self.owns(tenant) else None
        cmd = None if data is None else data.get(CMD, command_id)
        if cmd is None or cmd.get("status") != "pending":
            log.info(
                "command.action_ignored",
                tenant=tenant,
                command_id=command_id,
                action=action.data.action,
                reason="not waiting to be retried",
            )
            return
        if action.data.action == "cancel":
            self.ports.cancel_now(tenant, command_id)
            return
        # The operator's retry is a probe: a target taken for down (its breaker) does not hold
        # it back until the end of the backoff the retry cuts short.
        probe_now(str(cmd.get("target") or "fortnox"), tenant, self.sessions, self._delivery)
        log.info(
            "command.retry_now",
            tenant=tenant,
            command_id=command_id,
            after_attempt=cmd.get("retry_now"),
        )

    # -- ticks ----------------------------------------------------------------------------------

    def due_ticks(self, now: dt.datetime, tenants: Iterable[str] | None = None) -> int:
        """The scheduler's role: a ``sync.tick`` for every owned tenant whose wake time came
        (of ``tenants`` only, if given)."""
        if not self._ready.is_set():
            return 0
        sent = 0
        clock = time.monotonic()
        owned = self.mirror.tenants
        chosen = (
            list(owned.items())
            if tenants is None
            else [(t, owned[t]) for t in tenants if t in owned]
        )
        for tenant, data in chosen:
            wake = data.get(WAKE, "")
            if wake is None or dt.datetime.fromisoformat(wake["at"]) > now:
                continue
            last = self._ticked.get(tenant)
            if last is not None and last[0] == wake["at"] and clock - last[1] < TICK_RESEND:
                continue
            tick = Tick(id=f"tick-{uuid.uuid4().hex}", tenant=tenant, occurred_at=now)
            self.ports.produce(tick)
            self._ticked[tenant] = (wake["at"], clock)
            sent += 1
        return sent

    # -- executors ------------------------------------------------------------------------------

    def _start_executors(self) -> None:
        self._exec_stop = asyncio.Event()
        stop = self._exec_stop
        if self._http is None:
            self._http = httpx.AsyncClient()
        delivery = TillDelivery(self.ports, self.directory.cached, self._http, self.supervisor)
        self._delivery = delivery
        spawn = self.supervisor.spawn
        self._exec_tasks = [
            spawn("till", lambda: delivery.run(stop), stop, backoff_max=5.0),
            spawn("ticks", lambda: self._tick_loop(stop), stop, backoff_max=5.0),
            spawn("sessions", lambda: self._session_loop(stop), stop, backoff_max=5.0),
        ]

    async def _stop_executors(self) -> None:
        self._exec_stop.set()
        # The sessions end first, while the feed still runs (their last writes' watches).
        await self.supervisor.wait_for("session", timeout=WATCH_FINISH_SECONDS)
        await self.feeds.stop()
        waited: set[asyncio.Task[None]] = set()
        while True:  # again if a session was started while this waited
            tasks = {*self._exec_tasks, *self.supervisor.tasks(but=("watchdog",))} - waited
            if not tasks:
                break
            _, late = await asyncio.wait(tasks, timeout=10)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            waited |= tasks
        # Each session closes its Fortnox client as it ends (SessionKeeper).
        self._exec_tasks = []
        self.sessions.clear()

    async def _tick_loop(self, stop: asyncio.Event) -> None:
        """Ticks owned tenants whose wake-up time has come: at once when a batch wrote wake-up
        times, else every 0.2 s (a flush window ending, a tick to send again)."""
        woken: set[str] | None = None  # None: every owned tenant
        while not stop.is_set():
            self._wakes_changed.clear()
            self._woken = set()
            self.due_ticks(utcnow(), woken)  # the engine's clock, as every reading compared
            stopped = asyncio.ensure_future(stop.wait())
            changed = asyncio.ensure_future(self._wakes_changed.wait())
            try:
                done, _ = await asyncio.wait(
                    {stopped, changed}, timeout=0.2, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                stopped.cancel()
                changed.cancel()
            woken = set(self._woken) if changed in done else None

    async def _session_loop(self, stop: asyncio.Event) -> None:
        """Reads new tenants and keeps a supervised session for each owned one with Fortnox."""
        while not stop.is_set():
            await asyncio.to_thread(self.directory.refresh)
            await self._ensure_sessions(stop)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.2)

    def health(self) -> Health:
        """This worker's health: its executor loops and the tenants it cannot open."""
        return self.supervisor.health()

    def settings_of(self, tenant: str) -> TenantSettings:
        config = self.directory.cached(tenant)
        return config.settings if config else TenantSettings()

    def _settings_for(self, tenant: str) -> Callable[[], TenantSettings]:
        return lambda: self.settings_of(tenant)

    def _feed_offsets(self, key: str) -> DatabaseOffsets:
        """A feed's offsets, in this worker's own SQLite file: after a move, the new owner's
        feed starts from its own offsets, and what it sees again is de-duplicated."""
        if self._feed_db is None:
            self._feed_db = Database(self.config.data_dir / "feed-offsets.db")
        return DatabaseOffsets(self._feed_db, key)

    async def _api_for(self, config: TenantConfig) -> FortnoxApi:
        assert config.fortnox is not None and self._http is not None
        if self.token_store is None:
            self.config.tokens.parent.mkdir(parents=True, exist_ok=True)
            self.token_store = SqliteTokenStore(self.config.tokens, self.box)
        return await open_api(
            config, self.token_store, limiters=self.limiters, metrics=self.metrics.fortnox
        )

    async def _ensure_sessions(self, stop: asyncio.Event) -> None:
        if stop.is_set() or self._exec_stop.is_set():
            return
        self.keeper.ensure(self.directory.ids(), stop, self._wanted)
        self.feeds.ensure(stop)
        unreadable = {t: c for t, c in self.directory.unreadable.items() if self.owns(t)}
        for tenant, cause in unreadable.items():
            self.supervisor.fault(session_loop(tenant), cause)
        for tenant in self._unreadable_reported - set(unreadable):
            self.supervisor.clear(session_loop(tenant))
        self._unreadable_reported = set(unreadable)

    def _wanted(self, tenant: str) -> bool:
        # Revoked while the session was being set up: it must not start here.
        return not self._exec_stop.is_set() and self.owns(tenant)

    # -- life cycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self.directory.refresh, force=True)
        self.aproducer = AIOKafkaProducer(
            bootstrap_servers=self.config.bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            max_request_size=MAX_MESSAGE_BYTES,
            max_batch_size=BATCH_BYTES,
        )
        await self.aproducer.start()
        self.reader = AIOKafkaConsumer(
            bootstrap_servers=self.config.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await self.reader.start()
        await self.app.start()
        self._reading = asyncio.create_task(self._read())
        self._watch = asyncio.create_task(self._watch_positions())
        self._watchdog_stop = asyncio.Event()
        self._watchdog = self.supervisor.spawn(
            "watchdog", lambda: self.supervisor.watchdog(self._watchdog_stop), self._watchdog_stop
        )
        if self.health_port is not None:
            await self._serve_health(self.health_port)

    async def _serve_health(self, port: int) -> None:
        """The worker's ``/healthz``: its executor loops, as the embedded engine's; and its
        ``/metrics``: what it reconciled, emitted and dead-lettered, its loops' restarts and
        health (``kassasync_healthy``, ``kassasync_loop_problems``)."""
        app = FastAPI(title="Kassasync worker", docs_url=None, redoc_url=None, openapi_url=None)
        app.include_router(
            healthz_router(
                self.health,
                lambda: {
                    "runtime": "kafka",
                    "ready": self.ready,
                    "partitions": sorted(self.owned_partitions),
                },
            )
        )
        metrics = self.metrics

        @app.get("/metrics", include_in_schema=False)
        async def served_metrics() -> Response:
            return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

        # The door's timeouts and limits, and uvicorn's warnings in the engine's JSON log.
        config = server_config(app, host="127.0.0.1", port=port, settings=DoorSettings())
        server = self._health_server = uvicorn.Server(config)
        self._health_task = asyncio.create_task(server.serve())
        while not server.started and not self._health_task.done():
            await asyncio.sleep(0.01)  # listening before start() returns
        if self._health_task.done():
            self._health_task.result()  # it could not listen: say why

    async def _watch_positions(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                # Bounded: a consumer that crashed may never answer.
                await asyncio.wait_for(self.check_positions(), timeout=10)
                await asyncio.wait_for(self._sample_lag(), timeout=10)
                await asyncio.wait_for(self._commit_positions(), timeout=10)
            except Exception as failed:  # a rebalance under way: try again in a second
                log.info("kafka.position_check_skipped", error=type(failed).__name__)

    async def _commit_positions(self) -> None:
        """The durable read positions, committed as the group's offsets of the reconciled
        topics when they moved: what the ops surface shows as the worker's lag. Never read
        back: the reader starts from the durable positions."""
        if not self._ready.is_set():
            return
        offsets = {
            TP(self.config.topic(topic), partition): offset
            for partition, marker in self.markers.items()
            for topic, offset in marker.items()
        }
        moved = {tp: offset for tp, offset in offsets.items() if self._committed.get(tp) != offset}
        # The transport's commit of given offsets (faust's own ``commit`` takes only what its
        # stream acknowledged, and its stream of these topics delivers nothing).
        consumer = cast(FaustConsumer, self.app.consumer)
        if moved and await consumer._commit(moved):
            self._committed.update(moved)
            # faust's consumer is placed there too: its event-path check takes messages after
            # its position for messages its stream has not processed (its fetching is paused,
            # so this only moves its idea of the position).
            for tp, offset in moved.items():
                await consumer.seek(tp, offset)

    async def _sample_lag(self) -> None:
        """(messages after this worker's positions, messages it consumed) for the supervisor's
        stall watch: red when a backlog does not move for its ``stall_seconds``."""
        if not self._ready.is_set() or not self.expected:
            self._lag = (0, self._lag[1])
            return
        wanted = dict(self.expected)
        assert self.reader is not None
        ends = await self.reader.end_offsets([TopicPartition(*w) for w in wanted])
        behind = sum(
            max(0, ends.get(TopicPartition(*w), 0) - offset) for w, offset in wanted.items()
        )
        self._lag = (behind, sum(self.positions.values()))

    def _agent_problem(self) -> str | None:
        """The faust app (its reconciling agent, consumer and tables) crashed: the worker reads
        nothing more until it is restarted, which is what a 503 asks an orchestrator to do."""
        if not self.app.crashed:
            return None
        reason = self.app.crash_reason
        cause = describe(reason) if reason is not None else "no reason recorded"
        return f"the reconciling agent crashed; restart this worker ({cause})"

    async def stop(self) -> None:
        self._watchdog_stop.set()
        if self._watchdog is not None:
            await asyncio.gather(self._watchdog, return_exceptions=True)
            self._watchdog = None
        if self._health_server is not None and self._health_task is not None:
            self._health_server.should_exit = True
            await asyncio.gather(self._health_task, return_exceptions=True)
            self._health_server = self._health_task = None
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
            self._watch = None
        if self._reading is not None:
            self._reading.cancel()  # after the batch under way, if any
            await asyncio.gather(self._reading, return_exceptions=True)
            self._reading = None
        await self._stop_executors()
        if self.aproducer is not None and self._ready.is_set():
            # What the journals carry is written out while this worker still owns its
            # partitions (once it has left the group, a new owner may already be writing
            # newer values); batches after this leave journals, which the next owner redoes.
            async with self._writing:
                await self._flush()
        await self.app.stop()
        if self.reader is not None:
            await self.reader.stop()
            self.reader = None
        if self.aproducer is not None:
            await self.aproducer.stop()
            self.aproducer = None
        await asyncio.to_thread(self.producer.flush, 30)
        self.producer.close()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        log.info("kafka.worker.started", app_id=self.config.app_id, bootstrap=self.config.bootstrap)
        try:
            await stop.wait()
        finally:
            await self.stop()
        log.info("kafka.worker.stopped")

    # -- for tests, the harness and ops ---------------------------------------------------------

    def pending(self) -> int:
        return self.ports.depth()

    def read_up_to(self) -> dict[tuple[str, int], int]:
        """The next offset this worker will apply, per owned (topic, partition): what it applied
        since it started, else the durable position it recovered (a restarted worker has read
        nothing yet, and has nothing to read)."""
        out = dict(self.expected)
        for where, offset in self.positions.items():
            out[where] = max(out.get(where, 0), offset)
        return out

    def wakes(self) -> int:
        return sum(1 for data in self.mirror.tenants.values() if data.get(WAKE, "") is not None)

    def state_of(self, tenant: str) -> dict[tuple[str, str], Record]:
        data = self.mirror.tenants.get(tenant)
        return {} if data is None else data.reconciler_records()


def admit(data: StateView, topic: Topic, message: Envelope) -> Admitted | None:
    """The Kafka runtime's bookkeeping before a message is reconciled; ``None`` = a duplicate.

    Till events are de-duplicated here too (both doors do it first: engine/kafka/ingest.py);
    outcomes settle the command record the outbox keeps in state; an operator's action on a
    dead command requeues or drops it, and one on a command still being retried records the
    retry-now or the cancel the executors' queue carries out (the embedded runtime's ops store
    changes its outbox itself).
    """
    puts: dict[tuple[str, str], Record | None] = {}
    if topic is Topic.TILL_EVENTS:
        digest = registry.fingerprint(message)
        seen = data.get(SEEN, message.id)
        if seen is not None:
            if seen.get("fp") in (None, digest):
                return None
            # Both doors answer this 409; one that got past the Kafka door (two doors racing
            # with one id, a resend after the topic's retention) is a dead letter here.
            raise Refused(
                f"message id {message.id!r} was received before with other content: "
                "the first one is kept; send a change under a new id"
            )
        puts.update(forget_seen(data, message.occurred_at))
        puts[(SEEN, message.id)] = {"at": message.occurred_at.isoformat(), "fp": digest}
    elif isinstance(message, Tick):
        wake = data.get(WAKE, "")
        if wake is not None and dt.datetime.fromisoformat(wake["at"]) <= message.occurred_at:
            puts[(WAKE, "")] = None
    elif isinstance(message, DeadLetterAction):
        command_id = message.data.dead_letter_id
        cmd = data.get(CMD, command_id)
        if cmd is not None and cmd.get("status") == "dead":
            if message.data.action == "discard":
                puts[(CMD, command_id)] = None
            elif requeues_dead_command(data, command_id):
                puts[(CMD, command_id)] = {**_without_requests(cmd), "status": "pending"}
    elif isinstance(message, CommandAction):
        # An operator's action on a command still being retried: recorded in its ``~cmd``
        # record (journaled, so it moves with the tenant); the executors' view of the queue
        # (KafkaPorts.head) carries it out.
        command_id = message.data.command_id
        cmd = data.get(CMD, command_id)
        if cmd is not None and cmd.get("status") == "pending":
            if message.data.action == "cancel":
                puts[(CMD, command_id)] = {**cmd, "cancel": message.data.reason}
            else:
                # Due now: the retry after the latest attempt that ended.
                made = attempts_made(cmd, data.get(EXEC, command_id))
                puts[(CMD, command_id)] = {**cmd, "retry_now": made}
    elif isinstance(message, SyncOutcome):
        outcome = message.data
        cmd = data.get(CMD, outcome.command_id)
        if cmd is not None:
            if outcome.attempt <= int(cmd.get("attempts", 0)):
                return None
            if outcome.status is OutcomeStatus.DONE:
                puts[(CMD, outcome.command_id)] = None
            elif outcome.status is OutcomeStatus.REJECTED:
                puts[(CMD, outcome.command_id)] = {
                    **_without_requests(cmd),
                    "attempts": outcome.attempt,
                    "status": "dead",
                }
            else:
                puts[(CMD, outcome.command_id)] = {
                    **cmd,
                    "attempts": outcome.attempt,
                    "status": "pending",
                }
    return Admitted(puts)


def _without_requests(cmd: Record) -> Record:
    """A command record without an operator's pending retry-now or cancel (it ended, or an
    operator sends it again from the dead letters: a new start)."""
    return {k: v for k, v in cmd.items() if k not in ("cancel", "retry_now")}


def quiet_faust_logs() -> None:
    for name in ("faust", "aiokafka", "mode", "kafka"):
        logging.getLogger(name).setLevel(logging.WARNING)


__all__ = ["KafkaRuntime", "decode_key"]
