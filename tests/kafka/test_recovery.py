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
from engine.kafka.runtime import KafkaRuntime, quiet_faust_logs
from engine.kafka.store import JOURNAL, encode_key, encode_value
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
