"""Vouchers a till booked itself (its daily SIE 4I file): each posted to Fortnox once, through
the same checks and the same ledger as a Z-report's voucher (state kind ``zr``, keyed by the
voucher's own key), so the writer's look-before-posting applies too."""

from __future__ import annotations

from reconcilers import zreports
from reconcilers.context import Ctx
from reconcilers.vouchers import PreflightError, _Line, checked_draft
from topics.commands import CreateFortnoxVoucher, CreateVoucherData
from topics.till import VoucherSubmittedData

PREFIX = "sie:"


def on_submitted(ctx: Ctx, data: VoucherSubmittedData) -> None:
    key = PREFIX + data.key
    existing = ctx.txn.get(zreports.KIND, key)
    if existing is not None:
        ctx.note("voucher.duplicate", key=key, status=existing["status"])
        return
    ctx.txn.put(zreports.KIND, key, {"submitted": data.model_dump(mode="json"), "status": "new"})
    try_post(ctx, key)


def try_post(ctx: Ctx, key: str) -> None:
    record = ctx.txn.get(zreports.KIND, key)
    if record is None or record["status"] in ("posting", "posted"):
        return
    data = VoucherSubmittedData.model_validate(record["submitted"])
    settings = ctx.settings.zreports
    # An import is an operator's explicit action, like a manual export: it posts whether or not
    # automatic posting is on, but never a day before the start date (booked some other way).
    if settings.start_date is not None and data.transaction_date < settings.start_date:
        ctx.txn.put(zreports.KIND, key, {**record, "status": "before_start"})
        return
    master = zreports.master_data(ctx)
    if master is None:
        ctx.txn.put(
            zreports.KIND,
            key,
            {**record, "status": "waiting", "waiting_for": "Fortnox master data"},
        )
        return
    lines = [
        _Line(row.account, row.amount, row.text or data.description, False, row.cost_center)
        for row in data.rows
        if row.amount
    ]
    try:
        draft, year = checked_draft(
            lines,
            day=data.transaction_date,
            series=settings.series,
            description=data.description,
            comments=f"kassasync zreport {key}",
            master=master,
            cost_center=None,
            subject=f"voucher {data.key} ({data.transaction_date})",
            holder=f"voucher {data.key}",
        )
    except PreflightError as failed:
        ctx.note("voucher.preflight_failed", key=key, kind=failed.error.kind.value)
        ctx.txn.put(
            zreports.KIND,
            key,
            {**record, "status": "waiting", "error": failed.error.model_dump(mode="json")},
        )
        return
    cmd = ctx.command(
        CreateFortnoxVoucher,
        f"voucher:{key}",
        CreateVoucherData(zreport_key=key, voucher=draft, financial_year=year),
    )
    ctx.txn.put("cmd", cmd.id, {"flow": zreports.FLOW, "key": key, "type": cmd.type})
    ctx.txn.put(
        zreports.KIND,
        key,
        {"submitted": record["submitted"], "status": "posting", "command_id": cmd.id},
    )
