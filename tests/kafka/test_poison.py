"""Nothing stops (issue 12), on both runtimes: a message that got past the door but cannot be
applied is a dead letter of its tenant, and the other tenants' next events are processed within
seconds — as is the poisoned tenant's own next event."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from pathlib import Path

import httpx
import pytest

from engine.kafka.config import KafkaConfig
from engine.kafka.ingest import EventProducer, create_app
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


@pytest.mark.parametrize("kind", ["embedded", "kafka"])
async def test_a_resent_id_is_a_duplicate_and_a_changed_payload_under_it_is_409_at_the_door(
    kind: str, tmp_path: Path, bootstrap: str, prefix: str
) -> None:
    """docs/contract.md, on both doors alike: the same event again is a duplicate (stored
    once), the same id with other content refuses its whole batch with 409 naming the id and
    stores nothing of it; the first event is the one kept, and no dead letter is made."""
    world = await World(["shop-a"]).start()
    box = SecretBox.from_env()
    config = KafkaConfig(bootstrap=bootstrap, prefix=prefix, data_dir=tmp_path / "kafka")
    harness: EmbeddedHarness | KafkaHarness = (
        EmbeddedHarness(tmp_path / "embedded", box)
        if kind == "embedded"
        else KafkaHarness(config, box)
    )
    try:
        async with running(harness):
            key = await harness.add_tenant(world.config("shop-a"))
            first = customer("shop-a", "601")
            # The same content written otherwise (another time zone) is the same event.
            instant = dt.datetime.fromisoformat(first["occurred_at"])
            shifted = instant.astimezone(dt.timezone(dt.timedelta(hours=5))).isoformat()
            resent = {**first, "occurred_at": shifted}
            changed = {**first, "data": {**first["data"], "customer": {"name": "Other name"}}}
            fresh = customer("shop-a", "602")

            answer = await harness.answer("shop-a", key, [first])
            assert (answer.status_code, answer.json()) == (202, {"accepted": 1, "duplicates": 0})
            answer = await harness.answer("shop-a", key, [resent])
            assert (answer.status_code, answer.json()) == (200, {"accepted": 0, "duplicates": 1})
            answer = await harness.answer("shop-a", key, [first, fresh])
            assert (answer.status_code, answer.json()) == (202, {"accepted": 1, "duplicates": 1})
            answer = await harness.answer("shop-a", key, [customer("shop-a", "603"), changed])
            assert answer.status_code == 409, answer.text
            assert first["id"] in answer.json()["error"]
            assert answer.json()["problems"][0]["index"] == 1
            assert answer.json()["problems"][0]["field"] == "id"
            await harness.wait_quiet()
            letters = await asyncio.to_thread(dead_letters, harness, config, "shop-a")
            state = harness.state("shop-a")
    finally:
        await world.stop()
    assert letters == []
    record = state.get(("cust.till", "601"))
    assert record is not None and "Kund 601" in json.dumps(record)
    assert ("cust.till", "602") in state
    assert ("cust.till", "603") not in state  # its batch was refused whole


async def test_a_changed_payload_that_gets_past_the_kafka_door_is_a_dead_letter(
    tmp_path: Path, bootstrap: str, prefix: str
) -> None:
    """The worker's second line (two doors racing with one id, or a resend after
    ``till.events``' retention): a known id with other content on the log is refused with the
    reason and the first is kept; the same content again is skipped."""
    world = await World(["shop-a"]).start()
    config = KafkaConfig(bootstrap=bootstrap, prefix=prefix, data_dir=tmp_path / "kafka")
    harness = KafkaHarness(config, SecretBox.from_env())
    try:
        async with running(harness):
            key = await harness.add_tenant(world.config("shop-a"))
            first = customer("shop-a", "601")
            changed = {**first, "data": {**first["data"], "customer": {"name": "Other name"}}}
            assert await harness.ingest("shop-a", key, [first]) == 202
            for raw in (first, changed):  # straight onto the log, past the door
                await asyncio.to_thread(inject, harness, config, json.dumps(raw).encode(), "shop-a")
            await harness.wait_quiet()
            letters = await asyncio.to_thread(dead_letters, harness, config, "shop-a")
            record = harness.state("shop-a").get(("cust.till", "601"))
    finally:
        await world.stop()
    assert len(letters) == 1, letters
    assert "received before with other content" in json.dumps(letters[0])
    assert record is not None and "Kund 601" in json.dumps(record)


async def test_a_second_kafka_door_knows_the_ids_the_first_one_stored(
    tmp_path: Path, bootstrap: str, prefix: str
) -> None:
    """Doors share no memory but the log: a resend through another ingest process (a restarted
    one, or a replica behind a load balancer) is still a duplicate, a change still 409."""
    world = await World(["shop-a"]).start()
    config = KafkaConfig(bootstrap=bootstrap, prefix=prefix, data_dir=tmp_path / "kafka")
    harness = KafkaHarness(config, SecretBox.from_env())
    other = None
    try:
        async with running(harness):
            key = await harness.add_tenant(world.config("shop-a"))
            first = customer("shop-a", "701")
            changed = {**first, "data": {**first["data"], "customer": {"name": "Other name"}}}
            assert await harness.ingest("shop-a", key, [first]) == 202
            other = EventProducer(config)
            app = create_app(harness.runtime.directory, other)
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app), base_url="http://door-2"
            ) as door:
                bearer = {"Authorization": f"Bearer {key}"}
                path = "/v1/tenants/shop-a/events"
                answer = await door.post(path, json={"events": [first]}, headers=bearer)
                assert (answer.status_code, answer.json()) == (
                    200,
                    {"accepted": 0, "duplicates": 1},
                )
                answer = await door.post(path, json={"events": [changed]}, headers=bearer)
                assert answer.status_code == 409, answer.text
            assert len(other.seen) >= 1
    finally:
        if other is not None:
            other.close()
        await world.stop()
