"""A small world for the pure reconcilers: a till and a Fortnox in memory, and the messages
between them, stepped one action at a time so tests can interleave anything with anything.

It keeps the real system's one ordering promise: one tenant's Fortnox reads and writes happen in
one sequence and their results reach the log in that order.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from reconcilers.dispatch import reconcile
from reconcilers.state import MemoryState
from topics import commands as cm
from topics import fortnox as fx
from topics import outcomes as oc
from topics import till as tl
from topics.envelope import Envelope
from topics.settings import TenantSettings

T0 = dt.datetime(2026, 3, 14, 9, 0, tzinfo=dt.UTC)
TENANT = "shop"


@dataclass
class FxArticle:
    number: str
    description: str
    ean: str | None = None
    qty: Decimal = Decimal(0)
    stock_goods: bool = True
    price: Decimal | None = Decimal("10.00")
    active: bool = True

    def model(self) -> fx.FortnoxArticle:
        return fx.FortnoxArticle(
            article_number=self.number,
            description=self.description,
            ean=self.ean,
            active=self.active,
            stock_goods=self.stock_goods,
            quantity_in_stock=self.qty,
            price=self.price,
            price_list="A",
            vat=Decimal(25),
        )


@dataclass
class World:
    settings: TenantSettings = field(default_factory=TenantSettings)
    state: MemoryState = field(default_factory=MemoryState)
    log: deque[Envelope] = field(default_factory=deque)
    processed: list[Envelope] = field(default_factory=list)
    fx_queue: deque[Envelope] = field(default_factory=deque)
    till_queue: deque[Envelope] = field(default_factory=deque)
    now: dt.datetime = T0
    # Fortnox
    fx_articles: dict[str, FxArticle] = field(default_factory=dict)
    fx_customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    fx_vouchers: list[dict[str, Any]] = field(default_factory=list)
    fx_orders: dict[str, str] = field(default_factory=dict)
    # Till
    till_stock: dict[str, Decimal] = field(default_factory=dict)
    till_last_applied: dict[str, str] = field(default_factory=dict)
    till_articles: dict[str, dict[str, Any]] = field(default_factory=dict)
    till_customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    till_payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    applied_commands: set[str] = field(default_factory=set)
    barcode_violations: list[str] = field(default_factory=list)
    # Bookkeeping for assertions
    till_deltas: Decimal = Decimal(0)
    fx_deltas: Decimal = Decimal(0)
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _fx_seq: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.send(oc.SettingsChanged, data={"settings": self.settings})
        self.process_all()

    # -- messages -------------------------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids)}"

    def send(self, cls: type[Envelope], **fields: Any) -> Envelope:
        msg = cls.model_validate(
            {"id": self._id(cls.__name__), "tenant": TENANT, "occurred_at": self.now, **fields}
        )
        self.log.append(msg)
        return msg

    def process_one(self) -> bool:
        if not self.log:
            return False
        msg = self.log.popleft()
        self.handle(msg)
        return True

    def handle(self, msg: Envelope) -> None:
        decision = reconcile(self.state, msg)
        self.state.apply(decision)
        self.processed.append(msg)
        for command in decision.commands:
            (self.fx_queue if command.TOPIC == "fortnox.commands" else self.till_queue).append(
                command
            )

    def redeliver(self, index: int) -> None:
        if self.processed:
            self.handle(self.processed[index % len(self.processed)])

    def process_all(self) -> None:
        while self.process_one():
            pass

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)

    def tick(self) -> None:
        self.send(oc.Tick)

    # -- till actions ---------------------------------------------------------------------------

    def till_sale(self, article: str, delta: Decimal) -> None:
        self.till_stock[article] = self.till_stock.get(article, Decimal(0)) + delta
        self.till_deltas += delta
        self.send(
            tl.StockMovement,
            data={
                "article_number": article,
                "movement_id": self._id("mv"),
                "delta": delta,
                "reason": "sale" if delta < 0 else "delivery",
            },
        )

    def till_count(self, article: str, corrected: Decimal) -> None:
        """Someone counts the shelf and finds ``corrected`` more (or fewer) than the till had."""
        level = self.till_stock.get(article, Decimal(0)) + corrected
        self.till_stock[article] = level
        self.till_deltas += corrected
        self.send(
            tl.StockCounted,
            data={
                "article_number": article,
                "count_id": self._id("count"),
                "quantity": level,
                "last_applied_command_id": self.till_last_applied.get(article),
            },
        )

    def deliver_till(self) -> bool:
        if not self.till_queue:
            return False
        cmd = self.till_queue.popleft()
        self._apply_till(cmd)
        self.send(
            oc.SyncOutcome,
            data={
                "command_id": cmd.id,
                "command_type": cmd.type,  # type: ignore[attr-defined]
                "target": "till",
                "status": "done",
            },
        )
        return True

    def _apply_till(self, cmd: Envelope) -> None:
        if cmd.id in self.applied_commands:
            return
        self.applied_commands.add(cmd.id)
        data: Any = cmd.data  # type: ignore[attr-defined]
        if isinstance(cmd, cm.AdjustTillStock):
            self.till_stock[data.article_number] = (
                self.till_stock.get(data.article_number, Decimal(0)) + data.delta
            )
            self.till_last_applied[data.article_number] = cmd.id
        elif isinstance(cmd, cm.UpsertTillArticle):
            article = data.article.model_dump()
            ean = article.get("ean")
            if ean:
                for other, held in self.till_articles.items():
                    if other != article["article_number"] and held.get("ean") == ean:
                        self.barcode_violations.append(f"{article['article_number']}~{other}:{ean}")
            self.till_articles[article["article_number"]] = article
        elif isinstance(cmd, cm.RemoveTillArticle):
            self.till_articles.pop(data.article_number, None)
        elif isinstance(cmd, cm.UpsertTillCustomer):
            self.till_customers[data.till_customer_id] = data.customer.model_dump(mode="json")
        elif isinstance(cmd, cm.DeleteTillCustomer):
            self.till_customers.pop(data.till_customer_id, None)
        elif isinstance(cmd, cm.RegisterTillPayment):
            self.till_payments[data.payment.number] = data.payment.model_dump(mode="json")
        elif isinstance(cmd, cm.RemoveTillPayment):
            self.till_payments.pop(data.number, None)

    # -- Fortnox actions (one sequence per tenant) ----------------------------------------------

    def fortnox_sale(self, article: str, delta: Decimal) -> None:
        """A change made in Fortnox by someone else (a webshop sale, a manual edit)."""
        self.fx_articles[article].qty += delta
        self.fx_deltas += delta

    def poll(self, article: str) -> None:
        self.send(
            fx.FortnoxArticleChanged,
            data={
                "article": self.fx_articles[article].model(),
                "observed": {"via": "poll", "seq": next(self._fx_seq)},
            },
        )

    def full_sync(self) -> None:
        sync_pass = self._id("pass")
        for art in list(self.fx_articles.values()):
            self.send(
                fx.FortnoxArticleChanged,
                data={
                    "article": art.model(),
                    "observed": {
                        "via": "full_sync",
                        "sync_pass": sync_pass,
                        "seq": next(self._fx_seq),
                    },
                },
            )
        self.send(
            fx.FortnoxSyncCompleted,
            data={"resource": "articles", "sync_pass": sync_pass, "count": len(self.fx_articles)},
        )

    def execute_fortnox(self) -> bool:
        if not self.fx_queue:
            return False
        cmd = self.fx_queue.popleft()
        data: Any = cmd.data  # type: ignore[attr-defined]
        result: dict[str, str] = {}
        if isinstance(cmd, cm.ApplyFortnoxStock):
            art = self.fx_articles[data.article_number]
            read = art.qty
            art.qty = read + data.delta
            self.send(
                fx.FortnoxStockWritten,
                data={
                    "article_number": data.article_number,
                    "command_id": cmd.id,
                    "read": read,
                    "written": art.qty,
                    "seq": next(self._fx_seq),
                },
            )
        elif isinstance(cmd, cm.CreateFortnoxCustomer):
            self.fx_customers[data.customer_number] = data.customer.model_dump(mode="json")
            result = {"customer_number": data.customer_number}
        elif isinstance(cmd, cm.UpdateFortnoxCustomer):
            self.fx_customers[data.customer_number] = data.customer.model_dump(mode="json")
        elif isinstance(cmd, cm.DeactivateFortnoxCustomer):
            self.fx_customers[data.customer_number]["active"] = False
        elif isinstance(cmd, cm.CreateFortnoxVoucher):
            number = len(self.fx_vouchers) + 1
            self.fx_vouchers.append(
                {"key": data.zreport_key, "voucher": data.voucher, "number": number}
            )
            result = {"series": data.voucher.series, "number": str(number), "year": "1"}
        elif isinstance(cmd, cm.CreateFortnoxOrder):
            number = str(len(self.fx_orders) + 1)
            self.fx_orders[data.external_reference] = number
            result = {"document_number": number}
        self.send(
            oc.SyncOutcome,
            data={
                "command_id": cmd.id,
                "command_type": cmd.type,  # type: ignore[attr-defined]
                "target": "fortnox",
                "status": "done",
                "result": result,
            },
        )
        return True

    # -- quiescence -----------------------------------------------------------------------------

    def quiesce(self, rounds: int = 50) -> None:
        """Let everything settle: process, flush, execute, poll, until nothing moves."""
        for _ in range(rounds):
            self.process_all()
            self.advance(60)
            self.tick()
            self.process_all()
            moved = False
            while self.execute_fortnox() or self.deliver_till():
                moved = True
                self.process_all()
            for number in list(self.fx_articles):
                self.poll(number)
            self.process_all()
            if not moved and not self.fx_queue and not self.till_queue and not self._dirty():
                return
        raise AssertionError("the world did not settle")

    def _dirty(self) -> bool:
        return any(k == "dirty" for k, _ in self.state.records)
