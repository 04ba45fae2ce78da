"""Request bodies: pydantic models of what Fortnox accepts, and Fortnox-style rejections.

Each model lists the fields of the resource's ``...SinglePayloadItem`` schema in Fortnox's
OpenAPI document plus the fields Fortnox *returns* as read-only (so a client that sends back
what it read gets "read-only" rather than "unknown field"). Rules, as Fortnox:

* a body must be JSON (``2002115``) wrapped in the singular resource name (``2001392``);
* an unknown field is rejected (``2001399 Felaktigt fältnamn``);
* a read-only field is rejected (Fortnox answers BadRequest, e.g. for ``SalesPrice``:
  softwerkab/fortnox-csharp-api-sdk#154);
* wrong types and over-long texts are rejected with the matching code.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from sandbox.fortnox import errors as E

M = TypeVar("M", bound="Payload")


S2 = Annotated[str, StringConstraints(max_length=2)]
S3 = Annotated[str, StringConstraints(max_length=3)]
S6 = Annotated[str, StringConstraints(max_length=6)]
S10 = Annotated[str, StringConstraints(max_length=10)]
S13 = Annotated[str, StringConstraints(max_length=13)]
S20 = Annotated[str, StringConstraints(max_length=20)]
S25 = Annotated[str, StringConstraints(max_length=25)]
S30 = Annotated[str, StringConstraints(max_length=30)]
S50 = Annotated[str, StringConstraints(max_length=50)]
S75 = Annotated[str, StringConstraints(max_length=75)]
S80 = Annotated[str, StringConstraints(max_length=80)]
S100 = Annotated[str, StringConstraints(max_length=100)]
S128 = Annotated[str, StringConstraints(max_length=128)]
S200 = Annotated[str, StringConstraints(max_length=200)]
S255 = Annotated[str, StringConstraints(max_length=255)]
S1000 = Annotated[str, StringConstraints(max_length=1000)]
S1024 = Annotated[str, StringConstraints(max_length=1024)]
S10000 = Annotated[str, StringConstraints(max_length=10000)]
AccountNo = Annotated[int, Field(ge=1000, le=9999)]
Settings = Literal["ALLOWED", "MANDATORY", "NOTALLOWED"]


class Payload(BaseModel):
    """Base: unknown fields forbidden, numbers accepted where Fortnox takes text."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, populate_by_name=True)

    READ_ONLY: ClassVar[frozenset[str]] = frozenset()
    url: str | None = Field(None, alias="@url")

    def given(self) -> dict[str, Any]:
        """The fields the client sent (by their Fortnox names), nested models as dicts."""
        return self.model_dump(by_alias=True, exclude_unset=True)

    def read_only_given(self) -> list[str]:
        sent = self.given()
        return sorted(k for k in sent if k == "@url" or k in self.READ_ONLY)


# --- customers ---------------------------------------------------------------------------------
class DeliveryTypes(Payload):
    Invoice: Literal["PRINT", "EMAIL", "PRINTSERVICE"] | None = None
    Offer: Literal["PRINT", "EMAIL", "PRINTSERVICE"] | None = None
    Order: Literal["PRINT", "EMAIL", "PRINTSERVICE"] | None = None


class Templates(Payload):
    CashInvoice: str | None = None
    Invoice: str | None = None
    Offer: str | None = None
    Order: str | None = None


