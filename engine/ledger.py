"""Ledger, Fortnox -> back office: vouchers with their rows and attached documents, and the general
ledger per financial year as SIE 4 — the last two years by default, or a chosen year, re-syncable
per year. These are operator jobs (``kassasync ledger sync|export``) that run beside the engine:
vouchers go onto ``fortnox.changes`` and the ledger reconciler hands each one to the till once."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import structlog

from engine.clock import utcnow
from engine.fortnox.api import FortnoxApi
from engine.fortnox.models import FinancialYear, Voucher
from engine.sie import read_sie
from topics import fortnox as fx
from topics.envelope import Envelope

log = structlog.get_logger("kassasync.ledger")


@dataclass
class LedgerSyncResult:
    years: list[int] = field(default_factory=list)
    vouchers: int = 0
    attachments: int = 0
    downloaded: list[str] = field(default_factory=list)


async def chosen_years(api: FortnoxApi, year: int | None, last: int) -> list[FinancialYear]:
    """The financial year that holds ``year``'s 1 July, or the last ``last`` years up to today."""
    years = await api.bookkeeping.financial_years()
    spans = sorted(
        ((y.from_date, y.to_date, y) for y in years if y.from_date and y.to_date),
        key=lambda item: item[0],
    )
    if year is not None:
        probe = dt.date(year, 7, 1)
        return [y for start, end, y in spans if start <= probe <= end]
    today = utcnow().date()
    return [y for start, _end, y in spans if start <= today][-last:]


def voucher_record(
    voucher: Voucher, year: FinancialYear, attachments: list[str]
) -> fx.FortnoxVoucher:
    return fx.FortnoxVoucher(
        series=voucher.voucher_series or "",
        number=int(voucher.voucher_number or 0),
        year=int(year.id or 0),
        transaction_date=voucher.transaction_date or year.from_date,
        description=(voucher.description or "")[:200],
        rows=[
            fx.VoucherRowInfo(
                account=int(row.account or 0),
                debit=Decimal(str(row.debit or 0)).quantize(Decimal("0.01")),
                credit=Decimal(str(row.credit or 0)).quantize(Decimal("0.01")),
                cost_center=row.cost_center or None,
                description=(row.transaction_information or row.description or None),
            )
            for row in voucher.voucher_rows or []
            if not row.removed
        ],
        attachments=attachments,
    )


async def sync_vouchers(
    api: FortnoxApi,
    tenant: str,
    publish: Callable[[list[Envelope]], None],
    *,
    year: int | None = None,
    last_years: int = 2,
    download_dir: Path | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> LedgerSyncResult:
    """Publish every voucher of the chosen years, with rows and attachment ids (and files)."""
    result = LedgerSyncResult()
    for fy in await chosen_years(api, year, last_years):
        result.years.append(int(fy.id or 0))
        connections: dict[tuple[str, str], list[str]] = {}
        for conn in await api.files.voucher_file_connections(voucher_year=fy.id):
            key = (str(conn.voucher_series), str(conn.voucher_number))
            connections.setdefault(key, []).append(str(conn.file_id))
        batch: list[Envelope] = []
        async for head in api.bookkeeping.vouchers(fy.id):
            series, number = head.voucher_series or "", int(head.voucher_number or 0)
            # The list is a subset without rows: fetch each voucher whole.
            voucher = await api.bookkeeping.get_voucher(series, number, fy.id)
            files = connections.get((series, str(number)), [])
            record = voucher_record(voucher, fy, files)
            batch.append(
                fx.FortnoxVoucherChanged(
                    id=f"ledger-{tenant}-{fy.id}-{series}-{number}",
                    tenant=tenant,
                    occurred_at=utcnow(),
                    data=fx.FortnoxVoucherData(
                        voucher=record, observed=fx.Observation(via="fetch")
                    ),
                )
            )
            result.vouchers += 1
            result.attachments += len(files)
            if download_dir is not None:
                for file_id in files:
                    target = download_dir / str(fy.id) / f"{series}{number}-{file_id}"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(await api.files.download(file_id))
                    result.downloaded.append(str(target))
            if on_progress is not None:
                on_progress(1)
        publish(batch)
        log.info("ledger.synced", tenant=tenant, year=fy.id, vouchers=len(batch))
    return result


@dataclass
class ExportedYear:
    year: int
    path: str
    vouchers: int
    accounts: int
    unbalanced: int
    sha256: str


async def export_sie(
    api: FortnoxApi, out_dir: Path, *, year: int | None = None, last_years: int = 2
) -> list[ExportedYear]:
    """The general ledger of each chosen year as a SIE 4 file, read back to check it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    exported: list[ExportedYear] = []
    for fy in await chosen_years(api, year, last_years):
        data = await api.files.sie(4, fy.id)
        path = out_dir / f"ledger-{fy.from_date}-{fy.to_date}.se"
        path.write_bytes(data)
        document = read_sie(data)
        if document.errors:
            first = document.errors[0]
            raise ValueError(f"Fortnox's SIE export for {fy.id} is unreadable: {first}")
        exported.append(
            ExportedYear(
                year=int(fy.id or 0),
                path=str(path),
                vouchers=len(document.vouchers),
                accounts=len(document.accounts),
                unbalanced=len(document.unbalanced_vouchers),
                sha256=hashlib.sha256(data).hexdigest(),
            )
        )
    return exported
