"""Changes observed in Fortnox (topic ``fortnox.changes``).

Pollers and the topics-feed listener publish these; so does the Fortnox writer for its own stock
writes (``fortnox.stock.written``), because for one tenant all Fortnox reads and writes happen in
one sequence and must reach the reconciler in that order.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import Field, StringConstraints

from topics.common import (
    AccountNumber,
    ArticleNumber,
    CurrencyCode,
    CustomerNumber,
    Ident,
    Money,
    Quantity,
    ShortText,
    VatRate,
)
from topics.envelope import Envelope, Model, Source
from topics.names import Topic
from topics.till import CustomerFields

#: Text as Fortnox keeps it: whatever Fortnox accepts (a space in a barcode, a control character
#: in a description), bounded. Whether the till can take it is the reconcilers' decision, per
#: record; a record is never refused on its way in for it.
FortnoxText = Annotated[str, StringConstraints(max_length=1000)]
#: A Fortnox record's key (article number) as Fortnox keeps it.
FortnoxKey = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class FortnoxChange(Envelope):
    TOPIC: ClassVar[str] = Topic.FORTNOX_CHANGES
    source: Literal[Source.FORTNOX] = Source.FORTNOX


class Observation(Model):
    """Where a change record came from."""

    via: Literal["poll", "feed", "fetch", "full_sync", "write"] = "poll"
    #: Position in the tenant's one sequence of Fortnox reads and writes; a record older than one
    #: already applied is stale and ignored.
    seq: int | None = Field(default=None, ge=0)
    #: Set on records of a full pass over a resource; ``fortnox.sync.completed`` closes the pass.
    sync_pass: Ident | None = None


# --- customers -------------------------------------------------------------------------------


#: Kassasync marks every customer it creates in Fortnox for a till customer with this prefix and
#: the till's customer id in ``ExternalReference``: the mark outlives any state Kassasync keeps.
CUSTOMER_REFERENCE_PREFIX = "kassasync:"


def customer_reference(till_customer_id: str) -> str:
    """The ``ExternalReference`` Kassasync gives the Fortnox customer of a till customer."""
    return f"{CUSTOMER_REFERENCE_PREFIX}{till_customer_id}"


def referenced_till_customer(external_reference: object) -> str | None:
    """The till customer id a Fortnox ``ExternalReference`` names, if it is Kassasync's mark and
    a valid till id; anything else (a user's own reference) names nobody."""
    if not isinstance(external_reference, str):
        return None
    if not external_reference.startswith(CUSTOMER_REFERENCE_PREFIX):
        return None
    till_id = external_reference[len(CUSTOMER_REFERENCE_PREFIX) :]
    if not 0 < len(till_id) <= 100 or any(ord(c) < 0x20 or ord(c) == 0x7F for c in till_id):
        return None
    return till_id


class FortnoxCustomerData(Model):
    customer_number: CustomerNumber
    customer: CustomerFields
    observed: Observation = Field(default_factory=Observation)
    #: The till customer this Fortnox customer was created for, from Kassasync's mark in its
    #: ``ExternalReference`` (see ``customer_reference``); None for any other customer.
    created_for: Ident | None = None


class FortnoxCustomerChanged(FortnoxChange):
    type: Literal["fortnox.customer.changed"] = "fortnox.customer.changed"
    data: FortnoxCustomerData


class FortnoxCustomerDeletedData(Model):
    customer_number: CustomerNumber


class FortnoxCustomerDeleted(FortnoxChange):
    type: Literal["fortnox.customer.deleted"] = "fortnox.customer.deleted"
    data: FortnoxCustomerDeletedData


# --- articles --------------------------------------------------------------------------------


class FortnoxArticle(Model):
    """An article as Fortnox has it. Text fields take what Fortnox accepts; the till's rules
    (:class:`topics.commands.TillArticle`) are applied by the articles reconciler."""

    article_number: FortnoxKey
    description: FortnoxText
    ean: FortnoxText | None = None
    active: bool = True
    stock_goods: bool = False
    quantity_in_stock: Quantity = Decimal(0)
    unit: FortnoxText | None = None
    vat: VatRate | None = None
    #: Price from the tenant's chosen price list (null when the article has none there).
    price: Money | None = None
    price_list: Ident | None = None


class FortnoxArticleData(Model):
    article: FortnoxArticle
    observed: Observation = Field(default_factory=Observation)


class FortnoxArticleChanged(FortnoxChange):
    type: Literal["fortnox.article.changed"] = "fortnox.article.changed"
    data: FortnoxArticleData


class FortnoxArticleDeletedData(Model):
    article_number: FortnoxKey


class FortnoxArticleDeleted(FortnoxChange):
    type: Literal["fortnox.article.deleted"] = "fortnox.article.deleted"
    data: FortnoxArticleDeletedData


class SyncedResource(StrEnum):
    CUSTOMERS = "customers"
    ARTICLES = "articles"


class SyncCompletedData(Model):
    resource: SyncedResource
    sync_pass: Ident
    count: int = Field(ge=0, description="How many records the pass published.")
    started_seq: int | None = Field(
        default=None,
        ge=0,
        description="The tenant's Fortnox observation number taken as the pass began: a record "
        "shown present by a newer observation is absent from the pass only because it is newer.",
    )


class FortnoxSyncCompleted(FortnoxChange):
    """A full pass over a resource finished; records not seen in it are missing in Fortnox."""

    type: Literal["fortnox.sync.completed"] = "fortnox.sync.completed"
    data: SyncCompletedData


class OverlapReason(StrEnum):
    #: The answer to the write was lost (or the process died) and the level read afterwards was
    #: neither the value read nor the value written: someone else changed the article meanwhile.
    OUTCOME_AMBIGUOUS = "outcome_ambiguous"
    #: The answer to the write was lost (or the process died) and the level alone cannot prove
    #: what happened. Fortnox shows the value written: taken as arrived, but a foreign change of
    #: the write's size in that moment, with the write lost, would show the same. Or (after the
    #: process died, or with feed events around the write) Fortnox shows the value read: taken
    #: as not arrived, but the write arriving together with a foreign change of the opposite
    #: size (a sale undoing a delivery) would show the same.
    OUTCOME_UNPROVEN = "outcome_unproven"
    #: Fortnox's topics feed announced a change of the article within one read-to-write window
    #: of another change around the write: a sale may have landed between the read and the write.
    FEED_EVENT_IN_WINDOW = "feed_event_in_window"
    #: The write was answered, but the feed watch of its window never ended (the engine stopped
    #: within seconds of the write): a sale inside the window cannot be ruled out.
    CHECK_INTERRUPTED = "check_interrupted"


class StockOverlap(Model):
    """A change someone else made in Fortnox overlapped Kassasync's absolute stock write: a
    sale may have been overwritten (or the write counted twice). Shown to the shop."""

    reason: OverlapReason
    read: Quantity = Field(description="QuantityInStock read before the write.")
    written: Quantity = Field(description="QuantityInStock the write set.")
    level: Quantity | None = Field(
        default=None, description="QuantityInStock read afterwards to settle the write."
    )
    foreign: Quantity | None = Field(
        default=None, description="The change by someone else this reading implies, if known."
    )
    assumed_landed: bool = Field(
        default=True, description="Whether the write was taken to have arrived."
    )
    window_seconds: float | None = Field(
        default=None, ge=0, description="Longest the read-to-write window can have been."
    )
    events: int | None = Field(
        default=None, ge=0, description="Foreign feed events of the article around the write."
    )
    repaired: bool = Field(
        default=False,
        description=(
            "The overwritten change (``foreign``, established from the sales' invoices) was "
            "applied to Fortnox again: nothing was lost."
        ),
    )
    repair_read: Quantity | None = Field(
        default=None, description="QuantityInStock the repair read before writing."
    )
    repair_written: Quantity | None = Field(
        default=None, description="QuantityInStock the repair wrote (repair_read + foreign)."
    )


class StockWrittenData(Model):
    article_number: ArticleNumber
    command_id: Ident
    read: Quantity = Field(description="QuantityInStock read just before the write.")
    written: Quantity = Field(description="QuantityInStock written (read + the command's delta).")
    seq: int | None = Field(default=None, ge=0, description="Position in the tenant's Fortnox I/O.")
    overlap: StockOverlap | None = Field(
        default=None, description="Set when a foreign change overlapped the write."
    )
    watch: Ident | None = Field(
        default=None,
        description=(
            "The topics-feed watch that looks for a foreign change inside the write's window "
            "(one per session: see fortnox.stock.watch_started); None when none looks. A "
            "fortnox.stock.checked or a fortnox.stock.overlap for the write ends it."
        ),
    )


class FortnoxStockWritten(FortnoxChange):
    """Kassasync's own stock write, as Fortnox saw it."""

    type: Literal["fortnox.stock.written"] = "fortnox.stock.written"
    data: StockWrittenData


class PolledResource(StrEnum):
    ARTICLES = "articles"
    CUSTOMERS = "customers"
    PAYMENTS = "payments"


class UnreadableData(Model):
    resource: PolledResource
    key: Ident = Field(description="The record's key, control characters escaped.")
    problem: ShortText = Field(description="What could not be read, in the shop's words.")
    observed: Observation = Field(default_factory=Observation)


class FortnoxRecordUnreadable(FortnoxChange):
    """A Fortnox record Kassasync cannot turn into a change record: reported for that record;
    it still counts as present in a full pass (it is not missing in Fortnox)."""

    type: Literal["fortnox.record.unreadable"] = "fortnox.record.unreadable"
    data: UnreadableData


class StockOverlapData(Model):
    article_number: ArticleNumber
    command_id: Ident = Field(description="The fortnox.stock.apply command whose write it was.")
    overlap: StockOverlap
    seq: int | None = Field(
        default=None, ge=0, description="Position in the tenant's Fortnox I/O (of a repair)."
    )


class FortnoxStockOverlapFound(FortnoxChange):
    """A foreign change was found close to one of Kassasync's earlier absolute stock writes
    (after the write was settled): a possible lost sale, for the shop to check."""

    type: Literal["fortnox.stock.overlap"] = "fortnox.stock.overlap"
    data: StockOverlapData


class StockChecksData(Model):
    command_ids: list[Ident] = Field(
        min_length=1,
        max_length=10_000,
        description="The fortnox.stock.apply commands whose feed watch ended with nothing found.",
    )


class FortnoxStockChecked(FortnoxChange):
    """The feed watch of these absolute stock writes ended and found no foreign change inside
    their windows (a found one is a fortnox.stock.overlap instead)."""

    type: Literal["fortnox.stock.checked"] = "fortnox.stock.checked"
    data: StockChecksData


class StockWatchData(Model):
    watch: Ident = Field(description="The new watch's id, unique per session start.")


class FortnoxStockWatchStarted(FortnoxChange):
    """A Fortnox session started a new feed watch. Writes an earlier watch was still looking at
    will never be checked (its process stopped): each is a possible lost sale."""

    type: Literal["fortnox.stock.watch_started"] = "fortnox.stock.watch_started"
    data: StockWatchData


# --- payments --------------------------------------------------------------------------------


class FortnoxPayment(Model):
    number: Ident
    invoice_number: int = Field(ge=0)
    amount: Money = Field(description="Amount in SEK.")
    amount_currency: Money | None = Field(
        default=None, description="Amount in the invoice currency."
    )
    currency: CurrencyCode = "SEK"
    currency_rate: Decimal | None = Field(default=None, gt=0)
    currency_unit: Decimal | None = Field(default=None, gt=0)
    payment_date: dt.date
    booked: bool = False


class FortnoxPaymentData(Model):
    payment: FortnoxPayment
    observed: Observation = Field(default_factory=Observation)


class FortnoxPaymentChanged(FortnoxChange):
    type: Literal["fortnox.payment.changed"] = "fortnox.payment.changed"
    data: FortnoxPaymentData


class FortnoxPaymentDeletedData(Model):
    number: Ident


class FortnoxPaymentDeleted(FortnoxChange):
    type: Literal["fortnox.payment.deleted"] = "fortnox.payment.deleted"
    data: FortnoxPaymentDeletedData


# --- bookkeeping master data -----------------------------------------------------------------


class CostCenterSetting(StrEnum):
    ALLOWED = "ALLOWED"
    MANDATORY = "MANDATORY"
    NOTALLOWED = "NOTALLOWED"


class FinancialYear(Model):
    id: int
    from_date: dt.date
    to_date: dt.date


class AccountInfo(Model):
    number: AccountNumber
    active: bool = True
    cost_center_settings: CostCenterSetting = CostCenterSetting.ALLOWED


class SeriesInfo(Model):
    code: Ident
    manual: bool


class CostCenterInfo(Model):
    code: Ident
    active: bool = True


class ProjectInfo(Model):
    number: Ident
    status: str | None = None


class YearMasterData(Model):
    year: FinancialYear
    accounts: list[AccountInfo] = Field(default_factory=list)
    series: list[SeriesInfo] = Field(default_factory=list)


class MasterData(Model):
    years: list[YearMasterData] = Field(default_factory=list)
    cost_centers: list[CostCenterInfo] = Field(default_factory=list)
    #: Fortnox's projects; None when Kassasync cannot read them (no access to projects).
    projects: list[ProjectInfo] | None = None
    #: Bookkeeping is locked up to and including this date.
    locked_until: dt.date | None = None
    terms_of_payment: list[Ident] = Field(default_factory=list)
    warehouse_active: bool = False


class FortnoxMasterDataRefreshed(FortnoxChange):
    """A fresh copy of the master data the bookkeeping preflight checks against."""

    type: Literal["fortnox.masterdata.refreshed"] = "fortnox.masterdata.refreshed"
    data: MasterData


# --- ledger ----------------------------------------------------------------------------------


class VoucherRowInfo(Model):
    account: AccountNumber
    debit: Money = Decimal(0)
    credit: Money = Decimal(0)
    cost_center: Ident | None = None
    description: ShortText | None = None


class FortnoxVoucher(Model):
    series: Ident
    number: int = Field(ge=1)
    year: int
    transaction_date: dt.date
    description: ShortText
    rows: list[VoucherRowInfo] = Field(default_factory=list)
    attachments: list[Ident] = Field(default_factory=list, description="Fortnox file ids.")


class FortnoxVoucherData(Model):
    voucher: FortnoxVoucher
    observed: Observation = Field(default_factory=Observation)


class FortnoxVoucherChanged(FortnoxChange):
    type: Literal["fortnox.voucher.changed"] = "fortnox.voucher.changed"
    data: FortnoxVoucherData
