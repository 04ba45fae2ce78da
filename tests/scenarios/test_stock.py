"""Stock through the running engine: the saved-baseline merge keeps every sale on both sides."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from reconcilers import stock
from tests.scenarios.conftest import Factory

pytestmark = pytest.mark.slow


def movement(rt: object, article: str, delta: int, movement_id: str) -> dict[str, object]:
    return rt.event(  # type: ignore[attr-defined, no-any-return]
        "till.stock.movement",
        {
            "article_number": article,
            "movement_id": movement_id,
            "delta": str(delta),
            "reason": "sale",
        },
    )


async def test_till_and_webshop_sales_are_both_kept(runtime: Factory) -> None:
    async with runtime() as rt:
        await rt.settle()
        assert rt.till.stock["1001"] == Decimal(40)
        for i in range(3):
            rt.till.stock["1001"] -= 1
            await rt.send(movement(rt, "1001", -1, f"r{i}"))
        await rt.admin("POST", "/webshop-sale", json={"article": "1001", "quantity": 2})
        # The same movement sent again (another message id) is not applied twice.
        await rt.send(movement(rt, "1001", -1, "r0"))
        await rt.settle()
        assert (await rt.stock_levels())["1001"] == (Decimal(35), Decimal(35))
        merge = rt.state("stock.merge", "1001")
        assert merge is not None


async def test_a_count_corrects_both_sides(runtime: Factory) -> None:
    async with runtime() as rt:
        await rt.settle()
        rt.till.stock["2002"] = Decimal(7)
        await rt.send(
            rt.event(
                "till.stock.counted",
                {
                    "article_number": "2002",
                    "count_id": "count-1",
                    "quantity": "7",
                    "last_applied_command_id": rt.till.last_applied.get("2002"),
                },
            )
        )
        await rt.settle()
        assert (await rt.stock_levels())["2002"] == (Decimal(7), Decimal(7))


async def test_all_stock_levels_agree_after_a_busy_spell(runtime: Factory) -> None:
    async with runtime() as rt:
        await rt.settle()
        before = await rt.stock_levels()
        sold: dict[str, int] = {}
        events = []
        for i, number in enumerate(sorted(before)[:10] * 3):
            rt.till.stock[number] -= 1
            sold[number] = sold.get(number, 0) + 1
            events.append(movement(rt, number, -1, f"busy-{i}"))
        await rt.send(*events)
        for number in sorted(before)[:5]:
            if before[number][1] > 5:
                await rt.admin("POST", "/webshop-sale", json={"article": number, "quantity": 1})
                sold[number] = sold.get(number, 0) + 1
        await rt.settle()
        after = await rt.stock_levels()
        for number, (till, fortnox) in after.items():
            assert till == fortnox, number
            assert fortnox == before[number][1] - sold.get(number, 0), number


async def test_a_graceful_restart_right_after_a_stock_write_reports_no_lost_sale(
    runtime: Factory,
) -> None:
    """A stop is not a crash: the session finishes the feed watch of its last writes before
    the feed stops, so the next start has nothing to report as interrupted (a SIGKILL does:
    tests/reconcilers/test_stock_watch.py, tests/engine/test_crash.py)."""
    async with runtime() as rt:  # with the topics feed
        await rt.settle()
        rt.till.stock["1002"] -= 1
        await rt.send(movement(rt, "1002", -1, "g1"))
        watched: dict[str, object] = {}
        for _ in range(200):
            watched = (rt.state("stock.watch", "unchecked") or {}).get("writes") or {}
            if watched:
                break
            await asyncio.sleep(0.05)
        assert watched, "the write was not watched (is the feed live?)"
        await rt.restart()  # type: ignore[attr-defined]
        if rt.name == "embedded":
            # What the session published as it stopped (the watch's report) was applied.
            assert rt.lag_after_stop == 0  # type: ignore[attr-defined]
        await rt.settle()
        assert (await rt.stock_levels())["1002"] == (rt.till.stock["1002"],) * 2
        reported = rt.records("stock.overlap")
        for command_id in watched:
            assert stock.reports_of(reported, command_id) == [], command_id
        assert rt.state("stock.watch", "unchecked") is None