class CustomerPayload(Payload):
    READ_ONLY = frozenset({"Country", "DeliveryCountry", "VisitingCountry"})

    Active: bool | None = None
    Address1: S1024 | None = None
    Address2: S1024 | None = None
    City: S1024 | None = None
    Comments: S1024 | None = None
    CostCenter: str | None = None
    Country: str | None = None
    CountryCode: S2 | None = None
    Currency: S3 | None = None
    CustomerNumber: S1024 | None = None
    DefaultDeliveryTypes: DeliveryTypes | None = None
    DefaultTemplates: Templates | None = None
    DeliveryAddress1: S1024 | None = None
    DeliveryAddress2: S1024 | None = None
    DeliveryCity: S1024 | None = None
    DeliveryCountry: S1024 | None = None
    DeliveryCountryCode: S2 | None = None
    DeliveryFax: S1024 | None = None
    DeliveryName: S1024 | None = None
    DeliveryPhone1: S1024 | None = None
    DeliveryPhone2: S1024 | None = None
    DeliveryZipCode: S10 | None = None
    Email: S1024 | None = None
    EmailInvoice: S1024 | None = None
    EmailInvoiceBCC: S1024 | None = None
    EmailInvoiceCC: S1024 | None = None
    EmailOffer: S1024 | None = None
    EmailOfferBCC: S1024 | None = None
    EmailOfferCC: S1024 | None = None
    EmailOrder: S1024 | None = None
    EmailOrderBCC: S1024 | None = None
    EmailOrderCC: S1024 | None = None
    ExternalReference: S1024 | None = None
    Fax: S1024 | None = None
    GLN: S13 | None = None
    GLNDelivery: S13 | None = None
    InvoiceAdministrationFee: str | None = None
    InvoiceDiscount: float | None = None
    InvoiceFreight: str | None = None
    InvoiceRemark: S1024 | None = None
    Name: S1024 | None = None
    OrganisationNumber: S30 | None = None
    OurReference: S50 | None = None
    Phone1: S1024 | None = None
    Phone2: S1024 | None = None
    PriceList: str | None = None
    Project: str | None = None
    SalesAccount: str | None = None
    ShowPriceVATIncluded: bool | None = None
    TermsOfDelivery: str | None = None
    TermsOfPayment: str | None = None
    Type: Literal["PRIVATE", "COMPANY"] | None = None
    VATNumber: str | None = None
    VATType: Literal["SEVAT", "SEREVERSEDVAT", "EUREVERSEDVAT", "EUVAT", "EXPORT"] | None = None
    VisitingAddress: S128 | None = None
    VisitingCity: S128 | None = None
    VisitingCountry: S128 | None = None
    VisitingCountryCode: S2 | None = None
    VisitingZipCode: S10 | None = None
    WWW: S128 | None = None
    WayOfDelivery: str | None = None
    YourReference: S50 | None = None
    ZipCode: S10 | None = None


# --- articles ----------------------------------------------------------------------------------
class ArticlePayload(Payload):
    READ_ONLY = frozenset(
        {
            "CommodityCode",
            "DisposableQuantity",
            "ReservedQuantity",
            "SalesPrice",
            "StockValue",
            "SupplierName",
        }
    )

    Active: bool | None = None
    ArticleNumber: S50 | None = None
    Bulky: bool | None = None
    CommodityCode: str | None = None
    ConstructionAccount: AccountNo | None = None
    CostCalculationMethod: Literal["MANUAL", "LAST_RELEASED_INBOUND"] | None = None
    DefaultStockLocation: str | None = None
    DefaultStockPoint: str | None = None
    Depth: Annotated[int, Field(ge=0, le=999999999)] | None = None
    Description: S200 | None = None
    DirectCost: float | None = None
    DisposableQuantity: float | None = None
    EAN: S30 | None = None
    EUAccount: AccountNo | None = None
    EUVATAccount: AccountNo | None = None
    Expired: bool | None = None
    ExportAccount: AccountNo | None = None
    FreightCost: float | None = None
    Height: Annotated[int, Field(ge=0, le=999999999)] | None = None
    Housework: bool | None = None
    HouseworkType: str | None = None
    Manufacturer: S50 | None = None
    ManufacturerArticleNumber: S50 | None = None
    Note: S10000 | None = None
    OtherCost: float | None = None
    PurchaseAccount: AccountNo | None = None
    PurchasePrice: float | None = None
    QuantityInStock: Annotated[float, Field(ge=-1e14, le=99999999999999.9)] | None = None
    ReservedQuantity: float | None = None
    SalesAccount: AccountNo | None = None
    SalesPrice: float | None = None
    StockAccount: AccountNo | None = None
    StockChangeAccount: AccountNo | None = None
    StockGoods: bool | None = None
    StockPlace: S100 | None = None
    StockValue: float | None = None
    StockWarning: float | None = None
    SupplierName: str | None = None
    SupplierNumber: str | None = None
    Type: Literal["STOCK", "SERVICE"] | None = None
    Unit: str | None = None
    VAT: float | None = None
    WebshopArticle: bool | None = None
    Weight: Annotated[int, Field(ge=0, le=999999999)] | None = None
    Width: Annotated[int, Field(ge=0, le=999999999)] | None = None


