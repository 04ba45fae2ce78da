"""``/3/invoices`` and ``/3/invoicepayments``.

Invoices: create/get/list/update, ``bookkeep`` and ``cancel``; totals, OCR and due date are
computed as Fortnox does (totals rounded to whole kronor with ``RoundOff``). Payments: create
(unbooked, as through the API), update while unbooked, ``bookkeep`` (books a voucher in series
``C`` when that series exists in the year), delete while unbooked. The invoice's ``Balance`` and
``FinalPayDate`` follow its payments. ``/3/invoicepayments`` ignores ``sortorder`` (a
maintainer's observation, softwerkab/fortnox-csharp-api-sdk#253).

Events on topic ``invoices``: ``invoice-created-v1``, ``invoice-updated-v1``,
``invoice-bookkeep-v1``, ``invoice-cancelled-v1``, ``invoicepayment-bookkeep-v1`` and
``invoicepayment-deleted-v1`` (entityId = the payment ``Number``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from sandbox.fortnox import errors as E
from sandbox.fortnox.collection import Record
from sandbox.fortnox.listing import ListQuery, both, num_text, parse_list_query, search_predicate
from sandbox.fortnox.payloads import InvoicePayload, InvoicePaymentPayload
from sandbox.fortnox.resources.common import (
    base_url,
    money,
    params,
    parse_date,
    read_payload,
    render_page,
    require,
    single,
    tenant_of,
)
from sandbox.fortnox.resources.registers import terms_days
from sandbox.fortnox.state import Tenant

router = APIRouter()

INVOICE_FIELDS = [
    "AccountingMethod",
    "Address1",
    "Address2",
    "AdministrationFee",
    "AdministrationFeeVAT",
    "Balance",
    "BasisTaxReduction",
    "Booked",
    "Cancelled",
    "City",
    "Comments",
    "ContractReference",
    "ContributionPercent",
    "ContributionValue",
    "CostCenter",
    "Country",
    "Credit",
    "CreditInvoiceReference",
    "Currency",
    "CurrencyRate",
    "CurrencyUnit",
    "CustomerName",
    "CustomerNumber",
    "DeliveryAddress1",
    "DeliveryAddress2",
    "DeliveryCity",
    "DeliveryCountry",
    "DeliveryDate",
    "DeliveryName",
    "DeliveryZipCode",
    "DocumentNumber",
    "DueDate",
    "EUQuarterlyReport",
    "ExternalInvoiceReference1",
    "ExternalInvoiceReference2",
    "FinalPayDate",
    "Freight",
    "FreightVAT",
    "Gross",
    "HouseWork",
    "InvoiceDate",
    "InvoicePeriodEnd",
    "InvoicePeriodStart",
    "InvoiceReference",
    "InvoiceRows",
    "InvoiceType",
    "Labels",
    "Language",
    "LastRemindDate",
    "Net",
    "NotCompleted",
    "NoxFinans",
    "OCR",
    "OfferReference",
    "OrderReference",
    "OrganisationNumber",
    "OurReference",
    "OutboundDate",
    "PaymentWay",
    "Phone1",
    "Phone2",
    "PriceList",
    "PrintTemplate",
    "Project",
    "Remarks",
    "Reminders",
    "RoundOff",
    "Sent",
    "TaxReduction",
    "TaxReductionType",
    "TermsOfDelivery",
    "TermsOfPayment",
    "TimeBasisReference",
    "Total",
    "TotalToPay",
    "TotalVAT",
    "VATIncluded",
    "VoucherNumber",
    "VoucherSeries",
    "VoucherYear",
    "WarehouseReady",
    "WayOfDelivery",
    "YourOrderNumber",
    "YourReference",
    "ZipCode",
]
INVOICE_LIST_FIELDS = [
    "Balance",
    "Booked",
    "Cancelled",
    "CostCenter",
    "Currency",
    "CurrencyRate",
    "CurrencyUnit",
    "CustomerName",
    "CustomerNumber",
    "DocumentNumber",
    "DueDate",
    "ExternalInvoiceReference1",
    "ExternalInvoiceReference2",
    "InvoiceDate",
    "InvoiceType",
    "NoxFinans",
    "OCR",
    "VoucherNumber",
    "VoucherSeries",
    "VoucherYear",
    "WayOfDelivery",
    "TermsOfPayment",
    "Project",
    "Sent",
    "Total",
    "FinalPayDate",
]


def ocr_for(number: str) -> str:
    """Fortnox-style OCR: the number, a length digit and a Luhn check digit (5 -> 539)."""
    body = number + str((len(number) + 2) % 10)
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


# --- rows and totals -----------------------------------------------------------------------------
def build_rows(
    tenant: Tenant,
    rows: list[dict[str, Any]],
    *,
    quantity_field: str,
    pricelist: str,
) -> list[dict[str, Any]]:
    """Rows with Fortnox's defaults filled in from the articles."""
    out: list[dict[str, Any]] = []
    for i, row in enumerate(rows, start=1):
        art_no = row.get("ArticleNumber")
        article = tenant.articles.get(art_no) if art_no else None
        if art_no and article is None:
            raise E.ARTICLE_MISSING(article=art_no)
        a = article.data if article else {}
        price = row.get("Price")
        if price is None and article is not None:
            listed = tenant.prices.get((pricelist, article.key), {}).get(0.0)
            price = listed["Price"] if listed else a.get("SalesPrice")
        qty = float(row.get(quantity_field) or 0.0)
        vat = row.get("VAT")
        if vat is None:
            vat = a.get("VAT", 25.0) if article else 25.0
        vat = int(vat) if float(vat).is_integer() else float(vat)
        discount = float(row.get("Discount") or 0.0)
        discount_type = row.get("DiscountType") or "PERCENT"
        unit_price = float(price or 0.0)
        gross = Decimal(str(qty)) * Decimal(str(unit_price))
        if discount_type == "PERCENT":
            net = gross * (Decimal(1) - Decimal(str(discount)) / 100)
        else:
            net = gross - Decimal(str(discount))
        out.append(
            {
                **row,
                "AccountNumber": row.get("AccountNumber") or a.get("SalesAccount") or 3001,
                "ArticleNumber": art_no or "",
                "Cost": row.get("Cost", 0.0),
                "CostCenter": row.get("CostCenter") or "",
                "Description": row.get("Description") or a.get("Description") or "",
                "Discount": discount,
                "DiscountType": discount_type,
                quantity_field: num_text(qty),
                "HouseWork": row.get("HouseWork", False),
                "Price": unit_price,
                "Project": row.get("Project") or "",
                "RowId": i,
                "Total": money(net),
                "Unit": row.get("Unit") or a.get("Unit") or "",
                "VAT": vat,
            }
        )
    return out


