"""A deterministic multi-tenant workload: what the tills send and what happens in Fortnox.

One seed gives the same workload every time, so an interrupted run and an uninterrupted run of
the same seed must end in the same state. Per tenant:

* till events, in batches: stock movements (sales and deliveries) on the seeded stock
  articles, new customers, invoices to those customers and Z-reports;
* Fortnox-side actions between batches, as a webshop or a Fortnox user would do them: webshop
  sales (stock decrements), article descriptions edited, a new article, price changes and
  (for a Fortnox-as-master tenant) customer edits.

No action on one side touches what the other side edits, so the final state does not depend
on timing: the expected stock is seed + till movements - webshop sales on both sides, and
every till customer, invoice and Z-report becomes exactly one Fortnox record.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

#: The seeded stock of the demo company (sandbox/fortnox/seed.py) for the articles we move.
STOCK_ARTICLES: dict[str, Decimal] = {
    "1001": Decimal(40),
    "1002": Decimal(25),
    "1003": Decimal(30),
    "1004": Decimal(60),
    "1008": Decimal(48),
    "2002": Decimal(10),
    "2003": Decimal(100),
    "2007": Decimal(40),
    "3004": Decimal(200),
    "A100": Decimal(20),
    "D-401": Decimal(120),
    "E-501": Decimal(50),
}
#: Articles the webshop sells from when it does not share the till's articles (``overlap``
#: off): Fortnox's stock of these changes only by webshop sales, of the others only by
#: Kassasync's writes.
WEBSHOP_ARTICLES: dict[str, Decimal] = {
    "1007": Decimal(12),
    "2006": Decimal(15),
    "2010": Decimal(25),
    "B-200": Decimal(30),
}
#: Articles whose description a Fortnox user edits (never moved by the till: no overlap).
EDITED_ARTICLES = ["1009", "1010", "2004", "2005", "3001", "3002"]
#: Seeded customers of the demo company that a Fortnox user edits (Fortnox-as-master only).
EDITED_CUSTOMERS = ["Anna Andersson", "David Dahl"]

SETTINGS: dict[str, Any] = {
    "customers": {"master": "till"},
    "articles": {"price_list": "A"},
    "stock": {"enabled": True},
    "zreports": {
        "enabled": True,
        "series": "F",
        "accounts": {
            "payment_methods": {"card": 1580, "cash": 1910, "swish": 1930},
            "sales_by_vat": {"25": 3001, "12": 3002, "6": 3003, "0": 3004},
            "vat_by_rate": {"25": 2611, "12": 2621, "6": 2631},
            "rounding": 3740,
            "tips": 2890,
            "gift_cards": 2421,
        },
    },
    "invoices": {"enabled": True},
    "flush_window_seconds": 0.5,
}


@dataclass(frozen=True)
class FortnoxAction:
    """Something done in Fortnox (through the sandbox's admin API) after a till batch."""

    kind: str  # webshop_sale | article_edit | article_new | price | customer_edit
    key: str
    value: str = ""


@dataclass
class TenantPlan:
    tenant: str
    master: str
    #: Till batches, in order; each is sent until acknowledged (same ids on every resend).
    batches: list[list[dict[str, Any]]] = field(default_factory=list)
    #: ``after[i]``: the Fortnox actions done once batch ``i`` was acknowledged.
    after: dict[int, list[FortnoxAction]] = field(default_factory=dict)
    #: ``stock.mode``: ``quantity`` (absolute writes) or ``warehouse_documents`` (Fortnox Lager).
    stock_mode: str = "quantity"

    @property
    def events(self) -> list[dict[str, Any]]:
        return [event for batch in self.batches for event in batch]

    def actions(self) -> list[FortnoxAction]:
        return [a for i in sorted(self.after) for a in self.after[i]]

    def settings(self) -> dict[str, Any]:
        out = {**SETTINGS, "customers": {"master": self.master}}
        out["stock"] = {"enabled": True, "mode": self.stock_mode}
        return out

    # -- what must be true at the end ----------------------------------------------------------

    def expected_stock(self) -> dict[str, Decimal]:
        """Both the till and Fortnox: seed + the till's movements - the webshop's sales."""
        out = {**STOCK_ARTICLES, **WEBSHOP_ARTICLES}
        for event in self.events:
            if event["type"] == "till.stock.movement":
                out[event["data"]["article_number"]] += Decimal(event["data"]["delta"])
        for action in self.actions():
            if action.kind == "webshop_sale":
                out[action.key] -= Decimal(1)
        return out

    def till_customers(self) -> list[str]:
        return sorted(
            {
                e["data"]["till_customer_id"]
                for e in self.events
                if e["type"] == "till.customer.upserted"
            }
        )

    def invoices(self) -> list[str]:
        return sorted(
            e["data"]["invoice_id"] for e in self.events if e["type"] == "till.invoice.created"
        )

    def zreports(self) -> list[str]:
        return sorted(
            f"{e['data']['till_id']}-{e['data']['z_number']}"
            for e in self.events
            if e["type"] == "till.zreport.closed"
        )


@dataclass
class Workload:
    seed: int
    plans: list[TenantPlan]
    overlap: bool = False
    stock_mode: str = "quantity"

    @property
    def warehouse(self) -> bool:
        return self.stock_mode == "warehouse_documents"

    @property
    def tenants(self) -> list[str]:
        return [plan.tenant for plan in self.plans]

    def plan(self, tenant: str) -> TenantPlan:
        return next(p for p in self.plans if p.tenant == tenant)

    @property
    def events(self) -> int:
        return sum(len(p.events) for p in self.plans)


def _money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01")))


class _Builder:
    def __init__(self, tenant: str, rng: random.Random, now: dt.datetime) -> None:
        self.tenant = tenant
        self.rng = rng
        self.now = now
        self.count = 0

    def event(self, type_: str, data: dict[str, Any]) -> dict[str, Any]:
        self.count += 1
        return {
            "id": f"{self.tenant}-{type_.split('.')[-1]}-{self.count}",
            "tenant": self.tenant,
            "type": type_,
            "occurred_at": self.now.isoformat(),
            "source": "till",
            "data": data,
        }

    def movement(self) -> dict[str, Any]:
        article = self.rng.choice(sorted(STOCK_ARTICLES))
        delta = self.rng.choice([-1, -1, -2, -1, 3, -3, 5])
        return self.event(
            "till.stock.movement",
            {
                "article_number": article,
                "movement_id": f"mv-{self.tenant}-{self.count + 1}",
                "delta": str(delta),
                "reason": "sale" if delta < 0 else "delivery",
            },
        )

    def customer(self, n: int) -> dict[str, Any]:
        return self.event(
            "till.customer.upserted",
            {
                "till_customer_id": f"C{n}",
                "customer": {
                    "name": f"Kund {self.tenant} {n}",
                    "email": f"kund{n}@{self.tenant}.example.se",
                    "city": self.rng.choice(["Växjö", "Lund", "Umeå", "Kiruna"]),
                },
            },
        )

    def invoice(self, n: int) -> dict[str, Any]:
        rows = []
        for _ in range(self.rng.randint(1, 3)):
            article = self.rng.choice(sorted(STOCK_ARTICLES))
            rows.append(
                {
                    "article_number": article,
                    "description": f"Artikel {article}",
                    "quantity": str(self.rng.randint(1, 4)),
                    "unit_price": _money(Decimal(self.rng.randint(1000, 30000)) / 100),
                    "vat_rate": self.rng.choice(["25", "12"]),
                }
            )
        return self.event(
            "till.invoice.created",
            {
                "invoice_id": f"I{n}",
                "till_customer_id": f"C{n}",
                "invoice_date": self.now.date().isoformat(),
                "rows": rows,
            },
        )

    def zreport(self, n: int) -> dict[str, Any]:
        vat = []
        total = Decimal(0)
        for rate in ("25", "12"):
            net = Decimal(self.rng.randint(10000, 400000)) / 100
            tax = (net * Decimal(rate) / 100).quantize(Decimal("0.01"))
            total += net + tax
            vat.append({"rate": rate, "sales_net": _money(net), "sales_vat": _money(tax)})
        card = (total * Decimal("0.6")).quantize(Decimal("0.01"))
        return self.event(
            "till.zreport.closed",
            {
                "z_number": n,
                "till_id": "K1",
                "location_code": "100",
                "business_date": self.now.date().isoformat(),
                "vat": vat,
                "payments": [
                    {"method": "card", "amount": _money(card)},
                    {"method": "cash", "amount": _money(total - card)},
                ],
            },
        )


def _plan(
    tenant: str,
    master: str,
    rng: random.Random,
    scale: int,
    now: dt.datetime,
    overlap: bool,
    stock_mode: str,
) -> TenantPlan:
    build = _Builder(tenant, rng, now)
    plan = TenantPlan(tenant=tenant, master=master, stock_mode=stock_mode)
    customers = 0
    zreports = 0
    batches = 12 * scale
    for index in range(batches):
        batch = [build.movement() for _ in range(rng.randint(1, 6))]
        if index % 4 == 1:
            customers += 1
            batch.append(build.customer(customers))
        if index % 4 == 3:
            batch.append(build.invoice(customers))
        if index % 5 == 4:
            zreports += 1
            batch.append(build.zreport(zreports))
        rng.shuffle(batch)
        # A customer goes before its invoice within a batch (the till sends in its own order).
        batch.sort(key=lambda e: e["type"] != "till.customer.upserted")
        plan.batches.append(batch)
        actions: list[FortnoxAction] = []
        sold = (
            sorted({**WEBSHOP_ARTICLES, **STOCK_ARTICLES}) if overlap else sorted(WEBSHOP_ARTICLES)
        )
        for _ in range(rng.randint(0, 2)):
            actions.append(FortnoxAction("webshop_sale", rng.choice(sold)))
        if index % 6 == 2:
            article = rng.choice(EDITED_ARTICLES)
            actions.append(FortnoxAction("article_edit", article, f"{tenant} ändrad {index}"))
        if index % 8 == 5:
            article = rng.choice(EDITED_ARTICLES)
            actions.append(FortnoxAction("price", article, _money(Decimal(rng.randint(10, 500)))))
        if index == batches // 2:
            actions.append(FortnoxAction("article_new", f"N-{tenant}-{index}", "Ny vara"))
        if master == "fortnox" and index % 7 == 3:
            name = rng.choice(EDITED_CUSTOMERS)
            actions.append(FortnoxAction("customer_edit", name, f"Ort {index}"))
        if actions:
            plan.after[index] = actions
    return plan


def generate(
    seed: int,
    tenants: int = 3,
    scale: int = 1,
    *,
    overlap: bool = False,
    stock_mode: str = "quantity",
) -> Workload:
    """The workload of ``seed``: ``tenants`` shops (alternating till- and Fortnox-as-master).

    With ``overlap`` the webshop also sells the articles the till moves (``make chaos`` does by
    default). With ``stock_mode = "quantity"`` Kassasync's absolute stock writes then race with
    webshop sales of the same article (docs/reliability.md: a sale inside a write's window is
    lost, and reported); with ``warehouse_documents`` (Fortnox Lager, ``make chaos``'s default)
    stock moves only as documents and nothing can be lost."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    plans = []
    for index in range(tenants):
        rng = random.Random(f"{seed}:{index}")
        master = "till" if index % 2 == 0 else "fortnox"
        plans.append(_plan(f"chaos-{index + 1}", master, rng, scale, now, overlap, stock_mode))
    return Workload(seed=seed, plans=plans, overlap=overlap, stock_mode=stock_mode)