# --- small registers ---------------------------------------------------------------------------
class UnitPayload(Payload):
    Code: S20 | None = None
    CodeEnglish: S100 | None = None
    Description: S100 | None = None


class PriceListPayload(Payload):
    READ_ONLY = frozenset({"PreSelected"})

    Code: S100 | None = None
    Comments: str | None = None
    Description: S50 | None = None
    PreSelected: bool | None = None


class PricePayload(Payload):
    READ_ONLY = frozenset({"Date"})

    ArticleNumber: str | None = None
    Date: str | None = None
    FromQuantity: Annotated[float, Field(ge=0)] | None = None
    Percent: float | None = None
    Price: float | None = None
    PriceList: str | None = None


class TermsOfPaymentPayload(Payload):
    Code: S25 | None = None
    Description: S200 | None = None


class CostCenterPayload(Payload):
    Active: bool | None = None
    Code: S6 | None = None
    Description: str | None = None
    Note: str | None = None


# --- bookkeeping -------------------------------------------------------------------------------
class FinancialYearPayload(Payload):
    READ_ONLY = frozenset({"Id"})

    AccountChartType: str | None = None
    AccountingMethod: Literal["ACCRUAL", "CASH"] | None = None
    FromDate: str | None = None
    Id: int | None = None
    ToDate: str | None = None


class AccountPayload(Payload):
    READ_ONLY = frozenset(
        {"BalanceCarriedForward", "QuantitySettings", "QuantityUnit", "Year", "OpeningQuantities"}
    )

    Active: bool | None = None
    BalanceBroughtForward: float | None = None
    BalanceCarriedForward: float | None = None
    CostCenter: str | None = None
    CostCenterSettings: Settings | None = None
    Description: S200 | None = None
    Number: AccountNo | None = None
    OpeningQuantities: list[dict[str, Any]] | None = None
    Project: str | None = None
    ProjectSettings: Settings | None = None
    QuantitySettings: str | None = None
    QuantityUnit: str | None = None
    SRU: int | None = None
    TransactionInformation: str | None = None
    TransactionInformationSettings: Settings | None = None
    VATCode: str | None = None
    Year: int | None = None


class ApproverPayload(Payload):
    Id: int | None = None
    Name: str | None = None


class VoucherSeriesPayload(Payload):
    READ_ONLY = frozenset({"NextVoucherNumber", "Year"})

    Approver: ApproverPayload | None = None
    Code: S10 | None = None
    Description: S200 | None = None
    Manual: bool | None = None
    NextVoucherNumber: int | None = None
    Year: int | None = None


class VoucherRowPayload(Payload):
    READ_ONLY = frozenset({"Removed"})

    Account: AccountNo | None = None
    CostCenter: str | None = None
    Credit: float | None = None
    Debit: float | None = None
    Description: str | None = None
    Project: str | None = None
    Quantity: float | None = None
    Removed: bool | None = None
    TransactionInformation: S100 | None = None


