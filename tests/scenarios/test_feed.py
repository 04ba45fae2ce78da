"""Fortnox's topics feed: changes arrive in seconds, deletions without a full pass."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from tests.scenarios.conftest import Factory


async def _until(check: Callable[[], bool], seconds: float) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds, "the change did not arrive in time"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_feed_brings_changes_and_deletions_in_seconds(runtime: Factory) -> None:
    # Polling every hour: only the feed can bring these changes in time.
    async with runtime({"customers": {"delete_missing": True}}, poll_seconds=3600) as rt:
        await _until(lambda: "1001" in rt.till.articles and "fortnox-1" in rt.till.customers, 30)
        await rt.admin("PATCH", "/records/articles/1001", json={"Description": "Kaffe mörkrost"})
        took = await _until(
            lambda: rt.till.articles.get("1001", {}).get("description") == "Kaffe mörkrost", 10
        )
        assert took < 10
        await rt.admin("DELETE", "/records/articles/3005")
        await _until(lambda: "3005" not in rt.till.articles, 10)
        await rt.admin("DELETE", "/records/customers/5")
        await _until(lambda: "fortnox-5" not in rt.till.customers, 10)
        assert rt.feed_offsets() >= 2  # articles and customers topics, persisted
