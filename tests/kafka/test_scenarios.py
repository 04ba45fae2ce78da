"""The same end-to-end flows on both runtimes (embedded, and Kafka with one worker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.kafka.config import KafkaConfig
from engine.secrets import SecretBox
from tests.kafka.harness import EmbeddedHarness, Harness, KafkaHarness, World, running
from tests.kafka.scenario import run_flows


def make(kind: str, tmp_path: Path, bootstrap: str, prefix: str) -> Harness:
    box = SecretBox.from_env()
    if kind == "embedded":
        return EmbeddedHarness(tmp_path / "embedded", box)
    config = KafkaConfig(bootstrap=bootstrap, prefix=prefix, data_dir=tmp_path / "kafka")
    return KafkaHarness(config, box)


@pytest.mark.parametrize("kind", ["embedded", "kafka"])
async def test_flows(kind: str, tmp_path: Path, bootstrap: str, prefix: str) -> None:
    world = await World(["shop-a"]).start()
    try:
        async with running(make(kind, tmp_path, bootstrap, prefix)) as harness:
            await run_flows(harness, world, "shop-a")
    finally:
        await world.stop()
