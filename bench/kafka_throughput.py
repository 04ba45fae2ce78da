"""Reconciler throughput: the embedded engine vs Kafka workers, on the same generated workload.

Prints one JSON object: messages/s for the embedded processor, for one Kafka worker and for two
(separate processes), the ratio Kafka(1) / embedded and the gain Kafka(2) / Kafka(1).

The workload is ``--tenants`` tenants, each with ``--articles`` Fortnox article changes and then
``--movements`` till stock movements (every message goes through ``reconcile`` and commits its
state, offsets and commands). Executors are off: this measures the reconciling runtime. The
Kafka runs time the worker from its first applied batch to its last (as recorded in the
``kassasync.order`` topic), so group join and recovery are not counted.

    KASSASYNC_KAFKA_BOOTSTRAP=127.0.0.1:19392 python bench/kafka_throughput.py --tenants 100
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
from decimal import Decimal
from pathlib import Path

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.embedded.processor import Processor  # noqa: E402
from engine.kafka.config import KafkaConfig  # noqa: E402
from engine.kafka.topics import init_topics, partition_for  # noqa: E402
from engine.secrets import KEY_ENV, generate_key  # noqa: E402
from engine.store.db import Database  # noqa: E402
from engine.store.log import Log  # noqa: E402
from topics import fortnox as fx  # noqa: E402
from topics import registry  # noqa: E402
from topics.envelope import Envelope  # noqa: E402
from topics.names import message_key  # noqa: E402
from topics.till import StockMovement  # noqa: E402


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


def embedded(messages: list[Envelope]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "bench.db")
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
        db.close()
    return {"messages": done, "seconds": round(seconds, 2), "per_second": round(done / seconds)}


def produce(config: KafkaConfig, messages: list[Envelope]) -> None:
    producer = KafkaProducer(bootstrap_servers=config.bootstrap, acks="all", linger_ms=5)
    for message in messages:
        producer.send(
            config.topic(message.TOPIC),
            key=message_key(message.tenant),
            value=registry.dump(message),
            partition=partition_for(message.tenant, config.partitions),
        )
    producer.flush(timeout=120)
    producer.close()


def wait_for_group(bootstrap: str, group: str, members: int, timeout: float) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            described = admin.describe_groups([group]).get(group, {})
            if described.get("group_state") == "Stable" and len(described["members"]) == members:
                time.sleep(3.0)  # the workers' table recovery after the last rebalance
                return
            time.sleep(0.5)
    finally:
        admin.close()
    raise SystemExit(f"the {members} workers did not join {group} in time")


def kafka(
    bootstrap: str, messages: list[Envelope], workers: int, timeout: float
) -> dict[str, float]:
    config = KafkaConfig(bootstrap=bootstrap, prefix=f"bench{uuid.uuid4().hex[:8]}.")
    init_topics(config)
    env = {**os.environ, KEY_ENV: os.environ.get(KEY_ENV) or generate_key()}
    tmp = tempfile.mkdtemp(prefix="kassasync-bench-")
    procs = [
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
        for i in range(workers)
    ]
    # The workload goes in once every worker has joined and recovered, so the figure is
    # steady-state throughput, not group joins and rebalances.
    wait_for_group(bootstrap, config.app_id, workers, timeout)
    produce(config, messages)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    tps = [TopicPartition(config.order_topic, p) for p in range(config.partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    applied: set[tuple[int, str, int]] = set()
    first = last = None
    deadline = time.monotonic() + timeout
    try:
        while len(applied) < len(messages) and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500).items():
                for record in records:
                    for topic, offset in json.loads(record.value):
                        applied.add((tp.partition, topic, offset))
                    stamp = record.timestamp / 1000
                    first = stamp if first is None else min(first, stamp)
                    last = stamp if last is None else max(last, stamp)
    finally:
        consumer.close()
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    if first is None or last is None or len(applied) < len(messages):
        raise SystemExit(f"kafka x{workers}: {len(applied)}/{len(messages)} applied in time")
    seconds = max(last - first, 0.001)
    done = len(applied)
    return {"messages": done, "seconds": round(seconds, 2), "per_second": round(done / seconds)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=os.environ.get("KASSASYNC_KAFKA_BOOTSTRAP"))
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--articles", type=int, default=20)
    parser.add_argument("--movements", type=int, default=80)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    if not args.bootstrap:
        raise SystemExit("set KASSASYNC_KAFKA_BOOTSTRAP or pass --bootstrap")
    messages = workload(args.tenants, args.articles, args.movements)
    print(f"workload: {len(messages)} messages", file=sys.stderr)
    result: dict[str, object] = {"workload": {"messages": len(messages), **vars(args)}}
    result["embedded"] = embedded(messages)
    print(f"embedded: {result['embedded']}", file=sys.stderr)
    one = kafka(args.bootstrap, messages, 1, args.timeout)
    print(f"kafka x1: {one}", file=sys.stderr)
    two = kafka(args.bootstrap, messages, 2, args.timeout)
    print(f"kafka x2: {two}", file=sys.stderr)
    result["kafka_1_worker"] = one
    result["kafka_2_workers"] = two
    emb = result["embedded"]
    assert isinstance(emb, dict)
    result["kafka_1_vs_embedded"] = round(one["per_second"] / emb["per_second"], 3)
    result["kafka_2_vs_1"] = round(two["per_second"] / one["per_second"], 3)
    result["cpus"] = os.cpu_count()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
