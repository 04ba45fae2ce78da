"""Deterministic message generator: many tenants' till events and Fortnox changes, as the JSON
the engine writes to its log (``registry.dump`` of each message).

One tenant's stream (``TenantPlan``, 5,000 messages by default) is what a shop's log holds after
its first day: the operator's settings, Fortnox's master data, the first full pass over articles
and customers, then a day of till sales (stock movements), a few till customers, article edits,
invoices and Z-reports, Fortnox edits picked up by polls, and the scheduler's ticks that flush
the windows. Tenants are interleaved in arrival order (one global clock), as on a real log.

Payloads are built as dicts and serialised with :mod:`json` (building 1,000,000 pydantic models
would take longer than the benchmark); :func:`self_check` proves that every kind of payload is
exactly what ``registry.dump(registry.parse(payload))`` gives.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from topics import registry
from topics.settings import TenantSettings

START = dt.datetime(2026, 11, 20, 7, 0, tzinfo=dt.UTC)

_SETTINGS: dict[str, Any] = {
    "customers": {"master": "fortnox"},
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
        },
    },
    "invoices": {"enabled": True},
    "payments": {"enabled": True},
    "flush_window_seconds": "2",
}
#: The settings every generated tenant gets, in the form the log holds them (defaults spelled).
SETTINGS: dict[str, Any] = TenantSettings.model_validate(_SETTINGS).model_dump(mode="json")


@dataclass(frozen=True)
class TenantPlan:
    """How many messages of each kind one tenant's stream holds (sums to ``total``)."""

    articles: int = 800
    customers: int = 150
    polls: int = 400
    till_customers: int = 40
    edits: int = 10
    invoices: int = 8
    zreports: int = 2
    ticks: int = 150
    movements: int = 3435

    @property
    def total(self) -> int:
        # settings + master data + two sync completions
        fixed = 4
        return (
            fixed
            + self.articles
            + self.customers
            + self.polls
            + self.till_customers
            + self.edits
            + self.invoices
            + self.zreports
            + self.ticks
            + self.movements
        )

    def scaled(self, total: int) -> TenantPlan:
        """The same mix for a stream of about ``total`` messages (movements take the rest)."""
        f = total / self.total
        base = TenantPlan(
            articles=max(1, round(self.articles * f)),
            customers=max(1, round(self.customers * f)),
            polls=round(self.polls * f),
            till_customers=max(1, round(self.till_customers * f)),
            edits=round(self.edits * f),
            invoices=round(self.invoices * f),
            zreports=max(1, round(self.zreports * f)),
            ticks=max(1, round(self.ticks * f)),
            movements=0,
        )
        return TenantPlan(
            **{**base.__dict__, "movements": max(0, total - base.total)},
        )


def tenant_id(i: int) -> str:
    return f"t{i:05d}"


def _ts(moment: dt.datetime) -> str:
    """As pydantic writes an aware UTC datetime."""
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _ean(tenant: int, article: int) -> str:
    body = f"73{tenant % 1000:03d}{article:07d}"
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


def envelope(
    msg_id: str, tenant: str, at: dt.datetime, source: str, type_: str, data: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": msg_id,
        "tenant": tenant,
        "version": 1,
        "occurred_at": _ts(at),
        "source": source,
        "type": type_,
        "data": data,
    }


def _article(tenant: int, n: int, rng: random.Random, price_cents: int) -> dict[str, Any]:
    stock_goods = n % 5 != 0
    return {
        "article_number": f"A{n:06d}",
        "description": f"Artikel {n} {'röd' if n % 2 else 'blå'}",
        "ean": _ean(tenant, n),
        "active": True,
        "stock_goods": stock_goods,
        "quantity_in_stock": str(rng.randint(0, 200)) if stock_goods else "0",
        "unit": "st",
        "vat": "25",
        "price": f"{price_cents // 100}.{price_cents % 100:02d}",
        "price_list": "A",
    }


def _customer(n: int) -> dict[str, Any]:
    return {
        "name": f"Kund {n} AB",
        "organisation_number": f"55{n:04d}-{n % 10000:04d}",
        "email": f"kund{n}@example.se",
        "phone": f"0470-{n:06d}",
        "address1": f"Storgatan {n % 90 + 1}",
        "address2": None,
        "zip_code": "352 30",
        "city": "Växjö",
        "country_code": "SE",
        "type": "COMPANY",
        "active": True,
    }


