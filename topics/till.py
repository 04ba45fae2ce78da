"""Events a till sends (topic ``till.events``)."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from topics.common import (
    ArticleNumber,
    CurrencyCode,
    Ean,
    Email,
    Ident,
    LongText,
    Money,
    Percent,
    ShortText,
    TillCount,
    TillDate,
    TillQuantity,
    TillTime,
    VatRate,
)
from topics.envelope import Envelope, Model, Source
from topics.names import Topic


class TillEvent(Envelope):
    """What a till sends: the envelope with the door's bounds on the till's own values (the
    ingest API also refuses an ``occurred_at`` more than five minutes ahead of its clock)."""

    TOPIC: ClassVar[str] = Topic.TILL_EVENTS
    source: Literal[Source.TILL] = Source.TILL
    version: int = Field(default=1, ge=1, le=1000, description="Schema version of this type.")
    occurred_at: TillTime = Field(
        description="When it happened in the till (ISO 8601 with a time zone, years 2000-2100)."
    )


# --- customers -------------------------------------------------------------------------------


class CustomerType(StrEnum):
    PRIVATE = "PRIVATE"
    COMPANY = "COMPANY"


class CustomerFields(Model):
    """A customer's synchronised fields, as both sides know them."""

    name: ShortText = Field(min_length=1)
    organisation_number: ShortText | None = None
    email: Email | None = None
    phone: ShortText | None = None
    address1: ShortText | None = None
    address2: ShortText | None = None
    zip_code: ShortText | None = None
    city: ShortText | None = None
    country_code: ShortText | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    type: CustomerType = CustomerType.PRIVATE
    active: bool = True


#: The till's own order of one customer's edits (see ``docs/contract.md``).
Sequence = Field(
    default=None,
    ge=0,
    le=2**63 - 1,
    description="Optional: the till's version of this customer, higher for every later edit or "
    "deletion of the same customer (a row version, an edit counter). Kassasync applies the "
    "edits of one customer in this order; without it, in the order they were received.",
)


class CustomerUpsertedData(Model):
    till_customer_id: Ident
    customer: CustomerFields
    sequence: int | None = Sequence


class CustomerUpserted(TillEvent):
    """A customer was created or edited in the till."""

    type: Literal["till.customer.upserted"] = "till.customer.upserted"
    data: CustomerUpsertedData


class CustomerDeletedData(Model):
    till_customer_id: Ident
    sequence: int | None = Sequence


class CustomerDeleted(TillEvent):
    type: Literal["till.customer.deleted"] = "till.customer.deleted"
    data: CustomerDeletedData


# --- articles --------------------------------------------------------------------------------


class TillArticleFields(Model):
    description: ShortText | None = None
    ean: Ean | None = None
    price: Money | None = None
    vat: VatRate | None = None
    unit: ShortText | None = None


class ArticleEditedData(Model):
    article_number: ArticleNumber
    changes: TillArticleFields


class ArticleEdited(TillEvent):
    """Someone edited an article in the till. Fortnox is master: the edit is overwritten and
    reported."""

    type: Literal["till.article.edited"] = "till.article.edited"
    data: ArticleEditedData


# --- stock -----------------------------------------------------------------------------------


class MovementReason(StrEnum):
    SALE = "sale"
    RETURN = "return"
    DELIVERY = "delivery"
    WASTE = "waste"
    CORRECTION = "correction"
    OTHER = "other"


#: The sign a movement's delta must have for its reason (``correction`` and ``other`` take both).
MOVEMENT_SIGN: dict[MovementReason, int] = {
    MovementReason.SALE: -1,
    MovementReason.WASTE: -1,
    MovementReason.RETURN: 1,
    MovementReason.DELIVERY: 1,
}


class StockMovementData(Model):
    article_number: ArticleNumber
    movement_id: Ident = Field(description="The till's own id of the movement; unique per tenant.")
    delta: TillQuantity = Field(
        description="Signed change of the on-hand quantity, never 0 (sale and waste negative, "
        "return and delivery positive)."
    )
    reason: MovementReason

    @model_validator(mode="after")
    def _consistent(self) -> StockMovementData:
        if self.delta == 0:
            raise ValueError("delta is 0: a movement that changes nothing must not be sent")
        sign = MOVEMENT_SIGN.get(self.reason)
        if sign is not None and (self.delta > 0) != (sign > 0):
            want = "negative" if sign < 0 else "positive"
            raise ValueError(f"delta must be {want} for reason '{self.reason.value}'")
        return self


class StockMovement(TillEvent):
    type: Literal["till.stock.movement"] = "till.stock.movement"
    data: StockMovementData


class StockCountedData(Model):
    article_number: ArticleNumber
    count_id: Ident
    quantity: TillQuantity = Field(description="The absolute on-hand quantity counted.")
    last_applied_command_id: Ident | None = Field(
        default=None,
        description="Id of the last Kassasync stock command for this article that the till had "
        "applied when it counted (null if none).",
    )


class StockCounted(TillEvent):
    type: Literal["till.stock.counted"] = "till.stock.counted"
    data: StockCountedData


