"""The full pass at start-up, through a restart, on both runtimes: a new engine (or Kafka worker)
on the same data removes from the till what incremental polls cannot see. (The other Fortnox-in
guarantees run in the scenario suite on both runtimes: tests/scenarios/test_fortnox_inbound.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.demo import DEMO_SETTINGS
from engine.kafka.config import KafkaConfig
from engine.secrets import SecretBox
from tests.kafka.harness import EmbeddedHarness, Harness, KafkaHarness, World, eventually, running
from tests.kafka.scenario import event, initial_sync
from topics.settings import TenantSettings

TENANT = "shop-odd"


def make(kind: str, tmp_path: Path, bootstrap: str, prefix: str) -> Harness:
    box = SecretBox.from_env()
    if kind == "embedded":
        return EmbeddedHarness(tmp_path / "embedded", box)
    config = KafkaConfig(bootstrap=bootstrap, prefix=prefix, data_dir=tmp_path / "kafka")
    return KafkaHarness(config, box)


@pytest.mark.parametrize("kind", ["embedded", "kafka"])
async def test_delete_missing_takes_effect_at_the_start_up_full_pass(
    kind: str, tmp_path: Path, bootstrap: str, prefix: str
) -> None:
    """What incremental polls cannot see (a till-only article, an article and a customer deleted
    in Fortnox, no topics feed) is removed from the till by the full pass at the next start."""
    world = await World([TENANT]).start()
    fortnox_id = world.seeded[TENANT].tenant.id
    admin = f"{world.sandbox_url}/_sandbox/tenants/{fortnox_id}"
    settings = TenantSettings.model_validate(
        {
            **DEMO_SETTINGS,
            "articles": {"price_list": "A", "delete_missing": True},
            "customers": {"master": "fortnox", "delete_missing": True},
        }
    )
    till = world.tills[TENANT]
    try:
        first = make(kind, tmp_path, bootstrap, prefix)
        async with running(first):
            key = await first.add_tenant(
                world.config(TENANT).model_copy(update={"settings": settings})
            )
            await initial_sync(world, TENANT)
            assert "3005" in till.articles and "fortnox-5" in till.customers
            till.articles["T-1"] = {"article_number": "T-1", "description": "Bara i kassan"}
            edited = event(
                TENANT,
                "till.article.edited",
                {"article_number": "T-1", "changes": {"description": "Bara i kassan"}},
            )
            assert await first.ingest(TENANT, key, [edited]) == 202
            for path in ("/records/customers/5", "/records/articles/3005"):
                assert (await world.http.delete(f"{admin}{path}")).status_code == 204
            await first.wait_quiet(60)
            # Incremental polls cannot see what is gone: all three are still in the till.
            assert "T-1" in till.articles and "3005" in till.articles
            assert "fortnox-5" in till.customers

        second = make(kind, tmp_path, bootstrap, prefix)  # the same data, a new process
        async with running(second):

            async def removed() -> bool:
                return not ({"T-1", "3005"} & set(till.articles)) and (
                    "fortnox-5" not in till.customers
                )

            await eventually(removed, 60, "the start-up full pass to remove what is gone")
            assert "1001" in till.articles and "fortnox-1" in till.customers
            if isinstance(second, KafkaHarness):
                # The worker's /metrics counts its Fortnox requests, as the embedded engine's.
                served = second.runtime.metrics.render().decode()
                counted = [
                    float(line.split()[-1])
                    for line in served.splitlines()
                    if line.startswith("kassasync_fortnox_requests_total{")
                    and 'resource="/3/articles"' in line
                ]
                assert counted and sum(counted) >= 1, served
    finally:
        await world.stop()
