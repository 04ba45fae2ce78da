"""Commands: what Kassasync wants done in Fortnox (``fortnox.commands``) and in a till
(``till.commands``).

A command's ``id`` is its idempotency key: it is stable across retries and redeliveries, the till
receives it in the ``Idempotency-Key`` header, and the Fortnox writer uses it (with each command's
own natural key) to look before it creates.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import ClassVar, Literal

from pydantic import Field

from topics.common import (
    AccountNumber,
    ArticleNumber,
    CurrencyCode,
    CustomerNumber,
    Ean,
    Ident,
    LongText,
    Money,
    Quantity,
    ShortText,
    VatRate,
)
from topics.envelope import Envelope, Model, Source
from topics.fortnox import FortnoxPayment, FortnoxVoucher
from topics.names import Topic
from topics.till import CustomerFields, InvoiceRow


class Command(Envelope):
    source: Literal[Source.KASSASYNC] = Source.KASSASYNC
    caused_by: Ident | None = Field(default=None, description="Id of the message that led here.")


class FortnoxCommand(Command):
    TOPIC: ClassVar[str] = Topic.FORTNOX_COMMANDS


class TillCommand(Command):
    TOPIC: ClassVar[str] = Topic.TILL_COMMANDS


# --- to Fortnox ------------------------------------------------------------------------------


class CreateCustomerData(Model):
    till_customer_id: Ident
    #: Kassasync picks the number so a retried create finds the customer it made.
    customer_number: CustomerNumber
    customer: CustomerFields


class CreateFortnoxCustomer(FortnoxCommand):
    type: Literal["fortnox.customer.create"] = "fortnox.customer.create"
    data: CreateCustomerData


class UpdateCustomerData(Model):
    customer_number: CustomerNumber
    customer: CustomerFields


class UpdateFortnoxCustomer(FortnoxCommand):
    type: Literal["fortnox.customer.update"] = "fortnox.customer.update"
    data: UpdateCustomerData


class DeactivateCustomerData(Model):
    customer_number: CustomerNumber


class DeactivateFortnoxCustomer(FortnoxCommand):
    """Fortnox keeps customers with invoices; a till deletion makes the customer inactive."""

    type: Literal["fortnox.customer.deactivate"] = "fortnox.customer.deactivate"
    data: DeactivateCustomerData


class ApplyStockData(Model):
    article_number: ArticleNumber
    delta: Quantity = Field(description="Change to apply to Fortnox's on-hand quantity.")


class ApplyFortnoxStock(FortnoxCommand):
    """Add ``delta`` to the article's stock in Fortnox (read-then-write of QuantityInStock, or a
    warehouse document keyed by the command id)."""

    type: Literal["fortnox.stock.apply"] = "fortnox.stock.apply"
    data: ApplyStockData


class VoucherRow(Model):
    account: AccountNumber
    debit: Money = Decimal(0)
    credit: Money = Decimal(0)
    cost_center: Ident | None = None
    description: ShortText | None = Field(default=None, max_length=100)
    #: A Fortnox project number (SIE dimension 6 of an imported voucher's row).
    project: Ident | None = None


class VoucherDraft(Model):
    series: Ident
    transaction_date: dt.date
    description: ShortText = Field(min_length=1)
    comments: LongText | None = None
    cost_center: Ident | None = None
    rows: list[VoucherRow] = Field(min_length=2)


class CreateVoucherData(Model):
    #: The natural key: one voucher per Z-report, ever (``{till_id}:{z_number}``).
    zreport_key: Ident
    voucher: VoucherDraft
    financial_year: int


class CreateFortnoxVoucher(FortnoxCommand):
    type: Literal["fortnox.voucher.create"] = "fortnox.voucher.create"
    data: CreateVoucherData


class OrderRow(Model):
    article_number: ArticleNumber | None = None
    description: ShortText
    quantity: Quantity
    price: Money
    vat: VatRate
    discount_percent: Decimal = Decimal(0)


class CreateOrderData(Model):
    invoice_id: Ident
    #: Written to ExternalInvoiceReference1 and looked up (exact match) before any create.
    external_reference: ShortText
    customer_number: CustomerNumber
    order_date: dt.date
    delivery_date: dt.date | None = None
    currency: CurrencyCode = "SEK"
    terms_of_payment: Ident | None = None
    your_reference: ShortText | None = None
    remarks: LongText | None = None
    rows: list[OrderRow] = Field(min_length=1, max_length=500)

    @staticmethod
    def rows_from_invoice(rows: list[InvoiceRow]) -> list[OrderRow]:
        return [
            OrderRow(
                article_number=r.article_number,
                description=r.description,
                quantity=r.quantity,
                price=r.unit_price,
                vat=r.vat_rate,
                discount_percent=r.discount_percent,
            )
            for r in rows
        ]


class CreateFortnoxOrder(FortnoxCommand):
    type: Literal["fortnox.order.create"] = "fortnox.order.create"
    data: CreateOrderData


class RefreshMasterDataData(Model):
    #: What a document waits for that a newer copy of Fortnox's master data may have (a
    #: financial year, a project...), in the shop's words.
    reason: LongText


class RefreshFortnoxMasterData(FortnoxCommand):
    """Read Fortnox's master data again now, not at the next periodic refresh: a voucher waits
    on something the copy Kassasync holds lacks, and Fortnox may have it by now."""

    type: Literal["fortnox.masterdata.refresh"] = "fortnox.masterdata.refresh"
    data: RefreshMasterDataData


# --- to the till -----------------------------------------------------------------------------


class TillCustomerData(Model):
    till_customer_id: Ident = Field(
        description="The till's id for the customer; for a customer that came from Fortnox "
        "Kassasync chooses it (fortnox-<number>) and the till creates the customer under it."
    )
    fortnox_customer_number: CustomerNumber
    customer: CustomerFields


class UpsertTillCustomer(TillCommand):
    type: Literal["till.customer.upsert"] = "till.customer.upsert"
    data: TillCustomerData


class DeleteTillCustomerData(Model):
    till_customer_id: Ident
    reason: ShortText


class DeleteTillCustomer(TillCommand):
    type: Literal["till.customer.delete"] = "till.customer.delete"
    data: DeleteTillCustomerData


class TillArticle(Model):
    article_number: ArticleNumber
    description: ShortText
    ean: Ean | None = None
    price: Money | None = None
    vat: VatRate | None = None
    unit: ShortText | None = None
    stock_goods: bool = False
    active: bool = True


class UpsertTillArticleData(Model):
    article: TillArticle


class UpsertTillArticle(TillCommand):
    type: Literal["till.article.upsert"] = "till.article.upsert"
    data: UpsertTillArticleData


class RemoveTillArticleData(Model):
    article_number: ArticleNumber
    reason: Literal["excluded", "deleted_in_fortnox", "missing_in_fortnox", "barcode_conflict"]


class RemoveTillArticle(TillCommand):
    type: Literal["till.article.remove"] = "till.article.remove"
    data: RemoveTillArticleData


class AdjustTillStockData(Model):
    article_number: ArticleNumber
    delta: Quantity = Field(description="Add this to the till's on-hand quantity.")
    expected_level: Quantity = Field(
        description="The level Kassasync expects after the adjustment, for the till's logs."
    )


class AdjustTillStock(TillCommand):
    type: Literal["till.stock.adjust"] = "till.stock.adjust"
    data: AdjustTillStockData


class RegisterTillPaymentData(Model):
    payment: FortnoxPayment


class RegisterTillPayment(TillCommand):
    type: Literal["till.payment.register"] = "till.payment.register"
    data: RegisterTillPaymentData


class RemoveTillPaymentData(Model):
    number: Ident
    invoice_number: int


class RemoveTillPayment(TillCommand):
    """A payment was deleted in Fortnox after it had been handed to the till."""

    type: Literal["till.payment.removed"] = "till.payment.removed"
    data: RemoveTillPaymentData


class LedgerVoucherData(Model):
    voucher: FortnoxVoucher


class SendTillLedgerVoucher(TillCommand):
    type: Literal["till.ledger.voucher"] = "till.ledger.voucher"
    data: LedgerVoucherData
