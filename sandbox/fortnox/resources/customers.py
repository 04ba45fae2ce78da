"""``/3/customers``: the customer register.

Numbers: omitted ``CustomerNumber`` takes the next free number; a number once used stays
reserved even after the customer is deleted (``2000637``). Events: ``customer-created-v1``,
``customer-updated-v2``, ``customer-deleted-v1`` on topic ``customers``.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from sandbox.fortnox import errors as E
from sandbox.fortnox.collection import Record
from sandbox.fortnox.listing import both, parse_list_query, search_predicate
from sandbox.fortnox.payloads import CustomerPayload
from sandbox.fortnox.resources.common import (
    base_url,
    params,
    read_payload,
    render_page,
    require,
    single,
    tenant_of,
    text_numbers,
)
from sandbox.fortnox.state import Tenant

router = APIRouter()

COUNTRIES = {
    "SE": "Sverige",
    "NO": "Norge",
    "DK": "Danmark",
    "FI": "Finland",
    "DE": "Tyskland",
    "GB": "Storbritannien",
    "US": "USA",
    "FR": "Frankrike",
    "NL": "Nederländerna",
    "PL": "Polen",
}
_NUMBER_CHARS = re.compile(r"^[A-Za-z0-9+/_\-–]+$")

LIST_FIELDS = ("Address1", "Address2", "City", "CustomerNumber", "Email", "Name")


def defaults(number: str) -> dict[str, Any]:
    """A new customer as Fortnox fills it in (recorded ``customers/save_new``)."""
    nulls = [
        "Address1",
        "Address2",
        "City",
        "Country",
        "Comments",
        "CostCenter",
        "CountryCode",
        "DeliveryAddress1",
        "DeliveryAddress2",
        "DeliveryCity",
        "DeliveryCountry",
        "DeliveryCountryCode",
        "DeliveryFax",
        "DeliveryName",
        "DeliveryPhone1",
        "DeliveryPhone2",
        "DeliveryZipCode",
        "ExternalReference",
        "Fax",
        "GLN",
        "GLNDelivery",
        "InvoiceAdministrationFee",
        "InvoiceDiscount",
        "InvoiceFreight",
        "Phone1",
        "Phone2",
        "SalesAccount",
        "VisitingAddress",
        "VisitingCity",
        "VisitingCountry",
        "VisitingCountryCode",
        "VisitingZipCode",
        "ZipCode",
    ]
    blanks = [
        "Email",
        "EmailInvoice",
        "EmailInvoiceBCC",
        "EmailInvoiceCC",
        "EmailOffer",
        "EmailOfferBCC",
        "EmailOfferCC",
        "EmailOrder",
        "EmailOrderBCC",
        "EmailOrderCC",
        "InvoiceRemark",
        "OrganisationNumber",
        "OurReference",
        "Project",
        "TermsOfDelivery",
        "TermsOfPayment",
        "VATNumber",
        "WayOfDelivery",
        "WWW",
        "YourReference",
    ]
    data: dict[str, Any] = dict.fromkeys(nulls)
    data.update(dict.fromkeys(blanks, ""))
    data.update(
        {
            "Active": True,
            "Currency": "SEK",
            "CustomerNumber": number,
            "DefaultDeliveryTypes": {"Invoice": "PRINT", "Order": "PRINT", "Offer": "PRINT"},
            "DefaultTemplates": {
                "Order": "DEFAULTTEMPLATE",
                "Offer": "DEFAULTTEMPLATE",
                "Invoice": "DEFAULTTEMPLATE",
                "CashInvoice": "DEFAULTTEMPLATE",
            },
            "Name": "",
            "PriceList": "A",
            "ShowPriceVATIncluded": False,
            "Type": "COMPANY",
            "VATType": "SEVAT",
        }
    )
    return data


def _check_references(tenant: Tenant, given: dict[str, Any]) -> None:
    terms = given.get("TermsOfPayment")
    if terms and terms not in tenant.termsofpayments:
        raise E.TERMS_MISSING(code=terms)
    pricelist = given.get("PriceList")
    if pricelist and pricelist not in tenant.pricelists:
        raise E.INVALID_VALUE(field="PriceList", value=pricelist)
    cost_center = given.get("CostCenter")
    if cost_center and cost_center not in tenant.costcenters:
        raise E.COST_CENTER_MISSING(code=cost_center)


def _apply(data: dict[str, Any], given: dict[str, Any]) -> None:
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **{k: v for k, v in value.items() if v is not None}}
        else:
            data[key] = value
    for code_field, name_field in (
        ("CountryCode", "Country"),
        ("DeliveryCountryCode", "DeliveryCountry"),
        ("VisitingCountryCode", "VisitingCountry"),
    ):
        if code_field in given:
            code = given[code_field]
            data[name_field] = COUNTRIES.get(code.upper(), code) if code else None


def create_customer(tenant: Tenant, given: dict[str, Any]) -> Record:
    require(given, "Name")
    number = given.get("CustomerNumber")
    if number:
        if not _NUMBER_CHARS.match(number):
            raise E.INVALID_CHARACTERS()
        if number in tenant.reserved_customer_numbers or number in tenant.customers:
            raise E.CUSTOMER_NUMBER_USED(number=number)
        tenant.note_number("customer", number)
    else:
        reserved = tenant.reserved_customer_numbers
        number = tenant.take_number("customer", lambda n: n in reserved)
    _check_references(tenant, given)
    data = defaults(number)
    _apply(data, {**given, "CustomerNumber": number})
    tenant.reserved_customer_numbers.add(number)
    rec = tenant.customers.insert(number, data, now=tenant.now())
    tenant.emit("customers", "customer-created-v1", number)
    return rec


def update_customer(tenant: Tenant, rec: Record, given: dict[str, Any]) -> Record:
    if given.get("CustomerNumber") not in (None, rec.key):
        raise E.INVALID_VALUE(field="CustomerNumber", value=given["CustomerNumber"])
    if "Name" in given:
        require(given, "Name")
    _check_references(tenant, given)
    _apply(rec.data, given)
    tenant.customers.touch(rec, now=tenant.now())
    tenant.emit("customers", "customer-updated-v2", rec.key)
    return rec


def delete_customer(tenant: Tenant, number: str) -> None:
    if number not in tenant.customers:
        raise E.CUSTOMER_NOT_FOUND()
    tenant.customers.delete(number)
    tenant.emit("customers", "customer-deleted-v1", number)


def view_full(rec: Record, base: str) -> dict[str, Any]:
    return {"@url": f"{base}/3/customers/{rec.key}", **rec.data}


def view_list(rec: Record, base: str) -> dict[str, Any]:
    d = rec.data
    item: dict[str, Any] = {"@url": f"{base}/3/customers/{rec.key}"}
    for name in LIST_FIELDS:
        item[name] = d.get(name) or ""
    item["OrganisationNumber"] = d.get("OrganisationNumber") or ""
    item["Phone"] = d.get("Phone1") or ""
    item["ZipCode"] = d.get("ZipCode") or ""
    return item


SEARCH = {
    "customernumber": lambda r: r.key,
    "name": lambda r: r.data.get("Name"),
    "zipcode": lambda r: r.data.get("ZipCode"),
    "city": lambda r: r.data.get("City"),
    "email": lambda r: r.data.get("Email"),
    "phone": lambda r: r.data.get("Phone1"),
    "organisationnumber": lambda r: r.data.get("OrganisationNumber"),
    "gln": lambda r: r.data.get("GLN"),
    "glndelivery": lambda r: r.data.get("GLNDelivery"),
}
FILTERS = {
    "active": lambda r: bool(r.data.get("Active")),
    "inactive": lambda r: not r.data.get("Active"),
}
SORTS = {"customernumber": None, "name": lambda r: (r.data.get("Name") or "").lower()}


def _get(tenant: Tenant, number: str) -> Record:
    rec = tenant.customers.get(number)
    if rec is None:
        raise E.CUSTOMER_NOT_FOUND()
    return rec


@router.get("/3/customers")
async def list_customers(request: Request) -> Response:
    tenant = tenant_of(request)
    q = parse_list_query(params(request), search=SEARCH, sortby=SORTS, filters=FILTERS)
    predicate = both(FILTERS[q.filter] if q.filter else None, search_predicate(q, SEARCH))
    keys = tenant.customers.query(
        cache_key=q.cache_key(),
        since=q.since,
        predicate=predicate,
        sort_value=SORTS.get(q.sortby) if q.sortby else None,
        descending=q.descending,
    )
    return render_page(request, tenant, tenant.customers, "Customers", keys, q, view_list)


@router.get("/3/customers/{CustomerNumber}")
async def get_customer(request: Request, CustomerNumber: str) -> Response:
    tenant = tenant_of(request)
    rec = _get(tenant, CustomerNumber)
    return single(
        "Customer", view_full(rec, base_url(request)), as_text=text_numbers(tenant, "customers")
    )


@router.post("/3/customers")
async def post_customer(request: Request) -> Response:
    tenant = tenant_of(request)
    payload = await read_payload(request, "Customer", CustomerPayload)
    rec = create_customer(tenant, payload.given())
    return single(
        "Customer",
        view_full(rec, base_url(request)),
        status=201,
        as_text=text_numbers(tenant, "customers"),
    )


@router.put("/3/customers/{CustomerNumber}")
async def put_customer(request: Request, CustomerNumber: str) -> Response:
    tenant = tenant_of(request)
    rec = _get(tenant, CustomerNumber)
    payload = await read_payload(request, "Customer", CustomerPayload)
    update_customer(tenant, rec, payload.given())
    return single(
        "Customer", view_full(rec, base_url(request)), as_text=text_numbers(tenant, "customers")
    )


@router.delete("/3/customers/{CustomerNumber}")
async def remove_customer(request: Request, CustomerNumber: str) -> Response:
    delete_customer(tenant_of(request), CustomerNumber)
    return Response(status_code=204)
