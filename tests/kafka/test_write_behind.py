"""The worker's write-out of the records its journals carry (the state producer is a fake that
records what reaches it, or fails). A journal may be deleted only after every record it
changed is written; a write-out that fails keeps both for the next one."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from engine.kafka.config import KafkaConfig
from engine.kafka.runtime import KafkaRuntime
from engine.kafka.store import JOURNAL, decode_key, decode_value, journal_key
from engine.secrets import SecretBox


class Batch:
    """A producer batch that holds ``size`` records (the real one: bytes; the first always fits)."""

    def __init__(self, size: int) -> None:
        self.records: list[tuple[bytes, bytes | None]] = []
        self.size = size

    def append(self, *, key: bytes, value: bytes | None, timestamp: None) -> object | None:
        if self.records and len(self.records) >= self.size:
            return None
        self.records.append((key, value))
        return object()


class Producer:
    """Records (tenant, kind, key, value) as the broker would get them; fails when told to."""

    def __init__(self, batch_size: int = 1000) -> None:
        self.sent: list[tuple[str, str, str, Any]] = []
        self.fail = False
        self.batch_size = batch_size
        self.batches = 0

    def create_batch(self) -> Batch:
        return Batch(self.batch_size)

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> Any:
        if self.fail:
            raise ConnectionError("broker unreachable")
        self.batches += 1
        self.sent.extend((*decode_key(key), decode_value(value)) for key, value in batch.records)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def worker(bootstrap: str, prefix: str, tmp_path: Path) -> tuple[KafkaRuntime, Producer]:
    config = KafkaConfig(bootstrap=bootstrap, prefix=prefix, data_dir=tmp_path)
    runtime = KafkaRuntime(config, SecretBox.from_env(), executors=False, log_notes=False)
    producer = Producer()
    runtime.aproducer = producer  # type: ignore[assignment]
    return runtime, producer


async def test_a_failed_write_out_keeps_its_records_and_journals(
    bootstrap: str, prefix: str, tmp_path: Path
) -> None:
    runtime, producer = worker(bootstrap, prefix, tmp_path)
    runtime._unflushed = {"shop": {("stock", "A1"): {"q": 1}, ("stock", "A2"): {"q": 5}}}
    runtime._journals = {"shop": [journal_key(1)]}
    producer.fail = True
    with pytest.raises(ConnectionError):
        await runtime._flush()
    assert runtime._unflushed == {"shop": {("stock", "A1"): {"q": 1}, ("stock", "A2"): {"q": 5}}}
    assert runtime._journals == {"shop": [journal_key(1)]}
    assert producer.sent == []

    # The next batch changed A1 again; the next write-out writes each record once, newest value,
    # and only then deletes both journals, oldest first.
    runtime._unflushed["shop"][("stock", "A1")] = {"q": 2}
    runtime._journals["shop"].append(journal_key(2))
    producer.fail = False
    await runtime._flush()
    assert producer.sent == [
        ("shop", "stock", "A1", {"q": 2}),
        ("shop", "stock", "A2", {"q": 5}),
        ("shop", JOURNAL, journal_key(1), None),
        ("shop", JOURNAL, journal_key(2), None),
    ]
    assert runtime._unflushed == {} and runtime._journals == {}
    assert runtime.counters.records_written == 2
    runtime.producer.close()


async def test_a_write_out_goes_in_batches_in_order(
    bootstrap: str, prefix: str, tmp_path: Path
) -> None:
    """The records go to the broker in producer batches (one future per batch, not per record),
    a full batch before the partition's next one: their order and the journals' deletion after
    them are as record by record."""
    runtime, producer = worker(bootstrap, prefix, tmp_path)
    producer.batch_size = 2
    stock = {("stock", f"A{n}"): {"q": n} for n in range(5)}
    runtime._unflushed = {"shop": dict(stock)}
    runtime._journals = {"shop": [journal_key(1), journal_key(2)]}
    await runtime._flush()
    assert producer.sent == [
        *(("shop", kind, key, value) for (kind, key), value in stock.items()),
        ("shop", JOURNAL, journal_key(1), None),
        ("shop", JOURNAL, journal_key(2), None),
    ]
    assert producer.batches == 3 + 1  # five records two by two, then the two tombstones
    assert len(runtime._put_futures) == 1
    assert runtime.counters.records_written == 5
    runtime.producer.close()
