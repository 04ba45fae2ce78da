"""The same end-to-end flows on both runtimes (embedded, and Kafka with one worker), then a
replay of the tenant's log: an unchanged history replays to zero differences."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from engine.cli.main import build_parser
from engine.kafka.config import KafkaConfig
from engine.replay import ReplayResult, embedded_replay, kafka_replay
from engine.secrets import SecretBox
from tests.kafka.harness import EmbeddedHarness, Harness, KafkaHarness, World, running
from tests.kafka.scenario import run_flows


def make(kind: str, tmp_path: Path, bootstrap: str, prefix: str) -> tuple[Harness, KafkaConfig]:
    box = SecretBox.from_env()
    config = KafkaConfig(bootstrap=bootstrap, prefix=prefix, data_dir=tmp_path / "kafka")
    if kind == "embedded":
        return EmbeddedHarness(tmp_path / "embedded", box), config
    return KafkaHarness(config, box), config


@pytest.mark.parametrize("kind", ["embedded", "kafka"])
async def test_flows_then_replay(
    kind: str,
    tmp_path: Path,
    bootstrap: str,
    prefix: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    world = await World(["shop-a"]).start()
    harness, config = make(kind, tmp_path, bootstrap, prefix)
    try:
        async with running(harness):
            await run_flows(harness, world, "shop-a")
            live = harness.state("shop-a")
    finally:
        await world.stop()
    result: ReplayResult
    if kind == "embedded":
        result = await asyncio.to_thread(embedded_replay, tmp_path / "embedded", "shop-a")
    else:
        result = await asyncio.to_thread(kafka_replay, config, "shop-a")
    assert result.messages > 50
    assert result.differences == []
    assert result.new_commands == []
    assert len(result.commands) > 50  # every command was derived again, with the same id
    assert any(kind == "stock" for kind, _ in live)
    # The same through the CLI: exit status 0 (nothing differs), one JSON line.
    if kind == "embedded":
        where = ["--runtime", "embedded", "--data", str(tmp_path / "embedded")]
    else:
        where = ["--runtime", "kafka", "--bootstrap", bootstrap, "--prefix", prefix]
    args = build_parser().parse_args(["replay", *where, "--tenant", "shop-a", "--json"])
    assert await asyncio.to_thread(args.func, args) == 0
    shown = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (shown["differences"], shown["new_commands"]) == ([], [])
    assert shown["messages"] == result.messages
