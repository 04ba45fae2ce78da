"""Nothing stops silently on the Kafka worker either (issue 12, item 2), seen through the
worker's ``/healthz`` (``kassasync worker --health-port``): its tick loop crashing, a tenant in
the tenants topic that the worker's ``KASSASYNC_SECRET_KEY`` cannot open, its data folder's
disk filling up, and the faust app crashing are each a 503 naming the loop and the cause within
10 s, with a log line at error; the crashed loop and the disk come back without a restart, and
the tenants the key can open are served all along."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from engine.kafka.config import KafkaConfig
from engine.kafka.directory import KafkaTenantDirectory
from engine.kafka.runtime import KafkaRuntime
from engine.kafka.topics import init_topics
from engine.secrets import SecretBox, generate_key
from engine.tenants import ConfigError, TenantConfig, TillConnection
from tests.kafka.harness import TIMING, eventually
from tests.ops.world import free_port

RED_WITHIN = 10.0


def tenant(name: str) -> TenantConfig:
    return TenantConfig(
        id=name,
        till=TillConnection(endpoint="http://127.0.0.1:9/kassasync/commands", token=f"tok-{name}"),
    )


async def health(url: str) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(timeout=5) as http:
        answer = await http.get(url + "/healthz")
    return answer.status_code, answer.json()


async def problem_of(url: str, loop: str, says: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def red() -> bool:
        status, body = await health(url)
        for problem in body["problems"]:
            if status == 503 and problem["loop"] == loop and says in problem["cause"]:
                found.update(problem)
                return True
        return False

    took = await eventually(red, RED_WITHIN, f"/healthz naming {loop}: {says}")
    assert took <= RED_WITHIN
    return found


async def test_a_crashed_tick_loop_and_an_unreadable_tenant_are_red_on_the_worker(
    bootstrap: str, prefix: str, tmp_path: Path
) -> None:
    config = KafkaConfig(bootstrap=bootstrap, prefix=prefix, data_dir=tmp_path)
    await asyncio.to_thread(init_topics, config)
    worker_key, other_key = generate_key(), generate_key()
    # "shop-old" was added with a key the worker does not have; "shop-new" with the worker's.
    await asyncio.to_thread(
        KafkaTenantDirectory(config, SecretBox(other_key)).upsert, tenant("shop-old")
    )
    await asyncio.to_thread(
        KafkaTenantDirectory(config, SecretBox(worker_key)).upsert, tenant("shop-new")
    )
    # Saving "shop-old" again with a key that cannot open it is refused (nothing is written):
    # it would seal its secrets where the processes that added it could not open them.
    with pytest.raises(ConfigError, match="sealed with another KASSASYNC_SECRET_KEY"):
        await asyncio.to_thread(
            KafkaTenantDirectory(config, SecretBox(worker_key)).upsert, tenant("shop-old")
        )
    port = free_port()
    runtime = KafkaRuntime(config, SecretBox(worker_key), timing=TIMING, health_port=port)
    url = f"http://127.0.0.1:{port}"
    ticks = runtime.due_ticks
    broken = False

    def crashing_ticks(now: dt.datetime, tenants: Iterable[str] | None = None) -> int:
        if broken:
            raise RuntimeError("tick loop broke")
        return ticks(now, tenants)

    runtime.due_ticks = crashing_ticks  # type: ignore[method-assign]
    with capture_logs() as logs:
        await runtime.start()
        try:

            async def ready() -> bool:
                return runtime.ready

            await eventually(ready, 60, "the worker's partitions")
            assert runtime.directory.ids() == ["shop-new"]  # the rest of the topic is read
            problem = await problem_of(url, "session:shop-old", "KASSASYNC_SECRET_KEY")
            assert "tok-shop-old" not in problem["cause"]
            status, body = await health(url)
            assert status == 503
            assert body["runtime"] == "kafka" and body["ready"] is True
            assert [p["loop"] for p in body["problems"]] == ["session:shop-old"]

            broken = True
            crashed = await problem_of(url, "ticks", "RuntimeError: tick loop broke")
            assert crashed["restarts"] >= 1
            broken = False
            started = time.monotonic()

            async def only_the_tenant_left() -> bool:
                _, now = await health(url)
                return [p["loop"] for p in now["problems"]] == ["session:shop-old"]

            await eventually(only_the_tenant_left, 20, "the tick loop to run again")
            assert time.monotonic() - started < 20

            # The worker's own /metrics: its health and its loops' restarts, as the embedded
            # engine's (the ops service holds the deployment's gauges).
            async with httpx.AsyncClient(timeout=5) as http:
                served = (await http.get(url + "/metrics")).text
            assert "kassasync_healthy 0.0" in served  # shop-old's session is still red
            assert 'kassasync_loop_problems{loop="session"} 1.0' in served
            restarted = [
                line
                for line in served.splitlines()
                if line.startswith('kassasync_loop_restarts_total{loop="ticks"}')
            ]
            assert restarted and float(restarted[0].split()[-1]) >= 1, served
            # What it reconciled: the tenants' settings at least (sync.settings.changed).
            reconciled = [
                line
                for line in served.splitlines()
                if line.startswith("kassasync_messages_in_total{")
                and 'type="sync.settings.changed"' in line
            ]
            assert reconciled and float(reconciled[0].split()[-1]) >= 1, served
            assert "kassasync_messages_dead_lettered_total 0.0" in served

            # A data folder that is (as good as) full is red naming it, and green once there
            # is room again, without a restart.
            runtime.disk.min_free_bytes = 2**62
            full = await problem_of(url, "disk", "disk full")
            assert str(tmp_path) in full["cause"]
            runtime.disk.min_free_bytes = 1024 * 1024
            await eventually(only_the_tenant_left, 20, "the disk problem to clear")

            # The faust app itself crashing (the agent stops reading) is red too: the worker
            # must be restarted, and /healthz is what tells an orchestrator so.
            await runtime.app.crash(RuntimeError("fetcher died"))
            agent = await problem_of(url, "agent", "RuntimeError: fetcher died")
            assert "restart this worker" in agent["cause"]
        finally:
            await runtime.stop()
    errors = [e for e in logs if e["log_level"] == "error"]
    assert any(e["event"] == "tenants.config_unreadable" for e in errors)
    assert any(e["event"] == "loop.fault" and e["loop"] == "session:shop-old" for e in errors)
    assert any(e["event"] == "loop.crashed" and e["loop"] == "ticks" for e in errors)
