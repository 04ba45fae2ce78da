"""A day in a shop against the sandbox Fortnox: the HTTP calls Kassasync makes, the lower bound,
and a naive full-sync integration's calls for the same day.

The shop: 10,000 articles (all stock goods, price list A) and 1,000 customers, in sync before the
day starts (Kassasync's first full sync runs first and is not counted). The day (``DayPlan``): a
trading day of ``hours`` during which the till reports 5,000 stock movements over 2,000 articles,
Fortnox users edit 50 customers, the till sends 20 invoices, and closes the day with one Z-report.
Event times are drawn uniformly over the day (seeded).

Time is compressed by ``compression``: every duration of the engine (poll period, master-data
period, full-sync period, idle sleep) and Fortnox's rate window (on both sides, limiter and
sandbox) is divided by it, and the events are sent at their times divided by it. The flush window
is the tenant's default (none: a change is written at the end of its batch; ``flush_seconds``
sets another, in shop time) and is the one the lower bound uses.

Counts come from the sandbox's per-tenant counters (method x path x status); only Fortnox's REST
API is counted (``/3/...``, ``/api/...``; OAuth token calls are reported apart).

See docs/performance.md for the lower bound's exact definition and the naive baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import random
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.common import quiet_logs
from bench.freshness import FORTNOX_REQUESTS_PER_SECOND, curve, curve_json, freshest_feasible
from bench.naive import NaiveSync
from bench.sandbox_server import RemoteSandbox, sandbox_process
from bench.world import ShopClock, World, api_calls, compressed_time
from engine.executors.fortnox import SessionTiming
from sandbox.fortnox.seed import Seeded, add_bulk, add_client_for, seed_empty
from sandbox.fortnox.state import SandboxState
from topics.settings import TenantSettings

FIRST_ARTICLE = 100_000


@dataclass(frozen=True)
class DayPlan:
    articles: int = 10_000
    customers: int = 1_000
    movements: int = 5_000
    moved_articles: int = 2_000
    customer_edits: int = 50
    invoices: int = 20
    zreports: int = 1
    hours: float = 10.0
    compression: float = 120.0
    #: Production defaults (SessionTiming, TenantSettings), in shop time.
    poll_seconds: float = 30.0
    masterdata_seconds: float = 300.0
    full_sync_seconds: float = 6 * 3600.0
    flush_seconds: float = float(TenantSettings().flush_window_seconds)
    rate_window: float = 5.0
    #: Follow Fortnox's topics feed (polling then only a safety net; SessionTiming's feed_*).
    feed: bool = True
    feed_poll_seconds: float = 900.0
    feed_masterdata_seconds: float = 900.0
    echo_seconds: float = 30.0
    seed: int = 11

    @property
    def day_seconds(self) -> float:
        return self.hours * 3600.0

    @property
    def effective_flush(self) -> float:
        """The flush window in shop time (the tick loop wakes at each window's end, so the
        compressed run honours the tenant's setting as it is)."""
        return self.flush_seconds


@dataclass(frozen=True, order=True)
class Event:
    at: float  # shop seconds after the day's start
    kind: str  # movement | customer_edit | invoice | zreport
    key: str
    data: dict[str, Any] = field(compare=False)


def schedule(plan: DayPlan) -> list[Event]:
    rng = random.Random(plan.seed)
    day = plan.day_seconds
    numbers = [str(FIRST_ARTICLE + i) for i in range(plan.articles)]
    moved = rng.sample(numbers, plan.moved_articles)
    events: list[Event] = []
    for i in range(plan.movements):
        # every moved article moves at least once; the rest fall where they fall
        number = moved[i] if i < len(moved) else rng.choice(moved)
        delta = rng.choice((-1, -1, -1, -2, 5))
        events.append(
            Event(rng.uniform(0, day * 0.98), "movement", number, {"delta": delta, "n": i})
        )
    customer_numbers = [str(1 + i) for i in range(plan.customers)]
    for i, number in enumerate(rng.sample(customer_numbers, plan.customer_edits)):
        events.append(
            Event(rng.uniform(0, day * 0.98), "customer_edit", number, {"phone": f"0470-{i:05d}"})
        )
    for i in range(plan.invoices):
        customer = rng.choice(customer_numbers)
        rows = [{"article": rng.choice(numbers), "quantity": rng.randint(1, 4)} for _ in range(2)]
        events.append(
            Event(
                rng.uniform(0, day * 0.98),
                "invoice",
                f"INV{i + 1}",
                {"customer": customer, "rows": rows},
            )
        )
    for z in range(plan.zreports):
        events.append(Event(day * 0.99 + z, "zreport", str(z + 1), {}))
    events.sort()
    return events


# --- the lower bound ------------------------------------------------------------------------


def lower_bound(plan: DayPlan, events: list[Event]) -> dict[str, Any]:
    """Calls no integration can do without, for this day (docs/performance.md, "lower bound").

    * stock: one write per article per flush window in which its net change is not zero (a
      window opens at the first change and lasts ``effective_flush``: the engine's own rule),
      and one read of that article per write (``QuantityInStock`` is absolute in Fortnox, so the
      new value is the current one plus the delta: it must be read);
    * orders: one write per invoice; vouchers: one write per Z-report;
    * changes made in Fortnox by others (customer edits): one page per poll period that has
      any (up to 500 changed records fit in one page).
    """
    window = plan.effective_flush
    open_at: dict[str, float] = {}
    net: dict[str, int] = {}
    stock_writes = 0
    for event in events:
        if event.kind != "movement":
            continue
        start = open_at.get(event.key)
        if start is not None and event.at >= start + window:
            stock_writes += 1 if net[event.key] else 0
            start = None
        if start is None:
            open_at[event.key] = event.at
            net[event.key] = 0
        net[event.key] += int(event.data["delta"])
    stock_writes += sum(1 for key in open_at if net[key])
    periods = {math.floor(e.at / plan.poll_seconds) for e in events if e.kind == "customer_edit"}
    orders = sum(1 for e in events if e.kind == "invoice")
    vouchers = sum(1 for e in events if e.kind == "zreport")
    parts = {
        "stock_writes": stock_writes,
        "stock_reads": stock_writes,
        "order_writes": orders,
        "voucher_writes": vouchers,
        "changed_record_pages": len(periods),
    }
    return {"total": sum(parts.values()), **parts, "flush_window_shop_seconds": window}


# --- Kassasync ------------------------------------------------------------------------------


def seed(state: SandboxState, plan: DayPlan, client_id: str) -> Seeded:
    tenant = seed_empty(state, company_name="Dagbutiken AB")
    add_bulk(tenant, articles=plan.articles, customers=plan.customers, start=FIRST_ARTICLE)
    client = add_client_for(state, tenant, client_id=client_id, client_secret="bench-secret")
    return Seeded(tenant, client)


def till_event(world_tenant: str, event: Event, n: int, at: dt.datetime) -> dict[str, Any] | None:
    now = at.isoformat()

    def wrap(type_: str, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": f"{type_}-{n}",
            "tenant": world_tenant,
            "type": type_,
            "occurred_at": now,
            "source": "till",
            "data": data,
        }

    if event.kind == "movement":
        delta = int(event.data["delta"])
        return wrap(
            "till.stock.movement",
            {
                "article_number": event.key,
                "movement_id": f"mv-{event.data['n']}",
                "delta": str(delta),
                "reason": "sale" if delta < 0 else "delivery",
            },
        )
    if event.kind == "invoice":
        return wrap(
            "till.invoice.created",
            {
                "invoice_id": event.key,
                "till_customer_id": f"fortnox-{event.data['customer']}",
                "invoice_date": dt.date.today().isoformat(),
                "rows": [
                    {
                        "article_number": row["article"],
                        "description": f"Artikel {row['article']}",
                        "quantity": str(row["quantity"]),
                        "unit_price": "100.00",
                        "vat_rate": "25",
                    }
                    for row in event.data["rows"]
                ],
            },
        )
    if event.kind == "zreport":
        return wrap(
            "till.zreport.closed",
            {
                "z_number": int(event.key),
                "till_id": "K1",
                "business_date": dt.date.today().isoformat(),
                "vat": [{"rate": "25", "sales_net": "8000.00", "sales_vat": "2000.00"}],
                "payments": [
                    {"method": "card", "amount": "7000.00"},
                    {"method": "cash", "amount": "3000.00"},
                ],
            },
        )
    return None


async def run_kassasync(plan: DayPlan, events: list[Event], data_dir: Path) -> dict[str, Any]:
    c = plan.compression
    origin = time.time()
    clock = ShopClock(c, origin)
    timing = SessionTiming(
        poll_seconds=plan.poll_seconds / c,
        masterdata_seconds=plan.masterdata_seconds / c,
        full_sync_seconds=plan.full_sync_seconds,  # compared in shop time
        idle_seconds=max(0.005, 0.25 / c),
        feed_poll_seconds=plan.feed_poll_seconds / c,
        feed_masterdata_seconds=plan.feed_masterdata_seconds / c,
        echo_seconds=plan.echo_seconds / c,
    )
    with (
        sandbox_process(
            articles=plan.articles,
            customers=plan.customers,
            rate_window=plan.rate_window / c,
            compression=c,
            origin=origin,
        ) as sandbox,
        compressed_time(clock),
    ):
        return await _run_kassasync(plan, events, data_dir, sandbox, timing, clock)


async def _run_kassasync(
    plan: DayPlan,
    events: list[Event],
    data_dir: Path,
    sandbox: RemoteSandbox,
    timing: SessionTiming,
    clock: ShopClock,
) -> dict[str, Any]:
    c = plan.compression
    async with World(
        data_dir,
        sandbox,
        timing,
        rate_window=plan.rate_window / c,
        flush_window=plan.effective_flush,
        poll_seconds=plan.poll_seconds / c,
        feed=plan.feed,
    ) as world:
        t0 = time.monotonic()
        await world.wait(
            lambda: (
                len(world.till.articles) >= plan.articles
                and len(world.till.customers) >= plan.customers
            ),
            1800,
            "initial sync",
        )
        if plan.feed:
            await world.wait(world.feed_live, 60, "topics feed")
        await world.settle()
        initial = {
            "seconds": round(time.monotonic() - t0, 2),
            "calls": api_calls(await world.counters()),
        }
        await world.reset_counters()
        polls_before = world.polls()
        start = time.monotonic()
        late: list[float] = []
        for n, event in enumerate(events):
            due = start + event.at / c
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                late.append(-delay)
            if event.kind == "customer_edit":
                await world.admin(
                    "PATCH", f"/records/customers/{event.key}", json={"Phone1": event.data["phone"]}
                )
                continue
            message = till_event("shop", event, n, clock.utcnow())
            if message is not None:
                if event.kind == "movement":  # the sale happened in the till
                    number = event.key
                    stock = world.till.stock
                    stock[number] = stock.get(number, Decimal(0)) + int(event.data["delta"])
                world.send(message)
        end_of_day = start + plan.day_seconds / c
        await asyncio.sleep(max(0.0, end_of_day - time.monotonic()))
        day_polls = world.polls() - polls_before
        drained = await world.settle()
        counters = await world.counters()
        polls = world.polls() - polls_before
        till_stock = dict(world.till.stock)
        dump = (await world.admin("GET", "?registers=articles")).json()
    fortnox_stock = {
        str(a["ArticleNumber"]): Decimal(str(a.get("QuantityInStock") or 0))
        for a in dump["articles"]
    }
    in_sync = sum(1 for k, v in till_stock.items() if fortnox_stock.get(k) == v)
    return {
        "calls": api_calls(counters),
        "by_route": counters.get("by_route", {}),
        "by_status": counters.get("by_status", {}),
        "polls_during_day": day_polls,
        "polls_with_drain": polls,
        "polls_expected": round(
            plan.day_seconds / (plan.feed_poll_seconds if plan.feed else plan.poll_seconds)
        ),
        "feed": plan.feed,
        "drain_seconds": round(drained, 2),
        "events_late_max_s": round(max(late, default=0.0), 3),
        "initial_sync": initial,
        "stock_articles_in_sync": in_sync,
        "stock_articles": len(till_stock),
    }


def run(plan: DayPlan, data_dir: Path | None = None) -> dict[str, Any]:
    quiet_logs()
    events = schedule(plan)
    bound = lower_bound(plan, events)
    with tempfile.TemporaryDirectory(dir=data_dir) as tmp:
        kassasync = asyncio.run(run_kassasync(plan, events, Path(tmp)))
    naive_state = SandboxState()
    naive_seeded = seed(naive_state, plan, "naive-bench")
    naive = NaiveSync(naive_state, naive_seeded, cycle_seconds=plan.poll_seconds)
    naive_result = asyncio.run(naive.run(events, plan.day_seconds))
    calls = int(kassasync["calls"])
    return {
        "fortnox_calls": calls,
        "fortnox_calls_lower_bound": bound["total"],
        "fortnox_calls_naive": naive_result["calls"],
        "calls_vs_lower_bound": round(calls / bound["total"], 4),
        "stock_writes": {
            "kassasync": int(kassasync["by_route"].get("PUT /3/articles/{ArticleNumber}", 0)),
            "lower_bound": bound["stock_writes"],
        },
        "naive_vs_calls": round(naive_result["calls"] / calls, 3),
        "plan": asdict(plan),
        "events": dict(Counter(e.kind for e in events)),
        "lower_bound": bound,
        "kassasync": kassasync,
        "naive": naive_result,
    }


def freshness_curve(day: dict[str, Any], kassasync_freshness_seconds: float) -> dict[str, Any]:
    """The calls-versus-freshness curve (``bench.freshness``) for a result of :func:`run`: the
    day's events rebuilt from its plan, the naive sync's reads per cycle as its run measured
    them, Kassasync's calls as counted and its freshness as given (``bench.latency``'s p99)."""
    plan = DayPlan(**day["plan"])
    events = schedule(plan)
    naive = day["naive"]
    reads_per_cycle = naive["reads"] / max(1, naive["cycles"])
    points = curve(
        events,
        plan.day_seconds,
        reads_per_cycle,
        int(day["fortnox_calls"]),
        kassasync_freshness_seconds,
    )
    same = points[-1]
    period, best = freshest_feasible(events, plan.day_seconds, reads_per_cycle)
    return {
        "kassasync_calls": int(day["fortnox_calls"]),
        "kassasync_freshness_seconds": kassasync_freshness_seconds,
        "naive_reads_per_cycle": round(reads_per_cycle, 3),
        "fortnox_daily_budget": round(plan.day_seconds * FORTNOX_REQUESTS_PER_SECOND),
        "points": curve_json(points),
        "naive_freshest_feasible": {
            "period_seconds": round(period, 3),
            "calls": best.calls,
            "naive_vs_kassasync": round(best.calls / int(day["fortnox_calls"]), 3),
        },
        "naive_vs_kassasync_at_equal_freshness": same.naive_vs_kassasync,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--compression", type=float, default=DayPlan.compression)
    parser.add_argument("--hours", type=float, default=DayPlan.hours)
    parser.add_argument(
        "--no-feed", action="store_true", help="poll on the period only (no topics feed)"
    )
    args = parser.parse_args()
    plan = DayPlan(compression=args.compression, hours=args.hours, feed=not args.no_feed)
    print(json.dumps(run(plan), indent=2))


if __name__ == "__main__":
    main()
