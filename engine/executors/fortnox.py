"""One Fortnox session per tenant: executes the tenant's Fortnox commands and polls its changes,
in ONE sequence, so the order facts reach the log is the order they happened at Fortnox.

Writes look before they create (guarantee 2): customers are created under a number Kassasync
chose and recognises (ExternalReference), orders are found by their exact external reference
first, a voucher whose outcome is unknown is searched for in its series before any retry, and a
stock write records its intent before it leaves so a lost answer is read back, not repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import math
import random
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import structlog
from pydantic import ValidationError

from engine.clock import utcnow
from engine.executors.breaker import Breaker
from engine.executors.ports import CursorUpdate, ExecutorPorts
from engine.fortnox.api import FortnoxApi
from engine.fortnox.errors import (
    AuthError,
    FortnoxApiError,
    FortnoxError,
    FortnoxUnavailable,
    LicenceOrScopeMissing,
    LoginExpired,
    NotFound,
    Stopping,
    UnknownOutcome,
    WarehouseModuleActive,
)
from engine.fortnox.models import (
    Article,
    Customer,
    FortnoxModel,
    InvoicePayment,
    Order,
    OrderRow,
    Voucher,
    VoucherRow,
)
from engine.fortnox.paging import iterate_raw
from engine.fortnox.polling import Change, LastModifiedPoller, PollCursor
from engine.fortnox.resources.base import seg
from engine.fortnox.stock import (
    Landed,
    OverlapWatch,
    Segment,
    StockIntent,
    Suspect,
    Unestablished,
    Watch,
    overwritten,
    overwritten_sales,
    settle_intent,
)
from engine.store.outbox import Pending
from topics import commands as cm
from topics import fortnox as fx
from topics.envelope import Envelope
from topics.errors import ErrorKind, ShopError, shop_error
from topics.outcomes import OutcomeStatus
from topics.registry import Packed, pack
from topics.settings import StockMode, TenantSettings
from topics.till import CustomerFields

log = structlog.get_logger("kassasync.fortnox.session")

#: Per polled resource, (the wrapper of one record, a field only the whole record has): a list
#: item without that field is a subset and the record is fetched whole.
WHOLE_ONLY: dict[str, tuple[str, str]] = {
    "articles": ("Article", "StockGoods"),
    "customers": ("Customer", "Type"),
}


class WholeCustomers:
    """The fields Kassasync reads of each customer fetched whole, by a digest of its list item,
    so that a full pass fetches again only customers whose list item changed (a 1,000-customer
    register cost 1,000 GETs per pass: 1.25× the day's lower bound of calls). A change of a field
    outside the list view moves the customer's ``lastmodified``: the incremental poll lists it
    and fetches it whole, or, when its list item is the one the last poll saw (two edits inside
    the poll's overlap), forgets it so that the next full pass fetches it. Bounded: the oldest
    entries go."""

    #: What ``customer_fields`` and the mark of a till customer read from a whole customer.
    FIELDS = (
        "Name",
        "OrganisationNumber",
        "Email",
        "Phone1",
        "Phone",
        "Address1",
        "Address2",
        "ZipCode",
        "City",
        "CountryCode",
        "Type",
        "Active",
        "ExternalReference",
    )

    def __init__(self, limit: int = 20_000) -> None:
        self.limit = limit
        self._known: dict[str, tuple[bytes, dict[str, Any]]] = {}

    @staticmethod
    def _digest(item: dict[str, Any]) -> bytes:
        text = json.dumps(item, sort_keys=True, default=str).encode()
        return hashlib.blake2b(text, digest_size=12).digest()

    def get(self, key: str, item: dict[str, Any]) -> dict[str, Any] | None:
        known = self._known.get(key)
        return known[1] if known is not None and known[0] == self._digest(item) else None

    def forget(self, key: str) -> None:
        """The customer was listed again unchanged (its list item): it may have changed outside
        the list view, so the next full pass fetches it whole again."""
        self._known.pop(key, None)

    def put(self, key: str, item: dict[str, Any], whole: dict[str, Any]) -> None:
        self._known.pop(key, None)
        self._known[key] = (self._digest(item), {f: whole[f] for f in self.FIELDS if f in whole})
        while len(self._known) > self.limit:
            del self._known[next(iter(self._known))]


#: Reads and writes one stock command may take in one execution before it is retried later.
STOCK_WRITE_TRIES = 3
OVERLAP = dt.timedelta(minutes=2)
_MODELS: dict[str, type[FortnoxModel]] = {
    "articles": Article,
    "customers": Customer,
    "payments": InvoicePayment,
}


@dataclass(frozen=True)
class SessionTiming:
    poll_seconds: float = 30.0
    masterdata_seconds: float = 300.0
    full_sync_seconds: float = 6 * 3600.0
    idle_seconds: float = 0.25
    #: While Fortnox's topics feed is live for the tenant, changes are announced: the periodic
    #: poll and master-data refresh are only safety nets. Accounts, voucher series and the
    #: locked period have no feed topic, so the master data is still re-read every 15 minutes
    #: (financial years, cost centres and terms of payment are refreshed when announced).
    feed_poll_seconds: float = 900.0
    feed_masterdata_seconds: float = 900.0
    #: After a write, the first event per topic for that entity within ``echo_seconds`` is
    #: taken for the write's echo (a stock write announces the article and its stock balance);
    #: any further event is someone else's change and is polled for.
    echo_seconds: float = 30.0


#: Which poll a feed topic asks for (None: the master data); topics not listed need none.
FEED_TOPICS: dict[str, str | None] = {
    "articles": "articles",
    "warehouse-stockbalances": "articles",
    "customers": "customers",
    "invoices": "payments",
    "financial-years": None,
    "cost-centers": None,
    "termsofpayments": None,
}
RESOURCES = ("articles", "customers", "payments")
#: The feed's event for a new invoice (its entity is the invoice's DocumentNumber).
INVOICE_CREATED = "invoice-created-v1"


def _clean(value: Any) -> Any:
    return None if value in ("", None) else value


def customer_fields(raw: dict[str, Any]) -> CustomerFields:
    """Fortnox's customer as the contract's fields; fields Fortnox holds that the contract
    cannot (an email without '@', say) are left out rather than losing the whole customer."""
    data = {
        "name": raw.get("Name") or raw.get("CustomerNumber") or "?",
        "organisation_number": _clean(raw.get("OrganisationNumber")),
        "email": _clean(raw.get("Email")),
        "phone": _clean(raw.get("Phone1") or raw.get("Phone")),
        "address1": _clean(raw.get("Address1")),
        "address2": _clean(raw.get("Address2")),
        "zip_code": _clean(raw.get("ZipCode")),
        "city": _clean(raw.get("City")),
        "country_code": _clean(raw.get("CountryCode")),
        "type": raw.get("Type") or "PRIVATE",
        "active": raw.get("Active", True) not in (False, "false"),
    }
    try:
        return CustomerFields.model_validate(data)
    except ValidationError as invalid:
        for item in invalid.errors():
            if item["loc"] and item["loc"][0] in data and item["loc"][0] != "name":
                data[str(item["loc"][0])] = None
        return CustomerFields.model_validate(data)


def fortnox_article(
    raw: dict[str, Any], price_list: str, price: Decimal | None
) -> fx.FortnoxArticle:
    """Fortnox's article as the change record: read with the tolerant model (``"1 234,5"``,
    ``"25"``, blanks), text kept as Fortnox has it; the till's rules are the reconciler's."""
    article = Article.model_validate(raw)
    return fx.FortnoxArticle.model_validate(
        {
            "article_number": article.article_number or raw.get("ArticleNumber"),
            "description": (article.description or "")[:1000],
            "ean": article.ean,
            "active": article.active is not False,
            "stock_goods": article.stock_goods is True,
            "quantity_in_stock": article.quantity_in_stock or 0,
            "unit": article.unit,
            "vat": article.vat,
            "price": None if price is None else Decimal(str(price)).quantize(Decimal("0.01")),
            "price_list": price_list,
        }
    )


def fortnox_payment(number: str, raw: dict[str, Any]) -> fx.FortnoxPayment:
    """Fortnox's invoice payment as the change record, read with the tolerant model."""
    payment = InvoicePayment.model_validate(raw)
    if payment.payment_date is None:
        raise ValueError("the payment has no PaymentDate")
    return fx.FortnoxPayment(
        number=number,
        invoice_number=payment.invoice_number or 0,
        amount=_money(payment.amount) or Decimal("0.00"),
        amount_currency=_money(payment.amount_currency),
        currency=(payment.currency or "SEK").upper(),
        currency_rate=_positive(payment.currency_rate),
        currency_unit=_positive(payment.currency_unit),
        payment_date=payment.payment_date,
        booked=payment.booked is True,
    )


#: What turning one Fortnox record into a change record can raise (ValidationError is a
#: ValueError; decimal's InvalidOperation an ArithmeticError): the record is then reported as
#: unreadable, never an error of the poll.
UNREADABLE = (ValueError, TypeError, KeyError, ArithmeticError)


def printable_key(key: str) -> str:
    """A record key fit for message ids and reports: control characters escaped, bounded."""
    text = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in key)
    return text[:100] or "?"


