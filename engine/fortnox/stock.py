"""Writing stock to Fortnox, with or without the warehouse module (Fortnox Lager).

Without the warehouse module, an article's ``QuantityInStock`` is an absolute value and Fortnox
offers no delta and no compare-and-set. :meth:`Stock.write_quantity` therefore reads the
article, computes the new value from what it read (the caller passes a function, e.g. the
saved-baseline merge ``base + (till - base) + (fortnox - base)``), writes it, and returns
``(read, written)``. A Fortnox-side change that lands between the read and the write (one round
trip, well under a second) is overwritten: the caller sees it only as a difference between
``read`` and what it expected, never afterwards. Nothing is written when the value is unchanged.

With the warehouse module, Fortnox owns the balances and stock moves only through documents.
:meth:`Stock.move` PUTs a custom inbound/outbound document whose id is derived from the
caller's command id, so repeating a command cannot move stock twice. A tenant that has not
enabled documents in Kassasync gets :class:`~engine.fortnox.errors.WarehouseModuleActive`
(shop error ``warehouse_module_active``) instead of a silent overwrite.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import Field

from engine.fortnox.errors import (
    LicenceOrScopeMissing,
    NotFound,
    UnexpectedResponse,
    WarehouseModuleActive,
)
from engine.fortnox.models import (
    Article,
    Bool,
    CustomDocument,
    CustomDocumentRow,
    FortnoxModel,
    NumText,
    StockBalance,
    Str,
    WarehouseStatus,
)
from engine.fortnox.observability import log
from engine.fortnox.paging import parse_item
from engine.fortnox.resources.base import seg

if TYPE_CHECKING:
    from engine.fortnox.client import FortnoxClient

WAREHOUSE_STATUS_PATH = "/api/warehouse/tenants-v4"
CUSTOM_DOCS = "/api/warehouse/documentdeliveries/custom"
_TYPE_RE = re.compile(r"^[A-Za-z0-9_-]{1,25}$")
#: How many times an absolute write reads again because its read got old (then it writes).
MAX_REREADS = 2


class Landed(StrEnum):
    """Whether an absolute write whose answer was lost (or whose process died) arrived."""

    #: The level read afterwards is the value written, and the read differs from it.
    YES = "yes"
    #: The level read afterwards is still the value read before the write.
    NO = "no"
    #: Neither: Fortnox's level moved by someone else's change around the write, so the level
    #: alone cannot say. The verdict's ``landed`` is the likelier reading (the smaller foreign
    #: change), and the write is reported as a possible lost sale.
    AMBIGUOUS = "ambiguous"


@dataclass(frozen=True)
class StockIntent:
    """What an absolute stock write read and is about to write, recorded before it leaves."""

    read: Decimal
    written: Decimal


@dataclass(frozen=True)
class Verdict:
    landed: bool
    certainty: Landed
    #: The change someone else made that this reading implies (level - written if landed,
    #: level - read otherwise).
    foreign: Decimal


def settle_intent(intent: StockIntent, level: Decimal, *, error_answer: bool = False) -> Verdict:
    """Decide from a level read after the fact whether ``intent``'s write arrived.

    Pure. ``error_answer``: Fortnox answered the write with an error (5xx) rather than not at
    all (a dropped connection, a timeout, a process that died).

    * The level is the value read before: the write did not arrive (certain: nothing but our
      write could have set it back... unless a foreign change cancelled it out exactly, which
      leaves the same books either way).
    * The level is the value written, and no error answer came: it arrived. A foreign change of
      exactly the write's size in the moment between the lost answer and this read, with the
      write lost, would look the same; Fortnox records no author of a change, so that one case
      cannot be told apart (docs/reliability.md).
    * The level is the value written after an error answer: ambiguous (the error says it did not
      arrive, the level says a change of that size happened); taken as not arrived and reported.
    * Any other level: a foreign change overlapped the write. Taken as arrived if that needs the
      smaller foreign change (not arrived after an error answer), and reported as ambiguous.
    """
    if intent.written == intent.read:
        return Verdict(True, Landed.YES, level - intent.written)
    if level == intent.written and not error_answer:
        return Verdict(True, Landed.YES, Decimal(0))
    if level == intent.read:
        return Verdict(False, Landed.NO, Decimal(0))
    if_landed, if_not = level - intent.written, level - intent.read
    landed = not error_answer and abs(if_landed) <= abs(if_not)
    return Verdict(landed, Landed.AMBIGUOUS, if_landed if landed else if_not)


class InvoiceStockRow(FortnoxModel):
    """The part of an invoice row that moves stock: which article, how many delivered."""

    article_number: Str = Field(None, alias="ArticleNumber")
    delivered_quantity: NumText = Field(None, alias="DeliveredQuantity")


class InvoiceStock(FortnoxModel):
    """The part of an invoice that moves stock (a web shop's sale made in Fortnox)."""

    cancelled: Bool = Field(None, alias="Cancelled")
    invoice_rows: list[InvoiceStockRow] = Field(default_factory=list, alias="InvoiceRows")

    def stock_change(self, article_number: str) -> Decimal | None:
        """How the invoice moved ``article_number``'s stock (minus what it delivered), or None
        when it has no row of the article or was cancelled."""
        rows = [r for r in self.invoice_rows if r.article_number == article_number]
        if not rows or self.cancelled:
            return None
        return -sum((r.delivered_quantity or Decimal(0) for r in rows), Decimal(0))


class StockMode(StrEnum):
    ARTICLE_QUANTITY = "article_quantity"
    WAREHOUSE_DOCUMENTS = "warehouse_documents"
    WAREHOUSE_REFUSED = "warehouse_refused"


@dataclass(frozen=True)
class StockWrite:
    article_number: str
    read: Decimal
    written: Decimal
    changed: bool


@dataclass(frozen=True)
class StockMove:
    command_id: str
    document_id: str
    documents: tuple[CustomDocument, ...]


def document_id(command_id: str) -> str:
    """A warehouse document id (digits only, at most 25) derived from a command id.

    Digit-only ids up to 25 characters are used as they are; anything else is hashed to an
    80-bit number, so equal command ids always give the same document.
    """
    if command_id.isdigit() and len(command_id) <= 25:
        return command_id
    digest = hashlib.sha256(command_id.encode("utf-8")).digest()[:10]
    return str(int.from_bytes(digest, "big"))


class Stock:
    """Stock writes for one tenant.

    ``documents_enabled``: the tenant allows Kassasync to move stock with warehouse documents
    when Fortnox Lager is active. ``outbound_type`` / ``inbound_type`` name the custom document
    types (letters, digits, ``_`` and ``-``; at most 25).
    """

    def __init__(
        self,
        client: FortnoxClient,
        *,
        documents_enabled: bool = False,
        outbound_type: str = "KASSASYNC",
        inbound_type: str = "KASSASYNC-IN",
        stock_point_id: str | None = None,
        max_read_age: float = 0.5,
    ) -> None:
        for name in (outbound_type, inbound_type):
            if not _TYPE_RE.match(name):
                raise ValueError(f"invalid warehouse document type {name!r}")
        self.client = client
        self.documents_enabled = documents_enabled
        self.outbound_type = outbound_type
        self.inbound_type = inbound_type
        self.stock_point_id = stock_point_id
        #: A read older than this when its write is about to leave is read again first.
        self.max_read_age = max_read_age
        self._active: bool | None = None

    async def warehouse_active(self, *, refresh: bool = False) -> bool:
        """Whether the tenant has activated Fortnox's warehouse module (cached)."""
        if self._active is not None and not refresh:
            return self._active
        try:
            data = await self.client.get_json(WAREHOUSE_STATUS_PATH)
            status = WarehouseStatus.model_validate(data.get("TenantInfo", data))
            active = bool(status.activated)
        except (NotFound, LicenceOrScopeMissing) as exc:
            # No warehouse service or no licence for it: the module cannot be active.
            log.info(
                "fortnox.stock.warehouse_status_unavailable",
                tenant=self.client.tenant,
                error=type(exc).__name__,
                assumed_active=False,
            )
            active = False
        self._active = active
        log.info("fortnox.stock.mode", tenant=self.client.tenant, warehouse_active=active)
        return active

    async def mode(self) -> StockMode:
        if not await self.warehouse_active():
            return StockMode.ARTICLE_QUANTITY
        if self.documents_enabled:
            return StockMode.WAREHOUSE_DOCUMENTS
        return StockMode.WAREHOUSE_REFUSED

    def _refuse(self, article_number: str | None = None) -> WarehouseModuleActive:
        return WarehouseModuleActive(
            "Fortnox's warehouse module is active: stock cannot be set on the article, and "
            "this tenant has not enabled stock through warehouse documents",
            tenant=self.client.tenant,
            details={"article": article_number},
        )

    # --- without the warehouse module ------------------------------------------------------

    async def read_quantity(self, article_number: str) -> Decimal:
        path = f"/3/articles/{seg(article_number)}"
        data = await self.client.get_json(path)
        article = parse_item(Article, data.get("Article"), self.client.tenant, path)
        return article.quantity_in_stock or Decimal(0)

    async def write_quantity(
        self,
        article_number: str,
        target: Decimal | Callable[[Decimal], Decimal],
    ) -> StockWrite:
        """Read ``QuantityInStock``, compute the new value from it, write it if it differs.

        ``target`` is the new absolute quantity, or a function of the quantity just read.
        Returns what was read and what was written so the caller can account for a change
        made in Fortnox since its last look.
        """
        if await self.warehouse_active():
            raise self._refuse(article_number)
        read = await self.read_quantity(article_number)
        new = Decimal(target(read)) if callable(target) else Decimal(target)
        if new == read:
            log.debug("fortnox.stock.unchanged", tenant=self.client.tenant)
            return StockWrite(article_number, read, read, changed=False)
        await self.put_quantity(article_number, new)
        return StockWrite(article_number, read, new, changed=True)

    async def apply_delta(
        self,
        article_number: str,
        delta: Decimal,
        remember: Callable[[StockIntent], None],
    ) -> StockWrite:
        """Read ``QuantityInStock`` and write it plus ``delta``, as one pair of limiter slots.

        ``remember`` records the intent (what was read, what is about to be written) before the
        write leaves, so a process that dies, or an answer that is lost, is settled by
        :func:`settle_intent` from a later read. The write is sent once: a failure after it may
        have arrived raises :class:`~engine.fortnox.errors.UnknownOutcome`.
        """
        if await self.warehouse_active():
            raise self._refuse(article_number)
        clock = time.monotonic
        for fresh in range(MAX_REREADS + 1):
            async with self.client.limiter.pair():
                read = await self.read_quantity(article_number)
                read_at = clock()
                written = read + delta
                if written == read:
                    return StockWrite(article_number, read, read, changed=False)
                remember(StockIntent(read, written))
                age = clock() - read_at
                if age > self.max_read_age and fresh < MAX_REREADS:
                    # Recording the intent took long (a busy disk, a starved event loop): a
                    # sale may have landed since. Read again (a new pair) rather than write a
                    # level that old. The recorded intent is replaced before anything leaves.
                    log.info(
                        "fortnox.stock.reread_before_write",
                        tenant=self.client.tenant,
                        article=article_number,
                        read_age=round(age, 3),
                    )
                    continue
                # Straight after the read, on the held slot: no pacing, no second read.
                await self.put_quantity(article_number, written)
                return StockWrite(article_number, read, written, changed=True)
        raise AssertionError("unreachable: the last pass always writes")

    async def put_quantity(self, article_number: str, new: Decimal) -> None:
        """Set ``QuantityInStock`` (absolute; no read first — the caller read it and recorded
        what it is about to write). Sent once, never repeated by the HTTP layer (a stale
        absolute value would overwrite what changed since the read). Checks Fortnox kept it."""
        if await self.warehouse_active():
            raise self._refuse(article_number)
        path = f"/3/articles/{seg(article_number)}"
        body = {"Article": Article(quantity_in_stock=new).to_payload()}
        data = await self.client.send_json("PUT", path, body, repeat=False)
        stored = parse_item(Article, data.get("Article"), self.client.tenant, path)
        if stored.quantity_in_stock is not None and stored.quantity_in_stock != new:
            # Fortnox ignored the absolute write: the warehouse module took over meanwhile.
            self._active = None
            if await self.warehouse_active(refresh=True):
                raise self._refuse(article_number)
            raise UnexpectedResponse(
                f"Fortnox kept QuantityInStock {stored.quantity_in_stock} instead of {new}",
                tenant=self.client.tenant,
                path=path,
            )
        log.info(
            "fortnox.stock.written",
            tenant=self.client.tenant,
            article=article_number,
            written=str(new),
        )

    async def invoice_stock(self, number: str) -> InvoiceStock:
        """An invoice's stock rows (``GET /3/invoices/{n}``)."""
        path = f"/3/invoices/{seg(number)}"
        data = await self.client.get_json(path)
        return parse_item(InvoiceStock, data.get("Invoice"), self.client.tenant, path)

    # --- with the warehouse module ---------------------------------------------------------

    async def balances(self, item_ids: list[str]) -> list[StockBalance]:
        path = "/api/warehouse/status-v1/stockbalance"
        response = await self.client.request("GET", path, params={"itemIds": ",".join(item_ids)})
        try:
            data = response.json()
        except ValueError:
            raise UnexpectedResponse(
                "stock balances are not JSON", tenant=self.client.tenant, path=path
            ) from None
        items = data if isinstance(data, list) else data.get("StockBalances", [])
        return [parse_item(StockBalance, i, self.client.tenant, path) for i in items]

    async def move(
        self,
        command_id: str,
        changes: Mapping[str, Decimal],
        *,
        day: date,
        note: str | None = None,
    ) -> StockMove:
        """Move stock by ``changes`` (article -> signed delta) through warehouse documents.

        Negative deltas go out on a custom outbound document, positive ones in on a custom
        inbound document, both with an id derived from ``command_id``: repeating the command
        PUTs the same documents again instead of moving stock twice.
        """
        mode = await self.mode()
        if mode is StockMode.ARTICLE_QUANTITY:
            raise ValueError("the warehouse module is not active: use write_quantity()")
        if mode is StockMode.WAREHOUSE_REFUSED:
            raise self._refuse(next(iter(changes), None))
        doc_id = document_id(command_id)
        text = note or f"Kassasync {command_id}"[:1000]
        out_rows = [(a, -d) for a, d in changes.items() if d < 0]
        in_rows = [(a, d) for a, d in changes.items() if d > 0]
        documents: list[CustomDocument] = []
        if out_rows:
            doc = CustomDocument(
                date=day,
                delivery_state="delivery",
                note=text,
                rows=[self._row(a, q, delivered=True) for a, q in out_rows],
            )
            documents.append(await self._put("outbound-v1", self.outbound_type, doc_id, doc))
        if in_rows:
            doc = CustomDocument(
                date=day, note=text, rows=[self._row(a, q, delivered=False) for a, q in in_rows]
            )
            documents.append(await self._put("inbound-v1", self.inbound_type, doc_id, doc))
        log.info(
            "fortnox.stock.moved",
            tenant=self.client.tenant,
            document_id=doc_id,
            outbound_rows=len(out_rows),
            inbound_rows=len(in_rows),
        )
        return StockMove(command_id, doc_id, tuple(documents))

    def _row(self, article: str, quantity: Decimal, *, delivered: bool) -> CustomDocumentRow:
        row = CustomDocumentRow(item_id=article, quantity=quantity)
        if delivered:
            row.delivered_quantity = quantity
        if self.stock_point_id:
            row.stock_point_id = self.stock_point_id
        return row

    async def _put(
        self, direction: str, doc_type: str, doc_id: str, doc: CustomDocument
    ) -> CustomDocument:
        path = f"{CUSTOM_DOCS}/{direction}/{seg(doc_type)}/{doc_id}"
        data = await self.client.send_json("PUT", path, doc.to_payload(), idempotent=True)
        if not data:
            return doc
        return parse_item(CustomDocument, data, self.client.tenant, path)


# --- overwrites: a foreign change close to an absolute write ----------------------------------


@dataclass(frozen=True)
class Suspect:
    """An absolute write the topics feed showed a foreign change close to."""

    article_number: str
    command_id: str
    read: Decimal
    written: Decimal
    #: Feed events of the article during the watch that were not Kassasync's own writes.
    foreign_events: int
    #: Seconds from sending the read to the write's answer: the longest the window can be.
    window: float
    #: The read of Kassasync's next write of the article, if one read since (else None).
    next_read: Decimal | None
    #: When (loop time) the watch began, just before the read: names the write in the ledger.
    begun: float = 0.0


@dataclass(frozen=True)
class ArticleEvent:
    """One feed event of an article: the server's timestamp (None if it had none) and when it
    arrived (loop time)."""

    stamp: float | None
    arrived: float


@dataclass(frozen=True)
class InvoiceEvent:
    """A feed event of an invoice (``invoice-created-v1``): a sale made in Fortnox."""

    number: str
    stamp: float
    arrived: float


@dataclass(frozen=True)
class OwnWrite:
    """An absolute write of Kassasync's that Fortnox applied (answered, or proven by a read)."""

    command_id: str
    read: Decimal
    written: Decimal
    begun: float
    answered: float

    @property
    def window(self) -> float:
        return self.answered - self.begun


@dataclass(frozen=True)
class Segment:
    """What happened to an article between two of Kassasync's writes, in Fortnox's order.

    ``anchor`` is the level the earlier write set; ``invoices`` are the sales Fortnox applied
    after it and before the later write (each an invoice the feed announced together with the
    article's change). The later write's read contains a prefix of them; the rest it
    overwrote (:func:`overwritten_sales`).
    """

    anchor: Decimal
    invoices: tuple[str, ...]


@dataclass(frozen=True)
class Unestablished:
    """Why the foreign change a write overwrote cannot be established (then it is reported)."""

    reason: str


def overwritten_sales(anchor: Decimal, read: Decimal, changes: list[Decimal]) -> Decimal | None:
    """The part of ``changes`` a write overwrote, or None when that cannot be told.

    ``changes`` are the foreign changes Fortnox applied after ``anchor`` (the level Kassasync's
    previous write set) and before the write, in Fortnox's order; the write read ``read``, so
    its read contains exactly the prefix whose sum takes ``anchor`` to ``read``, and the write
    replaced the rest. Pure. None when no prefix or more than one fits (changes that cancel
    out: the level cannot say where the read fell).
    """
    level = anchor
    splits: list[int] = []
    for i in range(len(changes) + 1):
        if level == read:
            splits.append(i)
        if i < len(changes):
            level += changes[i]
    if len(splits) != 1:
        return None
    return sum(changes[splits[0] :], Decimal(0))


@dataclass
class Watch:
    article_number: str
    started: float
    stamps: list[float] = field(default_factory=list)
    unstamped: int = 0
    #: Kassasync's own writes of the article whose echo may fall in this watch (itself first).
    own: int = 1
    command_id: str = ""
    read: Decimal = Decimal(0)
    written: Decimal = Decimal(0)
    answered: float | None = None
    next_read: Decimal | None = None
    #: The earlier watches this write was counted in as one of ours (its echo expected there).
    counted_in: list[Watch] = field(default_factory=list)


class OverlapWatch:
    """Finds absolute writes a foreign change may have overwritten, from the topics feed.

    Fortnox's feed announces every change of an article (``article-updated-v1``) with the
    server's timestamp, in order; Kassasync's own write is one of them, its read is not. A sale
    Fortnox applied between the read and the write (the window: at most ``window`` = answer
    time - read send time long) therefore shows as one more event whose timestamp lies within
    ``window`` of another. :meth:`begin` starts watching the article before the read;
    :meth:`finish` ends the write; :meth:`due` returns, once ``lag`` seconds for late events
    have passed, the writes with a foreign event that close. :func:`overwritten` then decides
    from the level after the write. Without the feed nothing is found.
    """

    def __init__(
        self, *, lag: float = 5.0, slack: float = 0.01, keep: float = 120.0, match: float = 0.01
    ) -> None:
        self.lag = lag
        self.slack = slack
        #: Seconds of article events, invoice events and own writes kept for :meth:`segment`.
        self.keep = keep
        #: Most seconds between an invoice's event and its article's event to pair them.
        self.match = match
        self._open: dict[str, list[Watch]] = {}
        self._history: dict[str, list[ArticleEvent]] = {}
        #: Per article, events that arrived before this (loop time) were dropped (none yet:
        #: the writes remembered are all younger than this watch).
        self._kept_since: dict[str, float] = {}
        self._invoices: list[InvoiceEvent] = []
        self._writes: dict[str, list[OwnWrite]] = {}
        #: Writes whose watch ended with no foreign change close (:meth:`take_checked`).
        self._checked: list[str] = []

    def begin(self, article_number: str, now: float) -> Watch:
        watch = Watch(article_number, now)
        for other in self._open.get(article_number, ()):
            if other.answered is None or now <= other.answered + self.lag:
                # This write's echo may come while the earlier watch still collects.
                other.own += 1
                watch.counted_in.append(other)
        self._open.setdefault(article_number, []).append(watch)
        return watch

    def event(self, article_number: str, stamp: float | None, now: float) -> None:
        history = self._history.setdefault(article_number, [])
        history.append(ArticleEvent(stamp, now))
        if history[0].arrived < now - self.keep:
            cut = now - self.keep
            self._history[article_number] = [e for e in history if e.arrived >= cut]
            self._kept_since[article_number] = cut
        for watch in self._open.get(article_number, ()):
            if watch.answered is None or now <= watch.answered + self.lag:
                if stamp is None:
                    watch.unstamped += 1
                else:
                    watch.stamps.append(stamp)

    def finish(
        self,
        watch: Watch,
        now: float,
        *,
        command_id: str,
        read: Decimal,
        written: Decimal,
        changed: bool,
    ) -> None:
        for other in self._open.get(watch.article_number, ()):
            if other is not watch and other.answered is not None and other.next_read is None:
                other.next_read = read
        if not changed:
            self._uncount(watch)
            self._drop(watch)
            return
        watch.command_id, watch.read, watch.written, watch.answered = (
            command_id,
            read,
            written,
            now,
        )
        writes = self._writes.setdefault(watch.article_number, [])
        writes.append(OwnWrite(command_id, read, written, watch.started, now))
        if writes[0].answered < now - self.keep:
            self._writes[watch.article_number] = [
                w for w in writes if w.answered >= now - self.keep
            ]

    def invoice(self, number: str, stamp: float | None, now: float) -> None:
        """The feed announced an invoice: a sale that may have moved an article's stock."""
        if stamp is None:
            return
        self._invoices.append(InvoiceEvent(number, stamp, now))
        if self._invoices[0].arrived < now - self.keep:
            self._invoices = [i for i in self._invoices if i.arrived >= now - self.keep]

    def _pair_invoices(self, article_number: str, since: float) -> list[str | None]:
        """Per event of ``article_number`` arrived since ``since``, the invoice announced with
        it (None: not a sale, e.g. our own write).

        An invoice goes with the article event closest to it of any article (within ``match``
        seconds), closest pairs first, each invoice and each event used once: an event of our
        own write a moment from a sale, or another article's sale a moment from this one's,
        does not take the sale's invoice."""
        events = [e for e in self._history.get(article_number, []) if e.arrived >= since]
        stamps = [e.stamp for e in events if e.stamp is not None]
        if not stamps:
            return [None] * len(events)
        low, high = min(stamps) - 2 * self.match, max(stamps) + 2 * self.match
        invoices = [item for item in self._invoices if low <= item.stamp <= high]
        candidates: list[tuple[float, str, int, str]] = []
        for article, history in self._history.items():
            for i, e in enumerate(history):
                if e.stamp is None or not low - self.match <= e.stamp <= high + self.match:
                    continue
                for item in invoices:
                    distance = abs(e.stamp - item.stamp)
                    if distance <= self.match:
                        candidates.append((distance, article, i, item.number))
        used_events: set[tuple[str, int]] = set()
        used_invoices: set[str] = set()
        mine: dict[int, str] = {}
        for _distance, article, i, number in sorted(candidates):
            if (article, i) in used_events or number in used_invoices:
                continue
            used_events.add((article, i))
            used_invoices.add(number)
            if article == article_number:
                mine[i] = number
        # The events since ``since`` are the end of the article's history (arrival order).
        first = len(self._history.get(article_number, [])) - len(events)
        return [mine.get(first + i) for i in range(len(events))]

    def segment(self, suspect: Suspect) -> Segment | Unestablished:
        """The sales between ``suspect``'s write and Kassasync's write of the article before it.

        The feed gives every change of the article in Fortnox's order; a web shop's sale comes
        with an invoice event of the same moment, Kassasync's own write with none. So the
        events without an invoice are Kassasync's writes (the earlier one first, then this
        one), and the invoices between them are the sales in between. Anything else (a change
        without an invoice, events missing, a write not remembered) is :class:`Unestablished`.
        """
        article = suspect.article_number
        writes = self._writes.get(article, [])
        index = next(
            (
                i
                for i, w in enumerate(writes)
                if w.command_id == suspect.command_id and w.begun == suspect.begun
            ),
            None,
        )
        if index is None:
            return Unestablished("the write is no longer remembered")
        if index == 0:
            return Unestablished("no earlier write of the article to start from")
        earlier, this = writes[index - 1], writes[index]
        if self._kept_since.get(article, -math.inf) > earlier.begun:
            return Unestablished("the article's feed events since the earlier write are not kept")
        events = [e for e in self._history.get(article, []) if e.arrived >= earlier.begun]
        sales = self._pair_invoices(article, earlier.begun)
        own = [i for i, number in enumerate(sales) if number is None]
        # Writes after this one may have their events in too: those done, and those under way.
        later = len(writes) - index - 1
        later += sum(1 for w in self._open.get(article, ()) if w.answered is None)
        if len(own) < 2:
            return Unestablished("the feed did not show both writes")
        if len(own) > 2 + later:
            return Unestablished(
                f"a change without an invoice (not a sale) came in between ({len(own)} events "
                f"without an invoice, {later} later writes)"
            )
        first, second = events[own[0]], events[own[1]]
        if first.stamp is not None and second.stamp is not None:
            apart = second.stamp - first.stamp
            expected = this.answered - earlier.answered
            if abs(apart - expected) > this.window + earlier.window + self.slack:
                return Unestablished("the events without an invoice are not the two writes")
        between = [n for n in sales[own[0] + 1 : own[1]] if n is not None]
        return Segment(earlier.written, tuple(between))

    def abandon(self, watch: Watch) -> None:
        """The write did not reach Fortnox (or was never sent): no echo of it will come."""
        self._uncount(watch)
        self._drop(watch)

    def _uncount(self, watch: Watch) -> None:
        # Otherwise the earlier watches would take a foreign event for this write's echo.
        for other in watch.counted_in:
            other.own -= 1
        watch.counted_in.clear()

    def _drop(self, watch: Watch) -> None:
        watches = self._open.get(watch.article_number, [])
        if watch in watches:
            watches.remove(watch)
        if not watches:
            self._open.pop(watch.article_number, None)

    def due(self, now: float) -> list[Suspect]:
        """Writes whose watch is over with a foreign event within the window of another."""
        found: list[Suspect] = []
        for watches in list(self._open.values()):
            for watch in list(watches):
                if watch.answered is None or now < watch.answered + self.lag:
                    continue
                self._drop(watch)
                window = watch.answered - watch.started
                stamps = sorted(watch.stamps)
                foreign = len(stamps) + watch.unstamped - watch.own
                close = watch.unstamped > 0 or any(
                    b - a <= window + self.slack for a, b in itertools.pairwise(stamps)
                )
                if not (foreign > 0 and close):
                    self._checked.append(watch.command_id)
                else:
                    found.append(
                        Suspect(
                            watch.article_number,
                            watch.command_id,
                            watch.read,
                            watch.written,
                            foreign,
                            window,
                            watch.next_read,
                            watch.started,
                        )
                    )
        return found

    def open_until(self) -> float | None:
        """When (loop time) the last answered write's watch ends; None when none is open."""
        ends = [
            w.answered + self.lag
            for watches in self._open.values()
            for w in watches
            if w.answered is not None
        ]
        return max(ends) if ends else None

    def take_checked(self) -> list[str]:
        """The command ids of writes whose watch ended, since the last call, with no foreign
        change close to them (:meth:`due` returns the others)."""
        checked, self._checked = self._checked, []
        return checked


def overwritten(suspect: Suspect, level: Decimal) -> bool:
    """Whether ``suspect``'s write may have overwritten a foreign change, given ``level``: the
    article's quantity read after the write and before Kassasync wrote it again.

    A foreign change after the write shows in the level; one inside the window leaves none
    (the write replaced it). With one foreign event, a level that moved from the value written
    means that event came after the write: nothing was lost. A level still at the value written
    (or several foreign events, which the level cannot tell apart) means one may have been
    overwritten.
    """
    if suspect.foreign_events <= 0:
        return False
    if suspect.foreign_events == 1:
        return level == suspect.written
    return True
