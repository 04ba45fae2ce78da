"""``/api/warehouse``: Fortnox Lager, the warehouse module.

Detection: ``GET /api/warehouse/tenants-v4`` answers ``{"activated": bool, "tenantId": id}``
(Fortnox's OpenAPI: "Check if current tenant has activated Fortnox Warehouse"). It always
answers; every other warehouse route answers 403 ``{"error": "warehouse_not_activated", ...}``
while the module is off (Fortnox does not document that answer; see docs/sandbox.md).

The sandbox has one stock point, ``LAGER``. Stock is the article's ``QuantityInStock``;
reservations are kept per article and shown as ``ReservedQuantity``.

Custom documents (``PUT .../custom/outbound-v1/{type}/{id}`` and ``inbound-v1``) are
idempotent by ``(type, id)``: a second PUT replaces the first and only the difference moves
stock. ``deliveryState`` decides the effect of an outbound document: ``registration`` none,
``reservation`` reserves ``quantity``, ``delivery`` takes ``deliveredQuantity`` (else
``quantity``) out of stock. Inbound documents put ``quantity`` in stock. ``release`` locks a
document (``warehouseReady``); ``void`` undoes its effect.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import Response

from sandbox.fortnox.errors import FortnoxError, WarehouseError
from sandbox.fortnox.listing import json_response
from sandbox.fortnox.payloads import CustomInboundDocument, CustomOutboundDocument, parse_json
from sandbox.fortnox.resources.articles import adjust_stock
from sandbox.fortnox.resources.common import parse_date, tenant_of
from sandbox.fortnox.state import Tenant

router = APIRouter()

STOCK_POINT = "LAGER"
_TYPE = re.compile(r"^[A-Za-z0-9_-]{1,25}$")
_ID = re.compile(r"^[0-9]{1,25}$")
RESERVED_TYPES = frozenset({"CUSTOMERINVOICE", "FAKTURA", "ORDER", "SUPPLIERINVOICE"})

Effect = dict[str, tuple[float, float]]


def _active(tenant: Tenant) -> None:
    if not tenant.warehouse_active:
        raise WarehouseError(
            403, "warehouse_not_activated", "Fortnox Lager är inte aktiverat för företaget"
        )


@router.get("/api/warehouse/tenants-v4")
async def warehouse_tenant(request: Request) -> Response:
    tenant = tenant_of(request)
    return json_response({"activated": tenant.warehouse_active, "tenantId": tenant.id})


def _csv(request: Request, name: str) -> list[str] | None:
    values = [v for k, v in request.query_params.multi_items() if k.lower() == name.lower()]
    if not values:
        return None
    return [item.strip() for v in values for item in v.split(",") if item.strip()]


def stock_balances(tenant: Tenant, items: list[str] | None) -> list[dict[str, Any]]:
    if items is None:
        recs = [r for r in tenant.articles if r.data.get("StockGoods")]
    else:
        recs = [r for r in (tenant.articles.get(i) for i in items) if r is not None]
    out = []
    for rec in recs:
        qty = float(rec.data.get("QuantityInStock") or 0.0)
        reserved = tenant.reserved.get(rec.key, 0.0)
        out.append(
            {
                "itemId": rec.key,
                "stockPointCode": STOCK_POINT,
                "availableStock": qty - reserved,
                "inStock": qty,
            }
        )
    return out


@router.get("/api/warehouse/status-v1/stockbalance")
async def stockbalance(request: Request) -> Response:
    tenant = tenant_of(request)
    _active(tenant)
    points = _csv(request, "stockPointCodes")
    if points is not None and STOCK_POINT not in points:
        return json_response([])
    return json_response(stock_balances(tenant, _csv(request, "itemIds")))


# --- custom documents -----------------------------------------------------------------------------
def _effect(category: str, doc: dict[str, Any]) -> Effect:
    out: Effect = {}
    if doc.get("voided"):
        return out
    for row in doc["rows"]:
        qty = float(row["quantity"])
        in_stock, reserved = 0.0, 0.0
        if category == "INBOUND":
            in_stock = qty
        elif doc["deliveryState"] == "reservation":
            reserved = qty
        elif doc["deliveryState"] == "delivery":
            delivered = row.get("deliveredQuantity")
            in_stock = -float(delivered if delivered is not None else qty)
        prev = out.get(row["itemId"], (0.0, 0.0))
        out[row["itemId"]] = (prev[0] + in_stock, prev[1] + reserved)
    return out


def _apply(tenant: Tenant, new: Effect, old: Effect) -> None:
    for item in sorted(set(new) | set(old)):
        n, o = new.get(item, (0.0, 0.0)), old.get(item, (0.0, 0.0))
        d_stock, d_reserved = n[0] - o[0], n[1] - o[1]
        if d_stock or d_reserved:
            adjust_stock(tenant, item, d_stock, d_reserved)


def _check_key(tenant: Tenant, category: str, doc_type: str, doc_id: str) -> str:
    upper = doc_type.upper()
    if not _TYPE.match(doc_type) or upper in RESERVED_TYPES:
        raise WarehouseError(400, "invalid_document_type", f"Ogiltig dokumenttyp: {doc_type}")
    if not _ID.match(doc_id):
        raise WarehouseError(400, "invalid_document_id", f"Ogiltigt dokument-id: {doc_id}")
    known = tenant.document_types.get(upper)
    if known is not None and known != category:
        raise WarehouseError(
            400, "invalid_document_type", f"Dokumenttypen {upper} hör till kategorin {known}"
        )
    return upper


def save_custom_document(
    tenant: Tenant, category: str, doc_type: str, doc_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    upper = _check_key(tenant, category, doc_type, doc_id)
    model: type[CustomOutboundDocument] | type[CustomInboundDocument] = (
        CustomOutboundDocument if category == "OUTBOUND" else CustomInboundDocument
    )
    try:
        parsed = model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise WarehouseError(400, "invalid_request", f"{where}: {first.get('msg')}") from None
    when = parse_date(parsed.date, "date")
    if tenant.locked_until is not None and when <= tenant.locked_until:
        raise WarehouseError(400, "period_locked", "Perioden är låst")
    for row in parsed.rows:
        if row.itemId not in tenant.articles:
            raise WarehouseError(
                404, "item_not_found", f"Hittades inte i lagermodulen: {row.itemId}"
            )
    key = (category, upper, doc_id)
    old = tenant.custom_documents.get(key)
    if old is not None and old.get("voided"):
        raise WarehouseError(400, "document_is_voided", "Dokumentet är makulerat i lagermodulen")
    if old is not None and old.get("warehouseReady"):
        raise WarehouseError(
            400, "document_is_released", "Ett klarmarkerat dokument kan inte ändras"
        )
    rows = [
        {**row.model_dump(exclude_none=True), "rowId": i}
        for i, row in enumerate(parsed.rows, start=1)
    ]
    doc: dict[str, Any] = {
        "id": doc_id,
        "date": when.isoformat(),
        "note": parsed.note or "",
        "rows": rows,
        "voided": False,
        "warehouseReady": bool(parsed.warehouseReady),
    }
    if isinstance(parsed, CustomOutboundDocument):
        doc.update(
            {
                "referenceType": upper,
                "deliveryState": parsed.deliveryState,
                "forcedDelivery": bool(parsed.forcedDelivery),
            }
        )
    else:
        doc["type"] = upper
    tenant.document_types.setdefault(upper, category)
    _apply(tenant, _effect(category, doc), _effect(category, old) if old else {})
    tenant.custom_documents[key] = doc
    return doc


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = parse_json(await request.body(), request.headers.get("content-type"))
    except FortnoxError as exc:
        raise WarehouseError(400, "invalid_request", exc.message) from None
    if not isinstance(body, dict):
        raise WarehouseError(400, "invalid_request", "Ett JSON-objekt krävs")
    return body


def _existing(tenant: Tenant, category: str, doc_type: str, doc_id: str) -> dict[str, Any]:
    doc = tenant.custom_documents.get((category, doc_type.upper(), doc_id))
    if doc is None:
        raise WarehouseError(404, "document_not_found", "Hittades inte i lagermodulen")
    return doc


def release_document(tenant: Tenant, category: str, doc_type: str, doc_id: str) -> dict[str, Any]:
    doc = _existing(tenant, category, doc_type, doc_id)
    if doc["voided"]:
        raise WarehouseError(400, "document_is_voided", "Dokumentet är makulerat i lagermodulen")
    if doc["date"] > tenant.today().isoformat():
        raise WarehouseError(
            400, "cannot_release_later_than_current_date", "Datumet ligger efter dagens datum"
        )
    doc["warehouseReady"] = True
    return doc


def void_document(tenant: Tenant, category: str, doc_type: str, doc_id: str) -> dict[str, Any]:
    doc = _existing(tenant, category, doc_type, doc_id)
    if not doc["voided"]:
        _apply(tenant, {}, _effect(category, doc))
        doc["voided"] = True
    return doc


def _add_document_routes(category: str, segment: str) -> None:
    base = f"/api/warehouse/documentdeliveries/custom/{segment}/{{type}}/{{id}}"

    async def put_doc(request: Request, type: str, id: str) -> Response:
        tenant = tenant_of(request)
        _active(tenant)
        body = await _json_object(request)
        return json_response(save_custom_document(tenant, category, type, id, body))

    async def get_doc(request: Request, type: str, id: str) -> Response:
        tenant = tenant_of(request)
        _active(tenant)
        return json_response(_existing(tenant, category, type, id))

    async def release(request: Request, type: str, id: str) -> Response:
        tenant = tenant_of(request)
        _active(tenant)
        return json_response(release_document(tenant, category, type, id))

    async def void(request: Request, type: str, id: str) -> Response:
        tenant = tenant_of(request)
        _active(tenant)
        return json_response(void_document(tenant, category, type, id))

    router.add_api_route(base, put_doc, methods=["PUT"])
    router.add_api_route(base, get_doc, methods=["GET"])
    router.add_api_route(base + "/release", release, methods=["PUT"])
    router.add_api_route(base + "/void", void, methods=["PUT"])


_add_document_routes("OUTBOUND", "outbound-v1")
_add_document_routes("INBOUND", "inbound-v1")


@router.get("/api/warehouse/documentdeliveries/custom/documenttypes-v1")
async def document_types(request: Request) -> Response:
    tenant = tenant_of(request)
    _active(tenant)
    return json_response(
        [{"category": c, "referenceType": t} for t, c in sorted(tenant.document_types.items())]
    )


@router.get("/api/warehouse/documentdeliveries/custom/documenttypes-v1/{type}")
async def document_type(request: Request, type: str) -> Response:
    tenant = tenant_of(request)
    _active(tenant)
    category = tenant.document_types.get(type.upper())
    if category is None:
        raise WarehouseError(404, "document_type_not_found", "Hittades inte i lagermodulen")
    return json_response({"category": category, "referenceType": type.upper()})


@router.post("/api/warehouse/documentdeliveries/custom/documenttypes-v1", status_code=201)
async def register_document_type(request: Request) -> Response:
    """Fortnox answers 201 with ``1`` when the type was created and ``0`` when it existed."""
    tenant = tenant_of(request)
    _active(tenant)
    body = await _json_object(request)
    ref = str(body.get("referenceType") or "")
    category = str(body.get("category") or "")
    if category not in ("INBOUND", "OUTBOUND"):
        raise WarehouseError(400, "invalid_request", "category måste vara INBOUND eller OUTBOUND")
    upper = _check_key(tenant, category, ref, "1")
    created = upper not in tenant.document_types
    tenant.document_types.setdefault(upper, category)
    return json_response(1 if created else 0, 201)
