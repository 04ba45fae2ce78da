"""kafka-python (3.x) against the real Kafka 4.x broker: admin, keyed produce/consume, groups."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import textwrap
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

pytestmark = pytest.mark.kafka

PARTITIONS = 8


@pytest.fixture
def admin(kafka_bootstrap: str) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="ks-test-admin")
    yield client
    client.close()


def create_topic(admin: KafkaAdminClient, name: str, partitions: int = PARTITIONS) -> None:
    result = admin.create_topics(
        {name: {"num_partitions": partitions, "replication_factor": 1}},
        wait_for_metadata=True,
    )
    assert result["topics"][0]["error_code"] == 0, result


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, *members: GroupMember
) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            seen = "; ".join(f"{m.name}: {m.history} error={m.error!r}" for m in members)
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} ({seen})")
        time.sleep(0.05)
    return time.monotonic() - started


def test_broker_is_kafka_4_kraft(
    kafka_bootstrap: str, admin: KafkaAdminClient, broker_module: ModuleType
) -> None:
    host, port = broker_module.parse_bootstrap(kafka_bootstrap)
    answer = broker_module.probe(host, port)
    assert [b[0] for b in answer.brokers] == [1]
    # ConsumerGroupHeartbeat (KIP-848) exists from 3.7 on; Kafka 4 (KIP-896) dropped
    # Fetch v0-v3, CreateTopics v0-v1 and OffsetCommit v0-v1.
    fetch, create_topics, offset_commit = 1, 19, 8
    assert 68 in answer.api_versions
    assert answer.api_versions[fetch][0] >= 4, answer.api_versions[fetch]
    assert answer.api_versions[create_topics][0] >= 2, answer.api_versions[create_topics]
    assert answer.api_versions[offset_commit][0] >= 2, answer.api_versions[offset_commit]
    cluster = admin.describe_cluster()
    assert cluster["controller_id"] == 1
    assert [b["broker_id"] for b in cluster["brokers"]] == [1]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    try:
        # kafka-python 3 negotiates the protocol itself (api_version=None -> probe).
        assert producer.config["api_version"] >= (4, 0), producer.config["api_version"]
    finally:
        producer.close()


def test_create_topic_with_8_partitions(
    admin: KafkaAdminClient, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("admin")
    result = admin.create_topics(
        {
            topic: {
                "num_partitions": PARTITIONS,
                "replication_factor": 1,
                "configs": {"cleanup.policy": "compact"},
            }
        },
        wait_for_metadata=True,
    )
    assert result["topics"][0]["error_code"] == 0, result
    (described,) = admin.describe_topics([topic])
    assert described["name"] == topic
    assert len(described["partitions"]) == PARTITIONS
    assert all(p["leader_id"] == 1 and p["isr_nodes"] == [1] for p in described["partitions"])
    assert topic in admin.list_topics()
    admin.delete_topics([topic])


def test_auto_created_topic_gets_num_partitions(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("auto")
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    try:
        producer.send(topic, key=b"k", value=b"v").get(timeout=30)
        assert producer.partitions_for(topic) == set(range(PARTITIONS))
    finally:
        producer.close()


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_produce_consume_keyed_messages(
    kafka_bootstrap: str,
    admin: KafkaAdminClient,
    unique_name: Callable[[str], str],
    compression: str | None,
) -> None:
    topic = unique_name("keyed")
    create_topic(admin, topic)
    keys = [f"till-{i}" for i in range(20)]
    total = 400
    producer = KafkaProducer(
        bootstrap_servers=kafka_bootstrap,
        acks="all",
        compression_type=compression,
        key_serializer=str.encode,
        value_serializer=lambda v: json.dumps(v).encode(),
        linger_ms=5,
    )
    sent_partition: dict[str, set[int]] = defaultdict(set)
    try:
        futures = [
            (keys[seq % len(keys)], producer.send(topic, key=keys[seq % len(keys)], value=seq))
            for seq in range(total)
        ]
        producer.flush(timeout=30)
        for key, future in futures:
            sent_partition[key].add(future.get(timeout=30).partition)
    finally:
        producer.close()
    assert all(len(parts) == 1 for parts in sent_partition.values()), "a key changed partition"

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=unique_name("group"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        key_deserializer=bytes.decode,
        value_deserializer=json.loads,
    )
    received: dict[str, list[int]] = defaultdict(list)
    count = 0
    try:
        deadline = time.monotonic() + 60
        while count < total and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500).items():
                for record in records:
                    received[record.key].append(record.value)
                    assert tp.partition in sent_partition[record.key]
                    count += 1
        consumer.commit()
        committed = sum(
            consumer.committed(TopicPartition(topic, p)) or 0 for p in range(PARTITIONS)
        )
    finally:
        consumer.close()
    assert count == total
    assert committed == total
    assert set(received) == set(keys)
    for key, seqs in received.items():
        assert seqs == sorted(seqs), f"per-key order broken for {key}"
        assert len(seqs) == total // len(keys)


class GroupMember(threading.Thread):
    """One kafka-python consumer in a group, polled in its own thread (consumers aren't
    thread-safe); publishes a snapshot of its current assignment after every poll."""

    def __init__(self, bootstrap: str, group: str, topic: str, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group,
            client_id=name,
            auto_offset_reset="earliest",
            session_timeout_ms=6000,  # the broker's group.min.session.timeout.ms
            heartbeat_interval_ms=500,
            # A leader that assigned before it had the new topic's metadata (an empty
            # assignment) learns it within a second, not after the default five minutes.
            metadata_max_age_ms=1000,
        )
        # The topic's partitions fetched before joining: a leader that assigns without them
        # hands out nothing, and in a starved parallel run it never asked again (a fresh-clone
        # CI run waited 60 s with member-a holding no partition).
        self.consumer.partitions_for_topic(topic)
        self.consumer.subscribe([topic])
        self.assignment: frozenset[int] = frozenset()
        self.history: list[tuple[float, list[int]]] = []  # (seconds, partitions) on change
        self.records = 0
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        started = time.monotonic()
        try:
            while not self.halt.is_set():
                batch = self.consumer.poll(timeout_ms=100)
                self.records += sum(len(r) for r in batch.values())
                assignment = frozenset(tp.partition for tp in self.consumer.assignment())
                if assignment != self.assignment:
                    self.history.append((round(time.monotonic() - started, 2), sorted(assignment)))
                self.assignment = assignment
        except BaseException as exc:  # surfaced by the test
            self.error = exc
        finally:
            self.consumer.close()  # sends LeaveGroup

    def leave(self) -> None:
        self.halt.set()
        self.join(timeout=30)
        assert not self.is_alive()


# Timing-bound like the killed-member test below: a starved broker missed it in the parallel
# pass of a fresh-clone CI run.
@pytest.mark.serial
def test_consumer_group_rebalances_when_a_member_leaves(
    kafka_bootstrap: str, admin: KafkaAdminClient, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("group")
    group = unique_name("g")
    create_topic(admin, topic)
    everything = frozenset(range(PARTITIONS))

    first = GroupMember(kafka_bootstrap, group, topic, "member-a")
    first.start()
    second = GroupMember(kafka_bootstrap, group, topic, "member-b")
    try:
        wait_for(lambda: first.assignment == everything, 60, "member-a alone", first)

        second.start()
        wait_for(
            lambda: (
                bool(first.assignment)
                and bool(second.assignment)
                and first.assignment | second.assignment == everything
                and not first.assignment & second.assignment
            ),
            60,
            "the partitions to be split between the two members",
            first,
            second,
        )
        assert len(first.assignment) == len(second.assignment) == PARTITIONS // 2

        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
        for partition in range(PARTITIONS):
            producer.send(topic, value=b"x", partition=partition)
        producer.flush(timeout=30)
        producer.close()
        wait_for(
            lambda: first.records + second.records == PARTITIONS,
            30,
            "both to consume",
            first,
            second,
        )
        assert first.records > 0 and second.records > 0

        second.leave()
        took = wait_for(
            lambda: first.assignment == everything, 30, "member-a to take all back", first
        )
        # A graceful leave rebalances at once, not after the 6 s session timeout.
        assert took < 6, took
        assert first.error is None and second.error is None
    finally:
        first.leave()
        if second.is_alive():
            second.leave()


CRASHING_MEMBER = textwrap.dedent(
    """
    import sys
    from kafka import KafkaConsumer
    bootstrap, group, topic = sys.argv[1:4]
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                             session_timeout_ms=6000, heartbeat_interval_ms=500,
                             metadata_max_age_ms=1000)
    consumer.subscribe([topic])
    while True:
        consumer.poll(timeout_ms=100)
        if consumer.assignment():
            print("assigned", flush=True)
            break
    while True:
        consumer.poll(timeout_ms=100)
    """
)


# A rebalance within its time limit: a broker and clients starved by other test processes
# missed it in a fresh-clone run of the parallel pass.
@pytest.mark.serial
def test_consumer_group_rebalances_when_a_member_is_killed(
    kafka_bootstrap: str, admin: KafkaAdminClient, unique_name: Callable[[str], str]
) -> None:
    """A member that dies without LeaveGroup (SIGKILL) is evicted after session.timeout.ms."""
    topic = unique_name("crash")
    group = unique_name("g")
    create_topic(admin, topic)
    everything = frozenset(range(PARTITIONS))
    survivor = GroupMember(kafka_bootstrap, group, topic, "survivor")
    survivor.start()
    doomed: subprocess.Popen[str] | None = None
    try:
        # A stable one-member group first: a member that joins while the leader still lacks
        # the new topic's metadata gets nothing from the range assignor for a round.
        wait_for(lambda: survivor.assignment == everything, 60, "the survivor alone", survivor)
        doomed = subprocess.Popen(
            [sys.executable, "-c", CRASHING_MEMBER, kafka_bootstrap, group, topic],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert doomed.stdout is not None
        ready, _, _ = select.select([doomed.stdout], [], [], 60)
        assert ready, "the second member never got partitions"
        assert doomed.stdout.readline().strip() == "assigned"
        wait_for(lambda: 0 < len(survivor.assignment) < PARTITIONS, 60, "a 4/4 split", survivor)
        doomed.kill()
        doomed.wait(timeout=10)
        took = wait_for(
            lambda: survivor.assignment == everything, 60, "the survivor to own all", survivor
        )
        assert took < 30, took
        assert survivor.error is None
    finally:
        if doomed is not None and doomed.poll() is None:
            doomed.kill()
            doomed.wait()
        survivor.leave()
