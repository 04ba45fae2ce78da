"""Tenant settings: master modes, price list, flows and their options.

Settings travel on the log as ``sync.settings.changed`` so that a replay applies the settings that
were in force when each message was first processed.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from enum import StrEnum

from pydantic import Field, model_validator

from topics.common import AccountNumber, Ident, ShortText
from topics.envelope import Model


class CustomerMaster(StrEnum):
    TILL = "till"
    FORTNOX = "fortnox"


class StockMode(StrEnum):
    #: Write Fortnox's article QuantityInStock (no warehouse module).
    QUANTITY = "quantity"
    #: Move stock through custom warehouse documents (warehouse module active).
    WAREHOUSE_DOCUMENTS = "warehouse_documents"


class CustomerSettings(Model):
    enabled: bool = True
    master: CustomerMaster = CustomerMaster.FORTNOX
    #: Till-as-master: one-off import of the customers Fortnox already has.
    import_fortnox_register: bool = False
    #: Fortnox-as-master: delete till customers that are not in Fortnox.
    delete_missing: bool = False


class ArticleSettings(Model):
    enabled: bool = True
    price_list: Ident = "A"
    #: Delete till articles that are not in Fortnox.
    delete_missing: bool = False
    exclusion_marker: ShortText = "#E#"


class StockSettings(Model):
    enabled: bool = True
    mode: StockMode = StockMode.QUANTITY


class ZReportAccounts(Model):
    """Account mapping for Z-report vouchers."""

    payment_methods: dict[Ident, AccountNumber] = Field(default_factory=dict)
    #: Revenue account per VAT rate (used for sales without a product group mapping).
    sales_by_vat: dict[str, AccountNumber] = Field(default_factory=dict)
    #: Output VAT account per VAT rate.
    vat_by_rate: dict[str, AccountNumber] = Field(default_factory=dict)
    #: Revenue account per product group (takes precedence over ``sales_by_vat``).
    product_groups: dict[Ident, AccountNumber] = Field(default_factory=dict)
    tips: AccountNumber | None = None
    rounding: AccountNumber | None = None
    gift_cards: AccountNumber | None = None


class ZReportSettings(Model):
    enabled: bool = False
    series: Ident = "F"
    start_date: dt.date | None = None
    accounts: ZReportAccounts = Field(default_factory=ZReportAccounts)
    #: Cost centre for every voucher of this tenant (optional).
    cost_center: Ident | None = None
    #: Cost centre per till id or location code (takes precedence over ``cost_center``).
    cost_centers: dict[Ident, Ident] = Field(default_factory=dict)
    #: The till's Z-reports also contain invoiced sales ("include invoiced in the account report").
    includes_invoiced_sales: bool = False
    description_template: ShortText = "Z-rapport {z_number} kassa {till_id} {date}"


class InvoiceSettings(Model):
    enabled: bool = False
    start_date: dt.date | None = None
    terms_of_payment: Ident | None = None


class PaymentSettings(Model):
    enabled: bool = False
    #: Ignore payments registered in Fortnox before this date.
    ignore_before: dt.date | None = None
    #: Ignore payments of invoices numbered below this.
    ignore_invoice_below: int = Field(default=0, ge=0)


class LedgerSettings(Model):
    enabled: bool = False
    #: How many financial years back to sync (the current one included).
    years: int = Field(default=2, ge=1, le=10)


class TenantSettings(Model):
    customers: CustomerSettings = Field(default_factory=CustomerSettings)
    articles: ArticleSettings = Field(default_factory=ArticleSettings)
    stock: StockSettings = Field(default_factory=StockSettings)
    zreports: ZReportSettings = Field(default_factory=ZReportSettings)
    invoices: InvoiceSettings = Field(default_factory=InvoiceSettings)
    payments: PaymentSettings = Field(default_factory=PaymentSettings)
    ledger: LedgerSettings = Field(default_factory=LedgerSettings)
    #: 0: a change is written at the end of the batch it arrives in (changes to an entity
    #: coalesce while its write is in flight). More: changes are collected this long first.
    flush_window_seconds: Decimal = Field(default=Decimal(0), ge=0, le=3600)

    @model_validator(mode="after")
    def _check(self) -> TenantSettings:
        if (
            self.customers.import_fortnox_register
            and self.customers.master is not CustomerMaster.TILL
        ):
            raise ValueError("customers.import_fortnox_register applies to till-as-master only")
        if self.customers.delete_missing and self.customers.master is not CustomerMaster.FORTNOX:
            raise ValueError("customers.delete_missing applies to Fortnox-as-master only")
        return self

    def warnings(self) -> list[str]:
        """Configuration problems that are allowed but probably wrong."""
        found: list[str] = []
        if (
            self.invoices.enabled
            and self.zreports.enabled
            and self.zreports.includes_invoiced_sales
        ):
            found.append(
                "Double booking: the till includes invoiced sales in its Z-reports and invoices "
                "are also sent to Fortnox as orders. Untick 'include invoiced sales' in the till's "
                "account report, or turn off invoice sync."
            )
        if self.zreports.enabled and not self.zreports.accounts.payment_methods:
            found.append("Z-reports are enabled but no payment method has an account.")
        return found