class VoucherPayload(Payload):
    """``Year`` is in the schema's required list, yet read-only per the C# SDK: accepted, and it
    must then name the financial year the voucher lands in."""

    READ_ONLY = frozenset({"ApprovalState", "ReferenceNumber", "ReferenceType", "VoucherNumber"})

    ApprovalState: int | None = None
    Comments: S1000 | None = None
    CostCenter: str | None = None
    Description: S200 | None = None
    Project: str | None = None
    ReferenceNumber: str | None = None
    ReferenceType: str | None = None
    TransactionDate: str | None = None
    VoucherNumber: int | None = None
    VoucherRows: list[VoucherRowPayload] | None = None
    VoucherSeries: str | None = None
    Year: int | None = None


# --- invoices, payments, orders ----------------------------------------------------------------
class WriteOffPayload(Payload):
    AccountNumber: AccountNo | None = None
    Amount: float | None = None
    CostCenter: str | None = None
    Currency: S3 | None = None
    Description: str | None = None
    Project: str | None = None
    TransactionInformation: str | None = None


class InvoicePaymentPayload(Payload):
    READ_ONLY = frozenset(
        {
            "Booked",
            "Currency",
            "CurrencyUnit",
            "ExternalInvoiceReference1",
            "ExternalInvoiceReference2",
            "InvoiceCustomerName",
            "InvoiceCustomerNumber",
            "InvoiceDueDate",
            "InvoiceOCR",
            "InvoiceTotal",
            "Number",
            "Source",
            "VoucherNumber",
            "VoucherSeries",
            "VoucherYear",
            "WriteOffExist",
        }
    )

    Amount: float | None = None
    AmountCurrency: float | None = None
    Booked: bool | None = None
    Currency: str | None = None
    CurrencyRate: float | None = None
    CurrencyUnit: float | None = None
    ExternalInvoiceReference1: str | None = None
    ExternalInvoiceReference2: str | None = None
    InvoiceCustomerName: str | None = None
    InvoiceCustomerNumber: str | None = None
    InvoiceDueDate: str | None = None
    InvoiceNumber: int | None = None
    InvoiceOCR: str | None = None
    InvoiceTotal: str | None = None
    ModeOfPayment: str | None = None
    ModeOfPaymentAccount: AccountNo | None = None
    Number: str | None = None
    PaymentDate: str | None = None
    Source: str | None = None
    VoucherNumber: int | None = None
    VoucherSeries: str | None = None
    VoucherYear: int | None = None
    WriteOffExist: bool | None = None
    WriteOffs: list[WriteOffPayload] | None = None


class DocumentRowPayload(Payload):
    """An invoice or order row (quantities may be sent as numbers or text)."""

    READ_ONLY = frozenset(
        {
            "ContributionPercent",
            "ContributionValue",
            "PriceExcludingVAT",
            "ReservedQuantity",
            "Total",
            "TotalExcludingVAT",
        }
    )

    AccountNumber: AccountNo | None = None
    ArticleNumber: str | None = None
    ContributionPercent: str | None = None
    ContributionValue: str | None = None
    Cost: float | None = None
    CostCenter: str | None = None
    DeliveredQuantity: float | None = None
    Description: S255 | None = None
    Discount: float | None = None
    DiscountType: Literal["AMOUNT", "PERCENT"] | None = None
    HouseWork: bool | None = None
    HouseWorkHoursToReport: int | None = None
    HouseWorkType: str | None = None
    OrderedQuantity: float | None = None
    Price: float | None = None
    PriceExcludingVAT: float | None = None
    Project: str | None = None
    ReservedQuantity: float | None = None
    RowId: int | None = None
    StockPointCode: str | None = None
    StockPointId: str | None = None
    Total: float | None = None
    TotalExcludingVAT: float | None = None
    Unit: S20 | None = None
    VAT: float | None = None
    VATCode: str | None = None


