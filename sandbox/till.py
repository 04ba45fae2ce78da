"""A simulated till back office: it receives Kassasync's commands like a real one would (over
HTTP, idempotent by ``Idempotency-Key``) and produces a shop's day: sales, deliveries, stock
counts, customers, invoices and Z-reports, sent to Kassasync's ingest API."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import structlog
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse

from topics import registry
from topics.commands import (
    AdjustTillStock,
    DeleteTillCustomer,
    RegisterTillPayment,
    RemoveTillArticle,
    RemoveTillPayment,
    SendTillLedgerVoucher,
    UpsertTillArticle,
    UpsertTillCustomer,
)

log = structlog.get_logger("kassasync.sim.till")


@dataclass
class TillState:
    tenant: str
    token: str
    articles: dict[str, dict[str, Any]] = field(default_factory=dict)
    stock: dict[str, Decimal] = field(default_factory=dict)
    last_applied: dict[str, str] = field(default_factory=dict)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    ledger: dict[str, dict[str, Any]] = field(default_factory=dict)
    applied: set[str] = field(default_factory=set)
    refused: int = 0

    def apply(self, command_id: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if command_id in self.applied:
            return 200, {"result": {"already": "true"}}
        command = registry.parse_obj(payload)
        data: Any = command.data  # type: ignore[attr-defined]
        if isinstance(command, UpsertTillArticle):
            article = data.article.model_dump(mode="json")
            ean = article.get("ean")
            for other, held in self.articles.items():
                if ean and other != article["article_number"] and held.get("ean") == ean:
                    self.refused += 1
                    return 409, {"error": f"barcode {ean} already belongs to article {other}"}
            self.articles[article["article_number"]] = article
            self.stock.setdefault(article["article_number"], Decimal(0))
        elif isinstance(command, RemoveTillArticle):
            self.articles.pop(data.article_number, None)
        elif isinstance(command, AdjustTillStock):
            number = data.article_number
            self.stock[number] = self.stock.get(number, Decimal(0)) + data.delta
            self.last_applied[number] = command.id
        elif isinstance(command, UpsertTillCustomer):
            self.customers[data.till_customer_id] = {
                **data.customer.model_dump(mode="json"),
                "fortnox_number": data.fortnox_customer_number,
            }
        elif isinstance(command, DeleteTillCustomer):
            self.customers.pop(data.till_customer_id, None)
        elif isinstance(command, RegisterTillPayment):
            self.payments[data.payment.number] = data.payment.model_dump(mode="json")
        elif isinstance(command, RemoveTillPayment):
            self.payments.pop(data.number, None)
        elif isinstance(command, SendTillLedgerVoucher):
            v = data.voucher
            self.ledger[f"{v.year}:{v.series}:{v.number}"] = v.model_dump(mode="json")
        else:
            return 422, {"error": f"unknown command {command.type}"}  # type: ignore[attr-defined]
        self.applied.add(command_id)
        return 200, {"result": {}}

    def snapshot(self) -> dict[str, Any]:
        return {
            "articles": self.articles,
            "stock": {k: str(v) for k, v in self.stock.items()},
            "customers": self.customers,
            "payments": self.payments,
            "ledger": sorted(self.ledger),
            "applied": len(self.applied),
            "refused": self.refused,
        }


def create_app(state: TillState) -> FastAPI:
    app = FastAPI(title="Simulated till back office")

    @app.post("/kassasync/commands")
    async def command(
        request: Request,
        idempotency_key: str = Header(alias="Idempotency-Key"),
        authorization: str | None = Header(default=None),
    ) -> JSONResponse:
        if authorization != f"Bearer {state.token}":
            return JSONResponse(status_code=401, content={"error": "wrong token"})
        status, body = state.apply(idempotency_key, await request.json())
        return JSONResponse(status_code=status, content=body)

    @app.get("/kassasync/state")
    async def snapshot() -> dict[str, Any]:
        return state.snapshot()

    return app


class TillActivity:
    """The shop's day: what a till does on its own, sent to the ingest API."""

    def __init__(
        self,
        state: TillState,
        ingest_url: str,
        api_key: str,
        http: httpx.AsyncClient,
        rng: random.Random | None = None,
        till_id: str = "K1",
    ) -> None:
        self.state = state
        self.ingest_url = ingest_url
        self.api_key = api_key
        self.http = http
        self.rng = rng or random.Random(7)
        self.till_id = till_id
        self._ids = itertools.count(1)
        self.z_number = 1
        self.sent = 0
        self.day_sales: dict[str, Decimal] = {}

    def _id(self, prefix: str) -> str:
        return f"{prefix}-{self.state.tenant}-{next(self._ids)}"

    def _event(self, type_: str, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": self._id(type_.split(".")[-1]),
            "tenant": self.state.tenant,
            "type": type_,
            "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
            "source": "till",
            "data": data,
        }

    async def send(self, events: list[dict[str, Any]]) -> None:
        """Send with retries: the till keeps an event until Kassasync has acknowledged it."""
        for attempt in range(20):
            try:
                response = await self.http.post(
                    self.ingest_url,
                    json={"events": events},
                    headers={"Authorization": f"Bearer {self.api_key}"},
                )
            except httpx.HTTPError:
                await asyncio.sleep(min(5.0, 0.2 * 2**attempt))
                continue
            if response.status_code in (200, 202):
                self.sent += len(events)
                return
            if response.status_code >= 500:
                await asyncio.sleep(min(5.0, 0.2 * 2**attempt))
                continue
            raise RuntimeError(f"ingest refused: {response.status_code} {response.text}")
        raise RuntimeError("ingest unreachable")

    def sale_event(self) -> dict[str, Any] | None:
        stock_articles = [a for a, art in self.state.articles.items() if art.get("stock_goods")]
        if not stock_articles:
            return None
        number = self.rng.choice(sorted(stock_articles))
        qty = Decimal(self.rng.choice([-1, -1, -2, -1, 3]))
        self.state.stock[number] = self.state.stock.get(number, Decimal(0)) + qty
        art = self.state.articles[number]
        if qty < 0 and art.get("price"):
            self.day_sales[str(art.get("vat") or 25)] = (
                self.day_sales.get(str(art.get("vat") or 25), Decimal(0))
                + Decimal(str(art["price"])) * -qty
            )
        return self._event(
            "till.stock.movement",
            {
                "article_number": number,
                "movement_id": self._id("mv"),
                "delta": str(qty),
                "reason": "sale" if qty < 0 else "delivery",
            },
        )

    def customer_event(self) -> dict[str, Any]:
        n = next(self._ids)
        till_id = f"C{n}"
        customer = {"name": f"Kund {n}", "city": "Växjö", "email": f"kund{n}@example.se"}
        self.state.customers[till_id] = {**customer, "type": "PRIVATE", "active": True}
        return self._event(
            "till.customer.upserted", {"till_customer_id": till_id, "customer": customer}
        )

    def zreport_event(self) -> dict[str, Any]:
        vat_lines = []
        total_gross = Decimal(0)
        for rate_text, gross in sorted(self.day_sales.items()):
            rate = Decimal(rate_text)
            net = (gross / (1 + rate / 100)).quantize(Decimal("0.01"))
            vat = gross - net
            total_gross += gross
            vat_lines.append(
                {
                    "rate": rate_text,
                    "sales_net": str(net),
                    "sales_vat": str(vat.quantize(Decimal("0.01"))),
                }
            )
        card = (total_gross * Decimal("0.7")).quantize(Decimal("0.01"))
        cash = total_gross - card
        event = self._event(
            "till.zreport.closed",
            {
                "z_number": self.z_number,
                "till_id": self.till_id,
                "location_code": "100",
                "business_date": dt.date.today().isoformat(),
                "vat": vat_lines,
                "payments": [
                    {"method": "card", "amount": str(card)},
                    {"method": "cash", "amount": str(cash)},
                ],
            },
        )
        self.z_number += 1
        self.day_sales = {}
        return event

    async def run(self, stop: asyncio.Event, rate: float = 5.0, z_every: float = 20.0) -> None:
        """Sell at about ``rate`` events per second; add a customer now and then; close a day
        every ``z_every`` seconds."""
        loop = asyncio.get_running_loop()
        next_z = loop.time() + z_every
        while not stop.is_set():
            batch: list[dict[str, Any]] = []
            for _ in range(max(1, int(rate / 2))):
                event = self.sale_event()
                if event is not None:
                    batch.append(event)
            if self.rng.random() < 0.1:
                batch.append(self.customer_event())
            if loop.time() >= next_z and self.day_sales:
                batch.append(self.zreport_event())
                next_z = loop.time() + z_every
            if batch:
                await self.send(batch)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.5)
