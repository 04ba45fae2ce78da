"""Ledger, Fortnox -> back office: vouchers with their rows and attached documents, and the general
ledger per financial year as SIE 4 — the last two years by default, or a chosen year (any year
Fortnox has: the one containing 1 January of it, else the one starting in it), re-syncable
per year. These are operator jobs (``kassasync ledger sync|export``) that run beside the engine:
vouchers go onto ``fortnox.changes`` and the ledger reconciler hands each one to the till once."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path

import structlog

from engine.clock import utcnow
from engine.fortnox.api import FortnoxApi
from engine.fortnox.models import FinancialYear, Voucher
from engine.sie import BalanceKind, ChecksumStatus, SieDocument, read_sie, write_sie
from topics import fortnox as fx
from topics.envelope import Envelope

log = structlog.get_logger("kassasync.ledger")


@dataclass
class LedgerSyncResult:
    years: list[int] = field(default_factory=list)
    vouchers: int = 0
    attachments: int = 0
    downloaded: list[str] = field(default_factory=list)


class NoSuchYear(LookupError):
    """No financial year in Fortnox matches the year asked for."""


@dataclass(frozen=True, slots=True)
class ChosenYear:
    year: FinancialYear
    #: Why this year: "contains 2010-01-01", "starts in 2010" or "one of the last 2 years".
    reason: str


def select_year(years: list[FinancialYear], year: int) -> ChosenYear:
    """The financial year that contains ``year``-01-01, else the one that starts in ``year``
    (a July-June company's ``--year 2010`` is 2009-07-01..2010-06-30; a company whose first year
    starts 2010-07-01 gets that one). Raises :class:`NoSuchYear` naming the years there are."""
    spans = sorted(
        (y for y in years if y.from_date and y.to_date), key=lambda y: y.from_date or dt.date.min
    )
    probe = dt.date(year, 1, 1)
    for fy in spans:
        assert fy.from_date is not None and fy.to_date is not None
        if fy.from_date <= probe <= fy.to_date:
            return ChosenYear(fy, f"contains {probe}")
    for fy in spans:
        assert fy.from_date is not None
        if fy.from_date.year == year:
            return ChosenYear(fy, f"starts in {year}")
    have = ", ".join(f"{y.from_date}..{y.to_date}" for y in spans) or "none"
    raise NoSuchYear(
        f"no financial year in Fortnox contains {probe} or starts in {year}; Fortnox has: {have}"
    )


async def chosen_years(api: FortnoxApi, year: int | None, last: int) -> list[ChosenYear]:
    """The financial year ``year`` names (see :func:`select_year`), or the last ``last`` years
    that have started by today. Every year Fortnox has can be chosen."""
    years = await api.bookkeeping.financial_years()
    if year is not None:
        chosen = select_year(years, year)
        log.info("ledger.year_chosen", year=year, id=chosen.year.id, reason=chosen.reason)
        return [chosen]
    today = utcnow().date()
    spans = sorted(
        (y for y in years if y.from_date and y.to_date and y.from_date <= today),
        key=lambda y: y.from_date or dt.date.min,
    )
    return [ChosenYear(y, f"one of the last {last} years") for y in spans[-last:]]


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
    for chosen in await chosen_years(api, year, last_years):
        fy = chosen.year
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
    from_date: str
    to_date: str
    #: Why this financial year was exported (``--year`` rule or the last years).
    selected: str
    path: str
    vouchers: int
    accounts: int
    unbalanced: int
    #: Accounts where IB + the vouchers' movements is not UB (result accounts: not RES).
    mismatched_accounts: list[str]
    chart_type: str | None
    checksum: bool
    sha256: str


def ledger_mismatches(document: SieDocument) -> list[str]:
    """Accounts of the current year (``#RAR 0``) whose IB plus the vouchers' movements is not
    their UB, or, for result accounts, whose movements are not their RES."""
    moved: dict[str, Decimal] = defaultdict(Decimal)
    for voucher in document.vouchers:
        for row in voucher.trans_rows:
            moved[row.account] += row.amount
    opening: dict[str, Decimal] = defaultdict(Decimal)
    closing: dict[str, Decimal] = {}
    result: dict[str, Decimal] = {}
    for balance in document.balances:
        if balance.year != 0:
            continue
        if balance.kind is BalanceKind.IB:
            opening[balance.account] += balance.amount
        elif balance.kind is BalanceKind.UB:
            closing[balance.account] = closing.get(balance.account, Decimal(0)) + balance.amount
        elif balance.kind is BalanceKind.RES:
            result[balance.account] = result.get(balance.account, Decimal(0)) + balance.amount
    wrong = {a for a, ub in closing.items() if opening[a] + moved.get(a, Decimal(0)) != ub}
    wrong |= {a for a, res in result.items() if moved.get(a, Decimal(0)) != res}
    # Movements on an account the file gives no balance for at all.
    wrong |= {
        a
        for a, m in moved.items()
        if m and a not in closing and a not in result and a not in opening
    }
    return sorted(wrong)


async def export_sie(
    api: FortnoxApi,
    out_dir: Path,
    *,
    year: int | None = None,
    last_years: int = 2,
    checksum: bool = False,
) -> list[ExportedYear]:
    """The general ledger of each chosen year as a SIE 4 file, read back to check it.

    Fortnox's file is kept byte for byte unless it lacks ``#KPTYP`` (added from the financial
    year's chart of accounts) or ``checksum`` asks for ``#KSUMMA``: then it is written again by
    our writer and read back. Raises :class:`NoSuchYear` when ``year`` names no year."""
    out_dir.mkdir(parents=True, exist_ok=True)
    exported: list[ExportedYear] = []
    for chosen in await chosen_years(api, year, last_years):
        fy = chosen.year
        data = await api.files.sie(4, fy.id)
        path = out_dir / f"ledger-{fy.from_date}-{fy.to_date}.se"
        document = read_sie(data)
        if document.errors:
            first = document.errors[0]
            raise ValueError(f"Fortnox's SIE export for {fy.id} is unreadable: {first}")
        chart = document.header.chart_type or (fy.account_chart_type or "").replace(" ", "")
        if checksum or (chart and not document.header.chart_type):
            header = replace(document.header, chart_type=chart or None)
            data = write_sie(
                replace(document, header=header),
                sie_type="4E",
                checksum=checksum,
                allow_unbalanced=True,
            )
            document = read_sie(data)
            if document.errors:
                raise ValueError(f"the rewritten SIE export for {fy.id}: {document.errors[0]}")
        path.write_bytes(data)
        log.info("ledger.exported", year=fy.id, path=str(path), reason=chosen.reason)
        exported.append(
            ExportedYear(
                year=int(fy.id or 0),
                from_date=str(fy.from_date),
                to_date=str(fy.to_date),
                selected=chosen.reason,
                path=str(path),
                vouchers=len(document.vouchers),
                accounts=len(document.accounts),
                unbalanced=len(document.unbalanced_vouchers),
                mismatched_accounts=ledger_mismatches(document),
                chart_type=document.header.chart_type,
                checksum=document.checksum is not None
                and document.checksum.status is ChecksumStatus.VALID,
                sha256=hashlib.sha256(data).hexdigest(),
            )
        )
    return exported