class TenantStream:
    """One tenant's messages, in order; ``next(at)`` gives the next payload stamped ``at``."""

    def __init__(self, index: int, plan: TenantPlan, seed: int = 7) -> None:
        self.index = index
        self.tenant = tenant_id(index)
        self.plan = plan
        self.rng = random.Random(seed * 1_000_003 + index)
        self.seq = 0
        self._n = 0
        self.prices = {n: self.rng.randint(1000, 99900) for n in range(1, plan.articles + 1)}
        self._gen = self._messages()

    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}-{self.tenant}-{self._n}"

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def _day(self) -> list[str]:
        """The order of the day's messages after the full passes (shuffled, seeded)."""
        p = self.plan
        kinds = (
            ["mv"] * p.movements
            + ["poll"] * p.polls
            + ["cust"] * p.till_customers
            + ["edit"] * p.edits
            + ["inv"] * p.invoices
            + ["tick"] * p.ticks
        )
        self.rng.shuffle(kinds)
        # Z-reports close the day: spread them over the last part of the stream.
        for i in range(p.zreports):
            kinds.insert(len(kinds) - (p.zreports - i) * max(1, len(kinds) // 20), "z")
        return kinds

    def _messages(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(kind, partial message) pairs; ``occurred_at`` is stamped by ``next``."""
        p, rng = self.plan, self.rng
        yield "control", {"type": "sync.settings.changed", "data": {"settings": SETTINGS}}
        yield "fx", {"type": "fortnox.masterdata.refreshed", "data": _master_data()}
        sync_pass = f"articles-{self.index:06x}"
        for n in range(1, p.articles + 1):
            yield "fx", self._fx_article(n, "full_sync", sync_pass)
        yield "fx", _completed("articles", sync_pass, p.articles)
        cust_pass = f"customers-{self.index:06x}"
        for n in range(1, p.customers + 1):
            yield "fx", self._fx_customer(n, "full_sync", cust_pass)
        yield "fx", _completed("customers", cust_pass, p.customers)
        stock_articles = [n for n in range(1, p.articles + 1) if n % 5 != 0] or [1]
        till_customers: list[str] = []
        z_number = 0
        for kind in self._day():
            if kind == "mv":
                n = rng.choice(stock_articles)
                delta = rng.choice(("-1", "-1", "-2", "-1", "3", "-0.5"))
                yield (
                    "till",
                    {
                        "type": "till.stock.movement",
                        "data": {
                            "article_number": f"A{n:06d}",
                            "movement_id": self._id("mv"),
                            "delta": delta,
                            "reason": "sale" if delta.startswith("-") else "delivery",
                        },
                    },
                )
            elif kind == "poll":
                n = rng.randint(1, p.articles)
                self.prices[n] += rng.choice((-100, 100, 500))
                self.prices[n] = max(100, self.prices[n])
                yield "fx", self._fx_article(n, "poll", None)
            elif kind == "cust":
                till_id = f"C{len(till_customers) + 1}"
                till_customers.append(till_id)
                fields = _customer(10_000 + len(till_customers))
                yield (
                    "till",
                    {
                        "type": "till.customer.upserted",
                        "data": {"till_customer_id": till_id, "customer": fields},
                    },
                )
            elif kind == "edit":
                n = rng.randint(1, p.articles)
                yield (
                    "till",
                    {
                        "type": "till.article.edited",
                        "data": {
                            "article_number": f"A{n:06d}",
                            "changes": {
                                "description": f"Ändrad {n}",
                                "ean": None,
                                "price": "10.00",
                                "vat": None,
                                "unit": None,
                            },
                        },
                    },
                )
            elif kind == "inv":
                who = rng.choice(till_customers) if till_customers else "C0"
                yield "till", self._invoice(who)
            elif kind == "z":
                z_number += 1
                yield "till", _zreport(z_number)
            else:
                yield "control", {"type": "sync.tick", "data": {}}

    def _fx_article(self, n: int, via: str, sync_pass: str | None) -> dict[str, Any]:
        return {
            "type": "fortnox.article.changed",
            "data": {
                "article": _article(self.index, n, self.rng, self.prices[n]),
                "observed": {"via": via, "seq": self._next_seq(), "sync_pass": sync_pass},
            },
        }

    def _fx_customer(self, n: int, via: str, sync_pass: str | None) -> dict[str, Any]:
        return {
            "type": "fortnox.customer.changed",
            "data": {
                "customer_number": str(n),
                "customer": _customer(n),
                "observed": {"via": via, "seq": self._next_seq(), "sync_pass": sync_pass},
            },
        }

    def _invoice(self, till_customer: str) -> dict[str, Any]:
        rows = [
            {
                "article_number": f"A{self.rng.randint(1, self.plan.articles):06d}",
                "description": "Vara",
                "quantity": str(self.rng.randint(1, 5)),
                "unit_price": "100.00",
                "vat_rate": "25",
                "discount_percent": "0",
            }
            for _ in range(3)
        ]
        return {
            "type": "till.invoice.created",
            "data": {
                "invoice_id": self._id("inv"),
                "till_customer_id": till_customer,
                "invoice_date": "2026-11-20",
                "due_date": None,
                "currency": "SEK",
                "terms_of_payment": None,
                "your_reference": None,
                "remarks": None,
                "rows": rows,
            },
        }

    def next(self, at: dt.datetime) -> tuple[str, bytes] | None:
        """The next payload (topic, JSON bytes), or None when the stream is done."""
        try:
            kind, partial = next(self._gen)
        except StopIteration:
            return None
        source = {"till": "till", "fx": "fortnox", "control": ""}[kind]
        type_ = partial["type"]
        if kind == "control":
            source = "operator" if type_ == "sync.settings.changed" else "kassasync"
        topic = {"till": "till.events", "fx": "fortnox.changes", "control": "sync.control"}[kind]
        prefix = type_.rsplit(".", 1)[-1]
        msg = envelope(self._id(prefix), self.tenant, at, source, type_, partial["data"])
        return topic, json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode()


def _completed(resource: str, sync_pass: str, count: int) -> dict[str, Any]:
    return {
        "type": "fortnox.sync.completed",
        "data": {"resource": resource, "sync_pass": sync_pass, "count": count},
    }


def _master_data() -> dict[str, Any]:
    accounts = [1580, 1910, 1930, 2611, 2621, 2631, 2890, 3001, 3002, 3003, 3004, 3740]
    return {
        "years": [
            {
                "year": {"id": 2, "from_date": "2026-01-01", "to_date": "2026-12-31"},
                "accounts": [
                    {"number": a, "active": True, "cost_center_settings": "ALLOWED"}
                    for a in accounts
                ],
                "series": [{"code": "A", "manual": True}, {"code": "F", "manual": True}],
            }
        ],
        "cost_centers": [{"code": "100", "active": True}],
        "locked_until": None,
        "terms_of_payment": ["0", "10", "30"],
        "warehouse_active": False,
    }


def _zreport(z_number: int) -> dict[str, Any]:
    return {
        "type": "till.zreport.closed",
        "data": {
            "z_number": z_number,
            "till_id": "K1",
            "location_code": None,
            "business_date": f"2026-11-{19 + z_number:02d}",
            "currency": "SEK",
            "vat": [
                {
                    "rate": "25",
                    "sales_net": "8000.00",
                    "sales_vat": "2000.00",
                    "returns_net": "0",
                    "returns_vat": "0",
                }
            ],
            "payments": [
                {"method": "card", "amount": "7000.00"},
                {"method": "cash", "amount": "3000.00"},
            ],
            "product_groups": [],
            "tips": "0",
            "rounding": "0",
            "gift_cards_sold": "0",
            "receipts": 120,
            "grand_total_net": None,
        },
    }


def generate(
    tenants: int, per_tenant: int, *, step_ms: float = 20.0, seed: int = 7
) -> Iterator[tuple[str, str, bytes]]:
    """(topic, tenant, payload) for ``tenants`` × about ``per_tenant`` messages, interleaved.

    Tenants start their streams staggered and then advance at random, so at any moment some
    tenants are in their first full pass while others are selling; the global clock advances
    ``step_ms`` per message.
    """
    plan = TenantPlan().scaled(per_tenant)
    rng = random.Random(seed)
    streams = [TenantStream(i, plan, seed) for i in range(tenants)]
    live = list(range(tenants))
    clock = START
    step = dt.timedelta(milliseconds=step_ms)
    while live:
        slot = rng.randrange(len(live))
        stream = streams[live[slot]]
        item = stream.next(clock)
        if item is None:
            live[slot] = live[-1]
            live.pop()
            continue
        clock += step
        yield item[0], stream.tenant, item[1]


def self_check(samples: int = 3000) -> dict[str, int]:
    """Every generated payload kind equals ``registry.dump(registry.parse(payload))``."""
    kinds: dict[str, int] = {}
    for _topic, _tenant, payload in generate(2, samples // 2):
        message = registry.parse(payload)
        again = json.loads(registry.dump(message))
        original = json.loads(payload)
        if again != original:
            raise AssertionError(f"generated payload differs from its dump:\n{original}\n{again}")
        type_ = str(original["type"])
        kinds[type_] = kinds.get(type_, 0) + 1
    return kinds


if __name__ == "__main__":
    print(self_check())
