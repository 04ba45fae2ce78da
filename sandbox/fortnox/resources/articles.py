"""``/3/articles``: the article register.

* ``SalesPrice`` is read-only: it shows the price in the default price list (``A``) at
  FromQuantity 0 (write prices through ``/3/prices``);
* ``QuantityInStock`` is absolute. With the warehouse module (Lager) active, stock moves only
  through warehouse documents: a write of ``QuantityInStock`` is rejected with ``2003127``;
* list views send ``DisposableQuantity``, ``PurchasePrice``, ``ReservedQuantity``,
  ``SalesPrice``, ``StockValue`` and ``VAT`` as strings, as the OpenAPI list schema and the
  recorded traffic do (the ``numbers_as_strings`` quirk turns every number into text).

Events: ``article-created-v1``, ``article-updated-v1``, ``article-deleted-v1`` (topic
``articles``); stock changes under Lager also ``warehouse-stockbalance-changed-v1``.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from sandbox.fortnox import errors as E
from sandbox.fortnox.collection import Record
from sandbox.fortnox.listing import ListQuery, both, num_text, parse_list_query, search_predicate
from sandbox.fortnox.payloads import ArticlePayload
from sandbox.fortnox.resources.common import (
    base_url,
    money,
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

VAT_RATES = (0.0, 6.0, 12.0, 25.0)
SALES_ACCOUNT_BY_VAT = {25.0: 3001, 12.0: 3002, 6.0: 3003, 0.0: 3004}
_NUMBER_CHARS = re.compile(r"^[A-Za-z0-9_\-+/.]+$")


def defaults(number: str) -> dict[str, Any]:
    return {
        "Active": True,
        "ArticleNumber": number,
        "Bulky": False,
        "CommodityCode": None,
        "ConstructionAccount": None,
        "CostCalculationMethod": None,
        "DefaultStockLocation": None,
        "DefaultStockPoint": None,
        "Depth": 0,
        "Description": "",
        "DirectCost": None,
        "DisposableQuantity": 0.0,
        "EAN": "",
        "EUAccount": 3108,
        "EUVATAccount": 3106,
        "Expired": False,
        "ExportAccount": 3105,
        "FreightCost": None,
        "Height": 0,
        "Housework": False,
        "HouseworkType": None,
        "Manufacturer": None,
        "ManufacturerArticleNumber": "",
        "Note": "",
        "OtherCost": None,
        "PurchaseAccount": 4000,
        "PurchasePrice": 0.0,
        "QuantityInStock": 0.0,
        "ReservedQuantity": 0.0,
        "SalesAccount": 3001,
        "SalesPrice": None,
        "StockAccount": None,
        "StockChangeAccount": None,
        "StockGoods": False,
        "StockPlace": None,
        "StockValue": 0.0,
        "StockWarning": 0.0,
        "SupplierName": None,
        "SupplierNumber": None,
        "Type": "STOCK",
        "Unit": None,
        "VAT": 25.0,
        "WebshopArticle": False,
        "Weight": 0,
        "Width": 0,
    }


def derive(tenant: Tenant, rec_data: dict[str, Any]) -> None:
    """Recompute the read-only fields from the writable ones."""
    number = rec_data["ArticleNumber"]
    qty = float(rec_data.get("QuantityInStock") or 0.0)
    reserved = tenant.reserved.get(number, 0.0)
    rec_data["ReservedQuantity"] = reserved
    rec_data["DisposableQuantity"] = qty - reserved
    rec_data["StockValue"] = money(qty * float(rec_data.get("PurchasePrice") or 0.0))
    rec_data["SalesPrice"] = tenant.sales_price(number)


def _validate(tenant: Tenant, given: dict[str, Any], *, actor: str) -> None:
    if "VAT" in given and given["VAT"] is not None and float(given["VAT"]) not in VAT_RATES:
        raise E.INVALID_VALUE(field="VAT", value=str(given["VAT"]))
    unit = given.get("Unit")
    if unit and unit not in tenant.units:
        raise E.UNIT_MISSING(unit=unit)
    if actor == "api" and tenant.warehouse_active and "QuantityInStock" in given:
        raise E.WAREHOUSE_STOCK_LOCKED()


def create_article(tenant: Tenant, given: dict[str, Any], *, actor: str = "api") -> Record:
    require(given, "Description")
    number = given.get("ArticleNumber")
    if number:
        if not _NUMBER_CHARS.match(number):
            raise E.INVALID_CHARACTERS()
        if number in tenant.articles:
            raise E.ALREADY_EXISTS(what="Artikelnummer", key=number)
        tenant.note_number("article", number)
    else:
        number = tenant.take_number("article", lambda n: n in tenant.articles)
    _validate(tenant, given, actor=actor)
    data = defaults(number)
    data.update(given)
    data["ArticleNumber"] = number
    if "SalesAccount" not in given and data.get("VAT") is not None:
        data["SalesAccount"] = SALES_ACCOUNT_BY_VAT.get(float(data["VAT"]), 3001)
    _normalise(data)
    derive(tenant, data)
    rec = tenant.articles.insert(number, data, now=tenant.now())
    tenant.emit("articles", "article-created-v1", number)
    return rec


def _normalise(data: dict[str, Any]) -> None:
    for name in ("QuantityInStock", "PurchasePrice", "VAT", "StockWarning"):
        if data.get(name) is not None:
            data[name] = float(data[name])


def update_article(
    tenant: Tenant, rec: Record, given: dict[str, Any], *, actor: str = "api"
) -> Record:
    if given.get("ArticleNumber") not in (None, rec.key):
        raise E.INVALID_VALUE(field="ArticleNumber", value=given["ArticleNumber"])
    if "Description" in given:
        require(given, "Description")
    _validate(tenant, given, actor=actor)
    stock_before = rec.data.get("QuantityInStock")
    rec.data.update(given)
    _normalise(rec.data)
    if actor == "api" and given.get("QuantityInStock") is not None:
        tenant.stock_audit.write(
            rec.key,
            float(stock_before or 0.0),
            float(rec.data["QuantityInStock"]),
            tenant.now(),
        )
    derive(tenant, rec.data)
    tenant.articles.touch(rec, now=tenant.now())
    tenant.emit("articles", "article-updated-v1", rec.key)
    if tenant.warehouse_active and rec.data.get("QuantityInStock") != stock_before:
        tenant.emit("warehouse-stockbalances", "warehouse-stockbalance-changed-v1", rec.key)
    return rec


def delete_article(tenant: Tenant, number: str) -> None:
    if number not in tenant.articles:
        raise E.ARTICLE_NOT_FOUND()
    tenant.articles.delete(number)
    for key in [k for k in tenant.prices if k[1] == number]:
        del tenant.prices[key]
    tenant.emit("articles", "article-deleted-v1", number)


def webshop_sale(tenant: Tenant, number: str, quantity: float) -> Record:
    """A sale made in Fortnox (e.g. its web shop): stock drops by ``quantity`` in one step."""
    rec = tenant.articles.get(number)
    if rec is None:
        raise E.ARTICLE_NOT_FOUND()
    rec.data["QuantityInStock"] = float(rec.data.get("QuantityInStock") or 0.0) - quantity
    tenant.stock_audit.sale(quantity)
    derive(tenant, rec.data)
    tenant.articles.touch(rec, now=tenant.now())
    tenant.emit("articles", "article-updated-v1", number)
    if tenant.warehouse_active:
        tenant.emit("warehouse-stockbalances", "warehouse-stockbalance-changed-v1", number)
    return rec


def adjust_stock(tenant: Tenant, number: str, in_stock: float, reserved: float) -> None:
    """Warehouse documents move stock; the article register reflects it without a new
    lastmodified (the warehouse module keeps the balance)."""
    rec = tenant.articles.get(number)
    if rec is None:
        return
    if reserved:
        tenant.reserved[number] = tenant.reserved.get(number, 0.0) + reserved
    rec.data["QuantityInStock"] = float(rec.data.get("QuantityInStock") or 0.0) + in_stock
    derive(tenant, rec.data)
    tenant.articles.invalidate(rec)
    tenant.emit("warehouse-stockbalances", "warehouse-stockbalance-changed-v1", number)


def refresh_sales_price(tenant: Tenant, number: str) -> None:
    """Called when a price changes: SalesPrice follows the default list at FromQuantity 0."""
    rec = tenant.articles.get(number)
    if rec is None:
        return
    new = tenant.sales_price(number)
    if rec.data.get("SalesPrice") == new:
        return
    rec.data["SalesPrice"] = new
    if tenant.quirks.price_change_touches_article:
        tenant.articles.touch(rec, now=tenant.now())
        tenant.emit("articles", "article-updated-v1", number)
    else:
        tenant.articles.invalidate(rec)


def view_full(rec: Record, base: str) -> dict[str, Any]:
    return {"@url": f"{base}/3/articles/{rec.key}", **rec.data}


def _text(value: Any) -> str | None:
    return None if value is None else num_text(value)


def view_list(rec: Record, base: str) -> dict[str, Any]:
    """The list view: the fields of Fortnox's ``ArticleListItem`` (its OpenAPI document)."""
    d = rec.data
    return {
        "@url": f"{base}/3/articles/{rec.key}",
        "Active": d.get("Active", True),
        "ArticleNumber": rec.key,
        "Description": d["Description"],
        "DisposableQuantity": _text(d["DisposableQuantity"]),
        "EAN": d.get("EAN") or "",
        "Housework": d.get("Housework", False),
        "PurchasePrice": _text(d.get("PurchasePrice") or 0),
        "SalesPrice": _text(d.get("SalesPrice")),
        "QuantityInStock": d.get("QuantityInStock") or 0.0,
        "ReservedQuantity": _text(d.get("ReservedQuantity") or 0),
        "StockGoods": d.get("StockGoods", False),
        "StockPlace": d.get("StockPlace"),
        "StockValue": _text(d.get("StockValue") or 0),
        "Type": d.get("Type") or "STOCK",
        "Unit": d.get("Unit") or "",
        "VAT": _text(d.get("VAT") or 0),
        "WebshopArticle": d.get("WebshopArticle", False),
    }


