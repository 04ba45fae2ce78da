"""Bookkeeping registers: financial years, accounts and voucher series (both per financial year),
and the locked period.

Accounts and voucher series live in a financial year: ``?financialyear=<Id>`` (or
``?financialyeardate=``) picks the year; without it the preselected year (today's, else the
latest) is used, as Fortnox does. Creating a financial year copies the chart of accounts and the
voucher series (with their Manual flags) from the year before it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from sandbox.fortnox import errors as E
from sandbox.fortnox.collection import Record
from sandbox.fortnox.listing import json_response, parse_list_query, plain_list_response
from sandbox.fortnox.payloads import AccountPayload, FinancialYearPayload, VoucherSeriesPayload
from sandbox.fortnox.resources.common import (
    base_url,
    financial_year_param,
    params,
    parse_date,
    read_payload,
    render_page,
    require,
    single,
    tenant_of,
)
from sandbox.fortnox.state import Tenant

router = APIRouter()


# --- financial years -----------------------------------------------------------------------------
def fy_view(fy: dict[str, Any], base: str) -> dict[str, Any]:
    return {"@url": f"{base}/3/financialyears/{fy['Id']}", **fy}


def create_financial_year(tenant: Tenant, given: dict[str, Any]) -> int:
    require(given, "FromDate", "ToDate")
    start = parse_date(given["FromDate"], "FromDate")
    end = parse_date(given["ToDate"], "ToDate")
    if end < start:
        raise E.INVALID_VALUE(field="ToDate", value=end.isoformat())
    for fy in tenant.financial_years.values():
        if not (end.isoformat() < fy["FromDate"] or start.isoformat() > fy["ToDate"]):
            raise E.FINANCIAL_YEAR_OVERLAP()
    previous = [i for i, fy in tenant.financial_years.items() if fy["ToDate"] < start.isoformat()]
    source = max(previous, key=lambda i: tenant.financial_years[i]["ToDate"], default=None)
    fy_id = tenant.add_financial_year(
        {
            "FromDate": start.isoformat(),
            "ToDate": end.isoformat(),
            "AccountChartType": given.get("AccountChartType") or "BAS 2024",
            "AccountingMethod": given.get("AccountingMethod") or "ACCRUAL",
        }
    )
    if source is not None:
        _copy_year(tenant, source, fy_id)
    tenant.emit("financial-years", "financial-year-created-v1", str(fy_id))
    return fy_id


def _copy_year(tenant: Tenant, source: int, target: int) -> None:
    now = tenant.now()
    for rec in tenant.accounts[source]:
        data = {**rec.data, "Year": target}
        if int(rec.key) < 3000:
            data["BalanceBroughtForward"] = rec.data["BalanceCarriedForward"]
        else:
            data["BalanceBroughtForward"] = 0.0
        data["BalanceCarriedForward"] = data["BalanceBroughtForward"]
        tenant.accounts[target].insert(rec.key, data, now=now)
    for rec in tenant.voucherseries[source]:
        data = {**rec.data, "Year": target, "NextVoucherNumber": 1}
        tenant.voucherseries[target].insert(rec.key, data, now=now)


@router.get("/3/financialyears")
async def list_financial_years(request: Request) -> Response:
    tenant = tenant_of(request)
    q = params(request)
    if set(q) - {"date", "limit", "page", "offset"}:
        raise E.INVALID_PARAMETER()
    rows = sorted(tenant.financial_years.values(), key=lambda fy: fy["FromDate"])
    if "date" in q:
        day = parse_date(q["date"], "date").isoformat()
        rows = [fy for fy in rows if fy["FromDate"] <= day <= fy["ToDate"]]
    base = base_url(request)
    return plain_list_response("FinancialYears", [fy_view(fy, base) for fy in rows])


@router.get("/3/financialyears/{Id}")
async def get_financial_year(request: Request, Id: str) -> Response:
    tenant = tenant_of(request)
    fy = tenant.financial_years.get(int(Id)) if Id.isdigit() else None
    if fy is None:
        raise E.FINANCIAL_YEAR_NOT_FOUND()
    return single("FinancialYear", fy_view(fy, base_url(request)))


@router.post("/3/financialyears")
async def post_financial_year(request: Request) -> Response:
    tenant = tenant_of(request)
    payload = await read_payload(request, "FinancialYear", FinancialYearPayload)
    fy_id = create_financial_year(tenant, payload.given())
    return single(
        "FinancialYear", fy_view(tenant.financial_years[fy_id], base_url(request)), status=201
    )


# --- accounts -------------------------------------------------------------------------------------
ACCOUNT_LIST_FIELDS = [
    "Active",
    "BalanceBroughtForward",
    "BalanceCarriedForward",
    "CostCenter",
    "CostCenterSettings",
    "Description",
    "Number",
    "Project",
    "ProjectSettings",
    "SRU",
    "VATCode",
    "Year",
]


def account_defaults(number: int, fy_id: int) -> dict[str, Any]:
    return {
        "Active": True,
        "BalanceBroughtForward": 0.0,
        "BalanceCarriedForward": 0.0,
        "CostCenter": None,
        "CostCenterSettings": "ALLOWED",
        "Description": "",
        "Number": number,
        "OpeningQuantities": [],
        "Project": None,
        "ProjectSettings": "ALLOWED",
        "QuantitySettings": "NOTALLOWED",
        "QuantityUnit": None,
        "SRU": None,
        "TransactionInformation": None,
        "TransactionInformationSettings": "ALLOWED",
        "VATCode": None,
        "Year": fy_id,
    }


def _account_url(base: str, rec: Record) -> str:
    return f"{base}/3/accounts/{rec.key}?financialyear={rec.data['Year']}"


def account_view(rec: Record, base: str) -> dict[str, Any]:
    return {"@url": _account_url(base, rec), **rec.data}


def account_list_view(rec: Record, base: str) -> dict[str, Any]:
    item: dict[str, Any] = {"@url": _account_url(base, rec)}
    for name in ACCOUNT_LIST_FIELDS:
        item[name] = rec.data.get(name)
    return item


def create_account(tenant: Tenant, fy_id: int, given: dict[str, Any]) -> Record:
    require(given, "Number", "Description")
    number = int(given["Number"])
    accounts = tenant.accounts[fy_id]
    if str(number) in accounts:
        raise E.ALREADY_EXISTS(what="Konto", key=str(number))
    data = account_defaults(number, fy_id)
    data.update(given)
    data["BalanceCarriedForward"] = float(data.get("BalanceBroughtForward") or 0.0)
    return accounts.insert(str(number), data, now=tenant.now())


def update_account(tenant: Tenant, fy_id: int, rec: Record, given: dict[str, Any]) -> Record:
    if "Number" in given and int(given["Number"]) != int(rec.key):
        raise E.INVALID_VALUE(field="Number", value=str(given["Number"]))
    old_bbf = float(rec.data.get("BalanceBroughtForward") or 0.0)
    rec.data.update(given)
    if "BalanceBroughtForward" in given:
        delta = float(given["BalanceBroughtForward"] or 0.0) - old_bbf
        rec.data["BalanceCarriedForward"] = round(rec.data["BalanceCarriedForward"] + delta, 2)
    tenant.accounts[fy_id].touch(rec, now=tenant.now())
    return rec


def _account(tenant: Tenant, fy_id: int, number: str) -> Record:
    rec = tenant.accounts[fy_id].get(number)
    if rec is None:
        raise E.ACCOUNT_NOT_FOUND()
    return rec


ACCOUNT_SORTS: dict[str, Callable[[Record], Any] | None] = {"number": None}
ACCOUNT_SEARCH: dict[str, Callable[[Record], Any]] = {"sru": lambda r: r.data.get("SRU")}


@router.get("/3/accounts")
async def list_accounts(request: Request) -> Response:
    tenant = tenant_of(request)
    p = params(request)
    q = parse_list_query(
        p,
        search=ACCOUNT_SEARCH,
        sortby=ACCOUNT_SORTS,
        extra=("financialyear", "financialyeardate"),
    )
    fy_id = financial_year_param(tenant, p)
    accounts = tenant.accounts[fy_id]
    sru = dict(q.search).get("sru")
    predicate = (lambda r: str(r.data.get("SRU") or "") == sru) if sru is not None else None
    keys = accounts.query(
        cache_key=q.cache_key(), since=q.since, predicate=predicate, descending=q.descending
    )
    return render_page(request, tenant, accounts, "Accounts", keys, q, account_list_view)


@router.get("/3/accounts/{Number}")
async def get_account(request: Request, Number: str) -> Response:
    tenant = tenant_of(request)
    fy_id = _fy_only(tenant, request)
    return single("Account", account_view(_account(tenant, fy_id, Number), base_url(request)))


def _fy_only(tenant: Tenant, request: Request) -> int:
    p = params(request)
    if set(p) - {"financialyear", "financialyeardate"}:
        raise E.INVALID_PARAMETER()
    return financial_year_param(tenant, p)


@router.post("/3/accounts")
async def post_account(request: Request) -> Response:
    tenant = tenant_of(request)
    fy_id = _fy_only(tenant, request)
    payload = await read_payload(request, "Account", AccountPayload)
    rec = create_account(tenant, fy_id, payload.given())
    return single("Account", account_view(rec, base_url(request)), status=201)


@router.put("/3/accounts/{Number}")
async def put_account(request: Request, Number: str) -> Response:
    tenant = tenant_of(request)
    fy_id = _fy_only(tenant, request)
    rec = _account(tenant, fy_id, Number)
    payload = await read_payload(request, "Account", AccountPayload)
    update_account(tenant, fy_id, rec, payload.given())
    return single("Account", account_view(rec, base_url(request)))


@router.delete("/3/accounts/{Number}")
async def delete_account(request: Request, Number: str) -> Response:
    tenant = tenant_of(request)
    fy_id = _fy_only(tenant, request)
    _account(tenant, fy_id, Number)
    used = any(
        int(row["Account"]) == int(Number)
        for v in tenant.vouchers[fy_id]
        for row in v.data["VoucherRows"]
    )
    if used:
        raise E.CANNOT_DELETE(what="Kontot", reason="det har transaktioner")
    tenant.accounts[fy_id].delete(Number)
    return Response(status_code=204)


# --- voucher series -------------------------------------------------------------------------------
def series_view(rec: Record, base: str) -> dict[str, Any]:
    return {
        "@url": f"{base}/3/voucherseries/{rec.key}?financialyear={rec.data['Year']}",
        **rec.data,
    }


def create_series(tenant: Tenant, fy_id: int, given: dict[str, Any]) -> Record:
    require(given, "Code", "Description")
    code = str(given["Code"])
    coll = tenant.voucherseries[fy_id]
    if code in coll:
        raise E.ALREADY_EXISTS(what="Verifikationsserien", key=code)
    data = {
        "Approver": None,
        "Code": code,
        "Description": "",
        "Manual": False,
        "NextVoucherNumber": 1,
        "Year": fy_id,
    }
    data.update(given)
    return coll.insert(code, data, now=tenant.now())


def update_series(tenant: Tenant, fy_id: int, rec: Record, given: dict[str, Any]) -> Record:
    if given.get("Code") not in (None, rec.key):
        raise E.INVALID_VALUE(field="Code", value=str(given["Code"]))
    rec.data.update(given)
    tenant.voucherseries[fy_id].touch(rec, now=tenant.now())
    return rec


def _series(tenant: Tenant, fy_id: int, code: str) -> Record:
    rec = tenant.voucherseries[fy_id].get(code)
    if rec is None:
        raise E.SERIES_NOT_FOUND()
    return rec


@router.get("/3/voucherseries")
async def list_series(request: Request) -> Response:
    tenant = tenant_of(request)
    p = params(request)
    q = parse_list_query(p, lastmodified=False, extra=("financialyear", "financialyeardate"))
    fy_id = financial_year_param(tenant, p)
    coll = tenant.voucherseries[fy_id]
    keys = coll.query(cache_key=q.cache_key())
    return render_page(request, tenant, coll, "VoucherSeriesCollection", keys, q, series_view)


@router.get("/3/voucherseries/{Code}")
async def get_series(request: Request, Code: str) -> Response:
    tenant = tenant_of(request)
    fy_id = _fy_only(tenant, request)
    return single("VoucherSeries", series_view(_series(tenant, fy_id, Code), base_url(request)))


@router.post("/3/voucherseries")
async def post_series(request: Request) -> Response:
    tenant = tenant_of(request)
    fy_id = _fy_only(tenant, request)
    payload = await read_payload(request, "VoucherSeries", VoucherSeriesPayload)
    rec = create_series(tenant, fy_id, payload.given())
    return single("VoucherSeries", series_view(rec, base_url(request)), status=201)


@router.put("/3/voucherseries/{Code}")
async def put_series(request: Request, Code: str) -> Response:
    tenant = tenant_of(request)
    fy_id = _fy_only(tenant, request)
    rec = _series(tenant, fy_id, Code)
    payload = await read_payload(request, "VoucherSeries", VoucherSeriesPayload)
    update_series(tenant, fy_id, rec, payload.given())
    return single("VoucherSeries", series_view(rec, base_url(request)))


# --- locked period --------------------------------------------------------------------------------
def set_locked_period(tenant: Tenant, end: date | None) -> None:
    tenant.locked_until = end


@router.get("/3/settings/lockedperiod")
async def get_locked_period(request: Request) -> Response:
    tenant = tenant_of(request)
    end = tenant.locked_until.isoformat() if tenant.locked_until else None
    return json_response({"LockedPeriod": {"EndDate": end}})
