"""Latency from a till event to its Fortnox write on the Kafka runtime (one in-process worker),
measured like ``bench.latency`` for the embedded runtime, against a broker this benchmark starts
(``deploy/kafka/broker.py`` on its own port) and stops.

The sandbox runs in this process here, wrapped so that the moment each ``PUT /3/articles/{n}``
arrives is recorded; latency = that moment minus the moment the event was accepted by the
Kafka ingest API (``EventProducer``). Fortnox's window is scaled to 25 requests per 0.5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.common import quiet_logs
from bench.latency import BASELINE_FLUSH, percentile, sale
from bench.world import SHOP_SETTINGS
from engine.executors.fortnox import SessionTiming
from engine.net import loopback_listener
from engine.secrets import KEY_ENV, SecretBox, generate_key
from engine.tenants import FortnoxConnection, TenantConfig, TillConnection
from sandbox.fortnox.app import create_app as create_sandbox
from sandbox.fortnox.seed import add_bulk, add_client_for, seed_empty
from sandbox.fortnox.state import SandboxState
from sandbox.till import TillState
from sandbox.till import create_app as create_till
from topics.settings import TenantSettings

REPO = Path(__file__).resolve().parent.parent
BROKER = REPO / "deploy" / "kafka" / "broker.py"
FIRST_ARTICLE = 100_000
#: Fortnox's 25 requests per 5 s, scaled to 25 per 0.5 s on both sides (as ``bench.latency``).
RATE_WINDOW = 0.5


def _broker(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, str(BROKER), *args], check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


async def _serve(app: Any, tasks: list[asyncio.Task[Any]], servers: list[Any]) -> str:
    import uvicorn

    sock = loopback_listener(512)
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    )
    tasks.append(asyncio.create_task(server.serve(sockets=[sock])))
    while not server.started:
        await asyncio.sleep(0.01)
    servers.append(server)
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def _measure(bootstrap: str, samples: int, rate: float, flush: float) -> dict[str, Any]:
    from engine.kafka.config import KafkaConfig
    from engine.kafka.ingest import EventProducer
    from engine.kafka.runtime import KafkaRuntime, quiet_faust_logs
    from engine.kafka.topics import init_topics

    quiet_faust_logs()
    arrivals: dict[str, float] = {}
    state = SandboxState(rate_window_seconds=RATE_WINDOW)
    tenant = seed_empty(state, company_name="Kafkabutiken AB")
    add_bulk(tenant, articles=samples + 10, start=FIRST_ARTICLE)
    client = add_client_for(state, tenant, client_id="bench-kafka", client_secret="secret")
    inner = create_sandbox(state)

    async def sandbox(scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") == "http" and scope.get("method") == "PUT":
            path = str(scope.get("path", ""))
            if path.startswith("/3/articles/"):
                arrivals.setdefault(path.rsplit("/", 1)[-1], time.time())
        await inner(scope, receive, send)

    tasks: list[asyncio.Task[Any]] = []
    servers: list[Any] = []
    till = TillState(tenant="shop", token="till-token")
    sandbox_url = await _serve(sandbox, tasks, servers)
    till_url = await _serve(create_till(till), tasks, servers)
    with tempfile.TemporaryDirectory() as tmp:
        config = KafkaConfig(
            bootstrap=bootstrap,
            prefix=f"bench{uuid.uuid4().hex[:8]}.",
            partitions=2,
            data_dir=Path(tmp),
        )
        box = SecretBox.from_env()
        runtime = KafkaRuntime(
            config,
            box,
            timing=SessionTiming(poll_seconds=30.0, masterdata_seconds=300.0, idle_seconds=0.25),
        )
        await asyncio.to_thread(init_topics, config)
        events = EventProducer(config)
        await runtime.start()
        try:
            settings = TenantSettings.model_validate(
                {**SHOP_SETTINGS, "flush_window_seconds": str(flush)}
            )
            key = await asyncio.to_thread(
                runtime.directory.upsert,
                TenantConfig(
                    id="shop",
                    settings=settings,
                    till=TillConnection(
                        endpoint=f"{till_url}/kassasync/commands", token="till-token"
                    ),
                    fortnox=FortnoxConnection.at(
                        sandbox_url,
                        {
                            "client_id": client.client_id,
                            "client_secret": client.client_secret,
                            "tenant_id": tenant.id,
                        },
                        poll_seconds=30.0,
                        rate_window_seconds=RATE_WINDOW,
                    ),
                ),
            )
            deadline = time.monotonic() + 600
            while len(till.articles) < samples:
                if time.monotonic() > deadline:
                    raise TimeoutError("the Kafka worker did not sync the till")
                await asyncio.sleep(0.1)
            await asyncio.sleep(3.0)
            arrivals.clear()
            sent: dict[str, float] = {}
            from engine.kafka.ingest import create_app as create_ingest

            ingest = create_ingest(runtime.directory, events)
            assert key is not None
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(ingest), base_url="http://ingest"
            ) as http:
                for i in range(samples):
                    number = str(FIRST_ARTICLE + i)
                    event = sale("klat", i, number)
                    sent[number] = time.time()
                    response = await http.post(
                        "/v1/tenants/shop/events",
                        json={"events": [event]},
                        headers={"Authorization": f"Bearer {key}"},
                    )
                    response.raise_for_status()
                    await asyncio.sleep(1.0 / rate)
            deadline = time.monotonic() + 300
            while sum(1 for n in sent if n in arrivals) < samples:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"only {len(arrivals)} of {samples} writes arrived")
                await asyncio.sleep(0.05)
        finally:
            await runtime.stop()
            events.close()
            for server in servers:
                server.should_exit = True
            await asyncio.gather(*tasks, return_exceptions=True)
    latencies = [(arrivals[n] - sent[n]) * 1000.0 for n in sent if n in arrivals]
    return {
        "flush_window_s": flush,
        "samples": len(latencies),
        "p50_ms": round(percentile(latencies, 0.5), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "max_ms": round(max(latencies), 1),
    }


#: The broker's port: KASSASYNC_KAFKA_PORT where it is set (a machine shared by several runs).
DEFAULT_PORT = int(os.environ.get("KASSASYNC_KAFKA_PORT", "19492"))


def run(samples: int = 100, rate: float = 4.0, port: int = DEFAULT_PORT) -> dict[str, Any]:
    """The tenant's default flush window (none: the headline) and the 2 s window that was the
    default before (the baseline), one after the other on the same broker."""
    quiet_logs()
    os.environ.setdefault(KEY_ENV, generate_key())
    _broker("fetch")
    bootstrap = _broker("start", "--port", str(port)).splitlines()[-1]
    default = float(TenantSettings().flush_window_seconds)
    try:
        result = asyncio.run(_measure(bootstrap, samples, rate, default))
        before = asyncio.run(_measure(bootstrap, samples, rate, BASELINE_FLUSH))
    finally:
        _broker("stop", "--port", str(port))
    return {
        "latency_ms_p99_kafka": result["p99_ms"],
        "latency_ms_p50_kafka": result["p50_ms"],
        "latency_ms_p99_kafka_2s_window": before["p99_ms"],
        "latency_ms_p50_kafka_2s_window": before["p50_ms"],
        "kafka": result,
        "kafka_2s_window": before,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args()
    print(json.dumps(run(args.samples, port=args.port), indent=2))


if __name__ == "__main__":
    main()
