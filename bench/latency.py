"""Latency from a till event to its Fortnox write, when the rate limit does not bind.

The till reports one stock sale at a time (a different article each time, ``rate`` per second);
each becomes one ``fortnox.stock.apply`` command, which the tenant's Fortnox session executes
(read the article, write ``QuantityInStock``). Latency = the moment the write's answer came back
(the outbox row's ``done_at``) minus the moment the event was appended to ``till.events`` (what
the ingest API does when a till posts).

Two runs in the same process, one after the other: the tenant's default (no flush window: a
change is written at the end of its batch, the headline) and the 2 s window that was the
default before (the baseline: what a shop saw until then). Fortnox's window is scaled to 25
requests per 0.5 s so that ``rate`` events per second (three requests each) stay well below it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import quiet_logs
from bench.sandbox_server import sandbox_process
from bench.world import World
from engine.executors.fortnox import SessionTiming
from engine.store.compact import payload_of
from topics.settings import TenantSettings

FIRST_ARTICLE = 100_000


def sale(prefix: str, i: int, article: str) -> dict[str, Any]:
    """The till's ``i``-th sale of one ``article`` (a stock movement of -1), now."""
    return {
        "id": f"{prefix}-{i}",
        "tenant": "shop",
        "type": "till.stock.movement",
        "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
        "source": "till",
        "data": {
            "article_number": article,
            "movement_id": f"{prefix}-mv-{i}",
            "delta": "-1",
            "reason": "sale",
        },
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def _measure(
    flush: float, samples: int, rate: float, data_dir: Path, rate_window: float
) -> dict[str, Any]:
    timing = SessionTiming(poll_seconds=30.0, masterdata_seconds=300.0, idle_seconds=0.25)
    with sandbox_process(articles=samples + 10, rate_window=rate_window) as sandbox:
        async with World(
            data_dir,
            sandbox,
            timing,
            rate_window=rate_window,
            flush_window=flush,
            poll_seconds=30.0,
            verbose=False,
        ) as world:
            await world.wait(lambda: len(world.till.articles) >= samples, 600, "initial sync")
            await world.settle()
            waited_before = sum(s.waited for s in world.engine.limiters.stats().values())
            sent: dict[str, float] = {}
            for i in range(samples):
                number = str(FIRST_ARTICLE + i)
                sent[number] = time.time()
                world.send(sale("lat", i, number))
                await asyncio.sleep(1.0 / rate)
            db = world.engine.db

            def done() -> bool:
                row = db.conn.execute(
                    "SELECT COUNT(*) FROM outbox WHERE type = 'fortnox.stock.apply' "
                    "AND status = 'done'"
                ).fetchone()
                return int(row[0]) >= samples

            await world.wait(done, 300, "writes")
            rows = db.conn.execute(
                "SELECT payload, done_at FROM outbox WHERE type = 'fortnox.stock.apply' "
                "AND status = 'done'"
            ).fetchall()
            limiter = world.engine.limiters.stats()
    latencies: list[float] = []
    for payload, done_at in rows:
        number = json.loads(payload_of(bytes(payload)))["data"]["article_number"]
        if number in sent:
            latencies.append((float(done_at) - sent[number]) * 1000.0)
    waited = sum(s.waited for s in limiter.values()) - waited_before
    return {
        "flush_window_s": flush,
        "samples": len(latencies),
        "p50_ms": round(percentile(latencies, 0.50), 1),
        "p90_ms": round(percentile(latencies, 0.90), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "max_ms": round(max(latencies), 1),
        "mean_ms": round(statistics.fmean(latencies), 1),
        "requests_that_waited_for_the_limiter": waited,
    }


#: The flush window that was the tenants' default before it became 0: the baseline run.
BASELINE_FLUSH = 2.0


def run(samples: int = 150, rate: float = 4.0, data_dir: Path | None = None) -> dict[str, Any]:
    quiet_logs()
    default = float(TenantSettings().flush_window_seconds)
    out: dict[str, Any] = {}
    for flush in (default, BASELINE_FLUSH):
        with tempfile.TemporaryDirectory(dir=data_dir) as tmp:
            out[f"flush_{flush:g}s"] = asyncio.run(
                _measure(flush, samples, rate, Path(tmp), rate_window=0.5)
            )
    new, before = out[f"flush_{default:g}s"], out[f"flush_{BASELINE_FLUSH:g}s"]
    return {
        "latency_ms_p50_embedded": new["p50_ms"],
        "latency_ms_p99_embedded": new["p99_ms"],
        "latency_ms_p50_embedded_2s_window": before["p50_ms"],
        "latency_ms_p99_embedded_2s_window": before["p99_ms"],
        "runs": out,
        "events_per_second": rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=150)
    parser.add_argument("--rate", type=float, default=4.0)
    args = parser.parse_args()
    print(json.dumps(run(args.samples, args.rate), indent=2))


if __name__ == "__main__":
    main()
