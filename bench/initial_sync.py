"""The first full sync of a big tenant against Fortnox's real rate limit (25 requests / 5 s).

The sandbox holds ``articles`` articles (``seed_bulk``: every one a stock article with an EAN
and a price in list A). The engine starts with an empty store; its session refreshes the master
data, then makes its first pass over the articles (``limit=500`` pages), then the customers and
payments. Measured: from the engine's start to the moment the articles pass is on the log
(``fortnox.sync.completed`` published, the cursor saved).

``initial_sync_vs_bound`` = that time / (article pages ÷ 5 per second), the rate-limit bound:
no client can read the pages faster. (The first 25 requests of a sliding window are free, so
the bound is not quite tight: a perfect client needs ``(pages - 25) / 5`` seconds; the master
data requests that come first cost their share of the window too.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import peak_rss_mb, quiet_logs, save_profile, start_profiler
from bench.sandbox_server import sandbox_process
from bench.world import World, api_calls
from engine.executors.fortnox import SessionTiming

PAGE = 500
RATE = 25 / 5.0


async def _run(articles: int, data_dir: Path, profile: Path | None) -> dict[str, Any]:
    timing = SessionTiming(poll_seconds=30.0, masterdata_seconds=300.0, idle_seconds=0.05)
    t0 = time.perf_counter()
    with sandbox_process(articles=articles, rate_window=5.0) as sandbox:
        seed_seconds = time.perf_counter() - t0
        async with World(
            data_dir,
            sandbox,
            timing,
            rate_window=5.0,
            flush_window=2.0,
            poll_seconds=30.0,
            verbose=False,
        ) as world:

            def passed() -> bool:
                row = world.engine.db.conn.execute(
                    "SELECT full_sync_at FROM fx_cursor "
                    "WHERE tenant = 'shop' AND resource = 'articles'"
                ).fetchone()
                return row is not None and row[0] is not None

            profiler = start_profiler() if profile is not None else None
            elapsed = await world.wait(passed, 1800, "articles pass", step=0.01)
            if profiler is not None and profile is not None:
                save_profile(profiler, profile)
            counters = await world.counters()
            limiter = world.engine.limiters.stats()
    routes = counters.get("by_route", {})
    pages = int(routes.get("GET /3/articles", 0))
    calls = api_calls(counters)
    waited = sum(s.total_wait for s in limiter.values())
    needed = math.ceil(articles / PAGE)
    bound = needed / RATE
    tight = max(0, calls - 25) / RATE
    return {
        "initial_sync_vs_bound": round(elapsed / bound, 4),
        "articles": articles,
        "pages_needed": needed,
        "pages_read": pages,
        "calls_before_pass_done": calls,
        "seconds": round(elapsed, 2),
        "bound_seconds": bound,
        "tight_bound_seconds": round(tight, 2),
        "vs_tight_bound": round(elapsed / max(1e-9, tight), 4),
        "limiter_wait_seconds": round(waited, 2),
        "by_route": routes,
        "sandbox_start_seconds": round(seed_seconds, 2),
        # The benchmark process's peak so far (under `python -m bench`, earlier benchmarks'
        # too), not the engine's alone.
        "process_peak_rss_mb": round(peak_rss_mb(), 1),
    }


def run(
    articles: int = 100_000, data_dir: Path | None = None, profile: Path | None = None
) -> dict[str, Any]:
    quiet_logs()
    with tempfile.TemporaryDirectory(dir=data_dir) as tmp:
        return asyncio.run(_run(articles, Path(tmp), profile))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--articles", type=int, default=100_000)
    parser.add_argument("--profile", type=Path, default=None)
    args = parser.parse_args()
    print(json.dumps(run(args.articles, profile=args.profile), indent=2))


if __name__ == "__main__":
    main()
