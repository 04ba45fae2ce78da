"""``/3/orders``: sales orders (a till invoice becomes a Fortnox order).

Search parameters are substrings (``externalinvoicereference1=K1`` also finds ``K10``), so a
client must compare the value it gets back exactly. ``yourordernumber`` is accepted as a search
parameter although Fortnox's OpenAPI document lists it only for invoices. The list view carries
``ExternalInvoiceReference1/2`` but not ``YourOrderNumber`` (recorded ``orders/filter_hit``).

Events on topic ``orders``: ``order-created-v1``, ``order-updated-v1``, ``order-cancelled-v1``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from sandbox.fortnox import errors as E
from sandbox.fortnox.collection import Record
from sandbox.fortnox.listing import ListQuery, both, num_text, parse_list_query, search_predicate
from sandbox.fortnox.payloads import OrderPayload
from sandbox.fortnox.resources.common import (
    base_url,
    params,
    parse_date,
    read_payload,
    render_page,
    require,
    single,
    tenant_of,
)
from sandbox.fortnox.resources.invoices import apply_totals, build_rows, date_range, flag_is
from sandbox.fortnox.state import Tenant

router = APIRouter()

ORDER_FIELDS = [
    "Address1",
    "Address2",
    "AdministrationFee",
    "AdministrationFeeVAT",
    "BasisTaxReduction",
    "Cancelled",
    "City",
    "Comments",
    "ContributionPercent",
    "ContributionValue",
    "CopyRemarks",
    "CostCenter",
    "Country",
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
    "DeliveryState",
    "DeliveryZipCode",
    "DocumentNumber",
    "EmailInformation",
    "ExternalInvoiceReference1",
    "ExternalInvoiceReference2",
    "Freight",
    "FreightVAT",
    "Gross",
    "HouseWork",
    "InvoiceReference",
    "Labels",
    "Language",
    "Net",
    "NotCompleted",
    "OfferReference",
    "OrderDate",
    "OrderRows",
    "OrderType",
    "OrganisationNumber",
    "OurReference",
    "OutboundDate",
    "Phone1",
    "Phone2",
    "PriceList",
    "PrintTemplate",
    "Project",
    "Remarks",
    "RoundOff",
    "Sent",
    "StockPointCode",
    "StockPointId",
    "TaxReduction",
    "TaxReductionType",
    "TermsOfDelivery",
    "TermsOfPayment",
    "TimeBasisReference",
    "Total",
    "TotalToPay",
    "TotalVAT",
    "VATIncluded",
    "WarehouseReady",
    "WayOfDelivery",
    "YourOrderNumber",
    "YourReference",
    "ZipCode",
]
ORDER_LIST_FIELDS = [
    "Cancelled",
    "Currency",
    "CustomerName",
    "CustomerNumber",
    "DeliveryDate",
    "DocumentNumber",
    "ExternalInvoiceReference1",
    "ExternalInvoiceReference2",
    "OrderDate",
    "OrderType",
    "Project",
    "Sent",
    "Total",
]


def _rows(tenant: Tenant, rows: list[dict[str, Any]], pricelist: str) -> list[dict[str, Any]]:
    built = build_rows(tenant, rows, quantity_field="OrderedQuantity", pricelist=pricelist)
    for row in built:
        row["DeliveredQuantity"] = num_text(float(row.get("DeliveredQuantity") or 0.0))
        row["ReservedQuantity"] = "0"
    return built


def create_order(tenant: Tenant, given: dict[str, Any]) -> Record:
    require(given, "CustomerNumber")
    customer_rec = tenant.customers.get(str(given["CustomerNumber"]))
    if customer_rec is None:
        raise E.CUSTOMER_MISSING()
    customer = customer_rec.data
    terms = given.get("TermsOfPayment") or customer.get("TermsOfPayment") or ""
    if terms and terms not in tenant.termsofpayments:
        raise E.TERMS_MISSING(code=terms)
    number = given.get("DocumentNumber")
    if number:
        if number in tenant.orders:
            raise E.ALREADY_EXISTS(what="Ordernummer", key=number)
        tenant.note_number("order", number)
    else:
        number = tenant.take_number("order", lambda n: n in tenant.orders)
    order_date = parse_date(given.get("OrderDate") or tenant.today().isoformat(), "OrderDate")
    if given.get("DeliveryDate"):
        parse_date(given["DeliveryDate"], "DeliveryDate")
    data: dict[str, Any] = dict.fromkeys(ORDER_FIELDS)
    data.update(
        {
            "Address1": customer.get("Address1"),
            "Address2": customer.get("Address2"),
            "Cancelled": False,
            "City": customer.get("City"),
            "CopyRemarks": False,
            "Currency": customer.get("Currency") or "SEK",
            "CurrencyRate": 1.0,
            "CurrencyUnit": 1.0,
            "CustomerName": customer.get("Name"),
            "ExternalInvoiceReference1": "",
            "ExternalInvoiceReference2": "",
            "HouseWork": False,
            "InvoiceReference": "",
            "Labels": [],
            "Language": "SV",
            "NotCompleted": False,
            "OfferReference": "",
            "OrderType": "Order",
            "PriceList": customer.get("PriceList") or tenant.default_pricelist,
            "Project": "",
            "Sent": False,
            "VATIncluded": False,
            "WarehouseReady": False,
            "YourOrderNumber": "",
            "ZipCode": customer.get("ZipCode"),
        }
    )
    data.update({k: v for k, v in given.items() if k != "OrderRows"})
    data.update(
        {
            "DocumentNumber": number,
            "CustomerNumber": str(given["CustomerNumber"]),
            "OrderDate": order_date.isoformat(),
            "TermsOfPayment": terms,
        }
    )
    rows = _rows(tenant, given.get("OrderRows") or [], data["PriceList"])
    data["OrderRows"] = rows
    apply_totals(data, rows)
    rec = tenant.orders.insert(number, data, now=tenant.now())
    tenant.emit("orders", "order-created-v1", number)
    return rec


def update_order(tenant: Tenant, rec: Record, given: dict[str, Any]) -> Record:
    data = rec.data
    if data["Cancelled"] or data.get("InvoiceReference"):
        raise E.DOCUMENT_LOCKED(what="Ordern", reason="den är makulerad eller fakturerad")
    if given.get("DocumentNumber") not in (None, rec.key):
        raise E.INVALID_VALUE(field="DocumentNumber", value=given["DocumentNumber"])
    if "CustomerNumber" in given:
        customer = tenant.customers.get(str(given["CustomerNumber"]))
        if customer is None:
            raise E.CUSTOMER_MISSING()
        data["CustomerName"] = customer.data.get("Name")
    terms = given.get("TermsOfPayment")
    if terms and terms not in tenant.termsofpayments:
        raise E.TERMS_MISSING(code=terms)
    data.update({k: v for k, v in given.items() if k != "OrderRows"})
    if "OrderRows" in given:
        data["OrderRows"] = _rows(tenant, given["OrderRows"] or [], data["PriceList"])
    apply_totals(data, data["OrderRows"])
    tenant.orders.touch(rec, now=tenant.now())
    tenant.emit("orders", "order-updated-v1", rec.key)
    return rec


def cancel_order(tenant: Tenant, rec: Record) -> Record:
    if rec.data.get("InvoiceReference"):
        raise E.DOCUMENT_LOCKED(what="Ordern", reason="den är fakturerad")
    if not rec.data["Cancelled"]:
        rec.data["Cancelled"] = True
        tenant.orders.touch(rec, now=tenant.now())
        tenant.emit("orders", "order-cancelled-v1", rec.key)
    return rec


def order_view(rec: Record, base: str) -> dict[str, Any]:
    return {
        "@url": f"{base}/3/orders/{rec.key}",
        "@urlTaxReductionList": f"{base}/3/taxreductions?filter=orders&referencenumber={rec.key}",
        **rec.data,
    }


def order_list_view(rec: Record, base: str) -> dict[str, Any]:
    item: dict[str, Any] = {"@url": f"{base}/3/orders/{rec.key}"}
    for name in ORDER_LIST_FIELDS:
        item[name] = rec.data.get(name)
    return item


ORDER_SEARCH: dict[str, Callable[[Record], Any]] = {
    "customername": lambda r: r.data.get("CustomerName"),
    "customernumber": lambda r: r.data.get("CustomerNumber"),
    "documentnumber": lambda r: r.key,
    "externalinvoicereference1": lambda r: r.data.get("ExternalInvoiceReference1"),
    "externalinvoicereference2": lambda r: r.data.get("ExternalInvoiceReference2"),
    "yourordernumber": lambda r: r.data.get("YourOrderNumber"),
    "ourreference": lambda r: r.data.get("OurReference"),
    "yourreference": lambda r: r.data.get("YourReference"),
    "costcenter": lambda r: r.data.get("CostCenter"),
    "project": lambda r: r.data.get("Project"),
    "ordertype": lambda r: r.data.get("OrderType"),
}
ORDER_SORTS: dict[str, Callable[[Record], Any] | None] = {
    "customername": lambda r: (r.data.get("CustomerName") or "").lower(),
    "customernumber": lambda r: r.data.get("CustomerNumber") or "",
    "orderdate": lambda r: r.data.get("OrderDate") or "",
    "documentnumber": None,
    "total": lambda r: r.data.get("Total") or 0.0,
}


def _filters(tenant: Tenant) -> dict[str, Callable[[Record], bool]]:
    today = tenant.today().isoformat()
    return {
        "cancelled": lambda r: bool(r.data["Cancelled"]),
        "expired": lambda r: (
            not r.data["Cancelled"]
            and not r.data.get("InvoiceReference")
            and bool(r.data.get("DeliveryDate"))
            and r.data["DeliveryDate"] < today
        ),
        "invoicecreated": lambda r: bool(r.data.get("InvoiceReference")),
        "invoicenotcreated": lambda r: (
            not r.data.get("InvoiceReference") and not r.data["Cancelled"]
        ),
    }


def _extra(q: ListQuery) -> Callable[[Record], bool] | None:
    pred = date_range(q, "OrderDate", "fromdate", "todate")
    for name, field in (("sent", "Sent"), ("notcompleted", "NotCompleted")):
        if name in q.other:
            wanted = q.other[name].lower() in ("true", "1")
            pred = both(pred, flag_is(field, wanted))
    if "label" in q.other:
        label = q.other["label"]
        pred = both(pred, lambda r: any(str(x.get("Id")) == label for x in r.data["Labels"]))
    return pred


def _get(tenant: Tenant, number: str) -> Record:
    rec = tenant.orders.get(number)
    if rec is None:
        raise E.ORDER_NOT_FOUND()
    return rec


@router.get("/3/orders")
async def list_orders(request: Request) -> Response:
    tenant = tenant_of(request)
    filters = _filters(tenant)
    q = parse_list_query(
        params(request),
        search=ORDER_SEARCH,
        sortby=ORDER_SORTS,
        filters=filters,
        extra=("fromdate", "todate", "sent", "notcompleted", "label"),
    )
    predicate = both(filters[q.filter] if q.filter else None, search_predicate(q, ORDER_SEARCH))
    predicate = both(predicate, _extra(q))
    keys = tenant.orders.query(
        cache_key=(q.cache_key(), tenant.today().isoformat()),
        since=q.since,
        predicate=predicate,
        sort_value=ORDER_SORTS.get(q.sortby) if q.sortby else None,
        descending=q.descending,
    )
    return render_page(request, tenant, tenant.orders, "Orders", keys, q, order_list_view)


@router.get("/3/orders/{DocumentNumber}")
async def get_order(request: Request, DocumentNumber: str) -> Response:
    rec = _get(tenant_of(request), DocumentNumber)
    return single("Order", order_view(rec, base_url(request)))


@router.post("/3/orders")
async def post_order(request: Request) -> Response:
    tenant = tenant_of(request)
    payload = await read_payload(request, "Order", OrderPayload)
    rec = create_order(tenant, payload.given())
    return single("Order", order_view(rec, base_url(request)), status=201)


@router.put("/3/orders/{DocumentNumber}")
async def put_order(request: Request, DocumentNumber: str) -> Response:
    tenant = tenant_of(request)
    rec = _get(tenant, DocumentNumber)
    payload = await read_payload(request, "Order", OrderPayload)
    update_order(tenant, rec, payload.given())
    return single("Order", order_view(rec, base_url(request)))


@router.put("/3/orders/{DocumentNumber}/cancel")
async def put_cancel_order(request: Request, DocumentNumber: str) -> Response:
    tenant = tenant_of(request)
    rec = cancel_order(tenant, _get(tenant, DocumentNumber))
    return single("Order", order_view(rec, base_url(request)))