SEARCH = {
    "articlenumber": lambda r: r.key,
    "description": lambda r: r.data.get("Description"),
    "ean": lambda r: r.data.get("EAN"),
    "suppliernumber": lambda r: r.data.get("SupplierNumber"),
    "manufacturer": lambda r: r.data.get("Manufacturer"),
    "manufacturerarticlenumber": lambda r: r.data.get("ManufacturerArticleNumber"),
}
FILTERS = {
    "active": lambda r: bool(r.data.get("Active")),
    "inactive": lambda r: not r.data.get("Active"),
}
SORTS = {
    "articlenumber": None,
    "quantityinstock": lambda r: r.data.get("QuantityInStock") or 0.0,
    "reservedquantity": lambda r: r.data.get("ReservedQuantity") or 0.0,
    "stockvalue": lambda r: r.data.get("StockValue") or 0.0,
}


def _webshop(q: ListQuery) -> Any:
    value = q.other.get("webshop")
    if value is None:
        return None
    wanted = value.lower() in ("true", "1")
    return lambda r: bool(r.data.get("WebshopArticle")) == wanted


def _get(tenant: Tenant, number: str) -> Record:
    rec = tenant.articles.get(number)
    if rec is None:
        raise E.ARTICLE_NOT_FOUND()
    return rec


