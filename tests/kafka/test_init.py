"""``kassasync kafka init``: every topic of topics/names.py with the configured partitions,
replication and cleanup policy (kafka-python admin), and a second run changes nothing."""

from __future__ import annotations

import time

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from engine.cli.main import build_parser
from engine.kafka.config import KafkaConfig
from topics.names import TOPICS


def main(argv: list[str]) -> int:
    """The CLI without its logging set-up (which would bind pytest's capture stream)."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


def test_init_creates_every_topic_from_configuration(
    bootstrap: str, prefix: str, capsys: object
) -> None:
    argv = ["kafka", "init", "--bootstrap", bootstrap, "--prefix", prefix, "--partitions", "6"]
    assert main([*argv, "--cleanup", "sync.outcomes=compact,delete"]) == 0
    config = KafkaConfig(bootstrap=bootstrap, prefix=prefix, partitions=6)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        names = [config.topic(spec.topic) for spec in TOPICS]
        # A topic Kafka has just created can be described with no partitions for a moment
        # while the metadata spreads (seen on a loaded machine): look until they show.
        deadline = time.monotonic() + 15
        while True:
            described = {t["name"]: t for t in admin.describe_topics(names)}
            if all(described[n]["partitions"] for n in names) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        for spec in TOPICS:
            name = config.topic(spec.topic)
            assert len(described[name]["partitions"]) == 6, name
            assert all(len(p["replica_nodes"]) == 1 for p in described[name]["partitions"])
        resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
        configs = admin.describe_configs(resources)["topic"]
        for spec in TOPICS:
            want = "compact,delete" if spec.topic == "sync.outcomes" else spec.cleanup_policy
            assert configs[config.topic(spec.topic)]["cleanup.policy"]["value"] == want
            assert configs[config.topic(spec.topic)]["retention.ms"]["value"] == str(
                spec.retention_ms
            )
        tenants = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, config.tenants_topic)]
        )["topic"][config.tenants_topic]
        assert tenants["cleanup.policy"]["value"] == "compact"
    finally:
        admin.close()
    capsys.readouterr()  # type: ignore[attr-defined]
    assert main(argv) == 0  # again: nothing to create
    again = capsys.readouterr().out  # type: ignore[attr-defined]
    assert '"created"' not in again and again.count('"exists"') == len(TOPICS) + 2
