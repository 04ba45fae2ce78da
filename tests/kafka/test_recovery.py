"""Guarantee 1 in the Kafka runtime: a worker that dies after a batch's journal reached the
broker but before its records did is recovered by the next worker (journal redone), and messages
delivered again, or till events resent, are applied once."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from engine.kafka.config import KafkaConfig
from engine.kafka.inspect import read_partition, tenant_state
from engine.kafka.runtime import KafkaRuntime, quiet_faust_logs
from engine.kafka.store import (
    JOURNAL,
    decode_key,
    decode_value,
    encode_key,
    encode_value,
    journal_key,
)
from engine.kafka.topics import init_topics, partition_for
from engine.secrets import SecretBox
from topics import fortnox as fx
from topics import registry
from topics.envelope import Envelope
from topics.names import message_key
from topics.till import StockMovement

TENANT = "shop-r"


def messages() -> list[Envelope]:
    now = dt.datetime.now(dt.UTC)
    out: list[Envelope] = [
        fx.FortnoxArticleChanged(
            id=f"fx-{n}",
            tenant=TENANT,
            occurred_at=now,
            data=fx.FortnoxArticleData(
                article=fx.FortnoxArticle(
                    article_number=f"A{n}",
                    description=f"Artikel {n}",
                    stock_goods=True,
                    quantity_in_stock=Decimal(10),
                    price=Decimal("5.00"),
                ),
                observed=fx.Observation(seq=n + 1),
            ),
        )
        for n in range(5)
    ]
    for n in range(10):
        out.append(
            StockMovement.model_validate(
                {
                    "id": f"mv-{n}",
                    "tenant": TENANT,
                    "occurred_at": now + dt.timedelta(milliseconds=n),
                    "source": "till",
                    "data": {
                        "article_number": f"A{n % 5}",
                        "movement_id": f"m{n}",
                        "delta": "-1",
                        "reason": "sale",
                    },
                }
            )
        )
    return out


def produce(config: KafkaConfig, batch: list[Envelope]) -> None:
    producer = KafkaProducer(bootstrap_servers=config.bootstrap, acks="all")
    for message in batch:
        producer.send(
            config.topic(message.TOPIC),
            key=message_key(message.tenant),
            value=registry.dump(message),
            partition=partition_for(message.tenant, config.partitions),
        )
    producer.flush(timeout=30)
    producer.close()


async def until(check: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_journal_redo_and_redelivery(bootstrap: str, prefix: str, tmp_path: Path) -> None:
    quiet_faust_logs()
    config = KafkaConfig(bootstrap=bootstrap, prefix=prefix, data_dir=tmp_path)
    await asyncio.to_thread(init_topics, config)
    box = SecretBox.from_env()
    batch = messages()
    first = KafkaRuntime(config, box, executors=False, log_notes=False)
    await first.start()
    try:
        await asyncio.to_thread(produce, config, batch)
        await until(lambda: first.counters.events_in == len(batch), 60, "the first worker")
        expected = first.state_of(TENANT)
    finally:
        await first.stop()
    assert any(kind == "stock" for kind, _ in expected)
    # A worker that died after its last journal was acknowledged, before the records left: the
    # journal names a record that is not in the changelog yet.
    lost = {"note": "only in the journal"}
    journal = {"puts": [["report", "only-journal", lost]]}
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    producer.send(
        config.state_changelog,
        key=encode_key(TENANT, JOURNAL, ""),
        value=encode_value(journal),
        partition=partition_for(TENANT, config.partitions),
    ).get(timeout=30)
    producer.close()

    second = KafkaRuntime(config, box, executors=False, log_notes=False)
    await second.start()
    try:
        await until(lambda: second.ready, 60, "the second worker's recovery")
        assert second.state_of(TENANT) == {**expected, ("report", "only-journal"): lost}
        # Everything once more, as a till that resends and a poller that repeats itself would:
        # the till events are recognised by id, the Fortnox facts by their sequence numbers.
        await asyncio.to_thread(produce, config, batch)
        await until(lambda: second.counters.redelivered >= 10, 60, "the resent till events")
        await until(lambda: second.counters.events_in >= 5, 60, "the repeated Fortnox facts")
        await asyncio.sleep(1.0)
        assert second.state_of(TENANT) == {**expected, ("report", "only-journal"): lost}
        assert second.pending() == 0  # no command was queued again
    finally:
        await second.stop()


async def test_journals_left_are_redone_in_order_and_then_written_out(
    bootstrap: str, prefix: str, tmp_path: Path
) -> None:
    """Records are written behind their journals: a worker that died before writing out leaves
    several journals, and the next one redoes them in their order (the last value wins), writes
    the records and deletes the journals from the changelog."""
    quiet_faust_logs()
    config = KafkaConfig(bootstrap=bootstrap, prefix=prefix, data_dir=tmp_path)
    await asyncio.to_thread(init_topics, config)
    partition = partition_for(TENANT, config.partitions)
    written: list[tuple[str, str, Any]] = [
        ("report", "x", {"v": 0}),  # written out before the two journals
        ("report", "gone", {"g": 1}),
        (JOURNAL, journal_key(1), {"puts": [["report", "x", {"v": 1}], ["report", "one", {}]]}),
        (JOURNAL, journal_key(2), {"puts": [["report", "x", {"v": 2}], ["report", "gone", None]]}),
    ]
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for kind, key, value in written:
        producer.send(
            config.state_changelog,
            key=encode_key(TENANT, kind, key),
            value=encode_value(value),
            partition=partition,
        ).get(timeout=30)
    producer.close()
    expected = {("report", "x"): {"v": 2}, ("report", "one"): {}}

    worker = KafkaRuntime(config, SecretBox.from_env(), executors=False, log_notes=False)
    await worker.start()
    try:
        await until(lambda: worker.ready, 60, "the worker's recovery")
        assert worker.state_of(TENANT) == expected
        assert worker.counters.flushes == 1
    finally:
        await worker.stop()
    # On the changelog: the records as redone, and the journals deleted (last value None).
    last: dict[tuple[str, str], Any] = {}
    for record in await asyncio.to_thread(
        lambda: list(read_partition(config, config.state_changelog, partition))
    ):
        owner, kind, key = decode_key(record.key)
        if owner == TENANT:
            last[(kind, key)] = decode_value(record.value)
    assert last[(JOURNAL, journal_key(1))] is None and last[(JOURNAL, journal_key(2))] is None
    assert {k: v for k, v in last.items() if k[0] == "report" and v is not None} == expected
    assert tenant_state(config, TENANT) == expected
