"""No write when nothing changed (issue 15, item 6), counted at both ends: the Fortnox calls the
sandbox answered (its per-tenant counters) and the commands the till received. A customer, an
article and a stock level that come again unchanged cost no write on either side."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tests.scenarios.conftest import Factory
from tests.scenarios.harness import ScenarioRuntime
from tests.scenarios.test_customers import upsert

WRITES = ("POST", "PUT", "PATCH", "DELETE")


class Calls:
    """Counts what reaches Fortnox and the till from the moment it is made."""

    def __init__(self, rt: ScenarioRuntime) -> None:
        self.rt = rt
        self.till: list[str] = []
        apply = rt.till.apply

        def counted(command_id: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            self.till.append(str(payload.get("type")))
            return apply(command_id, payload)

        rt.till.apply = counted  # type: ignore[method-assign]

    async def reset(self) -> None:
        await self.rt.admin("DELETE", "/counters")
        self.till.clear()

    async def fortnox_writes(self) -> dict[str, int]:
        """Fortnox's write requests since the last reset, by route (API routes only)."""
        counters = (await self.rt.admin("GET", "/counters")).json()
        return {
            route: n
            for route, n in counters["by_route"].items()
            if route.split(" ", 1)[0] in WRITES and " /3/" in route
        }


async def test_a_till_customer_in_fortnox_master_mode_is_created_once_and_not_rewritten(
    runtime: Factory,
) -> None:
    """Fortnox-as-master's one exception (a customer created in the till is created in Fortnox)
    writes it once; its echo from Fortnox and the same customer sent again write nothing."""
    async with runtime({"customers": {"master": "fortnox"}}) as rt:
        await rt.settle()
        calls = Calls(rt)
        await calls.reset()
        await rt.send(upsert(rt, "c-olle", "Olle Olsson", email="olle@example.se"))
        await rt.settle()
        assert await calls.fortnox_writes() == {"POST /3/customers": 1}
        await calls.reset()
        await rt.send(upsert(rt, "c-olle", "Olle Olsson", email="olle@example.se"))
        await rt.settle()
        assert await calls.fortnox_writes() == {}


async def test_unchanged_customer_article_and_stock_level_cost_no_write(
    runtime: Factory,
) -> None:
    async with runtime({"customers": {"master": "till"}}) as rt:
        await rt.settle()
        calls = Calls(rt)
        await calls.reset()

        # A customer the till creates is created in Fortnox once, and not written again.
        nina = {"email": "nina@example.se", "city": "Lund"}
        await rt.send(upsert(rt, "c-nina", "Nina Nilsson", **nina))
        await rt.settle()
        assert await calls.fortnox_writes() == {"POST /3/customers": 1}
        await calls.reset()

        # The same customer again (a till re-sending it under a new message id): nothing.
        await rt.send(upsert(rt, "c-nina", "Nina Nilsson", **nina))
        await rt.settle()
        assert await calls.fortnox_writes() == {}
        assert calls.till == []

        # An article Fortnox shows again unchanged (a user saved it as it was; the poll and the
        # feed bring it back): no till write, no Fortnox write.
        number, held = next(iter(sorted(rt.till.articles.items())))
        await rt.admin(
            "PATCH", f"/records/articles/{number}", json={"Description": held["description"]}
        )
        await rt.settle()
        assert await calls.fortnox_writes() == {}
        assert calls.till == []

        # A stock level the till counts as it is: no correction to write anywhere.
        levels = await rt.stock_levels()
        stocked, (till_level, fortnox_level) = next(iter(sorted(levels.items())))
        assert till_level == fortnox_level
        await rt.send(
            rt.event(
                "till.stock.counted",
                {"article_number": stocked, "count_id": "count-1", "quantity": str(till_level)},
            )
        )
        await rt.settle()
        assert await calls.fortnox_writes() == {}
        assert calls.till == []
        assert (await rt.stock_levels())[stocked] == (till_level, fortnox_level)
        assert isinstance(till_level, Decimal)
