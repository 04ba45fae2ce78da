"""Two worker processes, 8 partitions, 20 tenants; one worker is killed with SIGKILL mid-run and
the other takes its tenants over with their state and their pending commands.

Every tenant gets the same till activity, so every tenant must end in the same state as the
single-worker scenario (tests/kafka/scenario.py): Fortnox and till stock exactly seed + till
movements (no lost and no doubled stock movement), one Fortnox customer per till customer and
one voucher per Z-report (no duplicate Fortnox write, counted by the sandbox), and till and
Fortnox states identical across the tenants that moved and those that did not."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.kafka.config import KafkaConfig
from engine.kafka.directory import KafkaTenantDirectory
from engine.kafka.ingest import EventProducer, create_app
from engine.kafka.topics import init_topics, partition_for
from engine.secrets import SecretBox
from tests.kafka.harness import KafkaHarness, World, eventually, running
from tests.kafka.scenario import (
    MOVEMENTS,
    converged,
    customer,
    divergence,
    initial_sync,
    movement,
    zreport,
)
from tests.procs import terminate

pytestmark = pytest.mark.slow

TENANTS = [f"shop-{i:02d}" for i in range(20)]
#: The same activity on one in-process worker (its own topics), as the reference.
REFERENCE = "shop-ref"
#: Creates must match the reference one for one. (Stock writes are absolute quantities whose
#: count depends on how movements fall into flush windows; their result is compared instead.)
WRITES = ("POST /3/vouchers", "POST /3/customers", "POST /3/orders")
REPO = Path(__file__).resolve().parents[2]
SYNC_TIMEOUT = float(os.environ.get("KASSASYNC_TEST_SYNC_TIMEOUT", "150"))


def start_worker(config: KafkaConfig, name: str, logs: Path) -> subprocess.Popen[bytes]:
    out = (logs / f"{name}.log").open("wb")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "engine.cli",
            "--log-level",
            os.environ.get("KASSASYNC_TEST_WORKER_LOG", "WARNING"),
            "worker",
            "--bootstrap",
            config.bootstrap,
            "--prefix",
            config.prefix,
            "--partitions",
            str(config.partitions),
            "--data",
            str(config.data_dir / name),
            "--tokens",
            str(config.tokens),
            "--masterdata-seconds",
            "30",
            "--idle-seconds",
            "0.05",
        ],
        cwd=REPO,
        env=dict(os.environ),
        stdout=out,
        stderr=subprocess.STDOUT,
    )


def till_snapshot(world: World, tenant: str) -> dict[str, Any]:
    till = world.tills[tenant]
    return {
        "articles": {k: (v["description"], v.get("ean")) for k, v in till.articles.items()},
        "stock": {k: str(v) for k, v in sorted(till.stock.items())},
        "customers": sorted(c["name"] for c in till.customers.values()),
    }


def quantities(fortnox: dict[str, Any]) -> dict[str, Decimal]:
    return {a["ArticleNumber"]: Decimal(str(a["QuantityInStock"])) for a in fortnox["articles"]}


async def single_worker_run(world: World, bootstrap: str, prefix: str, data: Path) -> Any:
    """The reference: the same tenant activity on one worker that nobody kills."""
    config = KafkaConfig(bootstrap=bootstrap, prefix=f"{prefix}ref.", data_dir=data)
    async with running(KafkaHarness(config, SecretBox.from_env())) as harness:
        key = await harness.add_tenant(world.config(REFERENCE))
        await initial_sync(world, REFERENCE, timeout=SYNC_TIMEOUT)
        first = [movement(world, REFERENCE, a, d) for a, d in MOVEMENTS[:2]]
        assert await harness.ingest(REFERENCE, key, first) == 202
        second = [movement(world, REFERENCE, a, d) for a, d in MOVEMENTS[2:]]
        second += [customer(REFERENCE, "C900", "Kund Ny"), zreport(REFERENCE, 1)]
        assert await harness.ingest(REFERENCE, key, second) == 202

        async def done() -> bool:
            return await converged(world, REFERENCE, MOVEMENTS, 1, ["Kund Ny"])

        await eventually(done, 90, "the single-worker reference run")
        await harness.wait_quiet(60)
    counters = await world.counters(REFERENCE)
    return {
        "till": till_snapshot(world, REFERENCE),
        "fortnox": quantities(await world.fortnox(REFERENCE)),
        "writes": {route: counters.get(route, 0) for route in WRITES},
    }


async def test_a_killed_worker_hands_its_tenants_over(
    bootstrap: str, prefix: str, tmp_path: Path
) -> None:
    config = KafkaConfig(bootstrap=bootstrap, prefix=prefix, partitions=8, data_dir=tmp_path)
    assert len({partition_for(t, 8) for t in TENANTS}) == 8  # every partition has tenants
    await asyncio.to_thread(init_topics, config)
    world = await World([*TENANTS, REFERENCE]).start()
    reference = await single_worker_run(world, bootstrap, prefix, tmp_path / "reference")
    directory = KafkaTenantDirectory(config, SecretBox.from_env())
    keys = {t: await asyncio.to_thread(directory.upsert, world.config(t)) for t in TENANTS}
    events = EventProducer(config)
    workers = {name: start_worker(config, name, tmp_path) for name in ("w1", "w2")}
    ingest = httpx.AsyncClient(
        transport=httpx.ASGITransport(create_app(directory, events)), base_url="http://ingest"
    )
    try:
        started = time.monotonic()
        await asyncio.gather(*(initial_sync(world, t, timeout=SYNC_TIMEOUT) for t in TENANTS))
        first_sync = time.monotonic() - started

        async def send(tenant: str, batch: list[dict[str, Any]]) -> None:
            response = await ingest.post(
                f"/v1/tenants/{tenant}/events",
                json={"events": batch},
                headers={"Authorization": f"Bearer {keys[tenant]}"},
            )
            assert response.status_code == 202, response.text

        for tenant in TENANTS:
            await send(tenant, [movement(world, tenant, a, d) for a, d in MOVEMENTS[:2]])
        # Mid-run: commands for the first movements are being executed right now.
        await asyncio.sleep(0.5)
        workers["w1"].send_signal(signal.SIGKILL)
        workers["w1"].wait()
        killed_at = time.monotonic()
        for tenant in TENANTS:
            batch = [movement(world, tenant, a, d) for a, d in MOVEMENTS[2:]]
            batch += [customer(tenant, "C900", "Kund Ny"), zreport(tenant, 1)]
            await send(tenant, batch)

        async def all_converged() -> bool:
            results = await asyncio.gather(
                *(converged(world, t, MOVEMENTS, 1, ["Kund Ny"]) for t in TENANTS)
            )
            return all(results)

        try:
            await eventually(all_converged, 150, "every tenant to converge on the worker left")
        except AssertionError:
            for tenant in TENANTS:
                diff = await divergence(world, tenant, MOVEMENTS, 1, ["Kund Ny"])
                if diff is not None:
                    print(f"{tenant} (partition {partition_for(tenant, 8)}): {diff}")
            raise
        takeover = time.monotonic() - killed_at
        await asyncio.sleep(3)  # anything still in flight would show as a duplicate now
        assert await all_converged()
        for tenant in TENANTS:
            counters = await world.counters(tenant)
            assert counters.get("POST /3/vouchers", 0) == 1, (tenant, counters)
            assert counters.get("POST /3/customers", 0) == 1, (tenant, counters)
            assert world.tills[tenant].refused == 0
        # Every tenant, moved or not, ends as the single-worker run did: the till, Fortnox, and
        # the number of Fortnox writes of each kind.
        for tenant in TENANTS:
            assert till_snapshot(world, tenant) == reference["till"], tenant
            assert quantities(await world.fortnox(tenant)) == reference["fortnox"], tenant
            counters = await world.counters(tenant)
            writes = {route: counters.get(route, 0) for route in WRITES}
            assert writes == reference["writes"], (tenant, writes, reference["writes"])
        assert workers["w2"].poll() is None, "the surviving worker must still run"
        print(f"first sync {first_sync:.1f}s, converged {takeover:.1f}s after the kill")
    finally:
        await ingest.aclose()
        await terminate(*workers.values())
        events.close()
        await world.stop()
