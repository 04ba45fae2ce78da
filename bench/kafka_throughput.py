"""Reconciler throughput: one Kafka worker against the embedded engine, on the same generated
workload (``kafka_vs_embedded_throughput``, issue 15).

The workload is ``--tenants`` tenants, each with ``--articles`` Fortnox article changes and then
``--movements`` till stock movements (every message goes through ``reconcile`` and commits its
state, offsets and commands). Executors are off: this measures the reconciling runtime.

* embedded: the messages are appended to the log first; timed from the processor's first step
  to the step that finds nothing left;
* Kafka: the messages are produced to the input topics first, then the worker starts (a
  subprocess, ``engine.cli worker --no-executors``) and joins its group; timed from its first
  applied batch to its last, as the ``kassasync.order`` topic records them (the first batch's
  messages are not counted, since its time is not), so the join, the recovery and the
  producer's pace are not in the figure.

Both count what they really applied and fail when it is not the whole workload. The worker is
stopped (SIGTERM, then SIGKILL) and its data folder removed whatever happens; ``run`` starts its
own broker on ``--port`` and stops it.

    python -m bench.kafka_throughput --tenants 100               # broker on KASSASYNC_KAFKA_PORT
    python -m bench.kafka_throughput --bootstrap 127.0.0.1:19392 --workers 1,2
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from bench.common import quiet_logs
from bench.kafka_latency import DEFAULT_PORT, REPO, _broker
from engine.embedded.processor import Processor
from engine.kafka.config import KafkaConfig
from engine.kafka.topics import init_topics, partition_for
from engine.secrets import KEY_ENV, generate_key
from engine.store.db import Database
from engine.store.log import Log
from topics import fortnox as fx
from topics import registry
from topics.envelope import Envelope
from topics.names import message_key
from topics.till import StockMovement


def workload(tenants: int, articles: int, movements: int) -> list[Envelope]:
    rng = random.Random(5)
    now = dt.datetime.now(dt.UTC)
    out: list[Envelope] = []
    for t in range(tenants):
        tenant = f"bench-{t:04d}"
        for a in range(articles):
            out.append(
                fx.FortnoxArticleChanged(
                    id=f"fx-{tenant}-{a}",
                    tenant=tenant,
                    occurred_at=now,
                    data=fx.FortnoxArticleData(
                        article=fx.FortnoxArticle(
                            article_number=f"A{a}",
                            description=f"Artikel {a}",
                            ean=f"73{t:04d}{a:05d}",
                            stock_goods=True,
                            quantity_in_stock=Decimal(100),
                            price=Decimal("10.00"),
                        ),
                        observed=fx.Observation(seq=a + 1),
                    ),
                )
            )
        for m in range(movements):
            out.append(
                StockMovement.model_validate(
                    {
                        "id": f"mv-{tenant}-{m}",
                        "tenant": tenant,
                        "occurred_at": now + dt.timedelta(milliseconds=m),
                        "source": "till",
                        "data": {
                            "article_number": f"A{rng.randrange(articles)}",
                            "movement_id": f"m{m}",
                            "delta": str(delta := rng.choice([-1, -2, 1])),
                            "reason": "sale" if delta < 0 else "delivery",
                        },
                    }
                )
            )
    return out


@dataclass(frozen=True)
class Throughput:
    """Messages a runtime applied and the time it took (``messages`` counted in that time)."""

    messages: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds

    def as_json(self) -> dict[str, float]:
        return {
            "messages": self.messages,
            "seconds": round(self.seconds, 3),
            "per_second": round(self.per_second),
        }


def embedded(messages: list[Envelope]) -> Throughput:
    """The embedded processor over ``messages``, appended to its log before the clock starts."""
    with tempfile.TemporaryDirectory(prefix="kassasync-bench-") as tmp:
        db = Database(Path(tmp) / "bench.db")
        try:
            log = Log(db)
            with db.transaction():
                for message in messages:
                    log.append(message)
            processor = Processor(db, log_notes=False)
            started = time.perf_counter()
            done = 0
            while True:
                result = processor.step(limit=500)
                if not result.processed and not result.dead_letters:
                    break
                done += result.processed + result.dead_letters
            seconds = time.perf_counter() - started
        finally:
            db.close()
    if done != len(messages):
        raise RuntimeError(f"embedded: applied {done} of the {len(messages)} messages")
    return Throughput(done, seconds)


def produce(config: KafkaConfig, messages: list[Envelope]) -> None:
    producer = KafkaProducer(bootstrap_servers=config.bootstrap, acks="all", linger_ms=5)
    try:
        for message in messages:
            producer.send(
                config.topic(message.TOPIC),
                key=message_key(message.tenant),
                value=registry.dump(message),
                partition=partition_for(message.tenant, config.partitions),
            )
        producer.flush(timeout=120)
    finally:
        producer.close()


def applied_span(batches: list[tuple[float, int]]) -> Throughput:
    """From the order topic's batches (timestamp in s, messages in it): the messages applied
    after the first batch and the time from the first batch to the last (the first batch's own
    work happened before its timestamp, so its messages are not counted)."""
    if len(batches) < 2:
        raise RuntimeError("fewer than two applied batches: nothing to time")
    ordered = sorted(batches)
    seconds = ordered[-1][0] - ordered[0][0]
    if seconds <= 0:
        raise RuntimeError("the applied batches carry no time between them")
    return Throughput(sum(n for _, n in ordered[1:]), seconds)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def kafka(bootstrap: str, messages: list[Envelope], workers: int, timeout: float) -> Throughput:
    """``workers`` worker processes over ``messages``, produced before the first one starts."""
    config = KafkaConfig(bootstrap=bootstrap, prefix=f"bench{uuid.uuid4().hex[:8]}.")
    init_topics(config)
    produce(config, messages)
    env = {**os.environ, KEY_ENV: os.environ.get(KEY_ENV) or generate_key()}
    procs: list[subprocess.Popen[bytes]] = []
    applied: set[tuple[int, str, int]] = set()
    batches: list[tuple[float, int]] = []
    with tempfile.TemporaryDirectory(prefix="kassasync-bench-") as tmp:
        try:
            for i in range(workers):
                procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "engine.cli",
                            "--log-level",
                            "WARNING",
                            "worker",
                            "--bootstrap",
                            bootstrap,
                            "--prefix",
                            config.prefix,
                            "--data",
                            f"{tmp}/w{i}",
                            "--no-executors",
                            "--no-notes",
                        ],
                        cwd=REPO,
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
            try:
                tps = [TopicPartition(config.order_topic, p) for p in range(config.partitions)]
                consumer.assign(tps)
                consumer.seek_to_beginning(*tps)
                deadline = time.monotonic() + timeout
                while len(applied) < len(messages) and time.monotonic() < deadline:
                    if any(proc.poll() is not None for proc in procs):
                        raise RuntimeError(f"kafka x{workers}: a worker exited early")
                    for tp, records in consumer.poll(timeout_ms=500).items():
                        for record in records:
                            fresh = 0
                            for topic, offset in json.loads(record.value):
                                key = (tp.partition, str(topic), int(offset))
                                if key not in applied:
                                    applied.add(key)
                                    fresh += 1
                            batches.append((record.timestamp / 1000, fresh))
            finally:
                consumer.close()
        finally:
            _stop(procs)
    if len(applied) != len(messages):
        raise RuntimeError(f"kafka x{workers}: {len(applied)}/{len(messages)} applied in time")
    return applied_span(batches)


def run(
    tenants: int = 100,
    articles: int = 20,
    movements: int = 80,
    *,
    bootstrap: str | None = None,
    port: int = DEFAULT_PORT,
    workers: tuple[int, ...] = (1,),
    timeout: float = 600,
) -> dict[str, Any]:
    """The embedded figure, then each worker count; a broker on ``port`` unless ``bootstrap``."""
    quiet_logs()
    messages = workload(tenants, articles, movements)
    result: dict[str, Any] = {
        "workload": {
            "messages": len(messages),
            "tenants": tenants,
            "articles": articles,
            "movements": movements,
        },
        "cpus": os.cpu_count(),
    }
    emb = embedded(messages)
    result["embedded"] = emb.as_json()
    started = bootstrap is None
    if bootstrap is None:
        _broker("fetch")
        bootstrap = _broker("start", "--port", str(port)).splitlines()[-1]
    try:
        runs = {n: kafka(bootstrap, messages, n, timeout) for n in workers}
    finally:
        if started:
            _broker("stop", "--port", str(port))
    for n, measured in runs.items():
        result[f"kafka_{n}_worker{'s' if n > 1 else ''}"] = measured.as_json()
    if 1 in runs:
        result["kafka_vs_embedded_throughput"] = round(runs[1].per_second / emb.per_second, 4)
    if 1 in runs and 2 in runs:
        result["kafka_2_vs_1"] = round(runs[2].per_second / runs[1].per_second, 3)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=None, help="an existing broker (else one on --port)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--articles", type=int, default=20)
    parser.add_argument("--movements", type=int, default=80)
    parser.add_argument("--workers", default="1", help="comma-separated worker counts")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    result = run(
        args.tenants,
        args.articles,
        args.movements,
        bootstrap=args.bootstrap,
        port=args.port,
        workers=tuple(int(n) for n in args.workers.split(",") if n),
        timeout=args.timeout,
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
