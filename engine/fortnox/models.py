"""Tolerant pydantic models for the Fortnox resources Kassasync uses.

Fortnox is loose with types (``"QuantityInStock": "-8"``, empty strings for missing numbers,
numbers where strings are documented), adds fields without notice and leaves optional ones out.
So every model:

* accepts numbers sent as strings (``"-8"``, ``"1 234,50"``) and empty strings as "absent",
* keeps unknown fields (``model_extra``) instead of failing,
* has every field optional except the key Fortnox cannot do without,
* uses Python names with Fortnox's PascalCase (or camelCase for ``/api/warehouse``) as aliases.

``to_payload()`` builds a request body: only fields the caller set to a value, never read-only
fields and never unknown extras (Fortnox rejects unknown field names with 2001399).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer


def _blank_to_none(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _to_decimal(value: Any) -> Decimal | None:
    value = _blank_to_none(value)
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int | float):
        return Decimal(str(value))
    if isinstance(value, str):
        text = value.strip().replace("\u00a0", "").replace(" ", "").replace("\u2212", "-")
        if "," in text and "." not in text:
            text = text.replace(",", ".")
        try:
            return Decimal(text)
        except InvalidOperation:
            raise ValueError(f"not a number: {value!r}") from None
    raise ValueError(f"not a number: {type(value).__name__}")


def _to_int(value: Any) -> int | None:
    number = _to_decimal(value)
    if number is None:
        return None
    if number != number.to_integral_value():
        raise ValueError(f"not a whole number: {value!r}")
    return int(number)


def _to_bool(value: Any) -> bool | None:
    value = _blank_to_none(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return bool(value)
    if isinstance(value, str):
        low = value.strip().lower()
        if low in {"true", "1", "yes", "ja"}:
            return True
        if low in {"false", "0", "no", "nej"}:
            return False
    raise ValueError(f"not a boolean: {value!r}")


def _decimal_out(value: Decimal | None) -> int | float | None:
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() else float(value)


def _to_date(value: Any) -> Any:
    value = _blank_to_none(value)
    if isinstance(value, str) and len(value) > 10 and value[10] in "T ":
        return value[:10]
    return value


#: A decimal Fortnox wants as text in JSON (order-row quantities, per its OpenAPI document).
NumText = Annotated[
    Decimal | None,
    BeforeValidator(_to_decimal),
    PlainSerializer(lambda v: None if v is None else format(v.normalize(), "f"), when_used="json"),
]
Num = Annotated[
    Decimal | None,
    BeforeValidator(_to_decimal),
    PlainSerializer(_decimal_out, when_used="json"),
]
Int = Annotated[int | None, BeforeValidator(_to_int)]
Bool = Annotated[bool | None, BeforeValidator(_to_bool)]
Str = Annotated[str | None, BeforeValidator(_blank_to_none)]
Day = Annotated[date | None, BeforeValidator(_to_date)]


class FortnoxModel(BaseModel):
    """Base of all resource models: tolerant in, strict about what goes out."""

    model_config = ConfigDict(
        extra="allow",
        validate_by_name=True,
        validate_by_alias=True,
        coerce_numbers_to_str=True,
        str_strip_whitespace=False,
    )

    #: Python names of fields Fortnox computes; never sent.
    read_only: ClassVar[frozenset[str]] = frozenset({"url"})

    def to_payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        declared = type(self).model_fields
        for name in self.model_fields_set:
            if name not in declared or name in self.read_only:
                continue
            value = getattr(self, name)
            if value is None:
                continue
            alias = declared[name].alias or name
            if isinstance(value, FortnoxModel):
                out[alias] = value.to_payload()
            elif isinstance(value, list):
                out[alias] = [v.to_payload() if isinstance(v, FortnoxModel) else v for v in value]
            else:
                out[alias] = self.model_dump(mode="json", include={name})[name]
        return out


class MetaInformation(FortnoxModel):
    total_resources: Int = Field(None, alias="@TotalResources")
    total_pages: Int = Field(None, alias="@TotalPages")
    current_page: Int = Field(None, alias="@CurrentPage")


# --- customers, articles, prices ----------------------------------------------------------------


class Customer(FortnoxModel):
    read_only = frozenset({"url", "country", "delivery_country"})

    url: Str = Field(None, alias="@url")
    customer_number: Str = Field(None, alias="CustomerNumber")
    name: Str = Field(None, alias="Name")
    active: Bool = Field(None, alias="Active")
    type: Str = Field(None, alias="Type")
    organisation_number: Str = Field(None, alias="OrganisationNumber")
    vat_number: Str = Field(None, alias="VATNumber")
    vat_type: Str = Field(None, alias="VATType")
    address1: Str = Field(None, alias="Address1")
    address2: Str = Field(None, alias="Address2")
    zip_code: Str = Field(None, alias="ZipCode")
    city: Str = Field(None, alias="City")
    country: Str = Field(None, alias="Country")
    country_code: Str = Field(None, alias="CountryCode")
    delivery_name: Str = Field(None, alias="DeliveryName")
    delivery_address1: Str = Field(None, alias="DeliveryAddress1")
    delivery_zip_code: Str = Field(None, alias="DeliveryZipCode")
    delivery_city: Str = Field(None, alias="DeliveryCity")
    delivery_country: Str = Field(None, alias="DeliveryCountry")
    delivery_country_code: Str = Field(None, alias="DeliveryCountryCode")
    email: Str = Field(None, alias="Email")
    email_invoice: Str = Field(None, alias="EmailInvoice")
    phone1: Str = Field(None, alias="Phone1")
    phone2: Str = Field(None, alias="Phone2")
    currency: Str = Field(None, alias="Currency")
    price_list: Str = Field(None, alias="PriceList")
    terms_of_payment: Str = Field(None, alias="TermsOfPayment")
    our_reference: Str = Field(None, alias="OurReference")
    your_reference: Str = Field(None, alias="YourReference")
    external_reference: Str = Field(None, alias="ExternalReference")
    comments: Str = Field(None, alias="Comments")
    cost_center: Str = Field(None, alias="CostCenter")
    project: Str = Field(None, alias="Project")
    www: Str = Field(None, alias="WWW")


class Article(FortnoxModel):
    read_only = frozenset(
        {
            "url",
            "sales_price",
            "disposable_quantity",
            "reserved_quantity",
            "stock_value",
            "supplier_name",
        }
    )

    url: Str = Field(None, alias="@url")
    article_number: Str = Field(None, alias="ArticleNumber")
    description: Str = Field(None, alias="Description")
    ean: Str = Field(None, alias="EAN")
    active: Bool = Field(None, alias="Active")
    type: Str = Field(None, alias="Type")
    unit: Str = Field(None, alias="Unit")
    vat: Num = Field(None, alias="VAT")
    purchase_price: Num = Field(None, alias="PurchasePrice")
    sales_price: Num = Field(None, alias="SalesPrice")
    quantity_in_stock: Num = Field(None, alias="QuantityInStock")
    reserved_quantity: Num = Field(None, alias="ReservedQuantity")
    disposable_quantity: Num = Field(None, alias="DisposableQuantity")
    stock_value: Num = Field(None, alias="StockValue")
    stock_goods: Bool = Field(None, alias="StockGoods")
    stock_place: Str = Field(None, alias="StockPlace")
    stock_warning: Num = Field(None, alias="StockWarning")
    webshop_article: Bool = Field(None, alias="WebshopArticle")
    expired: Bool = Field(None, alias="Expired")
    manufacturer: Str = Field(None, alias="Manufacturer")
    manufacturer_article_number: Str = Field(None, alias="ManufacturerArticleNumber")
    note: Str = Field(None, alias="Note")
    supplier_number: Str = Field(None, alias="SupplierNumber")
    supplier_name: Str = Field(None, alias="SupplierName")
    sales_account: Int = Field(None, alias="SalesAccount")
    purchase_account: Int = Field(None, alias="PurchaseAccount")
    default_stock_point: Str = Field(None, alias="DefaultStockPoint")
    default_stock_location: Str = Field(None, alias="DefaultStockLocation")


class PriceList(FortnoxModel):
    read_only = frozenset({"url", "pre_selected"})

    url: Str = Field(None, alias="@url")
    code: Str = Field(None, alias="Code")
    description: Str = Field(None, alias="Description")
    comments: Str = Field(None, alias="Comments")
    pre_selected: Bool = Field(None, alias="PreSelected")


class Price(FortnoxModel):
    read_only = frozenset({"url", "date"})

    url: Str = Field(None, alias="@url")
    price_list: Str = Field(None, alias="PriceList")
    article_number: Str = Field(None, alias="ArticleNumber")
    from_quantity: Num = Field(None, alias="FromQuantity")
    price: Num = Field(None, alias="Price")
    percent: Num = Field(None, alias="Percent")
    date: Str = Field(None, alias="Date")


# --- payments --------------------------------------------------------------------------------


class WriteOff(FortnoxModel):
    amount: Num = Field(None, alias="Amount")
    account_number: Int = Field(None, alias="AccountNumber")
    cost_center: Str = Field(None, alias="CostCenter")
    project: Str = Field(None, alias="Project")
    transaction_information: Str = Field(None, alias="TransactionInformation")


class InvoicePayment(FortnoxModel):
    read_only = frozenset(
        {
            "url",
            "number",
            "booked",
            "currency",
            "source",
            "external_invoice_reference1",
            "external_invoice_reference2",
            "invoice_customer_name",
            "invoice_customer_number",
            "invoice_due_date",
            "invoice_ocr",
            "invoice_total",
            "voucher_number",
            "voucher_series",
            "voucher_year",
        }
    )

    url: Str = Field(None, alias="@url")
    number: Str = Field(None, alias="Number")
    invoice_number: Int = Field(None, alias="InvoiceNumber")
    amount: Num = Field(None, alias="Amount")
    amount_currency: Num = Field(None, alias="AmountCurrency")
    currency: Str = Field(None, alias="Currency")
    currency_rate: Num = Field(None, alias="CurrencyRate")
    currency_unit: Num = Field(None, alias="CurrencyUnit")
    payment_date: Day = Field(None, alias="PaymentDate")
    mode_of_payment: Str = Field(None, alias="ModeOfPayment")
    mode_of_payment_account: Int = Field(None, alias="ModeOfPaymentAccount")
    booked: Bool = Field(None, alias="Booked")
    source: Str = Field(None, alias="Source")
    external_invoice_reference1: Str = Field(None, alias="ExternalInvoiceReference1")
    external_invoice_reference2: Str = Field(None, alias="ExternalInvoiceReference2")
    invoice_customer_name: Str = Field(None, alias="InvoiceCustomerName")
    invoice_customer_number: Str = Field(None, alias="InvoiceCustomerNumber")
    invoice_due_date: Str = Field(None, alias="InvoiceDueDate")
    invoice_ocr: Str = Field(None, alias="InvoiceOCR")
    invoice_total: Num = Field(None, alias="InvoiceTotal")
    voucher_number: Int = Field(None, alias="VoucherNumber")
    voucher_series: Str = Field(None, alias="VoucherSeries")
    voucher_year: Int = Field(None, alias="VoucherYear")
    write_offs: list[WriteOff] | None = Field(None, alias="WriteOffs")


# --- bookkeeping -----------------------------------------------------------------------------


class Account(FortnoxModel):
    read_only = frozenset({"url", "year", "balance_carried_forward"})

    url: Str = Field(None, alias="@url")
    number: Int = Field(None, alias="Number")
    description: Str = Field(None, alias="Description")
    active: Bool = Field(None, alias="Active")
    cost_center_settings: Str = Field(None, alias="CostCenterSettings")
    project_settings: Str = Field(None, alias="ProjectSettings")
    transaction_information_settings: Str = Field(None, alias="TransactionInformationSettings")
    cost_center: Str = Field(None, alias="CostCenter")
    project: Str = Field(None, alias="Project")
    vat_code: Str = Field(None, alias="VATCode")
    sru: Int = Field(None, alias="SRU")
    balance_brought_forward: Num = Field(None, alias="BalanceBroughtForward")
    balance_carried_forward: Num = Field(None, alias="BalanceCarriedForward")
    year: Int = Field(None, alias="Year")


class VoucherSeries(FortnoxModel):
    read_only = frozenset({"url", "next_voucher_number", "year"})

    url: Str = Field(None, alias="@url")
    code: Str = Field(None, alias="Code")
    description: Str = Field(None, alias="Description")
    manual: Bool = Field(None, alias="Manual")
    next_voucher_number: Int = Field(None, alias="NextVoucherNumber")
    year: Int = Field(None, alias="Year")


class CostCenter(FortnoxModel):
    url: Str = Field(None, alias="@url")
    code: Str = Field(None, alias="Code")
    description: Str = Field(None, alias="Description")
    note: Str = Field(None, alias="Note")
    active: Bool = Field(None, alias="Active")


class Project(FortnoxModel):
    url: Str = Field(None, alias="@url")
    project_number: Str = Field(None, alias="ProjectNumber")
    description: Str = Field(None, alias="Description")
    status: Str = Field(None, alias="Status")
    start_date: Str = Field(None, alias="StartDate")
    end_date: Str = Field(None, alias="EndDate")


class FinancialYear(FortnoxModel):
    read_only = frozenset({"url", "id"})

    url: Str = Field(None, alias="@url")
    id: Int = Field(None, alias="Id")
    from_date: Day = Field(None, alias="FromDate")
    to_date: Day = Field(None, alias="ToDate")
    account_chart_type: Str = Field(None, alias="AccountChartType")
    accounting_method: Str = Field(None, alias="AccountingMethod")

    def contains(self, day: date) -> bool:
        return (
            self.from_date is not None
            and self.to_date is not None
            and self.from_date <= day <= self.to_date
        )


class LockedPeriod(FortnoxModel):
    end_date: Day = Field(None, alias="EndDate")

    def locks(self, day: date) -> bool:
        return self.end_date is not None and day <= self.end_date


class VoucherRow(FortnoxModel):
    read_only = frozenset({"removed"})

    account: Int = Field(None, alias="Account")
    debit: Num = Field(None, alias="Debit")
    credit: Num = Field(None, alias="Credit")
    description: Str = Field(None, alias="Description")
    cost_center: Str = Field(None, alias="CostCenter")
    project: Str = Field(None, alias="Project")
    transaction_information: Str = Field(None, alias="TransactionInformation")
    quantity: Num = Field(None, alias="Quantity")
    removed: Bool = Field(None, alias="Removed")


class Voucher(FortnoxModel):
    read_only = frozenset(
        {
            "url",
            "voucher_number",
            "year",
            "reference_number",
            "reference_type",
            "approval_state",
        }
    )

    url: Str = Field(None, alias="@url")
    voucher_series: Str = Field(None, alias="VoucherSeries")
    voucher_number: Int = Field(None, alias="VoucherNumber")
    year: Int = Field(None, alias="Year")
    description: Str = Field(None, alias="Description")
    comments: Str = Field(None, alias="Comments")
    transaction_date: Day = Field(None, alias="TransactionDate")
    cost_center: Str = Field(None, alias="CostCenter")
    project: Str = Field(None, alias="Project")
    reference_number: Str = Field(None, alias="ReferenceNumber")
    reference_type: Str = Field(None, alias="ReferenceType")
    approval_state: Int = Field(None, alias="ApprovalState")
    voucher_rows: list[VoucherRow] | None = Field(None, alias="VoucherRows")


# --- orders and settings ---------------------------------------------------------------------


class OrderRow(FortnoxModel):
    read_only = frozenset({"total", "contribution_percent", "contribution_value"})

    row_id: Int = Field(None, alias="RowId")
    article_number: Str = Field(None, alias="ArticleNumber")
    description: Str = Field(None, alias="Description")
    # Fortnox's document types an order row's quantities as strings (decimal text).
    ordered_quantity: NumText = Field(None, alias="OrderedQuantity")
    delivered_quantity: NumText = Field(None, alias="DeliveredQuantity")
    price: Num = Field(None, alias="Price")
    vat: Num = Field(None, alias="VAT")
    vat_code: Str = Field(None, alias="VATCode")
    account_number: Int = Field(None, alias="AccountNumber")
    unit: Str = Field(None, alias="Unit")
    discount: Num = Field(None, alias="Discount")
    discount_type: Str = Field(None, alias="DiscountType")
    cost_center: Str = Field(None, alias="CostCenter")
    project: Str = Field(None, alias="Project")
    stock_point_code: Str = Field(None, alias="StockPointCode")
    total: Num = Field(None, alias="Total")
    contribution_percent: Num = Field(None, alias="ContributionPercent")
    contribution_value: Num = Field(None, alias="ContributionValue")


class Order(FortnoxModel):
    read_only = frozenset(
        {
            "url",
            "cancelled",
            "sent",
            "invoice_reference",
            "offer_reference",
            "order_type",
            "total",
            "total_vat",
            "total_to_pay",
            "net",
            "gross",
            "round_off",
            "warehouse_ready",
        }
    )

    url: Str = Field(None, alias="@url")
    document_number: Str = Field(None, alias="DocumentNumber")
    customer_number: Str = Field(None, alias="CustomerNumber")
    customer_name: Str = Field(None, alias="CustomerName")
    order_date: Day = Field(None, alias="OrderDate")
    delivery_date: Day = Field(None, alias="DeliveryDate")
    currency: Str = Field(None, alias="Currency")
    currency_rate: Num = Field(None, alias="CurrencyRate")
    price_list: Str = Field(None, alias="PriceList")
    vat_included: Bool = Field(None, alias="VATIncluded")
    terms_of_payment: Str = Field(None, alias="TermsOfPayment")
    terms_of_delivery: Str = Field(None, alias="TermsOfDelivery")
    way_of_delivery: Str = Field(None, alias="WayOfDelivery")
    your_order_number: Str = Field(None, alias="YourOrderNumber")
    external_invoice_reference1: Str = Field(None, alias="ExternalInvoiceReference1")
    external_invoice_reference2: Str = Field(None, alias="ExternalInvoiceReference2")
    our_reference: Str = Field(None, alias="OurReference")
    your_reference: Str = Field(None, alias="YourReference")
    remarks: Str = Field(None, alias="Remarks")
    comments: Str = Field(None, alias="Comments")
    cost_center: Str = Field(None, alias="CostCenter")
    project: Str = Field(None, alias="Project")
    delivery_state: Str = Field(None, alias="DeliveryState")
    stock_point_code: Str = Field(None, alias="StockPointCode")
    language: Str = Field(None, alias="Language")
    not_completed: Bool = Field(None, alias="NotCompleted")
    cancelled: Bool = Field(None, alias="Cancelled")
    sent: Bool = Field(None, alias="Sent")
    invoice_reference: Str = Field(None, alias="InvoiceReference")
    offer_reference: Str = Field(None, alias="OfferReference")
    order_type: Str = Field(None, alias="OrderType")
    total: Num = Field(None, alias="Total")
    total_vat: Num = Field(None, alias="TotalVAT")
    total_to_pay: Num = Field(None, alias="TotalToPay")
    net: Num = Field(None, alias="Net")
    gross: Num = Field(None, alias="Gross")
    round_off: Num = Field(None, alias="RoundOff")
    warehouse_ready: Bool = Field(None, alias="WarehouseReady")
    order_rows: list[OrderRow] | None = Field(None, alias="OrderRows")


class TermsOfPayment(FortnoxModel):
    url: Str = Field(None, alias="@url")
    code: Str = Field(None, alias="Code")
    description: Str = Field(None, alias="Description")


class CompanyInformation(FortnoxModel):
    company_name: Str = Field(None, alias="CompanyName")
    organization_number: Str = Field(None, alias="OrganizationNumber")
    database_number: Int = Field(None, alias="DatabaseNumber")
    address: Str = Field(None, alias="Address")
    zip_code: Str = Field(None, alias="ZipCode")
    city: Str = Field(None, alias="City")
    country_code: Str = Field(None, alias="CountryCode")


class VoucherFileConnection(FortnoxModel):
    read_only = frozenset({"url", "name", "voucher_description", "voucher_year"})

    url: Str = Field(None, alias="@url")
    file_id: Str = Field(None, alias="FileId")
    name: Str = Field(None, alias="Name")
    voucher_number: Str = Field(None, alias="VoucherNumber")
    voucher_series: Str = Field(None, alias="VoucherSeries")
    voucher_year: Int = Field(None, alias="VoucherYear")
    voucher_description: Str = Field(None, alias="VoucherDescription")


# --- warehouse (/api/warehouse, camelCase) ---------------------------------------------------


class WarehouseStatus(FortnoxModel):
    activated: Bool = Field(None, alias="activated")
    tenant_id: Int = Field(None, alias="tenantId")


class StockBalance(FortnoxModel):
    item_id: Str = Field(None, alias="itemId")
    stock_point_code: Str = Field(None, alias="stockPointCode")
    available_stock: Num = Field(None, alias="availableStock")
    in_stock: Num = Field(None, alias="inStock")


class CustomDocumentRow(FortnoxModel):
    read_only = frozenset({"reserved_quantity"})

    row_id: Int = Field(None, alias="rowId")
    item_id: Str = Field(None, alias="itemId")
    item_description: Str = Field(None, alias="itemDescription")
    quantity: Num = Field(None, alias="quantity")
    delivered_quantity: Num = Field(None, alias="deliveredQuantity")
    reserved_quantity: Num = Field(None, alias="reservedQuantity")
    stock_point_id: Str = Field(None, alias="stockPointId")
    stock_point_code: Str = Field(None, alias="stockPointCode")
    stock_location_id: Str = Field(None, alias="stockLocationId")
    cost_center_code: Str = Field(None, alias="costCenterCode")
    project_id: Str = Field(None, alias="projectId")


class CustomDocument(FortnoxModel):
    """A custom inbound or outbound warehouse document (the caller chooses type and id)."""

    read_only = frozenset({"voided", "id", "reference_type", "type"})

    id: Str = Field(None, alias="id")
    reference_type: Str = Field(None, alias="referenceType")
    type: Str = Field(None, alias="type")
    date: Day = Field(None, alias="date")
    delivery_state: Str = Field(None, alias="deliveryState")
    note: Str = Field(None, alias="note")
    warehouse_ready: Bool = Field(None, alias="warehouseReady")
    voided: Bool = Field(None, alias="voided")
    rows: list[CustomDocumentRow] | None = Field(None, alias="rows")


__all__ = [
    "Account",
    "Article",
    "CompanyInformation",
    "CostCenter",
    "CustomDocument",
    "CustomDocumentRow",
    "Customer",
    "FinancialYear",
    "FortnoxModel",
    "InvoicePayment",
    "LockedPeriod",
    "MetaInformation",
    "Order",
    "OrderRow",
    "Price",
    "PriceList",
    "StockBalance",
    "TermsOfPayment",
    "Voucher",
    "VoucherFileConnection",
    "VoucherRow",
    "VoucherSeries",
    "WarehouseStatus",
    "WriteOff",
]
