"""A small SIE writer (types 1-4), independent of the product's SIE code.

Follows "SIE filformat – Utgåva 4B" as summarised in reference/sie-and-pos.md: CP437 bytes,
CRLF line ends, ``#FLAGGA 0`` first, texts quoted with ``\\"`` escapes and no control
characters, amounts with two decimals and no ``+``, dates ``YYYYMMDD``. No ``#KSUMMA`` (Fortnox's
exports carry none).

* every type: identification (``#ORGNR``, ``#KPTYP`` from the year's chart of accounts), ``#RAR``
  for the year and the one before it (when it exists),
  the chart of accounts (``#KONTO``/``#KTYP``/``#SRU``), ``#IB``/``#UB`` for balance accounts
  (1xxx-2xxx) and ``#RES`` for result accounts;
* type 2 adds ``#PSALDO`` per month: the accumulated balance for balance accounts, the month's
  movement for result accounts;
* type 3 adds cost centres as dimension 1 (``#DIM``/``#OBJEKT``), ``#OIB``/``#OUB`` per cost
  centre and ``#PSALDO`` per cost centre;
* type 4 (4E) adds every voucher (``#VER`` with its ``#TRANS`` rows) in the selected dates.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

ZERO = Decimal(0)


@dataclass(frozen=True)
class SieAccount:
    number: int
    name: str
    opening: Decimal
    sru: int | None = None


@dataclass(frozen=True)
class SieRow:
    account: int
    amount: Decimal  # debit positive, credit negative
    cost_center: str | None = None
    text: str = ""


@dataclass(frozen=True)
class SieVoucher:
    series: str
    number: int
    when: date
    text: str
    registered: date
    rows: tuple[SieRow, ...]


@dataclass
class SieYear:
    start: date
    end: date
    accounts: list[SieAccount]
    vouchers: list[SieVoucher] = field(default_factory=list)


@dataclass
class SieCompany:
    name: str
    organisation_number: str
    address: str = ""
    zip_city: str = ""
    phone: str = ""
    contact: str = ""


def quote(text: str) -> str:
    cleaned = "".join(ch if ord(ch) >= 32 and ord(ch) != 127 else " " for ch in text)
    return '"' + cleaned.replace("\\", "/").replace('"', '\\"') + '"'


def amount(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01')):.2f}".replace("-0.00", "0.00")


def ymd(value: date) -> str:
    return value.strftime("%Y%m%d")


def account_type(number: int) -> str:
    if number < 2000:
        return "T"
    if number < 3000:
        return "S"
    if number < 4000:
        return "I"
    return "K"


def is_balance(number: int) -> bool:
    return number < 3000


def _movements(
    year: SieYear,
) -> tuple[dict[int, Decimal], dict[tuple[int, str], Decimal], dict[tuple[str, int, str], Decimal]]:
    total: dict[int, Decimal] = defaultdict(lambda: ZERO)
    by_object: dict[tuple[int, str], Decimal] = defaultdict(lambda: ZERO)
    by_month: dict[tuple[str, int, str], Decimal] = defaultdict(lambda: ZERO)
    for voucher in year.vouchers:
        month = voucher.when.strftime("%Y%m")
        for row in voucher.rows:
            total[row.account] += row.amount
            by_month[(month, row.account, "")] += row.amount
            if row.cost_center:
                by_object[(row.account, row.cost_center)] += row.amount
                by_month[(month, row.account, row.cost_center)] += row.amount
    return total, by_object, by_month


def _months(start: date, end: date) -> list[str]:
    out: list[str] = []
    y, m = start.year, start.month
    while (y, m) <= (end.year, end.month):
        out.append(f"{y:04d}{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def write_sie(
    sie_type: int,
    company: SieCompany,
    year: SieYear,
    *,
    previous: SieYear | None = None,
    cost_centers: dict[str, str] | None = None,
    generated: date,
    program: str = "Kassasync Fortnox sandbox",
    version: str = "1.0",
    chart_type: str | None = None,
) -> bytes:
    if sie_type not in (1, 2, 3, 4):
        raise ValueError("SIE type must be 1, 2, 3 or 4")
    cost_centers = cost_centers or {}
    lines = [
        "#FLAGGA 0",
        f"#PROGRAM {quote(program)} {version}",
        "#FORMAT PC8",
        f"#GEN {ymd(generated)}",
        f"#SIETYP {sie_type}",
        f"#FNAMN {quote(company.name)}",
        f"#ORGNR {company.organisation_number}",
    ]
    if company.address or company.zip_city:
        lines.append(
            f"#ADRESS {quote(company.contact)} {quote(company.address)} "
            f"{quote(company.zip_city)} {quote(company.phone)}"
        )
    lines.append(f"#RAR 0 {ymd(year.start)} {ymd(year.end)}")
    if previous is not None:
        lines.append(f"#RAR -1 {ymd(previous.start)} {ymd(previous.end)}")
    if chart_type:
        # The year's chart of accounts ("BAS 2024" in Fortnox, BAS2024 in SIE).
        lines.append(f"#KPTYP {chart_type.replace(' ', '')}")
    lines.append("#VALUTA SEK")
    for acc in sorted(year.accounts, key=lambda a: a.number):
        lines.append(f"#KONTO {acc.number} {quote(acc.name)}")
        lines.append(f"#KTYP {acc.number} {account_type(acc.number)}")
        if acc.sru:
            lines.append(f"#SRU {acc.number} {acc.sru}")
    if sie_type >= 3 and cost_centers:
        lines.append(f"#DIM 1 {quote('Kostnadsställe')}")
        for code, name in sorted(cost_centers.items()):
            lines.append(f"#OBJEKT 1 {quote(code)} {quote(name)}")

    years: list[tuple[int, SieYear]] = [(0, year)]
    if previous is not None:
        years.append((-1, previous))
    for index, y in years:
        total, by_object, by_month = _movements(y)
        for acc in sorted(y.accounts, key=lambda a: a.number):
            moved = total.get(acc.number, ZERO)
            if is_balance(acc.number):
                if acc.opening or moved:
                    lines.append(f"#IB {index} {acc.number} {amount(acc.opening)}")
                    lines.append(f"#UB {index} {acc.number} {amount(acc.opening + moved)}")
            elif moved:
                lines.append(f"#RES {index} {acc.number} {amount(moved)}")
        if sie_type >= 3:
            for (acct, obj), moved in sorted(by_object.items()):
                if is_balance(acct):
                    lines.append(f"#OIB {index} {acct} {{1 {quote(obj)}}} {amount(ZERO)}")
                    lines.append(f"#OUB {index} {acct} {{1 {quote(obj)}}} {amount(moved)}")
        if sie_type >= 2:
            lines.extend(_period_balances(index, y, by_month, with_objects=sie_type >= 3))

    if sie_type == 4:
        for v in sorted(year.vouchers, key=lambda v: (v.series, v.number)):
            lines.append(
                f"#VER {quote(v.series)} {quote(str(v.number))} {ymd(v.when)} {quote(v.text)} "
                f"{ymd(v.registered)}"
            )
            lines.append("{")
            for row in v.rows:
                objects = f"1 {quote(row.cost_center)}" if row.cost_center else ""
                lines.append(
                    f"#TRANS {row.account} {{{objects}}} {amount(row.amount)} {ymd(v.when)} "
                    f"{quote(row.text)}"
                )
            lines.append("}")
    text = "\r\n".join(lines) + "\r\n"
    return text.encode("cp437", errors="replace")


def _period_balances(
    index: int,
    year: SieYear,
    by_month: dict[tuple[str, int, str], Decimal],
    *,
    with_objects: bool,
) -> list[str]:
    out: list[str] = []
    for acc in sorted(year.accounts, key=lambda a: a.number):
        running = acc.opening
        for month in _months(year.start, year.end):
            moved = by_month.get((month, acc.number, ""), ZERO)
            if is_balance(acc.number):
                running += moved
                if moved or (running and acc.opening):
                    out.append(f"#PSALDO {index} {month} {acc.number} {{}} {amount(running)}")
            elif moved:
                out.append(f"#PSALDO {index} {month} {acc.number} {{}} {amount(moved)}")
    if with_objects:
        for (month, acct, obj), moved in sorted(by_month.items()):
            if obj and moved:
                out.append(f"#PSALDO {index} {month} {acct} {{1 {quote(obj)}}} {amount(moved)}")
    return out
