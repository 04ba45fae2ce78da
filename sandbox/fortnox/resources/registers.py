"""Small code registers: units, price lists, terms of payment, cost centres.

All four are keyed by ``Code`` and share list/get/create/update(/delete) behaviour. Cost centre
changes are published on the ``cost-centers`` topic (``cost-center-created-v1`` etc.).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from sandbox.fortnox import errors as E
from sandbox.fortnox.collection import Collection, Record
from sandbox.fortnox.listing import parse_list_query
from sandbox.fortnox.payloads import (
    CostCenterPayload,
    Payload,
    PriceListPayload,
    TermsOfPaymentPayload,
    UnitPayload,
)
from sandbox.fortnox.resources.common import (
    base_url,
    params,
    read_payload,
    render_page,
    require,
    single,
    tenant_of,
)
from sandbox.fortnox.state import Tenant

router = APIRouter()


@dataclass(frozen=True)
class Register:
    path: str
    single: str
    plural: str
    model: type[Payload]
    collection: Callable[[Tenant], Collection]
    defaults: Callable[[Tenant, str], dict[str, Any]]
    not_found: E.ErrorSpec
    required: tuple[str, ...]
    what: str
    topic: str | None = None
    event_prefix: str | None = None
    deletable: bool = True
    in_use: Callable[[Tenant, str], bool] | None = None
    view_extra: Callable[[Tenant, Record], dict[str, Any]] | None = None


def _unit_defaults(_t: Tenant, code: str) -> dict[str, Any]:
    return {"Code": code, "CodeEnglish": None, "Description": ""}


def _pricelist_defaults(_t: Tenant, code: str) -> dict[str, Any]:
    return {"Code": code, "Comments": None, "Description": ""}


def _terms_defaults(_t: Tenant, code: str) -> dict[str, Any]:
    return {"Code": code, "Description": ""}


def _costcenter_defaults(_t: Tenant, code: str) -> dict[str, Any]:
    return {"Active": True, "Code": code, "Description": "", "Note": None}


def _unit_in_use(tenant: Tenant, code: str) -> bool:
    return any(rec.data.get("Unit") == code for rec in tenant.articles)


def _pricelist_extra(tenant: Tenant, rec: Record) -> dict[str, Any]:
    return {"PreSelected": rec.key == tenant.default_pricelist}


UNITS = Register(
    "/3/units",
    "Unit",
    "Units",
    UnitPayload,
    lambda t: t.units,
    _unit_defaults,
    E.UNIT_NOT_FOUND,
    ("Code", "Description"),
    "Enheten",
    in_use=_unit_in_use,
)
PRICELISTS = Register(
    "/3/pricelists",
    "PriceList",
    "PriceLists",
    PriceListPayload,
    lambda t: t.pricelists,
    _pricelist_defaults,
    E.PRICELIST_NOT_FOUND,
    ("Code", "Description"),
    "Prislistan",
    deletable=False,
    view_extra=_pricelist_extra,
)
TERMS = Register(
    "/3/termsofpayments",
    "TermsOfPayment",
    "TermsOfPayments",
    TermsOfPaymentPayload,
    lambda t: t.termsofpayments,
    _terms_defaults,
    E.TERMS_NOT_FOUND,
    ("Code", "Description"),
    "Betalningsvillkoret",
)
COSTCENTERS = Register(
    "/3/costcenters",
    "CostCenter",
    "CostCenters",
    CostCenterPayload,
    lambda t: t.costcenters,
    _costcenter_defaults,
    E.COST_CENTER_NOT_FOUND,
    ("Code", "Description"),
    "Kostnadsstället",
    topic="cost-centers",
    event_prefix="cost-center",
)
REGISTERS = {r.path.rsplit("/", 1)[1]: r for r in (UNITS, PRICELISTS, TERMS, COSTCENTERS)}


def create_entry(reg: Register, tenant: Tenant, given: dict[str, Any]) -> Record:
    require(given, *reg.required)
    code = str(given["Code"])
    coll = reg.collection(tenant)
    if code in coll:
        raise E.ALREADY_EXISTS(what=reg.what, key=code)
    data = reg.defaults(tenant, code)
    data.update(given)
    rec = coll.insert(code, data, now=tenant.now())
    if reg.topic and reg.event_prefix:
        tenant.emit(reg.topic, f"{reg.event_prefix}-created-v1", code)
    return rec


def update_entry(reg: Register, tenant: Tenant, rec: Record, given: dict[str, Any]) -> Record:
    if given.get("Code") not in (None, rec.key):
        raise E.INVALID_VALUE(field="Code", value=str(given["Code"]))
    for name in reg.required:
        if name in given:
            require(given, name)
    rec.data.update(given)
    reg.collection(tenant).touch(rec, now=tenant.now())
    if reg.topic and reg.event_prefix:
        tenant.emit(reg.topic, f"{reg.event_prefix}-updated-v1", rec.key)
    return rec


def delete_entry(reg: Register, tenant: Tenant, code: str) -> None:
    coll = reg.collection(tenant)
    if code not in coll:
        raise reg.not_found()
    if reg.in_use is not None and reg.in_use(tenant, code):
        raise E.CANNOT_DELETE(what=reg.what, reason="används")
    coll.delete(code)
    if reg.topic and reg.event_prefix:
        tenant.emit(reg.topic, f"{reg.event_prefix}-deleted-v1", code)


def view(reg: Register, tenant: Tenant, rec: Record, base: str) -> dict[str, Any]:
    item = {"@url": f"{base}{reg.path}/{rec.key}", **rec.data}
    if reg.view_extra is not None:
        item.update(reg.view_extra(tenant, rec))
    return item


def _add_routes(reg: Register) -> None:
    def get_rec(tenant: Tenant, code: str) -> Record:
        rec = reg.collection(tenant).get(code)
        if rec is None:
            raise reg.not_found()
        return rec

    async def list_entries(request: Request) -> Response:
        tenant = tenant_of(request)
        q = parse_list_query(params(request), lastmodified=False)
        coll = reg.collection(tenant)
        keys = coll.query(cache_key=q.cache_key())
        return render_page(
            request, tenant, coll, reg.plural, keys, q, lambda r, b: view(reg, tenant, r, b)
        )

    async def get_entry(request: Request, Code: str) -> Response:
        tenant = tenant_of(request)
        return single(reg.single, view(reg, tenant, get_rec(tenant, Code), base_url(request)))

    async def post_entry(request: Request) -> Response:
        tenant = tenant_of(request)
        payload = await read_payload(request, reg.single, reg.model)
        rec = create_entry(reg, tenant, payload.given())
        return single(reg.single, view(reg, tenant, rec, base_url(request)), status=201)

    async def put_entry(request: Request, Code: str) -> Response:
        tenant = tenant_of(request)
        rec = get_rec(tenant, Code)
        payload = await read_payload(request, reg.single, reg.model)
        update_entry(reg, tenant, rec, payload.given())
        return single(reg.single, view(reg, tenant, rec, base_url(request)))

    async def delete_route(request: Request, Code: str) -> Response:
        delete_entry(reg, tenant_of(request), Code)
        return Response(status_code=204)

    router.add_api_route(reg.path, list_entries, methods=["GET"])
    router.add_api_route(reg.path, post_entry, methods=["POST"])
    router.add_api_route(reg.path + "/{Code}", get_entry, methods=["GET"])
    router.add_api_route(reg.path + "/{Code}", put_entry, methods=["PUT"])
    if reg.deletable:
        router.add_api_route(reg.path + "/{Code}", delete_route, methods=["DELETE"])


for _reg in (UNITS, PRICELISTS, TERMS, COSTCENTERS):
    _add_routes(_reg)


def terms_days(code: str | None) -> int:
    """Days to pay for terms-of-payment ``code`` ("30" -> 30; other codes: 30)."""
    digits = "".join(ch for ch in (code or "") if ch.isdigit())
    return int(digits) if digits else 30
