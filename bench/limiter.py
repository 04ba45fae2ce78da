"""Benchmark: the real Fortnox client with a backlog against the sandbox's 25/5 s window.

Starts the sandbox with uvicorn on 127.0.0.1 (a free port, in a thread), seeds the demo tenant,
gets tokens through the sandbox's OAuth consent flow, then lets ``--workers`` coroutines issue
GETs through one :class:`~engine.fortnox.client.FortnoxClient` for ``--seconds``. Requests are
counted when they are sent (after the limiter); only requests sent inside the measured window
and answered count. Prints one JSON object::

    python -m bench.limiter --seconds 60

``limiter_utilisation`` is the achieved rate over the limit (5 requests/s); the target is
>= 0.95 with ``limiter_429s`` == 0. ``steady_utilisation`` leaves out the first window (the
initial burst of 25 that any sliding window allows).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import structlog
import uvicorn

from engine.fortnox.auth import OAuthClient, TokenManager
from engine.fortnox.client import FortnoxClient
from engine.fortnox.limiter import DEFAULT_SAFETY_MARGIN, SlidingWindowLimiter
from engine.fortnox.observability import RecordingMetrics
from engine.fortnox.tokens import AppCredentials, MemoryTokenStore
from engine.net import loopback_listener
from engine.secrets import Secret
from sandbox.fortnox.app import create_app

LIMIT = 25
WINDOW = 5.0


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    sock = loopback_listener()
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


class StampingTransport(httpx.AsyncBaseTransport):
    """Records when each request is handed to the network (i.e. after the limiter)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.sent: list[float] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        sent = time.monotonic()
        response = await self.inner.handle_async_request(request)
        request.extensions["bench_sent"] = sent
        if request.url.path.startswith("/3/"):
            self.sent.append(sent)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def connect_tenant(admin: httpx.AsyncClient, base_url: str) -> tuple[AppCredentials, Any]:
    created = await admin.post(
        "/_sandbox/tenants",
        json={
            "seed": "demo",
            "clients": [
                {"client_id": "bench", "client_secret": "bench-secret", "service_account": False}
            ],
        },
    )
    created.raise_for_status()
    tenant_id = created.json()["tenant_id"]
    app = AppCredentials(client_id="bench", client_secret=Secret("bench-secret"))
    oauth = OAuthClient(app, base_url=base_url)
    redirect = "http://127.0.0.1:9/callback"
    url = oauth.consent_url(redirect_uri=redirect, state="bench")
    answer = await admin.get(f"{url}&tenant_id={tenant_id}")
    code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
    tokens = await oauth.exchange_code(code, redirect)
    await oauth.aclose()
    return app, (tenant_id, tokens)


async def run(seconds: float, workers: int, margin: float, latency_ms: float) -> dict[str, Any]:
    sandbox = create_app()
    with serve(sandbox) as base_url:
        async with httpx.AsyncClient(base_url=base_url) as admin:
            app, (tenant_id, tokens) = await connect_tenant(admin, base_url)
            if latency_ms:
                await admin.post(
                    "/_sandbox/faults/latency",
                    json={"ms": latency_ms, "jitter_ms": latency_ms / 2},
                )
            store = MemoryTokenStore()
            await store.save("bench", tokens)
            manager = TokenManager(store, OAuthClient(app, base_url=base_url))
            stamping = StampingTransport(httpx.AsyncHTTPTransport(retries=0))
            metrics = RecordingMetrics()
            limiter = SlidingWindowLimiter(LIMIT, WINDOW, safety_margin=margin)
            client = FortnoxClient(
                "bench",
                manager,
                base_url=base_url,
                transport=stamping,
                limiter=limiter,
                metrics=metrics,
            )
            await manager.access_token("bench")
            answered: list[float] = []
            start = time.monotonic()
            deadline = start + seconds
            paths = ("/3/companyinformation", "/3/articles", "/3/customers", "/3/costcenters")

            async def worker(i: int) -> None:
                n = i
                while time.monotonic() < deadline:
                    response = await client.request("GET", paths[n % len(paths)])
                    sent = response.request.extensions.get("bench_sent")
                    if isinstance(sent, float):
                        answered.append(sent)
                    n += 1

            tasks = [asyncio.create_task(worker(i)) for i in range(workers)]
            await asyncio.sleep(seconds)
            await asyncio.sleep(1.0)  # let requests sent before the deadline finish
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            errors = [r for r in results if isinstance(r, Exception) and not _cancelled(r)]
            await client.aclose()
            server_side = (await admin.get("/_sandbox/ratelimit")).json()

    in_window = [t for t in answered if start <= t < deadline]
    steady = [t for t in in_window if t >= start + WINDOW]
    rate = len(in_window) / seconds
    steady_rate = len(steady) / (seconds - WINDOW) if seconds > WINDOW else rate
    limit_rate = LIMIT / WINDOW
    return {
        "requests": len(in_window),
        "seconds": seconds,
        "rate_per_s": round(rate, 3),
        "limit_per_s": limit_rate,
        "limiter_utilisation": round(rate / limit_rate, 4),
        "limiter_429s": int(metrics.statuses.get("429", 0)),
        "steady_utilisation": round(steady_rate / limit_rate, 4),
        "server_rejected": server_side.get("rejected"),
        "max_in_any_window": _max_in_window(stamping.sent, WINDOW),
        "workers": workers,
        "safety_margin_s": margin,
        "injected_latency_ms": latency_ms,
        "limiter_mean_wait_s": round(limiter.stats.mean_wait, 3),
        "limiter_max_wait_s": round(limiter.stats.max_wait, 3),
        "errors": len(errors),
        "tenant_id": tenant_id,
    }


def _cancelled(exc: BaseException) -> bool:
    return isinstance(exc, asyncio.CancelledError)


def _max_in_window(times: list[float], window: float) -> int:
    ordered = sorted(times)
    best = 0
    first = 0
    for i, t in enumerate(ordered):
        while ordered[first] <= t - window:
            first += 1
        best = max(best, i + 1 - first)
    return best


def quiet_logs() -> None:
    """Log warnings and worse to stderr: stdout carries only the JSON result."""
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    )


def main() -> None:
    quiet_logs()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=40)
    parser.add_argument("--margin", type=float, default=DEFAULT_SAFETY_MARGIN)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    result = asyncio.run(run(args.seconds, args.workers, args.margin, args.latency_ms))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