_DOCUMENT_READ_ONLY = frozenset(
    {
        "@urlTaxReductionList",
        "AdministrationFeeVAT",
        "BasisTaxReduction",
        "Balance",
        "Booked",
        "Cancelled",
        "ContributionPercent",
        "ContributionValue",
        "Credit",
        "FinalPayDate",
        "FreightVAT",
        "Gross",
        "InvoiceReference",
        "LastRemindDate",
        "Net",
        "NoxFinans",
        "OfferReference",
        "OrderReference",
        "OrderType",
        "Reminders",
        "RoundOff",
        "Sent",
        "TaxReduction",
        "Total",
        "TotalToPay",
        "TotalVAT",
        "VoucherNumber",
        "VoucherSeries",
        "VoucherYear",
        "WarehouseReady",
    }
)


class _DocumentPayload(Payload):
    READ_ONLY = _DOCUMENT_READ_ONLY

    Address1: str | None = None
    Address2: str | None = None
    AdministrationFee: float | None = None
    Balance: float | None = None
    Booked: bool | None = None
    Cancelled: bool | None = None
    City: S1024 | None = None
    Comments: S1024 | None = None
    CostCenter: str | None = None
    Country: str | None = None
    Currency: S3 | None = None
    CurrencyRate: float | None = None
    CurrencyUnit: float | None = None
    CustomerName: str | None = None
    CustomerNumber: str | None = None
    DeliveryAddress1: S1024 | None = None
    DeliveryAddress2: S1024 | None = None
    DeliveryCity: S1024 | None = None
    DeliveryCountry: str | None = None
    DeliveryDate: str | None = None
    DeliveryName: S1024 | None = None
    DeliveryZipCode: S1024 | None = None
    DocumentNumber: str | None = None
    EmailInformation: dict[str, Any] | None = None
    ExternalInvoiceReference1: S80 | None = None
    ExternalInvoiceReference2: S80 | None = None
    Freight: float | None = None
    Gross: float | None = None
    Labels: list[dict[str, Any]] | None = None
    Language: Literal["SV", "EN"] | None = None
    Net: float | None = None
    NotCompleted: bool | None = None
    OurReference: S50 | None = None
    OutboundDate: str | None = None
    Phone1: S1024 | None = None
    Phone2: S1024 | None = None
    PriceList: str | None = None
    PrintTemplate: str | None = None
    Project: str | None = None
    Remarks: S1024 | None = None
    Sent: bool | None = None
    TaxReductionType: str | None = None
    TermsOfDelivery: str | None = None
    TermsOfPayment: str | None = None
    Total: float | None = None
    TotalToPay: float | None = None
    TotalVAT: float | None = None
    VATIncluded: bool | None = None
    WarehouseReady: bool | None = None
    WayOfDelivery: str | None = None
    YourOrderNumber: S75 | None = None
    YourReference: S50 | None = None
    ZipCode: S1024 | None = None


class InvoicePayload(_DocumentPayload):
    CreditInvoiceReference: str | None = None
    DueDate: str | None = None
    EDIInformation: dict[str, Any] | None = None
    EUQuarterlyReport: bool | None = None
    FinalPayDate: str | None = None
    InvoiceDate: str | None = None
    InvoiceRows: list[DocumentRowPayload] | None = None
    InvoiceType: (
        Literal["INVOICE", "AGREEMENTINVOICE", "INTRESTINVOICE", "SUMMARYINVOICE", "CASHINVOICE"]
        | None
    ) = None
    OCR: str | None = None
    PaymentWay: Literal["CASH", "CARD", "AG"] | None = None
    VoucherNumber: int | None = None
    VoucherSeries: str | None = None
    VoucherYear: int | None = None


class OrderPayload(_DocumentPayload):
    CopyRemarks: bool | None = None
    DeliveryState: Literal["registration", "reservation", "delivery"] | None = None
    InvoiceReference: str | None = None
    OfferReference: str | None = None
    OrderDate: str | None = None
    OrderRows: list[DocumentRowPayload] | None = None
    OrderType: str | None = None
    OrganisationNumber: str | None = None
    StockPointCode: str | None = None
    StockPointId: str | None = None


