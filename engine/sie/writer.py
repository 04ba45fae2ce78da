"""Writing SIE type 4I (vouchers for import) and 4E (full export) files.

Output rules:

* Strict CP437 bytes (``#FORMAT PC8``); characters outside CP437, such as €,
  become ``?``.  Lines end in CR LF, the last one included.
* ``#FLAGGA 0`` is the first record; with ``checksum=True`` an opening
  ``#KSUMMA`` follows it and ``#KSUMMA <crc>`` (unsigned) closes the file.
* Texts (names, voucher and row texts, signatures, object numbers) are always
  quoted.  Other fields are quoted only when they must be: when empty or when
  they contain a space, tab, quote or brace.  ``#FLAGGA``, ``#FORMAT``,
  ``#SIETYP`` and ``#ORGNR`` values are therefore never quoted (Fortnox rejects
  quotes there).
* Texts are sanitised: control characters (0-31, 127) become spaces, a quote is
  written ``\\"``, and a backslash that would end a quoted field becomes ``/`` so
  that it cannot be read as escaping the closing quote.
* Amounts have exactly two decimals; an amount with more is refused rather than
  rounded.  Dates are YYYYMMDD.  Optional trailing fields that are empty are left
  out, and an empty field in the middle is written ``""``.

4I files hold the identification, ``#RAR`` (optional in 4I), the chart of
accounts, dimensions, objects and vouchers; balances are not allowed in 4I and
are not written.  4E files hold all of that plus every balance record.

Only :func:`write_sie_file` touches the file system.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import zlib
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Final

from engine.sie.checksum import record_bytes
from engine.sie.encoding import CP437
from engine.sie.model import (
    Balance,
    BalanceKind,
    ObjectRef,
    SieDocument,
    SieType,
    Voucher,
    VoucherRow,
)

DEFAULT_PROGRAM: Final = ("Kassasync", "0.1.0")
"""``#PROGRAM`` written when the document names no program."""

_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f]")
_NEEDS_QUOTES_RE: Final = re.compile(r'[ \t"{}]')
_CENT: Final = Decimal("0.01")


class SieWriteError(ValueError):
    """The document cannot be written as a valid SIE file."""


def _cp437_safe(text: str) -> str:
    if not text.isascii():
        text = text.encode(CP437, errors="replace").decode(CP437)
    return _CONTROL_RE.sub(" ", text)


def sanitize_text(text: str) -> str:
    """``text`` as the writer puts it in a quoted field (before escaping quotes).

    Characters outside CP437 become ``?``, control characters become spaces and a
    trailing backslash becomes ``/``.
    """
    text = _cp437_safe(text)
    if text.endswith("\\"):
        text = text[:-1] + "/"
    return text


# A rendered field: (text as written, content that counts for #KSUMMA).
_Field = tuple[str, str]


def _quoted(text: str) -> _Field:
    content = sanitize_text(text)
    return '"' + content.replace('"', '\\"') + '"', content


def _plain(text: str) -> _Field:
    content = _cp437_safe(text)
    if content and _NEEDS_QUOTES_RE.search(content) is None:
        return content, content
    return _quoted(content)


def format_date(value: dt.date) -> str:
    """``YYYYMMDD``."""
    return f"{value.year:04d}{value.month:02d}{value.day:02d}"


def format_amount(value: Decimal) -> str:
    """An amount with exactly two decimals; raises :class:`SieWriteError` for more."""
    try:
        cents = value.quantize(_CENT)
    except InvalidOperation:
        raise SieWriteError(f"amount {value} cannot be written") from None
    if cents != value:
        raise SieWriteError(f"amount {value} has more than 2 decimals")
    if cents == 0:
        return "0.00"
    return f"{cents:f}"


def format_quantity(value: Decimal) -> str:
    """A quantity with as many decimals as it needs and no exponent."""
    if not value.is_finite():
        raise SieWriteError(f"quantity {value} cannot be written")
    if value == 0:
        return "0"
    return f"{value.normalize():f}"


def _date(value: dt.date | None) -> _Field:
    if value is None:
        return '""', ""
    text = format_date(value)
    return text, text


def _number(text: str) -> _Field:
    return text, text


