"""Stock under contention: a till and a web shop sell the same articles; how many web shop sales
do Kassasync's stock writes lose?

The whole system (embedded engine, simulated till, the sandbox Fortnox in its own process with
Fortnox's real window of 25 requests per 5 s, 200 ± 100 ms latency on every request and the
topics feed). Eight stock articles; the till sells them (``till_rate`` movements of -1 per
second, as ``till.stock.movement`` events) while the web shop sells them in Fortnox
(``webshop_rate`` sales of 1 per second, the sandbox's ``webshop-sale``). Three phases of
``seconds`` each, back to back: no faults; 30 % of the stock writes answered 503; the next 25
stock writes' answers dropped after Fortnox committed them. Then the faults are cleared and the
engine settles. Each web shop sale is an invoice in Fortnox (``invoice: true``: the article's
change and the invoice announced together on the feed, the usual web shop integration), except
in the baseline and with ``--no-invoices`` (then nothing tells how much an overwritten sale was).

Each mode runs in the same process, one after the other:

* ``baseline``: today's behaviour before issue 16, replayed here (the session reads, writes the
  absolute value with the HTTP layer retrying it as idempotent, a retry after a lost answer
  takes a level equal to the value written as proof it arrived; no paired limiter slots);
* ``overwrite``: the shipped overwrite mode (``stock.mode = quantity``);
* ``warehouse``: Fortnox's warehouse module active, ``stock.mode = warehouse_documents``.

Figures, per mode:

* ``lost_units``: after settling, the sum over the articles of |Fortnox's level - (its level
  before + every till movement + every web shop sale)|: units a write lost (or counted twice);
* ``overwritten_units``: the sandbox's own record (``/stock-audit``, the ground truth) of what
  absolute writes overwrote: a write that found a level other than the one the engine last saw;
* ``detected_ratio``: of those overwrites, the share the engine repaired (``stock.repaired``)
  or reported as a possible lost sale (``stock.overlap``), matched by article and values;
* ``overwrites_repaired`` / ``units_repaired``: overwritten sales applied to Fortnox again.

``lost_units`` is counted from the outside (what the till and the web shop sold against
Fortnox's final level), so a repair that applied a sale twice counts as a loss too.

    python -m bench.stock_contention --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import tempfile
import time
import typing
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from bench.common import quiet_logs
from bench.latency import sale
from bench.sandbox_server import RemoteSandbox, sandbox_process
from bench.world import SHOP_SETTINGS, World
from engine.executors import fortnox as session_module
from engine.executors.fortnox import FortnoxSession, SessionTiming
from engine.fortnox import stock as stock_module
from engine.fortnox.resources.base import seg
from engine.store.outbox import Pending
from topics import commands as cm
from topics import fortnox as fx

FIRST_ARTICLE = 100_000
ARTICLES = [str(FIRST_ARTICLE + i) for i in range(8)]
START_LEVEL = 5000
MODES = ("baseline", "overwrite", "warehouse")
PHASES = ("no_faults", "put_5xx_30pct", "answers_dropped_25")


# --- the baseline: the stock write as it was before issue 16 ------------------------------------


async def _legacy_put(stock: stock_module.Stock, article: str, new: Decimal) -> None:
    path = f"/3/articles/{seg(article)}"
    body = {"Article": {"QuantityInStock": float(new)}}
    # repeat=True: the HTTP layer retried an absolute PUT like any idempotent request.
    await stock.client.send_json("PUT", path, body, repeat=True)


async def _legacy_stock_quantity(
    self: FortnoxSession, command: cm.ApplyFortnoxStock, pending: Pending
) -> tuple[Decimal, Decimal, fx.StockOverlap | None, bool]:
    """Before issue 16: read, write, and let the HTTP layer repeat the PUT; nothing watched."""
    article = command.data.article_number
    read = await self.api.stock.read_quantity(article)
    intent = self.edge.intent(pending)
    if intent is not None and "written" in intent and Decimal(intent["written"]) == read:
        return Decimal(intent["read"]), Decimal(intent["written"]), None, False
    written = read + command.data.delta
    self.edge.remember_intent(command.id, {"read": str(read), "written": str(written)})
    await _legacy_put(self.api.stock, article, written)
    return read, written, None, False


@contextlib.contextmanager
def baseline_behaviour() -> Iterator[None]:
    original = session_module.FortnoxSession._stock_quantity
    # The stand-in must answer as the real one does (mypy cannot see through the assignment).
    returns = typing.get_type_hints(original)["return"]
    assert typing.get_type_hints(_legacy_stock_quantity)["return"] == returns, returns
    session_module.FortnoxSession._stock_quantity = _legacy_stock_quantity  # type: ignore[method-assign]
    try:
        yield
    finally:
        session_module.FortnoxSession._stock_quantity = original  # type: ignore[method-assign]


# --- one mode -------------------------------------------------------------------------------------


async def _faults(http: httpx.AsyncClient, base: str, phase: str, warehouse: bool) -> None:
    await http.delete(f"{base}/_sandbox/faults")
    await http.post(f"{base}/_sandbox/faults/latency", json={"ms": 200, "jitter_ms": 100})
    prefix = "/api/warehouse/documentdeliveries" if warehouse else "/3/articles/"
    if phase == "put_5xx_30pct":
        await http.post(
            f"{base}/_sandbox/faults/errors",
            json={"status": 503, "ratio": 0.3, "method": "PUT", "path_prefix": prefix},
        )
    elif phase == "answers_dropped_25":
        await http.post(
            f"{base}/_sandbox/faults/drop-after-commit",
            json={"next": 25, "method": "PUT", "path_prefix": prefix},
        )


async def _levels(world: World) -> dict[str, Decimal]:
    dump = (await world.admin("GET", "", params={"registers": "articles"})).json()
    return {
        str(r["ArticleNumber"]): Decimal(str(r.get("QuantityInStock") or 0))
        for r in dump["articles"]
        if str(r["ArticleNumber"]) in ARTICLES
    }


async def _mode(
    mode: str,
    sandbox: RemoteSandbox,
    data: Path,
    seconds: float,
    till_rate: float,
    web_rate: float,
    invoices: bool = True,
) -> dict[str, Any]:
    tenant_id = int(sandbox.credentials(0)["tenant_id"])
    warehouse = mode == "warehouse"
    base = sandbox.base_url
    async with httpx.AsyncClient(timeout=60) as http:
        await http.patch(f"{base}/_sandbox/tenants/{tenant_id}", json={"warehouse": warehouse})
        for number in ARTICLES:
            await http.patch(
                f"{base}/_sandbox/tenants/{tenant_id}/records/articles/{number}",
                json={"QuantityInStock": START_LEVEL},
            )
    settings = dict(SHOP_SETTINGS)
    settings["stock"] = {
        "enabled": True,
        "mode": "warehouse_documents" if warehouse else "quantity",
    }
    timing = SessionTiming(
        poll_seconds=10.0, masterdata_seconds=300.0, idle_seconds=0.25, feed_poll_seconds=10.0
    )
    rng = random.Random(16)
    # Web shop sales reach Fortnox as invoices (the usual integration; issue 16's repair needs
    # them), except in the baseline, which replays the behaviour before any of this.
    invoiced = invoices and mode != "baseline"
    async with World(
        data,
        sandbox,
        timing,
        rate_window=5.0,
        flush_window=2.0,
        poll_seconds=10.0,
        settings=settings,
        verbose=False,
        feed=True,
    ) as world:
        await world.wait(lambda: len(world.till.articles) >= len(ARTICLES), 300, "initial sync")
        await world.settle()
        before = await _levels(world)
        till_before = {a: world.till.stock.get(a, Decimal(0)) for a in ARTICLES}
        audit_before = (await world.admin("GET", "/stock-audit")).json()
        till_moved = {a: 0 for a in ARTICLES}
        web_sold = {a: 0 for a in ARTICLES}
        sent = 0
        started = time.monotonic()
        per_phase: dict[str, Any] = {}

        async def till(until: float) -> None:
            nonlocal sent
            while time.monotonic() < until:
                article = rng.choice(ARTICLES)
                world.send(sale(f"{mode}-till", sent, article))
                till_moved[article] -= 1
                sent += 1
                await asyncio.sleep(rng.expovariate(till_rate))

        async def webshop(until: float) -> None:
            while time.monotonic() < until:
                article = rng.choice(ARTICLES)
                await world.admin(
                    "POST",
                    "/webshop-sale",
                    json={"article": article, "quantity": 1, "invoice": invoiced},
                )
                web_sold[article] -= 1
                await asyncio.sleep(rng.expovariate(web_rate))

        for phase in PHASES:
            await _faults(world.http, base, phase, warehouse)
            audit_start = (await world.admin("GET", "/stock-audit")).json()
            until = time.monotonic() + seconds
            await asyncio.gather(till(until), webshop(until))
            audit_end = (await world.admin("GET", "/stock-audit")).json()
            per_phase[phase] = {
                "stock_writes": audit_end["api_writes"] - audit_start["api_writes"],
                "webshop_sales": audit_end["webshop_sales"] - audit_start["webshop_sales"],
                "overwritten_units": audit_end["lost_units"] - audit_start["lost_units"],
            }
        await world.http.delete(f"{base}/_sandbox/faults")
        selling = time.monotonic() - started
        await world.settle()
        after = await _levels(world)
        audit = (await world.admin("GET", "/stock-audit")).json()
        store = world.engine.ops.store
        overlaps = [value for _key, value in store.records(world.tenant_name(0), "stock.overlap")]
        repairs = [value for _key, value in store.records(world.tenant_name(0), "stock.repaired")]
        # The simulated till keeps what Kassasync told it; its own sales are the events sent.
        till_change = {a: world.till.stock.get(a, Decimal(0)) - till_before[a] for a in ARTICLES}
    expected = {a: before[a] + till_moved[a] + web_sold[a] for a in ARTICLES}
    lost = sum(abs(after[a] - expected[a]) for a in ARTICLES)
    webshop_sales = audit["webshop_sales"] - audit_before["webshop_sales"]
    truth = audit["overwrites"][len(audit_before["overwrites"]) :]
    # An overwrite is detected when the engine reported it (a possible lost sale) or repaired it.
    flagged = {
        (str(o["article"]), Decimal(str(o["read"])), Decimal(str(o["written"])))
        for o in [*overlaps, *repairs]
    }
    missed = [
        o
        for o in truth
        if (str(o["article"]), Decimal(str(o["seen"])), Decimal(str(o["written"]))) not in flagged
    ]
    detected = len(truth) - len(missed)
    return {
        "webshop_sales": webshop_sales,
        "till_movements": sent,
        "selling_seconds": round(selling, 1),
        "lost_units": float(lost),
        "lost_units_per_1000_webshop_sales": round(1000 * float(lost) / max(1, webshop_sales), 2),
        "overwrites": len(truth),
        "overwritten_units": sum(float(o["lost"]) for o in truth),
        "possible_lost_sales_reported": len(overlaps),
        "overwrites_repaired": len(repairs),
        "units_repaired": sum(-float(r["foreign"] or 0) for r in repairs),
        "webshop_sales_invoiced": invoiced,
        "overwrites_detected": detected,
        "detected_ratio": round(detected / len(truth), 3) if truth else None,
        "missed": missed,
        "articles_off": {
            a: float(after[a] - expected[a]) for a in ARTICLES if after[a] != expected[a]
        },
        "till_agrees_with_fortnox": all(
            till_change[a] + till_moved[a] == after[a] - before[a] for a in ARTICLES
        ),
        "phases": per_phase,
    }


def run(
    seconds: float = 60.0,
    till_rate: float = 2.0,
    webshop_rate: float = 3.3,
    modes: tuple[str, ...] = MODES,
    data_dir: Path | None = None,
    invoices: bool = True,
) -> dict[str, Any]:
    quiet_logs()
    runs: dict[str, Any] = {}
    for mode in modes:
        with (
            sandbox_process(articles=len(ARTICLES), rate_window=5.0) as sandbox,
            tempfile.TemporaryDirectory(dir=data_dir) as tmp,
            baseline_behaviour() if mode == "baseline" else contextlib.nullcontext(),
        ):
            runs[mode] = asyncio.run(
                _mode(mode, sandbox, Path(tmp), seconds, till_rate, webshop_rate, invoices)
            )
    out: dict[str, Any] = {"runs": runs, "phase_seconds": seconds, "webshop_invoices": invoices}
    if "overwrite" in runs:
        out["stock_lost_units_per_1000_webshop_sales"] = runs["overwrite"][
            "lost_units_per_1000_webshop_sales"
        ]
        ratio = runs["overwrite"]["detected_ratio"]
        out["stock_overwrites_detected_ratio"] = 1.0 if ratio is None else ratio
    if "warehouse" in runs:
        out["stock_lost_units_per_1000_webshop_sales_warehouse"] = runs["warehouse"][
            "lost_units_per_1000_webshop_sales"
        ]
    if "baseline" in runs:
        out["stock_lost_units_per_1000_webshop_sales_baseline"] = runs["baseline"][
            "lost_units_per_1000_webshop_sales"
        ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each phase")
    parser.add_argument("--till-rate", type=float, default=2.0)
    parser.add_argument("--webshop-rate", type=float, default=3.3)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument(
        "--no-invoices",
        action="store_true",
        help="web shop sales move the stock without an invoice (nothing to repair from)",
    )
    args = parser.parse_args()
    modes = tuple(m for m in args.modes.split(",") if m)
    result = run(
        args.seconds, args.till_rate, args.webshop_rate, modes, invoices=not args.no_invoices
    )
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
