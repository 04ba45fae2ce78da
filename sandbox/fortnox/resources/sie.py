"""``GET /3/sie/{Type}?financialyear=``: the tenant's ledger as a SIE file (CP437 bytes).

Optional ``fromdate``/``todate`` narrow the vouchers of a type 4 export. ``selection`` and
``exportall`` are accepted and have no effect (every voucher of the year is exported).
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from fastapi import APIRouter, Request
from starlette.responses import Response

from sandbox.fortnox import errors as E
from sandbox.fortnox.clock import local
from sandbox.fortnox.resources.common import financial_year_param, params, parse_date, tenant_of
from sandbox.fortnox.sie_writer import (
    SieAccount,
    SieCompany,
    SieRow,
    SieVoucher,
    SieYear,
    write_sie,
)
from sandbox.fortnox.state import Tenant

router = APIRouter()


def sie_year(
    tenant: Tenant, fy_id: int, *, from_date: date | None = None, to_date: date | None = None
) -> SieYear:
    fy = tenant.financial_years[fy_id]
    accounts = [
        SieAccount(
            int(rec.key),
            str(rec.data.get("Description") or ""),
            Decimal(str(rec.data.get("BalanceBroughtForward") or 0)),
            rec.data.get("SRU"),
        )
        for rec in tenant.accounts[fy_id]
    ]
    vouchers: list[SieVoucher] = []
    for rec in tenant.vouchers[fy_id]:
        d = rec.data
        when = date.fromisoformat(d["TransactionDate"])
        if (from_date and when < from_date) or (to_date and when > to_date):
            continue
        rows = tuple(
            SieRow(
                int(r["Account"]),
                Decimal(str(r["Debit"])) - Decimal(str(r["Credit"])),
                r.get("CostCenter") or None,
                r.get("TransactionInformation") or "",
            )
            for r in d["VoucherRows"]
        )
        vouchers.append(
            SieVoucher(
                d["VoucherSeries"],
                int(d["VoucherNumber"]),
                when,
                d["Description"],
                local(rec.created).date(),
                rows,
            )
        )
    return SieYear(
        date.fromisoformat(fy["FromDate"]), date.fromisoformat(fy["ToDate"]), accounts, vouchers
    )


def export(tenant: Tenant, sie_type: int, fy_id: int, **dates: date | None) -> bytes:
    fy = tenant.financial_years[fy_id]
    previous_id = tenant.fy_for_date(date.fromisoformat(fy["FromDate"]) - timedelta(days=1))
    company = SieCompany(
        tenant.company["CompanyName"],
        tenant.company["OrganizationNumber"],
        tenant.company["Address"],
        f"{tenant.company['ZipCode']} {tenant.company['City']}",
        tenant.company["Phone1"],
    )
    return write_sie(
        sie_type,
        company,
        sie_year(tenant, fy_id, from_date=dates.get("from_date"), to_date=dates.get("to_date")),
        previous=sie_year(tenant, previous_id) if previous_id is not None else None,
        cost_centers={r.key: str(r.data.get("Description") or "") for r in tenant.costcenters},
        generated=tenant.today(),
        chart_type=fy.get("AccountChartType"),
    )


@router.get("/3/sie/{Type}")
async def get_sie(request: Request, Type: str) -> Response:
    tenant = tenant_of(request)
    p = params(request)
    if set(p) - {
        "financialyear",
        "financialyeardate",
        "fromdate",
        "todate",
        "selection",
        "exportall",
    }:
        raise E.INVALID_PARAMETER()
    if Type not in ("1", "2", "3", "4"):
        raise E.INVALID_PARAMETER()
    fy_id = financial_year_param(tenant, p)
    start = parse_date(p["fromdate"], "fromdate") if "fromdate" in p else None
    end = parse_date(p["todate"], "todate") if "todate" in p else None
    body = export(tenant, int(Type), fy_id, from_date=start, to_date=end)
    name = f"SIE{Type}_{tenant.id}_{fy_id}.se"
    return Response(
        body,
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
