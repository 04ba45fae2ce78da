"""Vouchers a till booked itself (its daily SIE 4I file): each posted to Fortnox once, through
the same checks and the same ledger as a Z-report's voucher (state kind ``zr``, keyed by the
voucher's own key), so the writer's look-before-posting applies too.

The key is the source voucher's identity (origin, series, number, date). The same voucher again
is a duplicate; the same identity with other content replaces a voucher that is not booked yet
and is a conflict (reported, nothing posted) once it is booked: Fortnox vouchers are never
changed. The source's series, number, registration date, signature, file and line go into the
voucher's Comments after the marker (docs/sie.md, "Identity")."""

from __future__ import annotations

from reconcilers import zreports
from reconcilers.context import Ctx
from reconcilers.events import SubmittedVoucherDue
from reconcilers.vouchers import PreflightError, _Line, checked_draft
from topics.commands import CreateFortnoxVoucher, CreateVoucherData
from topics.till import VoucherSubmittedData

PREFIX = "sie:"


def on_submitted(ctx: Ctx, data: VoucherSubmittedData) -> None:
    key = PREFIX + data.key
    existing = ctx.txn.get(zreports.KIND, key)
    payload = data.model_dump(mode="json")
    if existing is not None:
        before = existing["submitted"]
        if before.get("fingerprint") == data.fingerprint or before["rows"] == payload["rows"]:
            ctx.note("voucher.duplicate", key=key, status=existing["status"])
            return
        if existing["status"] in ("posting", "posted"):
            ctx.report(
                f"voucher:{key}",
                {
                    "kind": "conflict",
                    "status": existing["status"],
                    "voucher": source_name(data),
                    "message": "imported again with other content; Fortnox vouchers are never "
                    "changed: book the correction as a new voucher",
                },
            )
            ctx.note("voucher.conflict", key=key, status=existing["status"])
            return
        ctx.note("voucher.replaced", key=key, status=existing["status"])
    ctx.txn.put(zreports.KIND, key, {"submitted": payload, "status": "new"})
    try_post(ctx, key)


def source_name(data: VoucherSubmittedData) -> str:
    """``A 12 (2025-01-03)``: the voucher as the source books name it."""
    if data.source_series or data.source_number:
        return f"{data.source_series or ''} {data.source_number or ''} ({data.transaction_date})"
    return f"{data.description} ({data.transaction_date})"


def comments(key: str, data: VoucherSubmittedData) -> str:
    """The marker the writer looks for, then the source voucher's identity (documented mapping:
    Fortnox has no fields for them on a manual voucher)."""
    parts = [f"kassasync zreport {key}"]
    if data.source_series or data.source_number:
        parts.append(f"källa {data.source_series or '-'} {data.source_number or '-'}")
    if data.registration_date is not None:
        parts.append(f"reg {data.registration_date}")
    if data.signature:
        parts.append(f"sign {data.signature}")
    if data.origin:
        parts.append(f"från {data.origin}")
    if data.file:
        parts.append(f"fil {data.file}" + (f" rad {data.line}" if data.line else ""))
    return " | ".join(parts)[:1000]


def on_due(ctx: Ctx, event: SubmittedVoucherDue) -> None:
    try_post(ctx, event.key)


def try_post(ctx: Ctx, key: str) -> None:
    record = ctx.txn.get(zreports.KIND, key)
    if record is None or record["status"] in ("posting", "posted"):
        return
    data = VoucherSubmittedData.model_validate(record["submitted"])
    settings = ctx.settings.zreports
    # An import is an operator's explicit action, like a manual export: it posts whether or not
    # automatic posting is on, but never a day before the start date (booked some other way).
    if settings.start_date is not None and data.transaction_date < settings.start_date:
        zreports.skip_before_start(ctx, key, record, data.transaction_date, settings.start_date)
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
        _Line(
            row.account,
            row.amount,
            row.text or data.description,
            False,
            row.cost_center,
            row.project,
        )
        for row in data.rows
        if row.amount
    ]
    try:
        draft, year = checked_draft(
            lines,
            day=data.transaction_date,
            series=settings.series,
            description=data.description,
            comments=comments(key, data),
            master=master,
            cost_center=None,
            subject=f"voucher {source_name(data)}",
            holder=f"voucher {source_name(data)}",
        )
    except PreflightError as failed:
        ctx.note("voucher.preflight_failed", key=key, kind=failed.error.kind.value)
        ctx.txn.put(
            zreports.KIND,
            key,
            {**record, "status": "waiting", "error": failed.error.model_dump(mode="json")},
        )
        zreports.ask_for_fresh_master_data(ctx, failed.error)
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
