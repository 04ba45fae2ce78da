"""Z-reports: one voucher per Z-report, never two, and a wait (not a loss) when it cannot post.

State ``zr`` per Z-report key (``till:z_number``): the report, its status (``before_start``,
``disabled``, ``waiting`` with the shop-facing error, ``empty`` for a day with nothing to book,
``posting``, ``posted`` with series, number and year) — the ledger of posted vouchers.

A report that waits is posted automatically when the master data or the settings change. A
manual export posts what is not posted yet in its date range, also when the flow is off, but
never a day before the start date (those days are booked some other way). The Fortnox writer
also scans the series for the Z-report's key before it retries a create whose outcome it does
not know.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from reconcilers.context import Ctx
from reconcilers.events import SubmittedVoucherDue
from reconcilers.vouchers import PreflightError, build_voucher, zreport_key
from topics.commands import (
    CreateFortnoxVoucher,
    CreateVoucherData,
    RefreshFortnoxMasterData,
    RefreshMasterDataData,
)
from topics.errors import ErrorKind, ShopError
from topics.fortnox import MasterData
from topics.outcomes import OutcomeData, OutcomeStatus
from topics.till import ZReportData

FLOW = "zreports"
KIND = "zr"
MASTER = "md"
#: The key (in ``MASTER``) of the last fresh read of the master data asked for, and for which
#: copy: ``{"revision", "command_id", "at"}``.
ASKED = "asked"

#: What a voucher can wait for that Fortnox's master data shows: a newer copy may clear it.
IN_MASTER_DATA: frozenset[ErrorKind] = frozenset(
    {
        ErrorKind.FINANCIAL_YEAR_MISSING,
        ErrorKind.PERIOD_LOCKED,
        ErrorKind.SERIES_MISSING,
        ErrorKind.SERIES_NOT_MANUAL,
        ErrorKind.ACCOUNT_MISSING,
        ErrorKind.ACCOUNT_INACTIVE,
        ErrorKind.COST_CENTER_MISSING,
        ErrorKind.COST_CENTER_INACTIVE,
        ErrorKind.COST_CENTER_REQUIRED,
        ErrorKind.PROJECT_MISSING,
    }
)


def master_data(ctx: Ctx) -> MasterData | None:
    record = ctx.txn.get(MASTER, "current")
    return None if record is None else MasterData.model_validate(record)


def ask_for_fresh_master_data(ctx: Ctx, error: ShopError) -> None:
    """A voucher waits on something the copy of Fortnox's master data lacks (a financial year,
    a project...). The copy is read every few minutes, so the shop may have added it since:
    ask the Fortnox session to read it again now, once per copy. If Fortnox still lacks it the
    copy does not change and nothing is asked again; a copy that changes retries what waits."""
    if error.kind not in IN_MASTER_DATA:
        return
    seen = ctx.txn.get(MASTER, "seen") or {}
    revision = str((seen.get("msg_ids") or ["none"])[-1])
    asked = ctx.txn.get(MASTER, ASKED)
    if asked is not None and asked.get("revision") == revision:
        ctx.note("masterdata.refresh_asked_before", revision=revision, kind=error.kind.value)
        return
    cmd = ctx.command(
        RefreshFortnoxMasterData,
        f"masterdata:{revision}",
        # The message in one line (the contract's long text takes no control characters).
        RefreshMasterDataData(reason="".join(c if c >= " " else " " for c in error.message)[:1000]),
    )
    ctx.txn.put(
        MASTER, ASKED, {"revision": revision, "command_id": cmd.id, "at": ctx.now.isoformat()}
    )
    ctx.note("masterdata.refresh_asked", revision=revision, kind=error.kind.value)


def on_zreport(ctx: Ctx, z: ZReportData) -> None:
    key = zreport_key(z)
    existing = ctx.txn.get(KIND, key)
    payload = z.model_dump(mode="json")
    if existing is None:
        record: dict[str, Any] = {"report": payload, "status": "new"}
        ctx.stamp(record, "till")
        ctx.txn.put(KIND, key, record)
        _try_post(ctx, key, manual=False)
        return
    if ctx.is_repeat(existing, "till") or existing["report"] == payload:
        ctx.note("zreport.duplicate", key=key, status=existing["status"])
        return
    ctx.stamp(existing, "till")
    if existing["status"] in ("posting", "posted"):
        # Never edited: a correction must come as a new Z-report (a new voucher).
        ctx.txn.put(KIND, key, existing)
        ctx.report(f"zreport:{key}", {"kind": "resent_with_changes", "status": existing["status"]})
        ctx.note("zreport.resent_with_changes", key=key, status=existing["status"])
        return
    # Not booked yet (it waits, or was before the start date): the till's corrected report
    # replaces the one we have.
    ctx.note("zreport.replaced", key=key, status=existing["status"])
    ctx.txn.put(KIND, key, {**existing, "report": payload, "status": "new"})
    _try_post(ctx, key, manual=False)


def _try_post(ctx: Ctx, key: str, *, manual: bool) -> None:
    record = ctx.txn.get(KIND, key)
    if record is None or record["status"] in ("posting", "posted"):
        return
    if "submitted" in record:  # a voucher the till booked itself (SIE 4I): its own flow
        ctx.raise_event(SubmittedVoucherDue(key))
        return
    settings = ctx.settings.zreports
    z = ZReportData.model_validate(record["report"])
    if not settings.enabled and not manual:
        _set(ctx, key, record, "disabled")
        return
    if settings.start_date is not None and z.business_date < settings.start_date:
        # Also for a manual export: days before the start date are booked some other way.
        skip_before_start(ctx, key, record, z.business_date, settings.start_date)
        return
    master = master_data(ctx)
    if master is None:
        _set(ctx, key, record, "waiting", waiting_for="Fortnox master data")
        return
    try:
        built = build_voucher(z, settings, master)
    except PreflightError as failed:
        ctx.note("zreport.preflight_failed", key=key, kind=failed.error.kind.value)
        _set(ctx, key, record, "waiting", error=failed.error.model_dump(mode="json"))
        ask_for_fresh_master_data(ctx, failed.error)
        return
    if built is None:
        ctx.note("zreport.nothing_to_book", key=key)
        _set(ctx, key, record, "empty")
        return
    draft, year = built
    cmd = ctx.command(
        CreateFortnoxVoucher,
        f"zreport:{key}",
        CreateVoucherData(zreport_key=key, voucher=draft, financial_year=year),
    )
    ctx.txn.put("cmd", cmd.id, {"flow": FLOW, "key": key, "type": cmd.type})
    ctx.note("zreport.posting", key=key, series=draft.series, rows=len(draft.rows))
    _set(ctx, key, record, "posting", command_id=cmd.id)


_PAYLOADS = ("report", "submitted")


def _day(record: dict[str, Any]) -> dt.date:
    if "report" in record:
        return dt.date.fromisoformat(record["report"]["business_date"])
    return dt.date.fromisoformat(record["submitted"]["transaction_date"])


def _order(record: dict[str, Any], key: str) -> tuple[dt.date, str, int, str]:
    """Date, then the source's series and number (a Z-report's number), then the key."""
    if "report" in record:
        return (
            _day(record),
            record["report"].get("till_id") or "",
            record["report"]["z_number"],
            key,
        )
    data = record["submitted"]
    number = data.get("source_number") or ""
    series = data.get("source_series") or ""
    return (_day(record), series, int(number) if number.isdigit() else -1, key)


def skip_before_start(
    ctx: Ctx, key: str, record: dict[str, Any], day: dt.date, start: dt.date
) -> None:
    """Not posted, and said so: the record keeps the reason, and the dashboard's reports show
    it the first time (not again on every retry)."""
    reason = (
        f"dated {day}, before the Z-report start date {start}: not posted (days before the "
        "start date are booked some other way; move the start date to post it)"
    )
    if record["status"] != "before_start":
        ctx.note("zreport.skipped_before_start", key=key, day=str(day), start=str(start))
        ctx.report(f"zreport:{key}", {"kind": "skipped_before_start", "message": reason})
    _set(ctx, key, record, "before_start", reason=reason)


def _set(ctx: Ctx, key: str, record: dict[str, Any], status: str, **extra: Any) -> None:
    kept = {k: v for k, v in record.items() if k.startswith("till_") or k in _PAYLOADS}
    ctx.txn.put(KIND, key, {**kept, "status": status, **extra})


def retry_waiting(ctx: Ctx) -> None:
    """Master data or settings changed: try every Z-report that waits, oldest day first (so
    Fortnox numbers the vouchers in date order)."""
    waiting = [
        (_order(record, key), key)
        for key, record in ctx.txn.scan(KIND)
        if record["status"] in ("waiting", "disabled", "before_start", "new")
    ]
    for _when, key in sorted(waiting):
        _try_post(ctx, key, manual=False)


def export_range(ctx: Ctx, start: dt.date, end: dt.date) -> None:
    """Manual export: post every Z-report in the range that is not posted yet, oldest first."""
    chosen = [
        (_order(record, key), key)
        for key, record in ctx.txn.scan(KIND)
        if start <= _day(record) <= end and record["status"] not in ("posting", "posted")
    ]
    for _when, key in sorted(chosen):
        _try_post(ctx, key, manual=True)


def on_outcome(ctx: Ctx, key: str, outcome: OutcomeData) -> None:
    record = ctx.txn.get(KIND, key)
    if record is None or record.get("command_id") != outcome.command_id:
        return
    if outcome.status is OutcomeStatus.DONE:
        voucher = {
            k: outcome.result[k] for k in ("series", "number", "year") if k in outcome.result
        }
        ctx.note("zreport.posted", key=key, **voucher)
        _set(ctx, key, record, "posted", voucher=voucher)
        # "Not posted, before the start date" is no longer true (the start date moved).
        said = ctx.txn.get("report", f"zreport:{key}")
        if said is not None and said.get("kind") == "skipped_before_start":
            ctx.txn.delete("report", f"zreport:{key}")
    elif outcome.status in (OutcomeStatus.REJECTED, OutcomeStatus.SKIPPED):
        error = outcome.error.model_dump(mode="json") if outcome.error else None
        _set(ctx, key, record, "waiting", error=error)
        if outcome.error is not None:
            ask_for_fresh_master_data(ctx, outcome.error)


def retry(ctx: Ctx, key: str) -> None:
    _try_post(ctx, key, manual=True)