def _objects(objects: Iterable[ObjectRef]) -> _Field:
    rendered: list[str] = []
    content: list[str] = []
    for ref in objects:
        dimension = str(ref.dimension)
        number, number_content = _quoted(ref.number)
        rendered += (dimension, number)
        content += (dimension, number_content)
    return "{" + " ".join(rendered) + "}", "".join(content)


def _optional_quantity(value: Decimal | None) -> _Field:
    if value is None:
        return '""', ""
    text = format_quantity(value)
    return text, text


class _Output:
    """Collects lines and, when asked to, the running checksum."""

    def __init__(self, checksum: bool) -> None:
        self.lines: list[str] = []
        self.crc: int | None = 0 if checksum else None

    def record(self, label: str, fields: list[_Field], required: int = 0) -> None:
        """Add a record; empty fields after the first ``required`` ones are trimmed from the end."""
        while len(fields) > required and fields[-1][1] == "" and fields[-1][0] in ('""', "{}"):
            fields.pop()
        self.lines.append(" ".join([label, *(text for text, _ in fields)]))
        if self.crc is not None:
            contents = [content for _, content in fields]
            self.crc = zlib.crc32(record_bytes(label, contents), self.crc)

    def brace(self, text: str) -> None:
        self.lines.append(text)


def _resolve_type(document: SieDocument, sie_type: SieType | str | None) -> SieType:
    if sie_type is None:
        declared = document.header.sie_type
        if declared in (SieType.TYPE_4E, SieType.TYPE_4I):
            return declared
        return SieType.TYPE_4E if document.balances else SieType.TYPE_4I
    try:
        resolved = SieType(str(sie_type).upper())
    except ValueError:
        raise SieWriteError(f"unknown SIE type {sie_type!r}") from None
    if resolved not in (SieType.TYPE_4E, SieType.TYPE_4I):
        raise SieWriteError(f"the writer writes types 4E and 4I, not {resolved}")
    return resolved


def _identification(out: _Output, document: SieDocument, sie_type: SieType) -> None:
    header = document.header
    company = document.company
    program, version = DEFAULT_PROGRAM
    if header.program:
        program, version = header.program, header.program_version or ""
    out.record("#PROGRAM", [_quoted(program), _plain(version)], 1)
    out.record("#FORMAT", [_number("PC8")])
    gen_date = header.gen_date or dt.date.today()
    out.record("#GEN", [_date(gen_date), _quoted(header.gen_sign or "")], 1)
    out.record("#SIETYP", [_number("4")])
    if header.comment:
        out.record("#PROSA", [_quoted(header.comment)])
    if company.company_type:
        out.record("#FTYP", [_plain(company.company_type)])
    if company.company_id:
        out.record("#FNR", [_plain(company.company_id)])
    out.record("#FNAMN", [_quoted(company.name)], 1)
    if company.orgnr:
        out.record(
            "#ORGNR",
            [
                _plain(company.orgnr),
                _plain(company.acquisition_number or ""),
                _plain(company.activity_number or ""),
            ],
            1,
        )
    if company.sni_code:
        out.record("#BKOD", [_plain(company.sni_code)])
    if company.address is not None:
        address = company.address
        fields = [address.contact, address.street, address.postal, address.phone]
        out.record("#ADRESS", [_quoted(value) for value in fields], 4)
    for year in document.financial_years:
        out.record("#RAR", [_number(str(year.index)), _date(year.start), _date(year.end)])
    if header.tax_year is not None:
        out.record("#TAXAR", [_number(str(header.tax_year))])
    if header.balances_until is not None and sie_type is SieType.TYPE_4E:
        out.record("#OMFATTN", [_date(header.balances_until)])
    if header.chart_type:
        out.record("#KPTYP", [_plain(header.chart_type)])
    if header.currency:
        out.record("#VALUTA", [_plain(header.currency)])


def _chart(out: _Output, document: SieDocument) -> None:
    for account in document.accounts:
        number = _plain(account.number)
        out.record("#KONTO", [number, _quoted(account.name)])
        if account.type:
            out.record("#KTYP", [number, _plain(account.type)])
        if account.unit:
            out.record("#ENHET", [number, _quoted(account.unit)])
        for code in account.sru:
            out.record("#SRU", [number, _plain(code)])
    for dimension in document.dimensions:
        fields = [_number(str(dimension.number)), _quoted(dimension.name)]
        if dimension.parent is None:
            out.record("#DIM", fields)
        else:
            out.record("#UNDERDIM", [*fields, _number(str(dimension.parent))])
    for obj in document.objects:
        out.record("#OBJEKT", [_number(str(obj.dimension)), _quoted(obj.number), _quoted(obj.name)])


