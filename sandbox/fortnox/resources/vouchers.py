"""``/3/vouchers``: create, list and read vouchers. Vouchers cannot be updated or deleted.

A voucher is accepted only when (checked in this order):

1. ``Description`` (≤ 200 characters), ``TransactionDate`` and ``VoucherSeries`` are given;
2. it has at least two rows;
3. a financial year contains ``TransactionDate`` and it is the year addressed (``financialyear``
   / ``financialyeardate``, else the preselected year);
4. the date is after the locked period (``2000401``);
5. the series exists in that year and is *manual* ("Verifikationsserien är inte manuell");
6. every row's account exists in that year and is active; its cost centre exists and is active
   (``2000947``), is given when the account says MANDATORY and absent when it says NOTALLOWED;
7. debit equals credit.

Numbers are assigned per series and year (``NextVoucherNumber``). Lists carry no rows (as
Fortnox's list views; softwerkab/fortnox-csharp-api-sdk#153). Event: ``voucher-created-v1`` on
topic ``vouchers`` with ``year`` (financial year Id) and ``series``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from sandbox.fortnox import errors as E
from sandbox.fortnox.collection import Record
from sandbox.fortnox.listing import both, parse_list_query
from sandbox.fortnox.payloads import VoucherPayload
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

LIST_FIELDS = [
    "ApprovalState",
    "Comments",
    "CostCenter",
    "Description",
    "Project",
    "ReferenceNumber",
    "ReferenceType",
    "TransactionDate",
    "VoucherNumber",
    "VoucherSeries",
    "Year",
]


CENT = Decimal("0.01")


def _fmt(value: Decimal) -> str:
    return f"{value:.2f}"


def resolve_year(tenant: Tenant, query: dict[str, str], when: date) -> int:
    """The financial year a voucher dated ``when`` goes into (see the module doc, rule 3)."""
    containing = tenant.fy_for_date(when)
    if containing is None:
        raise E.FINANCIAL_YEAR_MISSING(date=when.isoformat())
    if "financialyear" in query:
        try:
            chosen = int(query["financialyear"])
        except ValueError:
            raise E.INVALID_PARAMETER() from None
        if chosen not in tenant.financial_years:
            raise E.FINANCIAL_YEAR_NOT_FOUND()
    elif "financialyeardate" in query:
        found = tenant.fy_for_date(parse_date(query["financialyeardate"], "financialyeardate"))
        if found is None:
            raise E.FINANCIAL_YEAR_MISSING(date=query["financialyeardate"])
        chosen = found
    else:
        chosen = tenant.preselected_fy() or containing
    if chosen != containing:
        fy = tenant.financial_years[chosen]
        raise E.DATE_OUTSIDE_YEAR(
            date=when.isoformat(), from_date=fy["FromDate"], to_date=fy["ToDate"]
        )
    return chosen


def _check_cost_center(tenant: Tenant, code: str) -> None:
    rec = tenant.costcenters.get(code)
    if rec is None:
        raise E.COST_CENTER_MISSING(code=code)
    if not rec.data.get("Active", True):
        raise E.COST_CENTER_INACTIVE(code=code)


def _check_project(tenant: Tenant, number: str) -> None:
    if number not in tenant.projects:
        raise E.PROJECT_MISSING()


def create_voucher(tenant: Tenant, given: dict[str, Any], query: dict[str, str]) -> Record:
    require(given, "Description", "TransactionDate", "VoucherSeries")
    rows: list[dict[str, Any]] = given.get("VoucherRows") or []
    if len(rows) < 2:
        raise E.VOUCHER_TOO_FEW_ROWS()
    when = parse_date(given["TransactionDate"], "TransactionDate")
    fy_id = resolve_year(tenant, query, when)
    if given.get("Year") is not None and int(given["Year"]) != fy_id:
        raise E.INVALID_VALUE(field="Year", value=str(given["Year"]))
    if tenant.locked_until is not None and when <= tenant.locked_until:
        raise E.PERIOD_LOCKED(end=tenant.locked_until.isoformat())
    code = str(given["VoucherSeries"])
    series = tenant.voucherseries[fy_id].get(code)
    if series is None:
        raise E.SERIES_MISSING(series=code)
    if not series.data.get("Manual"):
        raise E.SERIES_NOT_MANUAL(series=code)
    if given.get("CostCenter"):
        _check_cost_center(tenant, given["CostCenter"])
    if given.get("Project"):
        _check_project(tenant, str(given["Project"]))
    accounts = tenant.accounts[fy_id]
    debit = credit = Decimal(0)
    out_rows: list[dict[str, Any]] = []
    for row in rows:
        require(row, "Account")
        number = str(row["Account"])
        account = accounts.get(number)
        if account is None:
            raise E.ROW_ACCOUNT_NOT_FOUND(account=number)
        if not account.data.get("Active", True):
            raise E.ACCOUNT_INACTIVE(account=number)
        cost_center = row.get("CostCenter") or None
        setting = account.data.get("CostCenterSettings") or "ALLOWED"
        if cost_center:
            _check_cost_center(tenant, cost_center)
            if setting == "NOTALLOWED":
                raise E.COST_CENTER_NOT_ALLOWED(account=number)
        elif setting == "MANDATORY":
            raise E.COST_CENTER_REQUIRED(account=number)
        project = str(row.get("Project") or "")
        if project:
            _check_project(tenant, project)
        d = Decimal(str(row.get("Debit") or 0)).quantize(CENT, rounding=ROUND_HALF_UP)
        c = Decimal(str(row.get("Credit") or 0)).quantize(CENT, rounding=ROUND_HALF_UP)
        debit += d
        credit += c
        out_rows.append(
            {
                "Account": int(number),
                "CostCenter": cost_center,
                "Credit": float(c),
                "Debit": float(d),
                "Description": row.get("Description") or account.data.get("Description"),
                "Project": project,
                "Quantity": float(row.get("Quantity") or 0.0),
                "Removed": False,
                "TransactionInformation": row.get("TransactionInformation") or "",
            }
        )
    if debit != credit:
        raise E.VOUCHER_UNBALANCED(debit=_fmt(debit), credit=_fmt(credit))
    return _store(
        tenant,
        fy_id,
        series,
        when,
        given["Description"],
        out_rows,
        comments=given.get("Comments"),
        cost_center=given.get("CostCenter") or None,
        reference=("MANUAL", None),
    )


def _store(
    tenant: Tenant,
    fy_id: int,
    series: Record,
    when: date,
    description: str,
    rows: list[dict[str, Any]],
    *,
    comments: str | None,
    cost_center: str | None,
    reference: tuple[str, str | None],
) -> Record:
    number = int(series.data.get("NextVoucherNumber") or 1)
    series.data["NextVoucherNumber"] = number + 1
    tenant.voucherseries[fy_id].touch(series, now=tenant.now())
    data = {
        "ApprovalState": 0,
        "Comments": comments,
        "CostCenter": cost_center,
        "Description": description,
        "Project": "",
        "ReferenceNumber": reference[1],
        "ReferenceType": reference[0],
        "TransactionDate": when.isoformat(),
        "VoucherNumber": number,
        "VoucherRows": rows,
        "VoucherSeries": series.key,
        "Year": fy_id,
    }
    rec = tenant.vouchers[fy_id].insert(f"{series.key}/{number}", data, now=tenant.now())
    accounts = tenant.accounts[fy_id]
    for row in rows:
        account = accounts.get(str(row["Account"]))
        if account is not None:
            moved = Decimal(str(row["Debit"])) - Decimal(str(row["Credit"]))
            balance = Decimal(str(account.data.get("BalanceCarriedForward") or 0)) + moved
            account.data["BalanceCarriedForward"] = float(balance)
            accounts.invalidate(account)
    tenant.emit("vouchers", "voucher-created-v1", str(number), year=fy_id, series=series.key)
    return rec


def book_system_voucher(
    tenant: Tenant,
    *,
    series: str,
    when: date,
    description: str,
    rows: list[tuple[int, float, float]],
    reference: tuple[str, str],
) -> tuple[str, int, int] | None:
    """A voucher Fortnox books itself (e.g. for a payment), or None when the year, series or
    accounts it needs are missing or the period is locked (the payment is then left without)."""
    fy_id = tenant.fy_for_date(when)
    if fy_id is None or (tenant.locked_until is not None and when <= tenant.locked_until):
        return None
    series_rec = tenant.voucherseries[fy_id].get(series)
    accounts = tenant.accounts[fy_id]
    if series_rec is None or any(str(a) not in accounts for a, _, _ in rows):
        return None
    out = [
        {
            "Account": account,
            "CostCenter": None,
            "Credit": credit,
            "Debit": debit,
            "Description": accounts.get(str(account)).data["Description"],  # type: ignore[union-attr]
            "Project": "",
            "Quantity": 0.0,
            "Removed": False,
            "TransactionInformation": "",
        }
        for account, debit, credit in rows
    ]
    rec = _store(
        tenant,
        fy_id,
        series_rec,
        when,
        description,
        out,
        comments=None,
        cost_center=None,
        reference=reference,
    )
    return series_rec.key, int(rec.data["VoucherNumber"]), fy_id


def _url(base: str, rec: Record) -> str:
    d = rec.data
    return f"{base}/3/vouchers/{d['VoucherSeries']}/{d['VoucherNumber']}?financialyear={d['Year']}"


def voucher_view(rec: Record, base: str) -> dict[str, Any]:
    return {"@url": _url(base, rec), **rec.data}


def voucher_list_view(rec: Record, base: str) -> dict[str, Any]:
    item: dict[str, Any] = {"@url": _url(base, rec)}
    for name in LIST_FIELDS:
        item[name] = rec.data.get(name)
    return item


def _list(request: Request, series: str | None) -> Response:
    tenant = tenant_of(request)
    p = params(request)
    extra = ["financialyear", "financialyeardate", "fromdate", "todate", "costcenter"]
    if series is None:
        extra.append("voucherseries")
    q = parse_list_query(p, extra=extra)
    fy_id = financial_year_param(tenant, p)
    wanted = series if series is not None else q.other.get("voucherseries")
    pred: Callable[[Record], bool] | None = None
    if wanted is not None:
        pred = lambda r: r.data["VoucherSeries"] == wanted  # noqa: E731
    start, end = q.other.get("fromdate"), q.other.get("todate")
    if start is not None or end is not None:
        lo = parse_date(start, "fromdate").isoformat() if start else ""
        hi = parse_date(end, "todate").isoformat() if end else "9999"
        pred = both(pred, lambda r: lo <= r.data["TransactionDate"] <= hi)
    if "costcenter" in q.other:
        cc = q.other["costcenter"]
        pred = both(
            pred,
            lambda r: (
                r.data.get("CostCenter") == cc
                or any(x.get("CostCenter") == cc for x in r.data["VoucherRows"])
            ),
        )
    coll = tenant.vouchers[fy_id]
    keys = coll.query(cache_key=(q.cache_key(), wanted), since=q.since, predicate=pred)
    return render_page(request, tenant, coll, "Vouchers", keys, q, voucher_list_view)


@router.get("/3/vouchers")
async def list_vouchers(request: Request) -> Response:
    return _list(request, None)


@router.get("/3/vouchers/sublist")
async def list_vouchers_sublist(request: Request) -> Response:
    return _list(request, None)


@router.get("/3/vouchers/sublist/{VoucherSeries}")
async def list_series_vouchers(request: Request, VoucherSeries: str) -> Response:
    return _list(request, VoucherSeries)


@router.get("/3/vouchers/{VoucherSeries}/{VoucherNumber}")
async def get_voucher(request: Request, VoucherSeries: str, VoucherNumber: str) -> Response:
    tenant = tenant_of(request)
    p = params(request)
    if set(p) - {"financialyear", "financialyeardate"}:
        raise E.INVALID_PARAMETER()
    fy_id = financial_year_param(tenant, p)
    rec = tenant.vouchers[fy_id].get(f"{VoucherSeries}/{VoucherNumber}")
    if rec is None:
        raise E.VOUCHER_NOT_FOUND()
    return single("Voucher", voucher_view(rec, base_url(request)))


@router.post("/3/vouchers")
async def post_voucher(request: Request) -> Response:
    tenant = tenant_of(request)
    p = params(request)
    if set(p) - {"financialyear", "financialyeardate"}:
        raise E.INVALID_PARAMETER()
    payload = await read_payload(request, "Voucher", VoucherPayload)
    rec = create_voucher(tenant, payload.given(), p)
    return single("Voucher", voucher_view(rec, base_url(request)), status=201)
