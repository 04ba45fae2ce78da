"""``/3/prices``: prices per price list, article and FromQuantity.

A change in the default price list (``A``) at FromQuantity 0 changes the article's read-only
``SalesPrice``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from sandbox.fortnox import errors as E
from sandbox.fortnox.listing import plain_list_response
from sandbox.fortnox.payloads import PricePayload
from sandbox.fortnox.resources.articles import refresh_sales_price
from sandbox.fortnox.resources.common import (
    base_url,
    params,
    read_payload,
    require,
    single,
    tenant_of,
)
from sandbox.fortnox.state import Tenant

router = APIRouter()


def _qty(raw: Any) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise E.INVALID_VALUE(field="FromQuantity", value=str(raw)) from None


def price_view(
    base: str, pricelist: str, article: str, qty: float, row: dict[str, Any]
) -> dict[str, Any]:
    return {
        "@url": f"{base}/3/prices/{pricelist}/{article}/{_qty_text(qty)}",
        "ArticleNumber": article,
        "Date": row["Date"],
        "FromQuantity": qty,
        "Percent": row.get("Percent", 0.0),
        "Price": row.get("Price"),
        "PriceList": pricelist,
    }


def _qty_text(qty: float) -> str:
    return str(int(qty)) if qty.is_integer() else str(qty)


def set_price(
    tenant: Tenant,
    pricelist: str,
    article: str,
    qty: float,
    given: dict[str, Any],
    *,
    create: bool,
) -> dict[str, Any]:
    """Create (``create=True``) or update one price; keeps SalesPrice in step."""
    if pricelist not in tenant.pricelists:
        raise (
            E.PRICELIST_NOT_FOUND()
            if not create
            else E.INVALID_VALUE(field="PriceList", value=pricelist)
        )
    if article not in tenant.articles:
        raise E.ARTICLE_NOT_FOUND() if not create else E.ARTICLE_MISSING(article=article)
    rows = tenant.prices.setdefault((pricelist, article), {})
    if create and qty in rows:
        raise E.ALREADY_EXISTS(what="Priset", key=f"{pricelist}/{article}/{_qty_text(qty)}")
    if not create and qty not in rows:
        raise E.PRICE_NOT_FOUND()
    row = rows.setdefault(qty, {"Price": 0.0, "Percent": 0.0})
    for name in ("Price", "Percent"):
        if given.get(name) is not None:
            row[name] = float(given[name])
    row["Date"] = tenant.today().isoformat()
    if pricelist == tenant.default_pricelist and qty == 0.0:
        refresh_sales_price(tenant, article)
    return row


def delete_price(tenant: Tenant, pricelist: str, article: str, qty: float) -> None:
    rows = tenant.prices.get((pricelist, article))
    if not rows or qty not in rows:
        raise E.PRICE_NOT_FOUND()
    del rows[qty]
    if pricelist == tenant.default_pricelist and qty == 0.0:
        refresh_sales_price(tenant, article)


def _rows(tenant: Tenant, pricelist: str, article: str) -> dict[float, dict[str, Any]]:
    if pricelist not in tenant.pricelists:
        raise E.PRICELIST_NOT_FOUND()
    rows = tenant.prices.get((pricelist, article))
    if not rows:
        raise E.PRICE_NOT_FOUND()
    return rows


@router.post("/3/prices")
async def post_price(request: Request) -> Response:
    tenant = tenant_of(request)
    given = (await read_payload(request, "Price", PricePayload)).given()
    require(given, "PriceList", "ArticleNumber")
    qty = _qty(given.get("FromQuantity") or 0)
    pl, art = str(given["PriceList"]), str(given["ArticleNumber"])
    row = set_price(tenant, pl, art, qty, given, create=True)
    return single("Price", price_view(base_url(request), pl, art, qty, row), status=201)


@router.get("/3/prices/sublist/{PriceList}/{ArticleNumber}")
async def price_sublist(request: Request, PriceList: str, ArticleNumber: str) -> Response:
    tenant = tenant_of(request)
    q = params(request)
    if set(q) - {"fromquantity", "limit", "page", "offset"}:
        raise E.INVALID_PARAMETER()
    if PriceList not in tenant.pricelists:
        raise E.PRICELIST_NOT_FOUND()
    rows = tenant.prices.get((PriceList, ArticleNumber), {})
    low = _qty(q["fromquantity"]) if "fromquantity" in q else None
    base = base_url(request)
    items = [
        price_view(base, PriceList, ArticleNumber, qty, rows[qty])
        for qty in sorted(rows)
        if low is None or qty >= low
    ]
    return plain_list_response("Prices", items)


@router.get("/3/prices/{PriceList}/{ArticleNumber}")
async def first_price(request: Request, PriceList: str, ArticleNumber: str) -> Response:
    tenant = tenant_of(request)
    rows = _rows(tenant, PriceList, ArticleNumber)
    qty = min(rows)
    view = price_view(base_url(request), PriceList, ArticleNumber, qty, rows[qty])
    return single("Price", view)


@router.put("/3/prices/{PriceList}/{ArticleNumber}")
async def put_first_price(request: Request, PriceList: str, ArticleNumber: str) -> Response:
    tenant = tenant_of(request)
    given = (await read_payload(request, "Price", PricePayload)).given()
    qty = min(_rows(tenant, PriceList, ArticleNumber))
    row = set_price(tenant, PriceList, ArticleNumber, qty, given, create=False)
    return single("Price", price_view(base_url(request), PriceList, ArticleNumber, qty, row))


@router.get("/3/prices/{PriceList}/{ArticleNumber}/{FromQuantity}")
async def get_price(
    request: Request, PriceList: str, ArticleNumber: str, FromQuantity: str
) -> Response:
    tenant = tenant_of(request)
    rows = _rows(tenant, PriceList, ArticleNumber)
    qty = _qty(FromQuantity)
    if qty not in rows:
        raise E.PRICE_NOT_FOUND()
    return single("Price", price_view(base_url(request), PriceList, ArticleNumber, qty, rows[qty]))


@router.put("/3/prices/{PriceList}/{ArticleNumber}/{FromQuantity}")
async def put_price(
    request: Request, PriceList: str, ArticleNumber: str, FromQuantity: str
) -> Response:
    tenant = tenant_of(request)
    given = (await read_payload(request, "Price", PricePayload)).given()
    qty = _qty(FromQuantity)
    row = set_price(tenant, PriceList, ArticleNumber, qty, given, create=False)
    return single("Price", price_view(base_url(request), PriceList, ArticleNumber, qty, row))


@router.delete("/3/prices/{PriceList}/{ArticleNumber}/{FromQuantity}")
async def remove_price(
    request: Request, PriceList: str, ArticleNumber: str, FromQuantity: str
) -> Response:
    delete_price(tenant_of(request), PriceList, ArticleNumber, _qty(FromQuantity))
    return Response(status_code=204)