def _balance(out: _Output, balance: Balance) -> None:
    kind = balance.kind
    fields = [_number(str(balance.year))]
    if kind in (BalanceKind.PSALDO, BalanceKind.PBUDGET):
        if not balance.period:
            raise SieWriteError(f"#{kind} for account {balance.account} has no period")
        fields.append(_plain(balance.period))
    fields.append(_plain(balance.account))
    if kind in (BalanceKind.OIB, BalanceKind.OUB, BalanceKind.PSALDO, BalanceKind.PBUDGET):
        fields.append(_objects(balance.objects))
    elif balance.objects:
        raise SieWriteError(f"#{kind} balances cannot carry objects")
    amount = format_amount(balance.amount)
    fields += [(amount, amount), _optional_quantity(balance.quantity)]
    out.record(f"#{kind}", fields, len(fields) - 1)


def _row(out: _Output, row: VoucherRow) -> None:
    amount = format_amount(row.amount)
    fields = [
        _plain(row.account),
        _objects(row.objects),
        (amount, amount),
        _date(row.trans_date),
        _quoted(row.text),
        _optional_quantity(row.quantity),
        _quoted(row.sign),
    ]
    out.record(f"#{row.kind}", fields, 3)


def _voucher(out: _Output, voucher: Voucher, allow_unbalanced: bool) -> None:
    if not allow_unbalanced and not voucher.is_balanced:
        raise SieWriteError(
            f"voucher {voucher.series!r} {voucher.number!r} dated {voucher.date.isoformat()} "
            f"does not balance: its #TRANS rows sum to {voucher.balance}"
        )
    fields = [
        _plain(voucher.series),
        _plain(voucher.number),
        _date(voucher.date),
        _quoted(voucher.text),
        _date(voucher.reg_date),
        _quoted(voucher.sign),
    ]
    out.record("#VER", fields, 3)
    out.brace("{")
    for row in voucher.rows:
        _row(out, row)
    out.brace("}")


def format_sie(
    document: SieDocument,
    *,
    sie_type: SieType | str | None = None,
    checksum: bool = False,
    allow_unbalanced: bool = False,
) -> str:
    """The SIE text of ``document`` (CRLF line ends, only CP437 characters).

    ``sie_type`` is ``"4I"`` or ``"4E"``; by default the document's own type when
    it is one of those, else 4E when it has balances and 4I otherwise.  Raises
    :class:`SieWriteError` for an unbalanced voucher (unless ``allow_unbalanced``)
    and for amounts with more than two decimals.
    """
    resolved = _resolve_type(document, sie_type)
    out = _Output(checksum)
    out.lines.append("#FLAGGA 0")
    if checksum:
        out.lines.append("#KSUMMA")
    _identification(out, document, resolved)
    _chart(out, document)
    if resolved is SieType.TYPE_4E:
        for balance in document.balances:
            _balance(out, balance)
    for voucher in document.vouchers:
        _voucher(out, voucher, allow_unbalanced)
    if out.crc is not None:
        out.lines.append(f"#KSUMMA {out.crc & 0xFFFFFFFF}")
    out.lines.append("")
    return "\r\n".join(out.lines)


def write_sie(
    document: SieDocument,
    *,
    sie_type: SieType | str | None = None,
    checksum: bool = False,
    allow_unbalanced: bool = False,
) -> bytes:
    """The SIE file of ``document`` as CP437 bytes; see :func:`format_sie`."""
    text = format_sie(
        document, sie_type=sie_type, checksum=checksum, allow_unbalanced=allow_unbalanced
    )
    return text.encode(CP437, errors="replace")


def write_sie_file(
    path: str | os.PathLike[str],
    document: SieDocument,
    *,
    sie_type: SieType | str | None = None,
    checksum: bool = False,
    allow_unbalanced: bool = False,
) -> None:
    """Write ``document`` to ``path``; see :func:`format_sie`."""
    data = write_sie(
        document, sie_type=sie_type, checksum=checksum, allow_unbalanced=allow_unbalanced
    )
    with open(path, "wb") as handle:
        handle.write(data)