# --- invoices --------------------------------------------------------------------------------


class InvoiceRow(Model):
    article_number: ArticleNumber | None = None
    description: ShortText = Field(min_length=1)
    quantity: TillQuantity
    unit_price: Money
    vat_rate: VatRate
    discount_percent: Percent = Decimal(0)


class InvoiceCreatedData(Model):
    invoice_id: Ident
    till_customer_id: Ident
    invoice_date: TillDate
    due_date: TillDate | None = None
    currency: CurrencyCode = "SEK"
    terms_of_payment: Ident | None = None
    your_reference: ShortText | None = None
    remarks: LongText | None = None
    rows: list[InvoiceRow] = Field(min_length=1, max_length=500)

    @model_validator(mode="after")
    def _due_after_invoice(self) -> InvoiceCreatedData:
        if self.due_date is not None and self.due_date < self.invoice_date:
            raise ValueError("due_date is before invoice_date")
        return self


class InvoiceCreated(TillEvent):
    type: Literal["till.invoice.created"] = "till.invoice.created"
    data: InvoiceCreatedData


# --- Z-reports -------------------------------------------------------------------------------


class VatLine(Model):
    rate: VatRate
    sales_net: Money = Field(description="Sales excluding VAT at this rate (before returns).")
    sales_vat: Money
    returns_net: Money = Decimal(0)
    returns_vat: Money = Decimal(0)


class PaymentLine(Model):
    method: Ident = Field(description="Payment method code as the till names it (cash, card...).")
    amount: Money


class ProductGroupLine(Model):
    group: Ident
    vat_rate: VatRate
    net: Money = Field(description="Sales excluding VAT in this group (before returns).")
    returns_net: Money = Decimal(0)


class ZReportData(Model):
    z_number: int = Field(
        ge=1, le=10**12, description="The Z-report's number in the till's unbroken series."
    )
    till_id: Ident = Field(description="The till (kassabeteckning).")
    location_code: Ident | None = Field(
        default=None, description="Location or cost-centre code of the till."
    )
    business_date: TillDate
    currency: CurrencyCode = "SEK"
    vat: list[VatLine] = Field(default_factory=list, max_length=20)
    payments: list[PaymentLine] = Field(default_factory=list, max_length=50)
    product_groups: list[ProductGroupLine] = Field(default_factory=list, max_length=500)
    tips: Money = Decimal(0)
    rounding: Money = Field(
        default=Decimal(0),
        description="Payments minus what was due: negative when the shop rounded in the "
        "customer's favour.",
    )
    gift_cards_sold: Money = Decimal(0)
    receipts: TillCount = 0
    grand_total_net: Money | None = None

    @model_validator(mode="after")
    def _unique_keys(self) -> ZReportData:
        rates = [line.rate for line in self.vat]
        if len(rates) != len(set(rates)):
            raise ValueError("vat has the same rate twice")
        methods = [line.method for line in self.payments]
        if len(methods) != len(set(methods)):
            raise ValueError("payments has the same method twice")
        groups = [(g.group, g.vat_rate) for g in self.product_groups]
        if len(groups) != len(set(groups)):
            raise ValueError("product_groups has the same group and rate twice")
        return self


class ZReportClosed(TillEvent):
    """The till closed a day (dagsavslut). Becomes exactly one voucher in Fortnox."""

    type: Literal["till.zreport.closed"] = "till.zreport.closed"
    data: ZReportData


# --- vouchers from the till's own bookkeeping (SIE 4I) ---------------------------------------


class SubmittedRow(Model):
    account: int = Field(ge=1000, le=9999)
    amount: Money = Field(description="Signed: debit positive, credit negative.")
    cost_center: Ident | None = None
    text: ShortText | None = None
    #: A Fortnox project number (the row's SIE dimension 6 object).
    project: Ident | None = None


class VoucherSubmittedData(Model):
    key: Ident = Field(
        description="Identifies the voucher for good (file fingerprint and voucher position): "
        "it is posted once, however often it is sent."
    )
    source: Literal["sie4i"] = "sie4i"
    transaction_date: TillDate
    description: ShortText = Field(min_length=1)
    rows: list[SubmittedRow] = Field(min_length=2, max_length=1000)
    # The source voucher's identity, as the file wrote it (docs/sie.md, "Identity").
    origin: ShortText | None = Field(
        default=None, description="Which books the file comes from: program and company."
    )
    source_series: Ident | None = None
    source_number: Ident | None = None
    registration_date: TillDate | None = None
    signature: ShortText | None = None
    file: ShortText | None = Field(default=None, description="The file's name, for the record.")
    line: int | None = Field(default=None, ge=1, description="The #VER's line in the file.")
    fingerprint: Ident | None = Field(
        default=None, description="The voucher's content: a changed voucher has another."
    )


class VoucherSubmitted(TillEvent):
    """A voucher the till booked itself (a daily SIE 4I file): posted to Fortnox once, through
    the same checks as a Z-report's voucher."""

    type: Literal["till.voucher.submitted"] = "till.voucher.submitted"
    data: VoucherSubmittedData