def apply_totals(doc: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    net = sum((Decimal(str(r["Total"])) for r in rows), Decimal(0))
    vat = sum((Decimal(str(r["Total"])) * Decimal(str(r["VAT"])) / 100 for r in rows), Decimal(0))
    if doc.get("VATIncluded"):
        vat_in = sum(
            (
                Decimal(str(r["Total"])) * Decimal(str(r["VAT"])) / (100 + Decimal(str(r["VAT"])))
                for r in rows
            ),
            Decimal(0),
        )
        net, vat = net - vat_in, vat_in
    freight = Decimal(str(doc.get("Freight") or 0)) + Decimal(
        str(doc.get("AdministrationFee") or 0)
    )
    gross = net + vat + freight
    total = gross.quantize(Decimal(1))
    doc["Net"] = money(net)
    doc["TotalVAT"] = money(vat)
    doc["Gross"] = money(gross)
    doc["RoundOff"] = money(total - gross)
    doc["Total"] = float(total)
    doc["TotalToPay"] = float(total)


# --- invoices -------------------------------------------------------------------------------------
def _customer(tenant: Tenant, number: Any) -> Record:
    rec = tenant.customers.get(str(number)) if number else None
    if rec is None:
        raise E.CUSTOMER_MISSING()
    return rec


def _terms(tenant: Tenant, code: str | None) -> str:
    if code and code not in tenant.termsofpayments:
        raise E.TERMS_MISSING(code=code)
    return code or ""


def create_invoice(tenant: Tenant, given: dict[str, Any]) -> Record:
    require(given, "CustomerNumber")
    customer = _customer(tenant, given["CustomerNumber"]).data
    number = given.get("DocumentNumber")
    if number:
        if number in tenant.invoices:
            raise E.ALREADY_EXISTS(what="Fakturanummer", key=number)
        tenant.note_number("invoice", number)
    else:
        number = tenant.take_number("invoice", lambda n: n in tenant.invoices)
    terms = _terms(tenant, given.get("TermsOfPayment") or customer.get("TermsOfPayment") or None)
    invoice_date = parse_date(given.get("InvoiceDate") or tenant.today().isoformat(), "InvoiceDate")
    due = given.get("DueDate") or (invoice_date + timedelta(days=terms_days(terms))).isoformat()
    parse_date(due, "DueDate")
    data: dict[str, Any] = dict.fromkeys(INVOICE_FIELDS)
    data.update(
        {
            "Address1": customer.get("Address1"),
            "Address2": customer.get("Address2"),
            "Booked": False,
            "Cancelled": False,
            "City": customer.get("City"),
            "Credit": "false",
            "Currency": customer.get("Currency") or "SEK",
            "CurrencyRate": 1.0,
            "CurrencyUnit": 1,
            "CustomerName": customer.get("Name"),
            "EUQuarterlyReport": False,
            "ExternalInvoiceReference1": "",
            "ExternalInvoiceReference2": "",
            "HouseWork": False,
            "InvoiceType": "INVOICE",
            "Labels": [],
            "Language": "SV",
            "NotCompleted": False,
            "NoxFinans": False,
            "OCR": ocr_for(number),
            "PriceList": customer.get("PriceList") or tenant.default_pricelist,
            "Project": "",
            "Reminders": 0,
            "Sent": False,
            "VATIncluded": False,
            "WarehouseReady": False,
            "WayOfDelivery": "",
            "YourOrderNumber": "",
            "ZipCode": customer.get("ZipCode"),
        }
    )
    data.update({k: v for k, v in given.items() if k != "InvoiceRows"})
    data.update(
        {
            "DocumentNumber": number,
            "CustomerNumber": str(given["CustomerNumber"]),
            "InvoiceDate": invoice_date.isoformat(),
            "DueDate": due,
            "TermsOfPayment": terms,
        }
    )
    rows = build_rows(
        tenant,
        given.get("InvoiceRows") or [],
        quantity_field="DeliveredQuantity",
        pricelist=data["PriceList"],
    )
    data["InvoiceRows"] = rows
    apply_totals(data, rows)
    data["Balance"] = data["Total"]
    rec = tenant.invoices.insert(number, data, now=tenant.now())
    tenant.emit("invoices", "invoice-created-v1", number)
    return rec


def update_invoice(tenant: Tenant, rec: Record, given: dict[str, Any]) -> Record:
    data = rec.data
    if data["Booked"] or data["Cancelled"]:
        raise E.DOCUMENT_LOCKED(what="Fakturan", reason="den är bokförd eller makulerad")
    if given.get("DocumentNumber") not in (None, rec.key):
        raise E.INVALID_VALUE(field="DocumentNumber", value=given["DocumentNumber"])
    if "CustomerNumber" in given:
        customer = _customer(tenant, given["CustomerNumber"]).data
        data["CustomerName"] = customer.get("Name")
    if "TermsOfPayment" in given:
        _terms(tenant, given["TermsOfPayment"])
    data.update({k: v for k, v in given.items() if k != "InvoiceRows"})
    if "InvoiceRows" in given:
        data["InvoiceRows"] = build_rows(
            tenant,
            given["InvoiceRows"] or [],
            quantity_field="DeliveredQuantity",
            pricelist=data["PriceList"],
        )
    paid = Decimal(str(data["Total"])) - Decimal(str(data["Balance"]))
    apply_totals(data, data["InvoiceRows"])
    data["Balance"] = money(Decimal(str(data["Total"])) - paid)
    tenant.invoices.touch(rec, now=tenant.now())
    tenant.emit("invoices", "invoice-updated-v1", rec.key)
    return rec


def invoice_view(rec: Record, base: str) -> dict[str, Any]:
    return {
        "@url": f"{base}/3/invoices/{rec.key}",
        "@urlTaxReductionList": f"{base}/3/taxreductions?filter=invoices&referencenumber={rec.key}",
        **rec.data,
    }


def invoice_list_view(rec: Record, base: str) -> dict[str, Any]:
    d = rec.data
    item: dict[str, Any] = {"@url": f"{base}/3/invoices/{rec.key}"}
    for name in INVOICE_LIST_FIELDS:
        item[name] = d.get(name)
    return item


def _paid(rec: Record) -> bool:
    return float(rec.data["Balance"]) <= 0 and not rec.data["Cancelled"]


INVOICE_FILTERS: dict[str, Callable[[Record], bool]] = {
    "cancelled": lambda r: bool(r.data["Cancelled"]),
    "fullypaid": _paid,
    "unpaid": lambda r: not _paid(r) and not r.data["Cancelled"],
    "unpaidoverdue": lambda r: not _paid(r) and not r.data["Cancelled"],
    "unbooked": lambda r: not r.data["Booked"] and not r.data["Cancelled"],
}
INVOICE_SEARCH: dict[str, Callable[[Record], Any]] = {
    "customername": lambda r: r.data.get("CustomerName"),
    "customernumber": lambda r: r.data.get("CustomerNumber"),
    "documentnumber": lambda r: r.key,
    "externalinvoicereference1": lambda r: r.data.get("ExternalInvoiceReference1"),
    "externalinvoicereference2": lambda r: r.data.get("ExternalInvoiceReference2"),
    "ocr": lambda r: r.data.get("OCR"),
    "ourreference": lambda r: r.data.get("OurReference"),
    "yourreference": lambda r: r.data.get("YourReference"),
    "yourordernumber": lambda r: r.data.get("YourOrderNumber"),
    "costcenter": lambda r: r.data.get("CostCenter"),
    "project": lambda r: r.data.get("Project"),
    "currency": lambda r: r.data.get("Currency"),
    "invoicetype": lambda r: r.data.get("InvoiceType"),
    "articlenumber": lambda r: " ".join(x.get("ArticleNumber", "") for x in r.data["InvoiceRows"]),
    "articledescription": lambda r: " ".join(
        x.get("Description", "") for x in r.data["InvoiceRows"]
    ),
}
INVOICE_SORTS: dict[str, Callable[[Record], Any] | None] = {
    "customername": lambda r: (r.data.get("CustomerName") or "").lower(),
    "customernumber": lambda r: r.data.get("CustomerNumber") or "",
    "documentnumber": None,
    "invoicedate": lambda r: r.data.get("InvoiceDate") or "",
    "ocr": lambda r: r.data.get("OCR") or "",
    "total": lambda r: r.data.get("Total") or 0.0,
}
INVOICE_EXTRA = (
    "fromdate",
    "todate",
    "fromfinalpaydate",
    "tofinalpaydate",
    "sent",
    "notcompleted",
    "credit",
    "label",
    "accountnumberfrom",
    "accountnumberto",
)


def _flag(value: str) -> bool:
    return value.lower() in ("true", "1", "yes")


def flag_is(field: str, wanted: bool) -> Callable[[Record], bool]:
    def match(rec: Record) -> bool:
        return bool(rec.data.get(field)) == wanted

    return match


def date_range(q: ListQuery, field: str, lo: str, hi: str) -> Callable[[Record], bool] | None:
    start, end = q.other.get(lo), q.other.get(hi)
    if start is None and end is None:
        return None
    if start is not None:
        parse_date(start, lo)
    if end is not None:
        parse_date(end, hi)

    def match(rec: Record) -> bool:
        value = rec.data.get(field)
        if not value:
            return False
        return (start is None or value >= start) and (end is None or value <= end)

    return match


def _invoice_extra(q: ListQuery) -> Callable[[Record], bool] | None:
    pred = date_range(q, "InvoiceDate", "fromdate", "todate")
    pred = both(pred, date_range(q, "FinalPayDate", "fromfinalpaydate", "tofinalpaydate"))
    for name, field in (("sent", "Sent"), ("notcompleted", "NotCompleted")):
        if name in q.other:
            wanted = _flag(q.other[name])
            pred = both(pred, flag_is(field, wanted))
    if "credit" in q.other:
        wanted = _flag(q.other["credit"])
        pred = both(pred, lambda r: (r.data.get("Credit") == "true") == wanted)
    if "label" in q.other:
        label = q.other["label"]
        pred = both(pred, lambda r: any(str(x.get("Id")) == label for x in r.data["Labels"]))
    lo, hi = q.other.get("accountnumberfrom"), q.other.get("accountnumberto")
    if lo is not None or hi is not None:
        low, high = int(lo or 0), int(hi or 9999)
        pred = both(
            pred,
            lambda r: any(low <= int(x["AccountNumber"]) <= high for x in r.data["InvoiceRows"]),
        )
    return pred


def _get_invoice(tenant: Tenant, number: str) -> Record:
    rec = tenant.invoices.get(number)
    if rec is None:
        raise E.INVOICE_NOT_FOUND()
    return rec


@router.get("/3/invoices")
async def list_invoices(request: Request) -> Response:
    tenant = tenant_of(request)
    q = parse_list_query(
        params(request),
        search=INVOICE_SEARCH,
        sortby=INVOICE_SORTS,
        filters=INVOICE_FILTERS,
        extra=INVOICE_EXTRA,
    )
    today = tenant.today().isoformat()

    def overdue(rec: Record) -> bool:
        return INVOICE_FILTERS["unpaid"](rec) and rec.data["DueDate"] < today

    if q.filter == "unpaidoverdue":
        flt: Callable[[Record], bool] | None = overdue
    else:
        flt = INVOICE_FILTERS[q.filter] if q.filter else None
    predicate = both(both(flt, search_predicate(q, INVOICE_SEARCH)), _invoice_extra(q))
    keys = tenant.invoices.query(
        cache_key=(q.cache_key(), tenant.today().isoformat()),
        since=q.since,
        predicate=predicate,
        sort_value=INVOICE_SORTS.get(q.sortby) if q.sortby else None,
        descending=q.descending,
    )
    return render_page(request, tenant, tenant.invoices, "Invoices", keys, q, invoice_list_view)


@router.get("/3/invoices/{DocumentNumber}")
async def get_invoice(request: Request, DocumentNumber: str) -> Response:
    rec = _get_invoice(tenant_of(request), DocumentNumber)
    return single("Invoice", invoice_view(rec, base_url(request)))


@router.post("/3/invoices")
async def post_invoice(request: Request) -> Response:
    tenant = tenant_of(request)
    payload = await read_payload(request, "Invoice", InvoicePayload)
    rec = create_invoice(tenant, payload.given())
    return single("Invoice", invoice_view(rec, base_url(request)), status=201)


@router.put("/3/invoices/{DocumentNumber}")
async def put_invoice(request: Request, DocumentNumber: str) -> Response:
    tenant = tenant_of(request)
    rec = _get_invoice(tenant, DocumentNumber)
    payload = await read_payload(request, "Invoice", InvoicePayload)
    update_invoice(tenant, rec, payload.given())
    return single("Invoice", invoice_view(rec, base_url(request)))


@router.put("/3/invoices/{DocumentNumber}/bookkeep")
async def bookkeep_invoice(request: Request, DocumentNumber: str) -> Response:
    tenant = tenant_of(request)
    rec = _get_invoice(tenant, DocumentNumber)
    if rec.data["Cancelled"]:
        raise E.DOCUMENT_LOCKED(what="Fakturan", reason="den är makulerad")
    if not rec.data["Booked"]:
        rec.data["Booked"] = True
        tenant.invoices.touch(rec, now=tenant.now())
        tenant.emit("invoices", "invoice-bookkeep-v1", rec.key)
    return single("Invoice", invoice_view(rec, base_url(request)))


@router.put("/3/invoices/{DocumentNumber}/cancel")
async def cancel_invoice(request: Request, DocumentNumber: str) -> Response:
    tenant = tenant_of(request)
    rec = _get_invoice(tenant, DocumentNumber)
    if rec.data["Booked"]:
        raise E.DOCUMENT_LOCKED(what="Fakturan", reason="den är bokförd")
    if not rec.data["Cancelled"]:
        rec.data["Cancelled"] = True
        tenant.invoices.touch(rec, now=tenant.now())
        tenant.emit("invoices", "invoice-cancelled-v1", rec.key)
    return single("Invoice", invoice_view(rec, base_url(request)))


# --- payments -------------------------------------------------------------------------------------
def _apply_payment_to_invoice(tenant: Tenant, invoice: Record, delta: Decimal) -> None:
    data = invoice.data
    data["Balance"] = money(Decimal(str(data["Balance"])) - delta)
    if float(data["Balance"]) <= 0:
        paid = [
            p.data["PaymentDate"]
            for p in tenant.invoicepayments
            if p.data["InvoiceNumber"] == int(invoice.key)
        ]
        data["FinalPayDate"] = max(paid) if paid else tenant.today().isoformat()
    else:
        data["FinalPayDate"] = None
    tenant.invoices.touch(invoice, now=tenant.now())


def create_payment(tenant: Tenant, given: dict[str, Any]) -> Record:
    require(given, "InvoiceNumber", "Amount")
    invoice = tenant.invoices.get(str(given["InvoiceNumber"]))
    if invoice is None or invoice.data["Cancelled"]:
        raise E.INVOICE_MISSING()
    inv = invoice.data
    pay_date = parse_date(given.get("PaymentDate") or tenant.today().isoformat(), "PaymentDate")
    if pay_date.isoformat() < inv["InvoiceDate"]:
        raise E.PAYMENT_BEFORE_INVOICE()
    currency = inv.get("Currency") or "SEK"
    if currency != "SEK" and given.get("AmountCurrency") is None:
        raise E.REQUIRED_FIELD(field="AmountCurrency")
    number = tenant.take_number("invoicepayment", lambda n: n in tenant.invoicepayments)
    amount = money(given["Amount"])
    data: dict[str, Any] = {
        "Amount": amount,
        "AmountCurrency": money(given.get("AmountCurrency") or amount),
        "Booked": False,
        "Currency": currency,
        "CurrencyRate": float(given.get("CurrencyRate") or inv.get("CurrencyRate") or 1.0),
        "CurrencyUnit": float(inv.get("CurrencyUnit") or 1.0),
        "ExternalInvoiceReference1": inv.get("ExternalInvoiceReference1") or "",
        "ExternalInvoiceReference2": inv.get("ExternalInvoiceReference2") or "",
        "InvoiceCustomerName": inv.get("CustomerName"),
        "InvoiceCustomerNumber": inv.get("CustomerNumber"),
        "InvoiceDueDate": inv.get("DueDate"),
        "InvoiceNumber": int(invoice.key),
        "InvoiceOCR": inv.get("OCR"),
        "InvoiceTotal": num_text(inv["Total"]),
        "ModeOfPayment": given.get("ModeOfPayment") or "",
        "ModeOfPaymentAccount": int(given.get("ModeOfPaymentAccount") or 1930),
        "Number": number,
        "PaymentDate": pay_date.isoformat(),
        "Source": "manual",
        "VoucherNumber": None,
        "VoucherSeries": None,
        "VoucherYear": None,
        "WriteOffs": given.get("WriteOffs") or [],
    }
    rec = tenant.invoicepayments.insert(number, data, now=tenant.now())
    _apply_payment_to_invoice(tenant, invoice, Decimal(str(amount)))
    return rec


def update_payment(tenant: Tenant, rec: Record, given: dict[str, Any]) -> Record:
    if rec.data["Booked"]:
        raise E.DOCUMENT_LOCKED(what="Inbetalningen", reason="den är bokförd")
    if "InvoiceNumber" in given and int(given["InvoiceNumber"]) != rec.data["InvoiceNumber"]:
        raise E.INVALID_VALUE(field="InvoiceNumber", value=str(given["InvoiceNumber"]))
    invoice = tenant.invoices.get(str(rec.data["InvoiceNumber"]))
    old = Decimal(str(rec.data["Amount"]))
    if "PaymentDate" in given:
        pay_date = parse_date(given["PaymentDate"], "PaymentDate").isoformat()
        if invoice is not None and pay_date < invoice.data["InvoiceDate"]:
            raise E.PAYMENT_BEFORE_INVOICE()
        rec.data["PaymentDate"] = pay_date
    for name in ("Amount", "AmountCurrency"):
        if given.get(name) is not None:
            rec.data[name] = money(given[name])
    for name in ("CurrencyRate", "ModeOfPayment", "ModeOfPaymentAccount", "WriteOffs"):
        if name in given:
            rec.data[name] = given[name]
    tenant.invoicepayments.touch(rec, now=tenant.now())
    if invoice is not None:
        _apply_payment_to_invoice(tenant, invoice, Decimal(str(rec.data["Amount"])) - old)
    return rec


def bookkeep_payment(tenant: Tenant, rec: Record) -> Record:
    from sandbox.fortnox.resources.vouchers import book_system_voucher

    if rec.data["Booked"]:
        return rec
    data = rec.data
    voucher = book_system_voucher(
        tenant,
        series="C",
        when=parse_date(data["PaymentDate"], "PaymentDate"),
        description=f"Inbetalning faktura {data['InvoiceNumber']}",
        rows=[
            (int(data["ModeOfPaymentAccount"]), float(data["Amount"]), 0.0),
            (1510, 0.0, float(data["Amount"])),
        ],
        reference=("INVOICEPAYMENT", data["Number"]),
    )
    if voucher is not None:
        data["VoucherSeries"], data["VoucherNumber"], data["VoucherYear"] = voucher
    data["Booked"] = True
    tenant.invoicepayments.touch(rec, now=tenant.now())
    tenant.emit("invoices", "invoicepayment-bookkeep-v1", rec.key)
    return rec


def delete_payment(tenant: Tenant, number: str, *, actor: str = "api") -> None:
    rec = tenant.invoicepayments.get(number)
    if rec is None:
        raise E.PAYMENT_NOT_FOUND()
    if rec.data["Booked"] and actor == "api":
        raise E.CANNOT_DELETE(what="Inbetalningen", reason="den är bokförd")
    tenant.invoicepayments.delete(number)
    invoice = tenant.invoices.get(str(rec.data["InvoiceNumber"]))
    if invoice is not None:
        _apply_payment_to_invoice(tenant, invoice, -Decimal(str(rec.data["Amount"])))
    tenant.emit("invoices", "invoicepayment-deleted-v1", number)


PAYMENT_LIST_FIELDS = [
    "Amount",
    "AmountCurrency",
    "Booked",
    "Currency",
    "CurrencyRate",
    "CurrencyUnit",
    "InvoiceNumber",
    "ModeOfPayment",
    "Number",
    "PaymentDate",
    "Source",
    "VoucherNumber",
    "VoucherSeries",
    "VoucherYear",
]


def payment_view(rec: Record, base: str) -> dict[str, Any]:
    return {"@url": f"{base}/3/invoicepayments/{rec.key}", **rec.data}


def payment_list_view(rec: Record, base: str) -> dict[str, Any]:
    item: dict[str, Any] = {"@url": f"{base}/3/invoicepayments/{rec.key}"}
    for name in PAYMENT_LIST_FIELDS:
        item[name] = rec.data.get(name)
    item["WriteOffExist"] = bool(rec.data.get("WriteOffs"))
    return item


PAYMENT_SEARCH: dict[str, Callable[[Record], Any]] = {
    "invoicenumber": lambda r: r.data["InvoiceNumber"]
}
PAYMENT_SORTS: dict[str, Callable[[Record], Any] | None] = {
    "paymentdate": lambda r: r.data.get("PaymentDate") or ""
}


def _get_payment(tenant: Tenant, number: str) -> Record:
    rec = tenant.invoicepayments.get(number)
    if rec is None:
        raise E.PAYMENT_NOT_FOUND()
    return rec


@router.get("/3/invoicepayments")
async def list_payments(request: Request) -> Response:
    tenant = tenant_of(request)
    q = parse_list_query(
        params(request), search=PAYMENT_SEARCH, sortby=PAYMENT_SORTS, extra=("fromdate", "todate")
    )
    keys = tenant.invoicepayments.query(
        cache_key=q.cache_key(),
        since=q.since,
        predicate=search_predicate(q, PAYMENT_SEARCH),
        sort_value=PAYMENT_SORTS.get(q.sortby) if q.sortby else None,
        descending=False,  # Fortnox ignores sortorder here (softwerkab#253)
    )
    return render_page(
        request, tenant, tenant.invoicepayments, "InvoicePayments", keys, q, payment_list_view
    )


@router.get("/3/invoicepayments/{Number}")
async def get_payment(request: Request, Number: str) -> Response:
    rec = _get_payment(tenant_of(request), Number)
    return single("InvoicePayment", payment_view(rec, base_url(request)))


@router.post("/3/invoicepayments")
async def post_payment(request: Request) -> Response:
    tenant = tenant_of(request)
    payload = await read_payload(request, "InvoicePayment", InvoicePaymentPayload)
    rec = create_payment(tenant, payload.given())
    return single("InvoicePayment", payment_view(rec, base_url(request)), status=201)


@router.put("/3/invoicepayments/{Number}")
async def put_payment(request: Request, Number: str) -> Response:
    tenant = tenant_of(request)
    rec = _get_payment(tenant, Number)
    payload = await read_payload(request, "InvoicePayment", InvoicePaymentPayload)
    update_payment(tenant, rec, payload.given())
    return single("InvoicePayment", payment_view(rec, base_url(request)))


@router.put("/3/invoicepayments/{Number}/bookkeep")
async def put_bookkeep_payment(request: Request, Number: str) -> Response:
    tenant = tenant_of(request)
    rec = bookkeep_payment(tenant, _get_payment(tenant, Number))
    return single("InvoicePayment", payment_view(rec, base_url(request)))


@router.delete("/3/invoicepayments/{Number}")
async def remove_payment(request: Request, Number: str) -> Response:
    delete_payment(tenant_of(request), Number)
    return Response(status_code=204)
