"""A small world for the pure reconcilers: a till and a Fortnox in memory, and the messages
between them, stepped one action at a time so tests can interleave anything with anything.

It keeps the real system's one ordering promise: one tenant's Fortnox reads and writes happen in
one sequence (``seq``) and their results reach the log in that order. Everything else may
interleave: till events, Fortnox changes, ticks, command executions, outcomes and redeliveries of
any message already processed.

The Fortnox writer behaves as the architecture demands: it looks before it creates (customers by
the number Kassasync chose, orders by their external reference, vouchers by their Z-report key)
and reports "already exists" as success, so a command executed twice (a timeout after Fortnox
committed) never makes a second record. The till applies each command once (idempotency key) and
refuses nothing, so a barcode the till would have to refuse is recorded as a violation instead.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter, deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from reconcilers import stock
from reconcilers.dispatch import reconcile
from reconcilers.state import MemoryState, Note
from topics import commands as cm
from topics import fortnox as fx
from topics import outcomes as oc
from topics import till as tl
from topics.envelope import Envelope
from topics.errors import ErrorKind, shop_error
from topics.settings import TenantSettings

T0 = dt.datetime(2026, 3, 14, 9, 0, tzinfo=dt.UTC)
TENANT = "shop"
#: Every message moves the clock on a little, as real events do.
STEP = dt.timedelta(milliseconds=1)
#: A message read from Fortnox and not yet on the log: (its class, its data).
Held = tuple[type[Envelope], dict[str, Any]]


@dataclass
class FxArticle:
    number: str
    description: str
    ean: str | None = None
    qty: Decimal = Decimal(0)
    stock_goods: bool = True
    price: Decimal | None = Decimal("10.00")
    active: bool = True
    #: Prices in price lists other than "A" (list "A" uses ``price``).
    prices: dict[str, Decimal | None] = field(default_factory=dict)
    unit: str | None = None
    vat: Decimal = Decimal(25)

    def price_in(self, price_list: str) -> Decimal | None:
        if price_list in self.prices:
            return self.prices[price_list]
        return self.price if price_list == "A" else None

    def model(self, price_list: str = "A") -> fx.FortnoxArticle:
        return fx.FortnoxArticle(
            article_number=self.number,
            description=self.description,
            ean=self.ean,
            active=self.active,
            stock_goods=self.stock_goods,
            quantity_in_stock=self.qty,
            price=self.price_in(price_list),
            price_list=price_list,
            vat=self.vat,
            unit=self.unit,
        )

    def till_view(self, price_list: str) -> dict[str, Any]:
        """What the till must hold for this article when it is in the till."""
        return cm.TillArticle(
            article_number=self.number,
            description=self.description,
            ean=self.ean,
            price=self.price_in(price_list),
            vat=self.vat,
            unit=self.unit,
            stock_goods=self.stock_goods,
            active=self.active,
        ).model_dump()


@dataclass
class FullPass:
    """A full pass under way: what it has read, held until it publishes them all at its end."""

    sync_pass: str
    started_seq: int
    cursor: str = ""
    held: list[Held] = field(default_factory=list)


@dataclass
class World:
    settings: TenantSettings = field(default_factory=TenantSettings)
    state: MemoryState = field(default_factory=MemoryState)
    log: deque[Envelope] = field(default_factory=deque)
    processed: list[Envelope] = field(default_factory=list)
    fx_queue: deque[Envelope] = field(default_factory=deque)
    till_queue: deque[Envelope] = field(default_factory=deque)
    now: dt.datetime = T0
    #: Every command the reconcilers emitted, in order, and every note they wrote.
    emitted: list[Envelope] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    # Fortnox
    fx_articles: dict[str, FxArticle] = field(default_factory=dict)
    fx_customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    fx_vouchers: list[dict[str, Any]] = field(default_factory=list)
    fx_orders: dict[str, str] = field(default_factory=dict)
    fx_order_rows: list[dict[str, Any]] = field(default_factory=list)
    fx_payments: dict[str, fx.FortnoxPayment] = field(default_factory=dict)
    #: Fortnox's master data as it is now, when a test changed it since the last read
    #: (``master_data``); a refresh command reads it, and publishes it only if it changed.
    fx_master: fx.MasterData | None = None
    fx_master_read: fx.MasterData | None = None
    #: How many times a refresh command read the master data.
    fx_master_reads: int = 0
    #: Customers Kassasync created: (till id, customer number), one entry per real creation.
    fx_customer_creates: list[tuple[str, str]] = field(default_factory=list)
    fx_customer_owner: dict[str, str] = field(default_factory=dict)
    fx_customer_deletions: Counter[str] = field(default_factory=Counter)
    #: Every article Fortnox ever had, in order: (number, the article or None when deleted).
    fx_article_history: list[tuple[str, FxArticle | None]] = field(default_factory=list)
    # Till
    till_stock: dict[str, Decimal] = field(default_factory=dict)
    till_last_applied: dict[str, str] = field(default_factory=dict)
    till_articles: dict[str, dict[str, Any]] = field(default_factory=dict)
    till_customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    till_payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    till_vouchers: dict[str, dict[str, Any]] = field(default_factory=dict)
    applied_commands: set[str] = field(default_factory=set)
    barcode_violations: list[str] = field(default_factory=list)
    # Bookkeeping for assertions
    till_deltas: Decimal = Decimal(0)
    fx_deltas: Decimal = Decimal(0)
    #: Full passes under way, by resource.
    passes: dict[str, FullPass] = field(default_factory=dict)
    #: Per pass id: the records that existed in Fortnox from the pass's start to its end.
    pass_survivors: dict[str, set[str]] = field(default_factory=dict)
    _pass_gone: dict[str, set[str]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _fx_seq: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.send(oc.SettingsChanged, data={"settings": self.settings})
        self.process_all()

    # -- messages -------------------------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids)}"

    def seq(self) -> int:
        return next(self._fx_seq)

    def send(self, cls: type[Envelope], **fields: Any) -> Envelope:
        self.now += STEP
        msg = cls.model_validate(
            {"id": self._id(cls.__name__), "tenant": TENANT, "occurred_at": self.now, **fields}
        )
        self.log.append(msg)
        return msg

    def send_held(self, record: Held) -> Envelope:
        return self.send(record[0], data=record[1])

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
        self.notes.extend(decision.notes)
        for command in decision.commands:
            self.emitted.append(command)
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

    def change_settings(self, settings: TenantSettings) -> None:
        self.settings = settings
        self.send(oc.SettingsChanged, data={"settings": settings})

    def write_reports(self, kind: str, command_id: str) -> list[dict[str, Any]]:
        """The possible lost sales (``stock.OVERLAPS``) or repairs (``stock.REPAIRS``) recorded
        for the writes of ``command_id``, one per write."""
        records = list(self.state.scan(kind))
        keys = set(stock.reports_of(records, command_id))
        return [value for key, value in records if key in keys]

    def notes_named(self, event: str) -> list[Note]:
        return [n for n in self.notes if n.event == event]

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

    def till_edit_article(self, number: str, changes: dict[str, Any]) -> bool:
        """Someone edits (or creates) an article in the till. The till refuses a barcode that
        another till article has, as the real till does; returns False when refused."""
        ean = changes.get("ean")
        if ean is not None and any(
            other != number and held.get("ean") == ean for other, held in self.till_articles.items()
        ):
            return False
        current = self.till_articles.get(number) or {"article_number": number, "description": ""}
        self.till_articles[number] = {**current, **changes}
        self.send(tl.ArticleEdited, data={"article_number": number, "changes": changes})
        return True

    def till_upsert_customer(self, till_id: str, fields: dict[str, Any]) -> None:
        self.till_customers[till_id] = tl.CustomerFields.model_validate(fields).model_dump(
            mode="json"
        )
        self.send(tl.CustomerUpserted, data={"till_customer_id": till_id, "customer": fields})

    def till_delete_customer(self, till_id: str) -> None:
        self.till_customers.pop(till_id, None)
        self.send(tl.CustomerDeleted, data={"till_customer_id": till_id})

    def till_invoice(self, invoice_id: str, till_id: str, **extra: Any) -> None:
        self.send(
            tl.InvoiceCreated,
            data={
                "invoice_id": invoice_id,
                "till_customer_id": till_id,
                "invoice_date": self.now.date(),
                "rows": [
                    {
                        "description": "Kaffe",
                        "quantity": Decimal(2),
                        "unit_price": Decimal("25.00"),
                        "vat_rate": Decimal(12),
                    }
                ],
                **extra,
            },
        )

    def till_zreport(self, data: tl.ZReportData) -> None:
        self.send(tl.ZReportClosed, data=data)

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
            assert data.till_customer_id is not None
            self.till_customers[data.till_customer_id] = data.customer.model_dump(mode="json")
        elif isinstance(cmd, cm.DeleteTillCustomer):
            self.till_customers.pop(data.till_customer_id, None)
        elif isinstance(cmd, cm.RegisterTillPayment):
            self.till_payments[data.payment.number] = data.payment.model_dump(mode="json")
        elif isinstance(cmd, cm.RemoveTillPayment):
            self.till_payments.pop(data.number, None)
        elif isinstance(cmd, cm.SendTillLedgerVoucher):
            v = data.voucher
            self.till_vouchers[f"{v.year}:{v.series}:{v.number}"] = v.model_dump(mode="json")

    # -- Fortnox actions (one sequence per tenant) ----------------------------------------------

    def fortnox_sale(self, article: str, delta: Decimal) -> None:
        """A change made in Fortnox by someone else (a webshop sale, a manual edit)."""
        self.fx_articles[article].qty += delta
        self.fx_deltas += delta

    def _article_record(self, number: str, via: str, sync_pass: str | None = None) -> Held:
        price_list = self.settings.articles.price_list
        return (
            fx.FortnoxArticleChanged,
            {
                "article": self.fx_articles[number].model(price_list),
                "observed": {"via": via, "seq": self.seq(), "sync_pass": sync_pass},
            },
        )

    def poll(self, article: str) -> None:
        """Read one article. A read of an article Fortnox no longer has reports the deletion."""
        if article in self.fx_articles:
            self.send_held(self._article_record(article, "poll"))
        else:
            self.seq()
            self.send(fx.FortnoxArticleDeleted, data={"article_number": article})

    def fx_put_article(self, article: FxArticle, announce: bool = True) -> None:
        """Someone creates or edits an article in Fortnox; the feed may announce it."""
        self.fx_articles[article.number] = article
        self.fx_article_history.append((article.number, article))
        if announce:
            self.send_held(self._article_record(article.number, "feed"))

    def fx_delete_article(self, number: str, announce: bool = True) -> None:
        if number in self.fx_articles and "articles" in self._pass_gone:
            self._pass_gone["articles"].add(number)
        if number in self.fx_articles:
            self.fx_article_history.append((number, None))
        if self.fx_articles.pop(number, None) is not None and announce:
            self.seq()
            self.send(fx.FortnoxArticleDeleted, data={"article_number": number})

    def full_sync(self) -> None:
        self.pass_start("articles")
        self.pass_end("articles")

    def full_sync_customers(self) -> None:
        self.pass_start("customers")
        self.pass_end("customers")

    def _names(self, resource: str) -> list[str]:
        return sorted(self.fx_articles if resource == "articles" else self.fx_customers)

    def pass_start(self, resource: str) -> None:
        """A full pass begins: it takes an observation number, then pages through Fortnox in
        key order, reading each record as it is when its page is read (so it sees what is
        created ahead of its cursor, and misses what is deleted before the cursor reaches it).
        As the executor does, it publishes its records only at its end, together with its
        completion: what happens in Fortnox meanwhile reaches the log first."""
        if resource in self.passes:
            return
        sync_pass = self._id("pass")
        self.passes[resource] = FullPass(sync_pass, started_seq=self.seq())
        self.pass_survivors[sync_pass] = set(self._names(resource))
        self._pass_gone[resource] = set()

    def pass_step(self, resource: str) -> bool:
        """The pass reads its next record; False when it has read them all."""
        current = self.passes.get(resource)
        if current is None:
            return False
        ahead = [n for n in self._names(resource) if n > current.cursor]
        if not ahead:
            return False
        current.cursor = ahead[0]
        if resource == "articles":
            current.held.append(self._article_record(ahead[0], "full_sync", current.sync_pass))
        else:
            current.held.append(self._customer_record(ahead[0], "full_sync", current.sync_pass))
        return True

    def pass_end(self, resource: str) -> None:
        current = self.passes.get(resource)
        if current is None:
            return
        while self.pass_step(resource):
            pass
        del self.passes[resource]
        self.pass_survivors[current.sync_pass] -= self._pass_gone.pop(resource)
        for record in current.held:
            self.send_held(record)
        self.send(
            fx.FortnoxSyncCompleted,
            data={
                "resource": resource,
                "sync_pass": current.sync_pass,
                "count": len(current.held),
                "started_seq": current.started_seq,
            },
        )

    # customers

    def _customer_record(self, number: str, via: str, sync_pass: str | None = None) -> Held:
        return (
            fx.FortnoxCustomerChanged,
            {
                "customer_number": number,
                "customer": self.fx_customers[number],
                "observed": {"via": via, "seq": self.seq(), "sync_pass": sync_pass},
                # Fortnox keeps the mark of the till customer a create was for.
                "created_for": self.fx_customer_owner.get(number),
            },
        )

    def poll_customer(self, number: str) -> None:
        if number in self.fx_customers:
            self.send_held(self._customer_record(number, "poll"))

    def fx_put_customer(self, number: str, fields: dict[str, Any], announce: bool = True) -> None:
        """Someone creates or edits a customer in Fortnox."""
        self.fx_customers[number] = tl.CustomerFields.model_validate(fields).model_dump(mode="json")
        if announce:
            self.send_held(self._customer_record(number, "feed"))

    def fx_delete_customer(self, number: str, announce: bool = True) -> None:
        if number in self.fx_customers and "customers" in self._pass_gone:
            self._pass_gone["customers"].add(number)
        if self.fx_customers.pop(number, None) is None:
            return
        # Counted per till id: Kassasync's own customers by owner, imported ones as fortnox-N.
        self.fx_customer_deletions[self.fx_customer_owner.get(number, f"fortnox-{number}")] += 1
        if announce:
            self.seq()
            self.send(fx.FortnoxCustomerDeleted, data={"customer_number": number})

    # payments and vouchers

    def fx_put_payment(self, payment: fx.FortnoxPayment, announce: bool = True) -> None:
        self.fx_payments[payment.number] = payment
        if announce:
            self.poll_payment(payment.number)

    def poll_payment(self, number: str) -> None:
        if number in self.fx_payments:
            self.send(
                fx.FortnoxPaymentChanged,
                data={"payment": self.fx_payments[number], "observed": {"seq": self.seq()}},
            )

    def fx_delete_payment(self, number: str) -> None:
        if self.fx_payments.pop(number, None) is not None:
            self.seq()
            self.send(fx.FortnoxPaymentDeleted, data={"number": number})

    def fx_voucher(self, voucher: fx.FortnoxVoucher) -> None:
        self.send(
            fx.FortnoxVoucherChanged, data={"voucher": voucher, "observed": {"seq": self.seq()}}
        )

    def master_data(self, data: fx.MasterData) -> None:
        """The session's periodic read: Fortnox's master data reaches the reconcilers."""
        self.fx_master = self.fx_master_read = data
        self.send(fx.FortnoxMasterDataRefreshed, data=data)

    # -- the Fortnox writer ---------------------------------------------------------------------

    def execute_fortnox(self, mode: str = "ok") -> bool:
        """Run the next Fortnox command. ``lost``: Fortnox commits but the answer is lost, so
        the writer runs the same command again later; ``retrying``: Fortnox did not answer."""
        if not self.fx_queue:
            return False
        cmd = self.fx_queue.popleft()
        if mode == "retrying":
            self.send_outcome(cmd, "retrying", error=shop_error(ErrorKind.FORTNOX_UNAVAILABLE))
            self.fx_queue.append(cmd)
            return True
        status, result, error = self._run_fortnox(cmd)
        if mode == "lost":
            self.fx_queue.appendleft(cmd)
            return True
        self.send_outcome(cmd, status, result=result, error=error)
        return True

    def send_outcome(
        self,
        cmd: Envelope,
        status: str,
        result: dict[str, str] | None = None,
        error: Any = None,
    ) -> None:
        target = "fortnox" if cmd.TOPIC == "fortnox.commands" else "till"
        self.send(
            oc.SyncOutcome,
            data={
                "command_id": cmd.id,
                "command_type": cmd.type,  # type: ignore[attr-defined]
                "target": target,
                "status": status,
                "result": result or {},
                "error": error,
            },
        )

    def _run_fortnox(self, cmd: Envelope) -> tuple[str, dict[str, str], Any]:
        data: Any = cmd.data  # type: ignore[attr-defined]
        missing = shop_error(ErrorKind.FORTNOX_REJECTED, detail="not found")
        if isinstance(cmd, cm.ApplyFortnoxStock):
            if data.article_number not in self.fx_articles:
                return "rejected", {}, missing
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
                    "seq": self.seq(),
                },
            )
            return "done", {}, None
        if isinstance(cmd, cm.CreateFortnoxCustomer):
            number = data.customer_number
            if number in self.fx_customers:
                result = {"customer_number": number, "already": "true", "seq": str(self.seq())}
                return "done", result, None
            self.fx_customers[number] = data.customer.model_dump(mode="json")
            self.fx_customer_owner[number] = data.till_customer_id
            self.fx_customer_creates.append((data.till_customer_id, number))
            return "done", {"customer_number": number, "seq": str(self.seq())}, None
        if isinstance(cmd, cm.UpdateFortnoxCustomer):
            if data.customer_number not in self.fx_customers:
                return "rejected", {}, missing
            self.fx_customers[data.customer_number] = data.customer.model_dump(mode="json")
            return "done", {}, None
        if isinstance(cmd, cm.DeactivateFortnoxCustomer):
            if data.customer_number not in self.fx_customers:
                return "rejected", {}, missing
            self.fx_customers[data.customer_number]["active"] = False
            return "done", {}, None
        if isinstance(cmd, cm.CreateFortnoxVoucher):
            for voucher in self.fx_vouchers:
                if voucher["key"] == data.zreport_key:
                    return "done", {**voucher["result"], "already": "true"}, None
            number = len(self.fx_vouchers) + 1
            result = {"series": data.voucher.series, "number": str(number), "year": "1"}
            self.fx_vouchers.append(
                {"key": data.zreport_key, "voucher": data.voucher, "result": result}
            )
            return "done", result, None
        if isinstance(cmd, cm.CreateFortnoxOrder):
            ref = data.external_reference
            if ref in self.fx_orders:
                return "done", {"document_number": self.fx_orders[ref], "already": "true"}, None
            if data.customer_number not in self.fx_customers:
                return "rejected", {}, missing
            number = str(len(self.fx_orders) + 1)
            self.fx_orders[ref] = number
            self.fx_order_rows.append({"ref": ref, "customer": data.customer_number, "cmd": cmd})
            return "done", {"document_number": number}, None
        if isinstance(cmd, cm.RefreshFortnoxMasterData):
            # As the session does: read it, publish it only if it changed since the last read.
            self.fx_master_reads += 1
            if self.fx_master is not None and self.fx_master != self.fx_master_read:
                self.master_data(self.fx_master)
            return "done", {}, None
        raise AssertionError(f"unexpected command {cmd!r}")

    def false_missing(self, event: str, field_name: str) -> list[tuple[str, str]]:
        """(pass, record) pairs a completed pass declared missing although the record existed in
        Fortnox during the whole pass."""
        completions = {
            m.id: m.data.sync_pass  # type: ignore[attr-defined]
            for m in self.processed
            if m.type == "fortnox.sync.completed"  # type: ignore[attr-defined]
        }
        found: list[tuple[str, str]] = []
        for note in self.notes_named(event):
            sync_pass = completions.get(note.fields["message_id"])
            if sync_pass is None or not str(note.fields.get("reason", "")).startswith("missing"):
                continue
            if note.fields[field_name] in self.pass_survivors.get(sync_pass, set()):
                found.append((sync_pass, note.fields[field_name]))
        return found

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
            for number in list(self.fx_customers):
                self.poll_customer(number)
            self.process_all()
            if not moved and not self.fx_queue and not self.till_queue and not self._dirty():
                return
        raise AssertionError("the world did not settle")

    def _dirty(self) -> bool:
        return any(k == "dirty" for k, _ in self.state.records)
