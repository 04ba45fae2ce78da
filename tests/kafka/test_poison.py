"""Nothing stops (issue 12), on both runtimes: a message that got past the door but cannot be
applied is a dead letter of its tenant, and the other tenants' next events are processed within
seconds — as is the poisoned tenant's own next event."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from engine.kafka.config import KafkaConfig
from engine.secrets import SecretBox
from tests.kafka.harness import EmbeddedHarness, Harness, KafkaHarness, World, eventually, running
from tests.kafka.poison import POISON, customer, dead_letters, has_customer, inject


@pytest.mark.parametrize("kind", ["embedded", "kafka"])
@pytest.mark.parametrize(
    "poison",
    [json.dumps(POISON).encode(), b'{"id": "x", "tenant": "shop-a", "type": "till.nonsense"}'],
    ids=["year-1", "unparseable"],
)
async def test_poison_is_dead_lettered_and_everyone_goes_on(
    kind: str, poison: bytes, tmp_path: Path, bootstrap: str, prefix: str
) -> None:
    world = await World(["shop-a", "shop-b"]).start()
    box = SecretBox.from_env()
    config = KafkaConfig(bootstrap=bootstrap, prefix=prefix, data_dir=tmp_path / "kafka")
    harness: Harness = (
        EmbeddedHarness(tmp_path / "embedded", box)
        if kind == "embedded"
        else KafkaHarness(config, box)
    )
    try:
        async with running(harness):
            keys = {t: await harness.add_tenant(world.config(t)) for t in world.tenants}
            await asyncio.to_thread(inject, harness, config, poison, "shop-a")
            started = time.monotonic()
            assert await harness.ingest("shop-b", keys["shop-b"], [customer("shop-b", "501")]) < 300
            await eventually(
                lambda: asyncio.sleep(0, has_customer(harness, "shop-b", "501")),
                30,
                "the other tenant's event after the poison",
            )
            other_tenant_seconds = time.monotonic() - started
            assert await harness.ingest("shop-a", keys["shop-a"], [customer("shop-a", "502")]) < 300
            await eventually(
                lambda: asyncio.sleep(0, has_customer(harness, "shop-a", "502")),
                30,
                "the poisoned tenant's own next event",
            )
            letters = await asyncio.to_thread(dead_letters, harness, config, "shop-a")
    finally:
        await world.stop()
    assert other_tenant_seconds < 10
    assert len(letters) == 1, letters
    text = json.dumps(letters[0], default=str)
    assert "invalid_input" in text


async def test_a_changed_payload_under_a_known_id_is_a_dead_letter_behind_the_kafka_door(
    tmp_path: Path, bootstrap: str, prefix: str
) -> None:
    """The embedded door answers it 409 (tests/reliability/test_hostile_input.py); the Kafka
    door cannot tell, so the worker refuses it with the reason and keeps the first."""
    world = await World(["shop-a"]).start()
    config = KafkaConfig(bootstrap=bootstrap, prefix=prefix, data_dir=tmp_path / "kafka")
    harness = KafkaHarness(config, SecretBox.from_env())
    try:
        async with running(harness):
            key = await harness.add_tenant(world.config("shop-a"))
            first = customer("shop-a", "601")
            changed = {**first, "data": {**first["data"], "customer": {"name": "Other name"}}}
            assert await harness.ingest("shop-a", key, [first]) < 300
            assert await harness.ingest("shop-a", key, [first]) < 300  # a plain resend
            assert await harness.ingest("shop-a", key, [changed]) < 300
            await harness.wait_quiet()
            letters = await asyncio.to_thread(dead_letters, harness, config, "shop-a")
            record = harness.state("shop-a").get(("cust.till", "601"))
    finally:
        await world.stop()
    assert len(letters) == 1, letters
    assert "received before with other content" in json.dumps(letters[0])
    assert record is not None and "Kund 601" in json.dumps(record)
