"""The worker reads the reconciled topics with its own consumer, from its durable read positions
(``~marker``): the group's committed offsets are only what it reports (the ops surface's lag),
never where it starts (docs/kafka.md, *Reading*)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path
from typing import cast

import pytest
from faust.transport.consumer import Consumer as FaustConsumer
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from engine.kafka.config import KafkaConfig
from engine.kafka.ops import KafkaProbe
from engine.kafka.runtime import KafkaRuntime, quiet_faust_logs
from engine.kafka.topics import init_topics, partition_for
from engine.secrets import SecretBox
from tests.kafka.test_recovery import TENANT, messages, produce, until
from topics.envelope import Envelope
from topics.names import Topic
from topics.till import StockMovement


def lag(config: KafkaConfig) -> int:
    probe = KafkaProbe(config)
    try:
        return sum(item.lag for item in probe.lag())
    finally:
        probe.close()


def commit_past_the_end(config: KafkaConfig) -> int:
    """What a consumer that acknowledged messages it never applied would leave: the group's
    offsets of the tenant's partitions set to their ends (the group is empty: no worker runs).
    Returns the ``till.events`` end it committed."""
    consumer = KafkaConsumer(
        bootstrap_servers=config.bootstrap, group_id=config.app_id, enable_auto_commit=False
    )
    try:
        partition = partition_for(TENANT, config.partitions)
        tps = [TopicPartition(config.topic(t), partition) for t in (Topic.TILL_EVENTS,)]
        ends = consumer.end_offsets(tps)
        consumer.assign(tps)
        consumer.commit({tp: OffsetAndMetadata(ends[tp], "", -1) for tp in tps})
        return int(ends[tps[0]])
    finally:
        consumer.close()


async def test_positions_are_committed_for_the_lag_and_never_read_back(
    bootstrap: str, prefix: str, tmp_path: Path
) -> None:
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
        # Its durable positions reach the group's offsets: the ops surface shows no lag.
        for _ in range(100):
            if await asyncio.to_thread(lag, config) == 0:
                break
            await asyncio.sleep(0.1)
        assert await asyncio.to_thread(lag, config) == 0
        before = first.state_of(TENANT)
    finally:
        await first.stop()

    # While no worker runs, ten more sales arrive, and the group's offsets are moved past them.
    now = dt.datetime.now(dt.UTC)
    more: list[Envelope] = [
        StockMovement.model_validate(
            {
                "id": f"later-{n}",
                "tenant": TENANT,
                "occurred_at": now + dt.timedelta(milliseconds=n),
                "source": "till",
                "data": {
                    "article_number": f"A{n % 5}",
                    "movement_id": f"later-m{n}",
                    "delta": "-1",
                    "reason": "sale",
                },
            }
        )
        for n in range(10)
    ]
    await asyncio.to_thread(produce, config, more)
    await asyncio.to_thread(commit_past_the_end, config)

    second = KafkaRuntime(config, box, executors=False, log_notes=False)
    await second.start()
    try:
        # Read from the durable position: the ten sales are applied, none skipped, and without
        # the stall watcher's seek back (a reader placed at the committed offsets needs it).
        await until(lambda: second.counters.events_in == len(more), 60, "the later sales")
        assert second.counters.rereads == 0
        after = second.state_of(TENANT)
        assert after != before
        stock = {key: value for (kind, key), value in after.items() if kind == "stock"}
        assert stock and all(value != before[("stock", key)] for key, value in stock.items())
    finally:
        await second.stop()


async def test_faust_does_not_report_the_paused_partitions_as_stalled(
    bootstrap: str, prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """faust checks its consumer's event path (every 7 s; here called at once) and logs an error
    for a partition with messages after its position that its stream never processed, once
    ``stream_processing_timeout`` (300 s; 1 s here) has passed since it started. Its fetching of
    the reconciled topics is paused: the reader's progress is what it must see."""
    quiet_faust_logs()
    config = KafkaConfig(bootstrap=bootstrap, prefix=prefix, data_dir=tmp_path)
    await asyncio.to_thread(init_topics, config)
    worker = KafkaRuntime(config, SecretBox.from_env(), executors=False, log_notes=False)
    worker.app.conf.stream_processing_timeout = 1
    worker.app.conf.broker_commit_livelock_soft_timeout = 1
    batch = messages()
    caplog.set_level(logging.ERROR, logger="faust")
    await worker.start()
    try:
        await asyncio.to_thread(produce, config, batch)
        await until(lambda: worker.counters.events_in == len(batch), 60, "the worker")
        await asyncio.sleep(2.5)  # the positions are committed once a second
        await cast(FaustConsumer, worker.app.consumer).verify_all_partitions_active()
    finally:
        await worker.stop()
    stalled = [r.getMessage() for r in caplog.records if "has not" in r.getMessage()]
    assert stalled == []
