"""The bookkeeping commands on a Kafka deployment: ``kassasync import-sie``, ``export zreports``
and ``ledger sync|export`` with ``--runtime kafka``.

As on the embedded runtime, a command only puts messages where the engine reads them and reports
from what the engine keeps; here the engine is the deployment's workers:

* messages go onto their topics, keyed by tenant and in the tenant's partition, each
  acknowledged by the broker (``acks=all``) before the command reports: SIE vouchers as
  ``till.voucher.submitted`` onto ``till.events`` as the Kafka ingest door produces a till's
  events (:class:`engine.kafka.ingest.EventProducer`: same topic, key and partition), after the
  door's own checks (``validate_batch``), a Z-report export request onto
  ``sync.control``, Fortnox vouchers onto ``fortnox.changes``; the owning worker admits and
  reconciles them (a till event id it admitted before is skipped, ``~seen``);
* what is reported comes from the read model (:mod:`engine.kafka.readmodel`, kept under
  ``--data``) and the tenants topic: the tenant's settings, its Z-report records, and the till
  event ids already received. Those are the ids the workers admitted (``~seen``) plus the ids on
  the tenant's partition of ``till.events`` after the last offset its worker consumed (queued,
  not processed yet), so importing a file twice reports duplicates at once, as the embedded
  import does, whether or not a worker runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaTimeoutError

from engine.gateway.ingest import Stored
from engine.kafka.config import KafkaConfig
from engine.kafka.directory import KafkaTenantDirectory
from engine.kafka.ops import KafkaOps
from engine.kafka.topics import partition_for
from engine.secrets import SecretBox
from engine.tenants import TenantConfig
from reconcilers.state import Record
from topics import registry
from topics.envelope import Envelope
from topics.names import Topic, message_key

log = structlog.get_logger("kassasync.kafka.bookkeeping")


class KafkaBooks:
    """A Kafka deployment as the bookkeeping commands use it: tenants, read model, producer."""

    def __init__(self, config: KafkaConfig, box: SecretBox, readmodel: Path | None = None) -> None:
        self.config = config
        self.box = box
        #: The Fortnox token store the workers share (``--tokens``, else DATA/tokens.db).
        self.tokens = config.tokens
        self.directory = KafkaTenantDirectory(config, box)
        self.ops = KafkaOps(config, readmodel)

    def catch_up(self) -> None:
        """Read the tenants topic and bring the read model up to the topics' ends."""
        self.directory.refresh(force=True)
        self.ops.catch_up()

    def tenant(self, tenant: str) -> TenantConfig | None:
        return self.directory.get(tenant)

    def publish(self, messages: Sequence[Envelope]) -> None:
        """Each message onto its topic in its tenant's partition; returns once all are acked.
        The producer is made on first use (reading needs none)."""
        producer = self.ops.producer.get()
        futures = [
            producer.send(
                self.config.topic(Topic(message.TOPIC)),
                key=message_key(message.tenant),
                value=registry.dump(message),
                partition=partition_for(message.tenant, self.config.partitions),
            )
            for message in messages
        ]
        for future in futures:
            future.get(timeout=30)
        log.info("bookkeeping.published", messages=len(futures))

    def records(
        self, tenant: str, kind: str, where: dict[str, Sequence[str]]
    ) -> list[tuple[str, Record]]:
        return self.ops.ops.store.records(tenant, kind, where=where)

    def vouchers(self) -> KafkaVoucherQueue:
        return KafkaVoucherQueue(self)

    def close(self) -> None:
        self.ops.close()


class KafkaVoucherQueue:
    """:class:`engine.sie_import.VoucherQueue` of a Kafka deployment (see the module's text)."""

    def __init__(self, books: KafkaBooks) -> None:
        self.books = books

    def received(self, tenant: str, prefix: str) -> set[str]:
        config = self.books.config
        db = self.books.ops.db
        rows = db.conn.execute(
            "SELECT msg_id FROM kafka_seen WHERE tenant = ? AND msg_id >= ? AND msg_id < ?",
            (tenant, prefix, prefix + "\uffff"),
        ).fetchall()
        admitted = {str(r[0]) for r in rows}
        row = db.conn.execute(
            'SELECT "offset" FROM kafka_consumed WHERE tenant = ? AND topic = ?',
            (tenant, str(Topic.TILL_EVENTS)),
        ).fetchone()
        after = None if row is None else int(row[0])
        queued = queued_ids(config, tenant, prefix, after)
        log.info(
            "bookkeeping.received",
            tenant=tenant,
            admitted=len(admitted),
            queued=len(queued),
            consumed=after,
        )
        return admitted | queued

    def enqueue(self, tenant: str, events: list[Envelope]) -> Stored:
        """Produced as the Kafka ingest door produces a till's batch. The ids were checked
        against :meth:`received` just before; one that another import queued meanwhile is
        skipped by the owning worker (the same content) or dead-lettered there (other content)."""
        self.books.publish(events)
        log.info("bookkeeping.vouchers_queued", tenant=tenant, events=len(events))
        return Stored(accepted=len(events))


def queued_ids(
    config: KafkaConfig, tenant: str, prefix: str, after: int | None, timeout: float = 60.0
) -> set[str]:
    """Ids starting with ``prefix`` of the tenant's till events on its partition of
    ``till.events`` after offset ``after`` (from the start, when None); a broker that does not
    deliver them within ``timeout`` seconds is a :class:`KafkaTimeoutError`."""
    tp = TopicPartition(config.topic(Topic.TILL_EVENTS), partition_for(tenant, config.partitions))
    consumer = KafkaConsumer(bootstrap_servers=config.bootstrap, enable_auto_commit=False)
    try:
        consumer.assign([tp])
        end = int(consumer.end_offsets([tp])[tp])
        if after is None:
            consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, after + 1)
        key = message_key(tenant)
        found: set[str] = set()
        deadline = time.monotonic() + timeout
        while consumer.position(tp) < end:
            if time.monotonic() > deadline:
                raise KafkaTimeoutError(f"till.events did not deliver within {timeout:.0f} s")
            for records in consumer.poll(timeout_ms=500, max_records=5000).values():
                for record in records:
                    if record.offset >= end or record.key != key:
                        continue
                    msg_id = _id_of(record.value)
                    if msg_id is not None and msg_id.startswith(prefix):
                        found.add(msg_id)
        return found
    finally:
        consumer.close()


def _id_of(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        parsed: Any = json.loads(value)
    except ValueError:
        return None
    found = parsed.get("id") if isinstance(parsed, dict) else None
    return found if isinstance(found, str) else None