def _fingerprint(obj: Any) -> str:
    raw = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.blake2b(raw, digest_size=10).hexdigest()


#: How long a stopping runtime waits for its sessions (each finishing the feed watch of its last
#: stock writes, :meth:`FortnoxSession.finish_watches`) before it stops the feed.
WATCH_FINISH_SECONDS = 10.0
#: At a stop, how long a session waits for the answer to a request already on the wire before
#: it leaves its work in hand to the next start (waiting for the rate limiter or a retry's
#: backoff ends at once).
STOP_GRACE_SECONDS = 2.0


class FortnoxSession:
    def __init__(
        self,
        tenant: str,
        api: FortnoxApi,
        edge: ExecutorPorts,
        settings: Callable[[], TenantSettings],
        timing: SessionTiming | None = None,
    ) -> None:
        self.tenant = tenant
        self.api = api
        self.edge = edge
        self.settings = settings
        self.timing = timing or SessionTiming()
        self.wakeup = asyncio.Event()
        #: Whether Fortnox's topics feed is live for this tenant (set by the runtime).
        self.feed_live: Callable[[], bool] = lambda: False
        self._requested: set[str] = set()
        self._masterdata_requested = False
        self._polled_at = -math.inf
        self._masterdata_at = -math.inf
        #: (feed topic, entity) -> until when each expected echo of our own writes may come.
        self._echoes: dict[tuple[str, str], list[float]] = {}
        self._backoff = 1.0
        #: Resources whose full pass of this session's life is done (the first poll of each is
        #: one: the full pass runs at start-up, then every ``full_sync_seconds``).
        self._passed: set[str] = set()
        #: Whether delete-missing was on, per resource, when last looked at.
        self._delete_missing: dict[str, bool] = {}
        #: Absolute stock writes whose feed events are still being watched for overwrites.
        self.overlaps = OverlapWatch()
        #: Names this session's watch in the writes it looks at: a session that starts later
        #: (after this process stopped) reports the ones it never finished.
        self.watch_id = f"{self.tenant[:40]}-{uuid.uuid4().hex[:16]}"
        #: Customers fetched whole, so a full pass fetches only those whose list item changed.
        self._whole = WholeCustomers()
        #: Whether Fortnox fails every command, rather than one (engine/executors/breaker.py).
        self.breaker = Breaker()
        #: Completed polls and master-data refreshes; a caller that wants fresh data waits for
        #: these to move.
        self.polls_done = 0
        self.masterdata_done = 0
        #: The bound of the pass in hand, which a stop shortens to ``STOP_GRACE_SECONDS``.
        self._work_bound: asyncio.Timeout | None = None

    def request_poll(self, resources: Iterable[str] = RESOURCES) -> None:
        """Something changed at Fortnox: poll ``resources`` (all by default) at once."""
        self._requested.update(resources)
        self.wakeup.set()

    def request_master_data(self) -> None:
        self._masterdata_requested = True
        self.wakeup.set()

    def on_feed(
        self,
        topic: str,
        entity: str | None,
        timestamp: str | None = None,
        event_type: str | None = None,
    ) -> str:
        """A topics-feed event for this tenant: what it led to (logged by the caller)."""
        if topic not in FEED_TOPICS:
            return "ignored"
        if topic == "articles" and entity is not None:
            self.overlaps.event(entity, _feed_stamp(timestamp), asyncio.get_running_loop().time())
        if topic == "invoices" and entity is not None and event_type == INVOICE_CREATED:
            # A sale made in Fortnox (a web shop's invoice): kept so an absolute stock write
            # that overwrote it can be repaired. A new invoice has no payment to poll for.
            self.overlaps.invoice(entity, _feed_stamp(timestamp), asyncio.get_running_loop().time())
            return "stock"
        resource = FEED_TOPICS[topic]
        if resource is None:
            self.request_master_data()
            return "masterdata"
        if entity is not None and self._take_echo(topic, entity):
            return "echo"
        self.request_poll((resource,))
        return "poll"

    def _take_echo(self, topic: str, entity: str) -> bool:
        expected = self._echoes.get((topic, entity))
        if not expected:
            return False
        now = asyncio.get_running_loop().time()
        while expected and expected[0] < now:
            expected.pop(0)
        if not expected:
            del self._echoes[(topic, entity)]
            return False
        expected.pop(0)
        return True

    def _expect_echo(self, command: Envelope) -> None:
        """``command`` is about to write in Fortnox: the feed will announce it."""
        if isinstance(command, cm.ApplyFortnoxStock):
            article = command.data.article_number
            keys = [("articles", article), ("warehouse-stockbalances", article)]
        elif isinstance(command, (cm.UpdateFortnoxCustomer, cm.DeactivateFortnoxCustomer)):
            keys = [("customers", command.data.customer_number)]
        else:
            return
        now = asyncio.get_running_loop().time()
        if len(self._echoes) > 10_000:
            self._echoes = {k: v for k, v in self._echoes.items() if v and v[-1] >= now}
        for key in keys:
            self._echoes.setdefault(key, []).append(now + self.timing.echo_seconds)

    def _periods(self) -> tuple[float, float]:
        """(poll, master data) periods: long safety nets while the feed announces changes."""
        if self.feed_live():
            return self.timing.feed_poll_seconds, self.timing.feed_masterdata_seconds
        return self.timing.poll_seconds, self.timing.masterdata_seconds

    def _due(self, now: float) -> tuple[bool, set[str]]:
        """(refresh the master data?, resources to poll) at loop time ``now``."""
        poll_period, masterdata_period = self._periods()
        masterdata = self._masterdata_requested or now >= self._masterdata_at + masterdata_period
        if now >= self._polled_at + poll_period:
            return masterdata, set(RESOURCES)
        return masterdata, set(self._requested)

    # -- the loop -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        log.info("fortnox.session.started", tenant=self.tenant, watch=self.watch_id)
        loop = asyncio.get_running_loop()
        self._announce_watch()
        stopping = asyncio.ensure_future(self._when_stopped(stop))
        try:
            while not stop.is_set():
                if self.edge.paused(self.tenant) is not None:
                    await self._sleep(stop, 1.0)
                    continue
                try:
                    async with asyncio.timeout(None) as self._work_bound:
                        worked = await self._work(stop, loop)
                    if not worked:
                        await self._sleep(stop, self.timing.idle_seconds)
                except (LoginExpired, LicenceOrScopeMissing, AuthError) as denied:
                    self.edge.pause(self.tenant, denied.shop_error())
                except FortnoxUnavailable as unavailable:
                    log.warning(
                        "fortnox.session.unavailable", tenant=self.tenant, error=str(unavailable)
                    )
                    await self._sleep(stop, self._backoff * (1 + random.random()))
                    self._backoff = min(self._backoff * 2, 60.0)
                except Stopping as cut:
                    self._work_left(cut.waiting)
                    break
                except TimeoutError:
                    bound = self._work_bound
                    if bound is None or not bound.expired() or not stop.is_set():
                        raise
                    self._work_left("no_answer")
                    break
                finally:
                    self._work_bound = None
            await self._finish_watches_bounded()
        finally:
            stopping.cancel()
        log.info("fortnox.session.stopped", tenant=self.tenant)

    async def _work(self, stop: asyncio.Event, loop: asyncio.AbstractEventLoop) -> bool:
        """One pass of the loop: the due commands, then the polls and the master data that are
        due. True if a command was executed."""
        worked = await self.drain(stop)
        self._watch_delete_missing()
        await self._report_overlaps(loop.time())
        masterdata, resources = self._due(loop.time())
        # Polls first: on a new tenant, the first pass over articles and customers is
        # what the shop waits for; the bookkeeping master data is needed later.
        if resources:
            self._requested.difference_update(resources)
            await self.poll(resources)
            if resources == set(RESOURCES):
                # The period runs from the end of a poll: however long a poll waits
                # for the rate limiter, the commands get the time in between.
                self._polled_at = loop.time()
            self.polls_done += 1
        if masterdata:
            await self._read_master_data()
        self._backoff = 1.0
        return worked

    async def _when_stopped(self, stop: asyncio.Event) -> None:
        """At a stop, waiting for Fortnox ends at once (a retry's backoff after a 429, the rate
        limiter: :meth:`FortnoxClient.stop_waiting`), and the pass in hand gets
        ``STOP_GRACE_SECONDS`` for the answer to a request already on the wire; then it is
        cancelled. Either way the command in hand is left unsettled, as after a crash: the next
        start runs it again, looking first where its outcome is unknown."""
        await stop.wait()
        self.api.client.stop_waiting()
        if self._work_bound is not None:
            self._work_bound.reschedule(asyncio.get_running_loop().time() + STOP_GRACE_SECONDS)

    def _work_left(self, why: str) -> None:
        log.info("fortnox.session.work_left", tenant=self.tenant, reason=why)

    async def _finish_watches_bounded(self) -> None:
        """:meth:`finish_watches`, never longer than the watch's wait plus the grace for an
        answer: what it could not finish is left to the next watch, which reports it."""
        try:
            async with asyncio.timeout(self.overlaps.lag + STOP_GRACE_SECONDS):
                await self.finish_watches()
        except (TimeoutError, Stopping) as cut:
            reason = cut.waiting if isinstance(cut, Stopping) else "no_answer"
            log.info("fortnox.stock.watch_left", tenant=self.tenant, reason=reason)

    def _watch_delete_missing(self) -> None:
        """Delete-missing just turned on: a full pass now (it is what removes what Fortnox does
        not have), not at the next one in up to six hours."""
        settings = self.settings()
        for resource, on in (
            ("articles", settings.articles.delete_missing),
            ("customers", settings.customers.delete_missing),
        ):
            if on and self._delete_missing.get(resource) is False:
                self._passed.discard(resource)
                self._requested.add(resource)
                log.info(
                    "fortnox.full_pass.requested",
                    tenant=self.tenant,
                    resource=resource,
                    reason="delete_missing_turned_on",
                )
            self._delete_missing[resource] = on

    async def _sleep(self, stop: asyncio.Event, seconds: float) -> None:
        self.wakeup.clear()
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.wakeup.wait())]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    def _announce_watch(self) -> None:
        """Tell the reconciler this session's watch started: the writes an earlier one was still
        looking at (a process that stopped) are possible lost sales (``stock.on_watch_started``).
        Announced at every start of the loop; the same id again changes nothing."""
        self.edge.publish(
            [
                fx.FortnoxStockWatchStarted(
                    id=f"watch-{self.watch_id}",
                    tenant=self.tenant,
                    occurred_at=utcnow(),
                    data=fx.StockWatchData(watch=self.watch_id),
                )
            ]
        )

    async def finish_watches(self) -> None:
        """At a stop: let the writes still watched finish their watch while the feed still
        delivers (at most the watch's wait for late events) and report on them, so the next
        start does not take them for interrupted. Without a live feed to the end they are left
        to the next watch, which reports them (conservative: never checked on half the events).
        """
        loop = asyncio.get_running_loop()
        end = self.overlaps.open_until()
        if end is None or not self.feed_live():
            return
        wait = min(end - loop.time(), self.overlaps.lag)
        if wait > 0:
            await asyncio.sleep(wait)
        if not self.feed_live():
            log.info("fortnox.stock.watch_left", tenant=self.tenant, reason="feed_stopped")
            return
        try:
            await self._report_overlaps(loop.time())
        except FortnoxError as failed:
            log.warning(
                "fortnox.stock.watch_left", tenant=self.tenant, reason=type(failed).__name__
            )

    async def _report_overlaps(self, now: float) -> None:
        """Publish the writes the feed showed a foreign change inside the window of (possible
        lost sales). The level after each write (its next read, or one read now) tells a
        change after the write, which polling passes on, from one the write replaced. The
        writes whose watch ended with nothing to report are published as checked."""
        found: list[Envelope] = []
        suspects = self.overlaps.due(now)
        checked = self.overlaps.take_checked()
        for suspect in suspects:
            repair = await self._repair(suspect)
            if not isinstance(repair, str):
                found.extend(repair)
                if not repair:
                    checked.append(suspect.command_id)
                continue
            level = suspect.next_read
            if level is None:
                try:
                    level = await self.api.stock.read_quantity(suspect.article_number)
                except FortnoxError:
                    # Cannot look: report it rather than lose it.
                    level = suspect.written
            if overwritten(suspect, level):
                found.append(self._overlap_found(suspect, level, not_repaired=repair))
            else:
                checked.append(suspect.command_id)
                log.info(
                    "fortnox.stock.foreign_change_after_write",
                    tenant=self.tenant,
                    article=suspect.article_number,
                    command_id=suspect.command_id,
                    written=str(suspect.written),
                    level=str(level),
                )
        if checked:
            found.append(
                fx.FortnoxStockChecked(
                    id=f"checked-{checked[0]}-{len(checked)}"[:200],
                    tenant=self.tenant,
                    occurred_at=utcnow(),
                    data=fx.StockChecksData(command_ids=checked),
                )
            )
        if found:
            self.edge.publish(found)

    async def _established(self, suspect: Suspect) -> tuple[Decimal | None, str | None]:
        """(The foreign change ``suspect``'s write overwrote, from the sales' invoices; or None
        and why it cannot be established: then the level decides, and it is reported)."""
        article = suspect.article_number
        segment = self.overlaps.segment(suspect)
        reason: str | None = None
        changes: list[Decimal] = []
        if isinstance(segment, Unestablished):
            reason = segment.reason
        else:
            for number in segment.invoices:
                try:
                    invoice = await self.api.stock.invoice_stock(number)
                except FortnoxError as failed:
                    # The suspect is out of the watch already: report it rather than lose it.
                    reason = f"invoice {number} cannot be read ({type(failed).__name__})"
                    break
                change = invoice.stock_change(article)
                if change is None:
                    reason = f"invoice {number} has no row of the article"
                    break
                changes.append(change)
        lost: Decimal | None = None
        if reason is None and isinstance(segment, Segment):
            lost = overwritten_sales(segment.anchor, suspect.read, changes)
            if lost is None:
                reason = "no single set of the sales leads from the earlier write to the read"
        log.info(
            "fortnox.stock.overwrite_established"
            if lost is not None
            else "fortnox.stock.overwrite_not_established",
            tenant=self.tenant,
            article=article,
            command_id=suspect.command_id,
            read=str(suspect.read),
            written=str(suspect.written),
            sales=[str(c) for c in changes],
            overwritten=None if lost is None else str(lost),
            reason=reason,
        )
        return lost, reason

    async def _repair(self, suspect: Suspect) -> list[Envelope] | str:
        """Re-apply what ``suspect``'s write overwrote, when that can be established: the facts
        to publish ([] when the write overwrote nothing), or why not (then it is reported from
        the level, as before)."""
        lost, reason = await self._established(suspect)
        if lost is None:
            return reason or "not established"
        if lost == 0:
            return []
        article = suspect.article_number
        command_id = f"repair-{suspect.command_id}"[:200]
        loop = asyncio.get_running_loop()
        repaired: StockIntent | None = None
        #: The level read to settle a repair whose answer was lost (shown if not repaired).
        level: Decimal | None = None
        for _attempt in range(STOCK_WRITE_TRIES):
            sent: list[StockIntent] = []
            watch = self.overlaps.begin(article, loop.time())
            retry = False
            try:
                result = await self.api.stock.apply_delta(article, lost, sent.append)
                repaired = StockIntent(result.read, result.written)
            except UnknownOutcome as unknown:
                if sent:
                    # The repair may have arrived: the level decides, as for any absolute write.
                    with contextlib.suppress(FortnoxError):
                        level = await self.api.stock.read_quantity(article)
                    error_answer = (unknown.cause or "").startswith("HTTP 5")
                    if level is not None:
                        verdict = settle_intent(sent[-1], level, error_answer=error_answer)
                        if verdict.certainty is Landed.YES:
                            repaired = sent[-1]
                        # Certainly not arrived (a 5xx, the level unmoved): try again from a
                        # new read. Anything else is reported, never guessed.
                        retry = verdict.certainty is Landed.NO
            except FortnoxError as failed:
                log.warning(
                    "fortnox.stock.repair_failed",
                    tenant=self.tenant,
                    article=article,
                    command_id=suspect.command_id,
                    error=type(failed).__name__,
                )
            if repaired is not None:
                break
            self.overlaps.abandon(watch)
            if not retry:
                break
        if repaired is None:
            # Not repaired, or not provably: a possible lost sale with the numbers. Whatever
            # Fortnox shows now reaches the till through the next read, as any change does.
            return [
                self._overlap_found(
                    suspect, level, foreign=lost, not_repaired="the repair did not arrive"
                )
            ]
        self.overlaps.finish(
            watch,
            loop.time(),
            command_id=command_id,
            read=repaired.read,
            written=repaired.written,
            changed=True,
        )
        log.info(
            "fortnox.stock.overwrite_repaired",
            tenant=self.tenant,
            article=article,
            command_id=suspect.command_id,
            read=str(suspect.read),
            written=str(suspect.written),
            overwritten=str(lost),
            repair_read=str(repaired.read),
            repair_written=str(repaired.written),
        )
        return [
            fx.FortnoxStockOverlapFound(
                id=f"overlap-{suspect.command_id}",
                tenant=self.tenant,
                occurred_at=utcnow(),
                data=fx.StockOverlapData(
                    article_number=article,
                    command_id=suspect.command_id,
                    seq=self.edge.next_fx_seq(self.tenant),
                    overlap=fx.StockOverlap(
                        reason=fx.OverlapReason.FEED_EVENT_IN_WINDOW,
                        read=suspect.read,
                        written=suspect.written,
                        foreign=lost,
                        window_seconds=round(suspect.window, 3),
                        events=suspect.foreign_events,
                        repaired=True,
                        repair_read=repaired.read,
                        repair_written=repaired.written,
                    ),
                ),
            )
        ]

    def _overlap_found(
        self,
        suspect: Suspect,
        level: Decimal | None,
        *,
        foreign: Decimal | None = None,
        not_repaired: str | None = None,
    ) -> fx.FortnoxStockOverlapFound:
        log.warning(
            "fortnox.stock.possible_lost_sale",
            tenant=self.tenant,
            article=suspect.article_number,
            command_id=suspect.command_id,
            read=str(suspect.read),
            written=str(suspect.written),
            foreign_events=suspect.foreign_events,
            level=None if level is None else str(level),
            foreign=None if foreign is None else str(foreign),
            not_repaired=not_repaired,
            window=round(suspect.window, 3),
            reason=fx.OverlapReason.FEED_EVENT_IN_WINDOW.value,
        )
        return fx.FortnoxStockOverlapFound(
            id=f"overlap-{suspect.command_id}",
            tenant=self.tenant,
            occurred_at=utcnow(),
            data=fx.StockOverlapData(
                article_number=suspect.article_number,
                command_id=suspect.command_id,
                overlap=fx.StockOverlap(
                    reason=fx.OverlapReason.FEED_EVENT_IN_WINDOW,
                    read=suspect.read,
                    written=suspect.written,
                    level=level,
                    foreign=foreign,
                    window_seconds=round(suspect.window, 3),
                    events=suspect.foreign_events,
                ),
            ),
        )

    # -- commands -----------------------------------------------------------------------------

    async def drain(self, stop: asyncio.Event) -> bool:
        """Execute due commands in order; True if any was executed."""
        worked = False
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            if self.breaker.wait():
                return worked  # Fortnox fails every command: probe again after the backoff
            pending = self.edge.head("fortnox", self.tenant)
            if pending is None or pending.next_at > dt.datetime.now().timestamp():
                return worked
            await self.execute(pending)
            worked = True
            masterdata, resources = self._due(loop.time())
            if masterdata or resources:
                # A backlog of commands must not starve polling (changes made in Fortnox).
                return worked
        return worked

    async def execute(self, pending: Pending) -> None:
        command = pending.command()
        with structlog.contextvars.bound_contextvars(
            tenant=self.tenant, command_id=command.id, message_id=command.id
        ):
            await self._execute(command, pending)

    async def _execute(self, command: Envelope, pending: Pending) -> None:
        self._expect_echo(command)
        try:
            result, facts = await self._run(command, pending)
        except (LoginExpired, LicenceOrScopeMissing, AuthError):
            raise
        except WarehouseModuleActive as refused:
            self.breaker.succeeded()
            self.edge.settle(pending, OutcomeStatus.REJECTED, error=refused.shop_error())
        except (UnknownOutcome, FortnoxUnavailable) as later:
            # Retried with backoff; only its lane waits (engine/store/lanes.py), unless Fortnox
            # fails the next command too (then the breaker holds back the tenant's commands).
            delay = min(60.0, 2.0 ** min(pending.attempts, 6)) * (0.5 + random.random())
            self.breaker.failed(delay)
            self.edge.settle(
                pending, OutcomeStatus.RETRYING, error=later.shop_error(), retry_in=delay
            )
        except FortnoxApiError as rejected:
            self.breaker.succeeded()
            self.edge.settle(pending, OutcomeStatus.REJECTED, error=rejected.shop_error())
        except FortnoxError as other:
            self.breaker.succeeded()
            self.edge.settle(pending, OutcomeStatus.REJECTED, error=other.shop_error())
        else:
            self.breaker.succeeded()
            self.edge.settle(pending, OutcomeStatus.DONE, result=result, facts=facts)

    async def _run(
        self, command: Envelope, pending: Pending
    ) -> tuple[dict[str, str], list[Envelope]]:
        if isinstance(command, cm.ApplyFortnoxStock):
            return await self._stock(command, pending)
        if isinstance(command, cm.CreateFortnoxCustomer):
            return await self._create_customer(command), []
        if isinstance(command, cm.UpdateFortnoxCustomer):
            await self.api.customers.update(
                command.data.customer_number, _customer(command.data.customer)
            )
            return {}, []
        if isinstance(command, cm.DeactivateFortnoxCustomer):
            await self.api.customers.update(command.data.customer_number, Customer(active=False))
            return {}, []
        if isinstance(command, cm.CreateFortnoxVoucher):
            return await self._voucher(command, pending), []
        if isinstance(command, cm.CreateFortnoxOrder):
            return await self._order(command), []
        if isinstance(command, cm.RefreshFortnoxMasterData):
            log.info(
                "fortnox.masterdata.refresh_asked", tenant=self.tenant, reason=command.data.reason
            )
            await self._read_master_data()
            return {}, []
        raise FortnoxApiError(f"Kassasync cannot execute {type(command).__name__} in Fortnox")

    async def _create_customer(self, command: cm.CreateFortnoxCustomer) -> dict[str, str]:
        data = command.data
        marker = fx.customer_reference(data.till_customer_id)
        number = data.customer_number
        for attempt in range(10):
            candidate = number if attempt == 0 else f"{number}-{attempt}"
            customer = _customer(data.customer).model_copy(
                update={"customer_number": candidate, "external_reference": marker}
            )
            customer.model_fields_set.update({"customer_number", "external_reference"})
            stored = await self.api.customers.create(customer)
            if stored.external_reference in (None, "", marker):
                # The observation number of the answer: a full pass that began before it may
                # not list the customer, and must not take it for missing (reconcilers.passes).
                return {
                    "customer_number": stored.customer_number or candidate,
                    "seq": str(self.edge.next_fx_seq(self.tenant)),
                }
            log.info("fortnox.customer.number_taken", tenant=self.tenant, number=candidate)
        raise FortnoxApiError(
            f"no free customer number near {number}", tenant=self.tenant, details={"number": number}
        )

    async def _stock(
        self, command: cm.ApplyFortnoxStock, pending: Pending
    ) -> tuple[dict[str, str], list[Envelope]]:
        article = command.data.article_number
        delta = command.data.delta
        overlap: fx.StockOverlap | None = None
        #: Whether the feed watch looks at this write (absolute writes only).
        watched = False
        if self.settings().stock.mode is StockMode.WAREHOUSE_DOCUMENTS:
            if not await self.api.stock.warehouse_active():
                # Documents are the safe path only where Fortnox Lager keeps the balances.
                raise FortnoxApiError(
                    "stock mode is warehouse_documents but Fortnox's warehouse module (Lager) is "
                    "not active for this company: activate it in Fortnox, or set stock mode "
                    "to quantity",
                    tenant=self.tenant,
                    details={"article": article},
                )
            balances = await self.api.stock.balances([article])
            read = sum((Decimal(str(b.in_stock or 0)) for b in balances), Decimal(0))
            await self.api.stock.move(command.id, {article: delta}, day=utcnow().date())
            written = read + delta
        else:
            read, written, overlap, watched = await self._stock_quantity(command, pending)
        fact = fx.FortnoxStockWritten(
            id=f"written-{command.id}",
            tenant=self.tenant,
            occurred_at=utcnow(),
            data=fx.StockWrittenData(
                article_number=article,
                command_id=command.id,
                read=read,
                written=written,
                seq=self.edge.next_fx_seq(self.tenant),
                overlap=overlap,
                watch=self.watch_id if watched and self.feed_live() else None,
            ),
        )
        return {"read": str(read), "written": str(written)}, [fact]

    async def _stock_quantity(
        self, command: cm.ApplyFortnoxStock, pending: Pending
    ) -> tuple[Decimal, Decimal, fx.StockOverlap | None, bool]:
        """The absolute write (no warehouse module): (read, written, overlap found, whether the
        feed watch looks at the write).

        An earlier attempt that recorded an intent may have arrived: the level read now
        settles it (:func:`engine.fortnox.stock.settle_intent`). A write whose answer is lost is
        settled the same way at once, never sent again as it was: the HTTP layer does not repeat
        it, and a new write always starts from a new read.
        """
        article = command.data.article_number
        delta = command.data.delta
        stock = self.api.stock
        recorded = self.edge.intent(pending)
        intent = _stock_intent(recorded)
        #: Whether the last write was answered with an error (5xx) rather than not at all.
        error_answer = False
        overlap: fx.StockOverlap | None = None
        loop = asyncio.get_running_loop()
        #: The feed watch of a write whose answer was lost, finished if it turns out to have landed.
        watch: Watch | None = None
        for _attempt in range(STOCK_WRITE_TRIES):
            if intent is not None:
                level = await stock.read_quantity(article)
                verdict = settle_intent(intent, level, error_answer=error_answer)
                log.info(
                    "fortnox.stock.intent_settled",
                    tenant=self.tenant,
                    article=article,
                    read=str(intent.read),
                    written=str(intent.written),
                    level=str(level),
                    landed=verdict.landed,
                    certainty=verdict.certainty.value,
                    error_answer=error_answer,
                )
                # The level is the one read, so the write did not arrive, unless it did and a
                # foreign change of the opposite size (a sale undoing a delivery) followed it.
                # Only a watch that saw no event of the article in the meantime rules that out;
                # a write whose process died had no watch here.
                unwatched = watch is None or bool(watch.stamps) or watch.unstamped > 0
                if verdict.certainty is not Landed.NO or unwatched:
                    # Fortnox records no author: a level that is not the one read before cannot
                    # prove the write arrived rather than a change of the same size. Reported.
                    reason = (
                        fx.OverlapReason.OUTCOME_AMBIGUOUS
                        if verdict.certainty is Landed.AMBIGUOUS
                        else fx.OverlapReason.OUTCOME_UNPROVEN
                    )
                    overlap = fx.StockOverlap(
                        reason=reason,
                        read=intent.read,
                        written=intent.written,
                        level=level,
                        foreign=verdict.foreign if verdict.certainty is not Landed.NO else None,
                        assumed_landed=verdict.landed,
                    )
                    log.warning(
                        "fortnox.stock.possible_lost_sale",
                        tenant=self.tenant,
                        article=article,
                        read=str(intent.read),
                        written=str(intent.written),
                        level=str(level),
                        assumed_landed=verdict.landed,
                        reason=overlap.reason.value,
                    )
                if verdict.landed:
                    if watch is not None:
                        self.overlaps.finish(
                            watch,
                            loop.time(),
                            command_id=command.id,
                            read=intent.read,
                            written=intent.written,
                            changed=True,
                        )
                    return intent.read, intent.written, overlap, watch is not None
                # It did not arrive: start again from a new read (its level is only a hint).
                self.edge.remember_intent(command.id, {"read": str(intent.read), "applied": "no"})
                intent = None
                if watch is not None:
                    self.overlaps.abandon(watch)
                    watch = None
            sent: list[StockIntent] = []

            def remember(new: StockIntent, sent: list[StockIntent] = sent) -> None:
                sent.append(new)
                self.edge.remember_intent(
                    command.id, {"read": str(new.read), "written": str(new.written)}
                )

            watch = self.overlaps.begin(article, loop.time())
            try:
                result = await stock.apply_delta(article, delta, remember)
            except UnknownOutcome as unknown:
                if not sent:
                    self.overlaps.abandon(watch)
                    raise
                # The write may have arrived: read and decide now, not after a backoff.
                intent = sent[-1]
                error_answer = (unknown.cause or "").startswith("HTTP 5")
                continue
            except BaseException as failed:
                self.overlaps.abandon(watch)
                refused = (FortnoxUnavailable, FortnoxApiError, AuthError, Stopping)
                if isinstance(failed, refused) and sent:
                    # Refused before it was applied (429, never sent), answered with a refusal
                    # (4xx), or not sent at all (the engine stopped while it waited for the
                    # limiter): nothing to settle.
                    self.edge.remember_intent(
                        command.id, {"read": str(sent[-1].read), "applied": "no"}
                    )
                raise
            self.overlaps.finish(
                watch,
                loop.time(),
                command_id=command.id,
                read=result.read,
                written=result.written,
                changed=result.changed,
            )
            return result.read, result.written, overlap, result.changed
        if watch is not None:
            self.overlaps.abandon(watch)
        raise UnknownOutcome(
            f"stock write of {article} could not be settled in {STOCK_WRITE_TRIES} tries",
            tenant=self.tenant,
            method="PUT",
            path=f"/3/articles/{article}",
        )

    async def _voucher(self, command: cm.CreateFortnoxVoucher, pending: Pending) -> dict[str, str]:
        data = command.data
        draft = data.voucher
        marker = f"kassasync zreport {data.zreport_key}"
        year = data.financial_year or None
        # Always look in the series first, even on a first attempt with no recorded intent: an
        # earlier attempt may have reached Fortnox although its answer, this process or (after
        # a power loss) the record of the attempt itself was lost. Vouchers cannot be undone,
        # so one search per voucher is cheap insurance.
        found = await self.api.bookkeeping.find_vouchers_by_marker(
            draft.series, year, marker, transaction_date=draft.transaction_date
        )
        if found:
            voucher = found[0]
            log.info(
                "fortnox.voucher.found_before_post",
                tenant=self.tenant,
                key=data.zreport_key,
                attempts=pending.attempts,
                intent_known=self.edge.intent(pending) is not None,
            )
            return {
                "series": voucher.voucher_series or draft.series,
                "number": str(voucher.voucher_number),
                "year": str(voucher.year or year or ""),
                "already": "true",
            }
        voucher = Voucher(
            voucher_series=draft.series,
            transaction_date=draft.transaction_date,
            description=draft.description,
            comments=draft.comments or marker,
            cost_center=draft.cost_center,
            voucher_rows=[
                VoucherRow(
                    account=row.account,
                    debit=row.debit,
                    credit=row.credit,
                    cost_center=row.cost_center,
                    project=row.project,
                    transaction_information=row.description,
                )
                for row in draft.rows
            ],
        )
        self.edge.remember_intent(command.id, {"voucher": data.zreport_key})
        created = await self.api.bookkeeping.create_voucher(voucher, year)
        return {
            "series": created.voucher_series or draft.series,
            "number": str(created.voucher_number),
            "year": str(created.year or year or ""),
        }

    async def _order(self, command: cm.CreateFortnoxOrder) -> dict[str, str]:
        data = command.data
        order = Order(
            customer_number=data.customer_number,
            order_date=data.order_date,
            delivery_date=data.delivery_date,
            currency=data.currency,
            terms_of_payment=data.terms_of_payment,
            your_order_number=data.invoice_id[:30],
            your_reference=data.your_reference,
            remarks=data.remarks,
            external_invoice_reference1=data.external_reference,
            order_rows=[
                OrderRow(
                    article_number=row.article_number,
                    description=row.description,
                    ordered_quantity=row.quantity,
                    delivered_quantity=row.quantity,
                    price=row.price,
                    vat=row.vat,
                    discount=row.discount_percent or None,
                    discount_type="PERCENT" if row.discount_percent else None,
                )
                for row in data.rows
            ],
        )
        ensured = await self.api.orders.ensure(order, data.external_reference)
        return {
            "document_number": str(ensured.order.document_number),
            "already": "false" if ensured.created else "true",
        }

    # -- polling ------------------------------------------------------------------------------

    def _cursor(self, resource: str) -> tuple[PollCursor | None, float | None]:
        text, full_at = self.edge.cursor(self.tenant, resource)
        return (PollCursor.from_json(text) if text else None), full_at

    async def poll(self, resources: Iterable[str] = RESOURCES) -> None:
        settings = self.settings()
        if "articles" in resources and (settings.articles.enabled or settings.stock.enabled):
            await self._poll_resource("articles", "/3/articles", "Articles", "ArticleNumber")
        if "customers" in resources and settings.customers.enabled:
            await self._poll_resource("customers", "/3/customers", "Customers", "CustomerNumber")
        if "payments" in resources and settings.payments.enabled:
            await self._poll_resource("payments", "/3/invoicepayments", "InvoicePayments", "Number")

    async def _poll_resource(self, resource: str, path: str, key: str, id_field: str) -> None:
        cursor, full_at = self._cursor(resource)
        started = utcnow()
        # A full pass at start-up (the first poll of this session), then on its period; for
        # every resource, payments included, as the safety net under the incremental polls.
        full = (
            resource not in self._passed
            or cursor is None
            or full_at is None
            or started.timestamp() - full_at > self.timing.full_sync_seconds
        )
        # Only articles and customers have deletions to prove: their passes are closed.
        sync_pass = (
            f"{resource}-{uuid.uuid4().hex[:12]}"
            if full and resource in {r.value for r in fx.SyncedResource}
            else None
        )
        # Taken before the first page is read: what is shown present by a newer observation
        # may be missing from this pass only because it is newer (reconcilers.passes).
        started_seq = self.edge.next_fx_seq(self.tenant) if sync_pass is not None else None
        price_list = self.settings().articles.price_list
        poller = LastModifiedPoller(
            self.api.client,
            path,
            key,
            _MODELS[resource],
            lambda raw: str(raw.get(id_field)),
            overlap=OVERLAP,
            clock=utcnow,
            on_repeat=self._whole.forget if resource == "customers" else None,
        )
        # A full pass reads everything (it is what notices deletions); otherwise only what
        # changed since the cursor, minus what the overlap brings back unchanged. Each page's
        # changes become records, packed for the log, while the next page waits for the rate
        # limiter; all of them, the pass's completion and the cursor are published together
        # after the last page.
        out: list[Envelope | Packed] = []

        async def convert(changes: list[Change[Any]]) -> None:
            out.extend(
                map(pack, await self._changes(resource, changes, sync_pass, price_list, full))
            )

        batch = await poller.poll(None if full else cursor, on_changes=convert)
        published = len(out)
        if sync_pass is not None:
            out.append(
                fx.FortnoxSyncCompleted(
                    id=f"sync-{sync_pass}",
                    tenant=self.tenant,
                    occurred_at=utcnow(),
                    data=fx.SyncCompletedData(
                        resource=fx.SyncedResource(resource),
                        sync_pass=sync_pass,
                        count=published,
                        started_seq=started_seq,
                    ),
                )
            )
        next_cursor = batch.next_cursor
        if full:
            # A full pass's cursor would carry a fingerprint of every record (5 MB for 100,000
            # articles, parsed at every poll). Without them, the next poll's overlap brings back
            # the few records changed in its last minutes once more: the same content again,
            # which the reconcilers take as no change.
            next_cursor = PollCursor(since=next_cursor.since)
        self.edge.publish(
            out,
            cursor=CursorUpdate(self.tenant, resource, next_cursor.to_json(), full),
        )
        if full:
            self._passed.add(resource)
        if out or full:
            log.info(
                "fortnox.polled",
                tenant=self.tenant,
                resource=resource,
                changes=published,
                full_sync=full,
                since=next_cursor.since.isoformat(),
            )

    async def _changes(
        self,
        resource: str,
        changes: list[Change[Any]],
        sync_pass: str | None,
        price_list: str,
        full: bool = False,
    ) -> list[Envelope]:
        """The change records for one chunk of a poll: one per record, and a record that cannot
        be read becomes ``fortnox.record.unreadable`` for that record (never an error of the
        poll: the rest of the register goes on syncing)."""
        messages: list[tuple[str, dict[str, Any], str | None]] = []
        for change in changes:
            raw = change.raw
            whole_only = WHOLE_ONLY.get(resource)
            if whole_only is not None and change.problem is None and whole_only[1] not in raw:
                # List items are a subset of the record (real list views omit an article's
                # StockGoods, VAT and Unit, a customer's Type, CountryCode and
                # ExternalReference): only then, fetch the changed record whole.
                wrapper, _field = whole_only
                known = self._whole.get(change.key, raw) if resource == "customers" else None
                if full and known is not None:
                    messages.append((change.key, {**raw, **known}, None))
                    continue
                try:
                    whole = await self.api.client.get_json(f"/3/{resource}/{seg(change.key)}")
                except NotFound:
                    # Deleted since the list was read: its deletion is the feed's or the next
                    # full pass's to notice.
                    log.info("fortnox.poll.gone_meanwhile", tenant=self.tenant, key=change.key)
                    continue
                fetched = whole.get(wrapper)
                if resource == "customers" and isinstance(fetched, dict):
                    self._whole.put(change.key, raw, fetched)
                raw = {**raw, **(fetched if isinstance(fetched, dict) else {})}
            messages.append((change.key, raw, change.problem))
        prices: dict[str, Decimal | None] = {}
        if resource == "articles" and price_list != "A":
            for entity, _raw, problem in messages:
                if problem is None:
                    found = await self.api.prices.get_price(price_list, entity)
                    prices[entity] = None if found is None else found.price
        first = self.edge.next_fx_seq(self.tenant, len(messages)) if messages else 0
        now = utcnow()
        out: list[Envelope] = []
        for i, (entity, raw, problem) in enumerate(messages):
            observed = fx.Observation(
                via="full_sync" if full else "poll", sync_pass=sync_pass, seq=first + i
            )
            record: Envelope | None = None
            if problem is None:
                try:
                    record = self._change(resource, entity, raw, observed, prices, now)
                except UNREADABLE as failed:
                    problem = _problem(failed)
            if record is None:
                record = self._unreadable(resource, entity, problem or "unreadable", observed, now)
            out.append(record)
        return out

    def _unreadable(
        self,
        resource: str,
        entity: str,
        problem: str,
        observed: fx.Observation,
        now: dt.datetime,
    ) -> Envelope:
        key = printable_key(entity)
        log.warning(
            "fortnox.record.unreadable",
            tenant=self.tenant,
            resource=resource,
            key=key,
            problem=problem,
            action="reported",
        )
        return fx.FortnoxRecordUnreadable(
            id=f"fx-{resource}-unreadable-{observed.seq}",
            tenant=self.tenant,
            occurred_at=now,
            data=fx.UnreadableData(
                resource=fx.PolledResource(resource),
                key=key,
                problem=printable_key(problem)[:200],
                observed=observed,
            ),
        )

    def _change(
        self,
        resource: str,
        entity: str,
        raw: dict[str, Any],
        observed: fx.Observation,
        prices: dict[str, Decimal | None],
        now: dt.datetime,
    ) -> Envelope:
        msg_id = f"fx-{resource}-{printable_key(entity)[:60]}-{observed.seq}"
        if resource == "articles":
            price_list = self.settings().articles.price_list
            price = prices[entity] if entity in prices else raw.get("SalesPrice")
            return fx.FortnoxArticleChanged(
                id=msg_id,
                tenant=self.tenant,
                occurred_at=now,
                data=fx.FortnoxArticleData(
                    article=fortnox_article(raw, price_list, _clean(price)), observed=observed
                ),
            )
        if resource == "customers":
            return fx.FortnoxCustomerChanged(
                id=msg_id,
                tenant=self.tenant,
                occurred_at=now,
                data=fx.FortnoxCustomerData(
                    customer_number=entity,
                    customer=customer_fields(raw),
                    observed=observed,
                    created_for=fx.referenced_till_customer(raw.get("ExternalReference")),
                ),
            )
        return fx.FortnoxPaymentChanged(
            id=msg_id,
            tenant=self.tenant,
            occurred_at=now,
            data=fx.FortnoxPaymentData(
                payment=fortnox_payment(entity, raw),
                observed=observed,
            ),
        )

    async def _projects(self) -> list[fx.ProjectInfo] | None:
        """Fortnox's projects, or None when this connection may not read them (the project
        scope or licence is missing): a voucher row with a project then waits with that
        reason, and every other voucher posts as before."""
        try:
            found = await self.api.bookkeeping.projects()
        except LicenceOrScopeMissing:
            log.info("fortnox.projects.unreadable", tenant=self.tenant)
            return None
        return [
            fx.ProjectInfo(number=p.project_number, status=p.status)
            for p in found
            if p.project_number
        ]

    async def _read_master_data(self) -> None:
        """Read the master data now (its period or a voucher waiting on it asked); the next
        periodic read counts from here."""
        self._masterdata_requested = False
        await self.refresh_master_data()
        self._masterdata_at = asyncio.get_running_loop().time()
        self.masterdata_done += 1

    async def refresh_master_data(self) -> None:
        bk = self.api.bookkeeping
        # Every year Fortnox has: a voucher (an imported SIE file, a late Z-report) may belong to
        # an old one, and "no financial year" must mean that Fortnox has none for its date.
        years = [y for y in await bk.financial_years() if y.from_date and y.to_date]
        year_data: list[fx.YearMasterData] = []
        for year in years:
            accounts = []
            async for raw in iterate_raw(
                self.api.client, "/3/accounts", "Accounts", {"financialyear": str(year.id)}
            ):
                accounts.append(
                    fx.AccountInfo(
                        number=int(raw["Number"]),
                        active=raw.get("Active", True) not in (False, "false"),
                        cost_center_settings=raw.get("CostCenterSettings") or "ALLOWED",
                    )
                )
            series = [
                fx.SeriesInfo(code=s.code or "", manual=bool(s.manual))
                for s in await bk.voucher_series(year.id)
                if s.code
            ]
            year_data.append(
                fx.YearMasterData(
                    year=fx.FinancialYear(
                        id=year.id or 0, from_date=year.from_date, to_date=year.to_date
                    ),
                    accounts=accounts,
                    series=series,
                )
            )
        locked = await bk.locked_period()
        master = fx.MasterData(
            years=year_data,
            cost_centers=[
                fx.CostCenterInfo(code=c.code or "", active=c.active is not False)
                for c in await bk.cost_centers()
                if c.code
            ],
            projects=await self._projects(),
            locked_until=getattr(locked, "end_date", None),
            terms_of_payment=[
                t.code for t in await self.api.settings.terms_of_payments() if t.code
            ],
            warehouse_active=await self.api.stock.warehouse_active(),
        )
        digest = _fingerprint(master.model_dump(mode="json"))
        if self.edge.fingerprint(self.tenant, "masterdata", "") == digest:
            return
        self.edge.publish(
            [
                fx.FortnoxMasterDataRefreshed(
                    id=f"md-{self.tenant}-{digest}-{uuid.uuid4().hex[:8]}",
                    tenant=self.tenant,
                    occurred_at=utcnow(),
                    data=master,
                )
            ],
            fingerprint=(self.tenant, "masterdata", "", digest),
        )
        log.info("fortnox.masterdata.refreshed", tenant=self.tenant, years=len(year_data))