@router.get("/3/articles")
async def list_articles(request: Request) -> Response:
    tenant = tenant_of(request)
    q = parse_list_query(
        params(request), search=SEARCH, sortby=SORTS, filters=FILTERS, extra=("webshop",)
    )
    predicate = both(FILTERS[q.filter] if q.filter else None, search_predicate(q, SEARCH))
    predicate = both(predicate, _webshop(q))
    keys = tenant.articles.query(
        cache_key=q.cache_key(),
        since=q.since,
        predicate=predicate,
        sort_value=SORTS.get(q.sortby) if q.sortby else None,
        descending=q.descending,
    )
    return render_page(request, tenant, tenant.articles, "Articles", keys, q, view_list)


@router.get("/3/articles/{ArticleNumber}")
async def get_article(request: Request, ArticleNumber: str) -> Response:
    tenant = tenant_of(request)
    rec = _get(tenant, ArticleNumber)
    tenant.stock_audit.read(rec.key, float(rec.data.get("QuantityInStock") or 0.0))
    return single(
        "Article", view_full(rec, base_url(request)), as_text=text_numbers(tenant, "articles")
    )


@router.post("/3/articles")
async def post_article(request: Request) -> Response:
    tenant = tenant_of(request)
    payload = await read_payload(request, "Article", ArticlePayload)
    rec = create_article(tenant, payload.given())
    return single(
        "Article",
        view_full(rec, base_url(request)),
        status=201,
        as_text=text_numbers(tenant, "articles"),
    )


@router.put("/3/articles/{ArticleNumber}")
async def put_article(request: Request, ArticleNumber: str) -> Response:
    tenant = tenant_of(request)
    rec = _get(tenant, ArticleNumber)
    payload = await read_payload(request, "Article", ArticlePayload)
    update_article(tenant, rec, payload.given())
    return single(
        "Article", view_full(rec, base_url(request)), as_text=text_numbers(tenant, "articles")
    )


@router.delete("/3/articles/{ArticleNumber}")
async def remove_article(request: Request, ArticleNumber: str) -> Response:
    delete_article(tenant_of(request), ArticleNumber)
    return Response(status_code=204)
