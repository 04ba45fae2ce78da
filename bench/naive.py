"""The naive baseline: a full-sync integration that, every cycle, reads every page of every
register it syncs and writes every difference it finds.

It keeps the till's side in memory (stock per article, invoices and Z-reports not yet seen in
Fortnox) and talks to its own sandbox Fortnox (seeded exactly like Kassasync's) in-process, in
shop time: cycle ``k`` first applies the day's events up to ``k * cycle_seconds``, then

* reads every page (``limit=500``) of articles, customers, invoice payments, orders and the
  Z-report voucher series;
* writes every difference: each article whose ``QuantityInStock`` differs from the till's
  (the till is master of its stock here: it simply overwrites), an order for each till invoice
  with no order carrying its reference, a voucher for each Z-report with no voucher carrying its
  marker. Customers edited in Fortnox only go to the till (no Fortnox call).

The calls are counted by the sandbox's per-tenant counters, like Kassasync's. Cycles run back to
back (no sleeping), so the sandbox's rate limit is switched off; ``max_calls_per_cycle`` shows
whether a cycle would fit in Fortnox's 25 requests per 5 s at the cycle period.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Protocol

import httpx

from sandbox.fortnox.app import create_app
from sandbox.fortnox.seed import Seeded, mint_token
from sandbox.fortnox.state import SandboxState


class DayEvent(Protocol):
    @property
    def at(self) -> float: ...
    @property
    def kind(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def data(self) -> dict[str, Any]: ...


class NaiveSync:
    def __init__(self, state: SandboxState, seeded: Seeded, *, cycle_seconds: float) -> None:
        self.state = state
        self.seeded = seeded
        self.cycle_seconds = cycle_seconds
        state.rate_limiter.configure(enabled=False)
        self.tenant_id = seeded.tenant.id
        self.till_stock: dict[str, Decimal] = {
            r.key: Decimal(str(r.data.get("QuantityInStock") or 0)) for r in seeded.tenant.articles
        }
        self.invoices: dict[str, dict[str, Any]] = {}
        self.zreports: list[str] = []

    async def _pages(self, http: httpx.AsyncClient, path: str, key: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            response = await http.get(path, params={"limit": 500, "page": page})
            response.raise_for_status()
            body = response.json()
            items.extend(body.get(key) or [])
            total = int((body.get("MetaInformation") or {}).get("@TotalPages") or 1)
            if page >= total:
                return items
            page += 1

    async def _cycle(self, http: httpx.AsyncClient) -> int:
        writes = 0
        articles = await self._pages(http, "/3/articles", "Articles")
        await self._pages(http, "/3/customers", "Customers")
        await self._pages(http, "/3/invoicepayments", "InvoicePayments")
        orders = await self._pages(http, "/3/orders", "Orders")
        vouchers = await self._pages(http, "/3/vouchers/sublist/F", "Vouchers")
        for article in articles:
            number = str(article["ArticleNumber"])
            have = Decimal(str(article.get("QuantityInStock") or 0))
            want = self.till_stock.get(number)
            if want is not None and want != have:
                response = await http.put(
                    f"/3/articles/{number}", json={"Article": {"QuantityInStock": float(want)}}
                )
                response.raise_for_status()
                writes += 1
        references = {str(o.get("ExternalInvoiceReference1") or "") for o in orders}
        for invoice_id, invoice in self.invoices.items():
            if invoice_id not in references:
                response = await http.post("/3/orders", json={"Order": invoice})
                response.raise_for_status()
                writes += 1
        descriptions = {str(v.get("Description") or "") for v in vouchers}
        for z in self.zreports:
            marker = f"Z-rapport {z} kassa K1"
            if marker not in descriptions:
                response = await http.post("/3/vouchers", json={"Voucher": _voucher(marker)})
                response.raise_for_status()
                writes += 1
        return writes

    def _apply_till(self, event: DayEvent) -> None:
        if event.kind == "movement":
            self.till_stock[event.key] += Decimal(int(event.data["delta"]))
        elif event.kind == "invoice":
            self.invoices[event.key] = {
                "CustomerNumber": event.data["customer"],
                "ExternalInvoiceReference1": event.key,
                "OrderRows": [
                    {
                        "ArticleNumber": row["article"],
                        "OrderedQuantity": row["quantity"],
                        "DeliveredQuantity": row["quantity"],
                        "Price": 100,
                    }
                    for row in event.data["rows"]
                ],
            }
        elif event.kind == "zreport":
            self.zreports.append(event.key)

    async def run(self, events: Sequence[DayEvent], day_seconds: float) -> dict[str, Any]:
        token = mint_token(self.state, self.seeded.tenant, self.seeded.client)["access_token"]
        app = create_app(self.state)
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        cycles = math.ceil(day_seconds / self.cycle_seconds)
        self.state.counters.reset(self.tenant_id)
        pending = list(events)
        index = 0
        max_calls = 0
        writes = 0
        async with (
            httpx.AsyncClient(
                transport=transport, base_url="http://sandbox", headers=headers
            ) as http,
            httpx.AsyncClient(transport=transport, base_url="http://sandbox") as admin,
        ):
            for k in range(1, cycles + 1):
                horizon = k * self.cycle_seconds
                while index < len(pending) and pending[index].at < horizon:
                    event = pending[index]
                    index += 1
                    if event.kind == "customer_edit":
                        response = await admin.patch(
                            f"/_sandbox/tenants/{self.tenant_id}/records/customers/{event.key}",
                            json={"Phone1": event.data["phone"]},
                        )
                        response.raise_for_status()
                    else:
                        self._apply_till(event)
                before = self._calls()
                writes += await self._cycle(http)
                max_calls = max(max_calls, self._calls() - before)
        calls = self._calls()
        return {
            "calls": calls,
            "cycles": cycles,
            "cycle_seconds": self.cycle_seconds,
            "writes": writes,
            "reads": calls - writes,
            "max_calls_per_cycle": max_calls,
            "fits_rate_limit": max_calls <= 25 * self.cycle_seconds / 5.0,
        }

    def _calls(self) -> int:
        snap = self.state.counters.snapshot(self.tenant_id).get(str(self.tenant_id), {})
        return sum(
            int(n)
            for route, n in snap.get("by_route", {}).items()
            if route.split(" ", 1)[1].startswith(("/3/", "/api/"))
        )


def _voucher(description: str) -> dict[str, Any]:
    return {
        "VoucherSeries": "F",
        "TransactionDate": dt.date.today().isoformat(),
        "Description": description,
        "VoucherRows": [
            {"Account": 1580, "Debit": 7000, "Credit": 0},
            {"Account": 1910, "Debit": 3000, "Credit": 0},
            {"Account": 3001, "Debit": 0, "Credit": 8000},
            {"Account": 2611, "Debit": 0, "Credit": 2000},
        ],
    }