# --- files -------------------------------------------------------------------------------------
class VoucherFileConnectionPayload(Payload):
    READ_ONLY = frozenset({"Name", "VoucherDescription", "VoucherYear"})

    FileId: str | None = None
    Name: str | None = None
    VoucherDescription: str | None = None
    VoucherNumber: str | None = None
    VoucherSeries: str | None = None
    VoucherYear: int | None = None


# --- warehouse (lower camel case, as the /api/warehouse services) ------------------------------
class _WarehousePayload(BaseModel):
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)


class CustomDocumentRow(_WarehousePayload):
    itemId: Annotated[str, StringConstraints(min_length=1, max_length=50)]
    quantity: float
    deliveredQuantity: float | None = None
    reservedQuantity: float | None = None
    itemDescription: str | None = None
    itemUnit: str | None = None
    stockPointId: str | None = None
    stockPointCode: str | None = None
    stockLocationId: str | None = None
    costCenterCode: str | None = None
    projectId: str | None = None
    rowId: int | None = None


class CustomOutboundDocument(_WarehousePayload):
    date: str
    deliveryState: Literal["registration", "reservation", "delivery"]
    rows: list[CustomDocumentRow]
    note: Annotated[str, StringConstraints(max_length=1000)] | None = None
    warehouseReady: bool | None = None
    forcedDelivery: bool | None = None


class CustomInboundDocument(_WarehousePayload):
    date: str
    rows: list[CustomDocumentRow]
    note: Annotated[str, StringConstraints(max_length=1000)] | None = None
    warehouseReady: bool | None = None


# --- parsing -----------------------------------------------------------------------------------
def parse_json(body: bytes, content_type: str | None) -> Any:
    """The JSON body, or the Fortnox error for a missing/garbled one."""
    if not body.strip():
        raise E.NO_DATA()
    if content_type and "json" not in content_type.lower() and "*/*" not in content_type:
        raise E.INVALID_CONTENT_TYPE()
    try:
        return json.loads(body)
    except ValueError:
        raise E.BAD_JSON() from None


def parse_payload(body: bytes, content_type: str | None, wrapper: str, model: type[M]) -> M:
    """Validate ``{"<wrapper>": {...}}`` into ``model``, rejecting as Fortnox does."""
    data = parse_json(body, content_type)
    if not isinstance(data, dict) or not isinstance(data.get(wrapper), dict):
        raise E.NO_DATA()
    extra = [k for k in data if k != wrapper]
    if extra:
        raise E.INVALID_FIELD_NAME(field=extra[0])
    payload = validate(model, data[wrapper])
    reject_read_only(payload)
    return payload


def validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise translate(exc) from None


def reject_read_only(payload: Payload) -> None:
    ro = payload.read_only_given()
    if ro:
        raise E.READ_ONLY_FIELD(field=ro[0])
    for value in payload.__dict__.values():
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, Payload):
                reject_read_only(item)


def translate(exc: ValidationError) -> E.FortnoxError:
    """The Fortnox error for the first pydantic complaint."""
    err = exc.errors()[0]
    loc = [str(p) for p in err.get("loc", ()) if not isinstance(p, int)]
    field = loc[-1] if loc else "?"
    kind = err.get("type", "")
    value = err.get("input")
    shown = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        return E.INVALID_FIELD_NAME(field=field)
    if kind == "missing":
        return E.REQUIRED_FIELD(field=field)
    if kind.startswith("bool"):
        return E.NOT_BOOLEAN(value=shown)
    if kind.startswith(("float", "int", "decimal")):
        return E.NOT_NUMERIC(value=shown)
    if kind == "string_too_long":
        return E.TEXT_TOO_LONG(field=field, limit=ctx.get("max_length", "?"))
    if kind == "string_too_short":
        return E.REQUIRED_FIELD(field=field)
    return E.INVALID_VALUE(field=field, value=shown)