def _problem(failed: BaseException) -> str:
    """What could not be read, in words (field names, not values)."""
    if isinstance(failed, ValidationError):
        fields = sorted({".".join(str(p) for p in e["loc"]) for e in failed.errors()})
        return f"Fortnox's record has values Kassasync cannot read ({', '.join(fields)})"
    return f"Fortnox's record could not be read ({type(failed).__name__})"


def _feed_stamp(timestamp: str | None) -> float | None:
    """A feed event's server timestamp in seconds, or None when it has none."""
    if not timestamp:
        return None
    try:
        stamp = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()


def _stock_intent(recorded: dict[str, Any] | None) -> StockIntent | None:
    """The intent an earlier attempt recorded, if its write may have left."""
    if recorded is None or "written" not in recorded:
        return None
    return StockIntent(Decimal(recorded["read"]), Decimal(recorded["written"]))


def _money(value: Any) -> Decimal | None:
    if _clean(value) is None:
        return None
    return Decimal(str(value)).quantize(Decimal("0.01"))


def _positive(value: Any) -> Decimal | None:
    if _clean(value) is None:
        return None
    number = Decimal(str(value))
    return number if number > 0 else None


def _customer(fields: CustomerFields) -> Customer:
    # Empty strings, not nulls: the master's cleared field must clear Fortnox's too.
    return Customer(
        name=fields.name,
        organisation_number=fields.organisation_number or "",
        email=fields.email or "",
        phone1=fields.phone or "",
        address1=fields.address1 or "",
        address2=fields.address2 or "",
        zip_code=fields.zip_code or "",
        city=fields.city or "",
        country_code=fields.country_code or "",
        type=fields.type.value,
        active=fields.active,
    )


def shop_error_of(error: BaseException) -> ShopError:
    if isinstance(error, FortnoxError):
        return error.shop_error()
    return shop_error(ErrorKind.FORTNOX_UNAVAILABLE, detail=type(error).__name__)
