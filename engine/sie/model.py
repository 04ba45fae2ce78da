"""Data model of a SIE document: frozen, fully typed dataclasses.

Amounts and quantities are :class:`~decimal.Decimal`, dates are
:class:`~datetime.date`, and account, object, series and voucher numbers are
strings exactly as written (SIE allows ``"0123"`` and series such as ``LEV1``).
Line numbers (1-based, ``0`` when a value was not read from a file) are kept for
diagnostics but do not take part in equality.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from engine.sie.checksum import ChecksumResult
from engine.sie.tokens import Field

_ZERO = Decimal(0)


class SieType(StrEnum):
    """The kind of SIE file.

    ``#SIETYP 4`` covers two kinds.  The reader calls a type 4 file ``4E``
    (export) when it holds any balance record (``#IB``, ``#UB``, ``#OIB``,
    ``#OUB``, ``#RES``, ``#PSALDO`` or ``#PBUDGET``) and ``4I`` (import, vouchers
    only) otherwise.  ``#RAR`` does not decide it: the standard allows it in 4I.
    A file without ``#SIETYP`` is type 1 (spec §11).
    """

    TYPE_1 = "1"
    TYPE_2 = "2"
    TYPE_3 = "3"
    TYPE_4E = "4E"
    TYPE_4I = "4I"

    @property
    def number(self) -> int:
        """The ``#SIETYP`` value of this kind."""
        return int(self.value[0])


class RowKind(StrEnum):
    """Kind of voucher row: normal, added (``#RTRANS``) or removed (``#BTRANS``)."""

    TRANS = "TRANS"
    RTRANS = "RTRANS"
    BTRANS = "BTRANS"


class BalanceKind(StrEnum):
    """Kind of balance record; the value is the label without ``#``."""

    IB = "IB"
    UB = "UB"
    OIB = "OIB"
    OUB = "OUB"
    RES = "RES"
    PSALDO = "PSALDO"
    PBUDGET = "PBUDGET"


@dataclass(frozen=True, slots=True)
class SieError:
    """A problem found while reading: the 1-based line and a message.

    Line 0 means the problem concerns the file as a whole and no line in it.
    """

    line: int
    message: str

    def to_dict(self) -> dict[str, int | str]:
        """``{"line": ..., "message": ...}``."""
        return {"line": self.line, "message": self.message}


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """One ``dimension object`` pair of an object list."""

    dimension: int
    number: str


@dataclass(frozen=True, slots=True)
class Header:
    """Flag, program, format and generation records, and the file type."""

    flag: int | None = None
    program: str | None = None
    program_version: str | None = None
    format: str | None = None
    gen_date: dt.date | None = None
    gen_sign: str | None = None
    declared_type: int | None = None
    sie_type: SieType = SieType.TYPE_1
    comment: str | None = None  # PROSA
    chart_type: str | None = None  # KPTYP
    currency: str | None = None  # VALUTA
    tax_year: int | None = None  # TAXAR
    balances_until: dt.date | None = None  # OMFATTN


@dataclass(frozen=True, slots=True)
class Address:
    """``#ADRESS kontakt utdelningsadr postadr tel``."""

    contact: str = ""
    street: str = ""
    postal: str = ""
    phone: str = ""


@dataclass(frozen=True, slots=True)
class Company:
    """Identification of the company the file belongs to."""

    name: str = ""
    orgnr: str | None = None
    acquisition_number: str | None = None  # förvärvsnummer, second #ORGNR field
    activity_number: str | None = None  # verksamhetsnummer, third #ORGNR field
    company_id: str | None = None  # FNR
    company_type: str | None = None  # FTYP
    sni_code: str | None = None  # BKOD
    address: Address | None = None


@dataclass(frozen=True, slots=True)
class FinancialYear:
    """``#RAR årsnr start slut``: 0 is the current year, -1 the one before, and so on."""

    index: int
    start: dt.date
    end: dt.date


@dataclass(frozen=True, slots=True)
class Account:
    """An account from ``#KONTO`` with its ``#KTYP``, ``#ENHET`` and ``#SRU`` records."""

    number: str
    name: str = ""
    type: str | None = None
    unit: str | None = None
    sru: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Dimension:
    """``#DIM`` (``parent`` is ``None``) or ``#UNDERDIM`` (``parent`` set)."""

    number: int
    name: str = ""
    parent: int | None = None


@dataclass(frozen=True, slots=True)
class SieObject:
    """``#OBJEKT dimensionsnr objektnr objektnamn``."""

    dimension: int
    number: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class Balance:
    """A balance record.

    ``period`` (YYYYMM) is set for ``#PSALDO``/``#PBUDGET`` only; ``objects`` may
    be non-empty for ``#OIB``/``#OUB``/``#PSALDO``/``#PBUDGET``.
    """

    kind: BalanceKind
    year: int
    account: str
    amount: Decimal
    quantity: Decimal | None = None
    period: str | None = None
    objects: tuple[ObjectRef, ...] = ()
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class VoucherRow:
    """A voucher row.

    ``#TRANS kontonr {objektlista} belopp transdat transtext kvantitet sign``, and the
    same fields for ``#RTRANS`` and ``#BTRANS``.
    """

    account: str
    amount: Decimal
    kind: RowKind = RowKind.TRANS
    objects: tuple[ObjectRef, ...] = ()
    trans_date: dt.date | None = None
    text: str = ""
    quantity: Decimal | None = None
    sign: str = ""
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Voucher:
    """``#VER serie vernr verdatum vertext regdatum sign`` and its rows.

    The voucher balances when its ``#TRANS`` rows sum to zero; ``#RTRANS`` and
    ``#BTRANS`` rows do not count (the ``#TRANS`` that follows an ``#RTRANS`` is
    that same added row and counts once, as a ``#TRANS``).
    """

    date: dt.date
    series: str = ""
    number: str = ""
    text: str = ""
    reg_date: dt.date | None = None
    sign: str = ""
    rows: tuple[VoucherRow, ...] = ()
    line: int = field(default=0, compare=False)

    @property
    def trans_rows(self) -> tuple[VoucherRow, ...]:
        """The rows that make up the voucher: the ``#TRANS`` rows."""
        return tuple(row for row in self.rows if row.kind is RowKind.TRANS)

    @property
    def balance(self) -> Decimal:
        """Sum of the ``#TRANS`` amounts."""
        return sum((row.amount for row in self.rows if row.kind is RowKind.TRANS), _ZERO)

    @property
    def is_balanced(self) -> bool:
        """Whether the ``#TRANS`` amounts sum to zero."""
        return self.balance == 0


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A record with a label the reader does not know, kept as read."""

    label: str
    fields: tuple[Field, ...] = ()
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class SieDocument:
    """Everything read from (or to be written to) one SIE file.

    ``errors`` are problems that made the reader drop or guess data (malformed
    records, broken structure, a wrong or truncated ``#KSUMMA``); ``warnings`` are
    deviations from the standard where the data was still read as intended
    (missing mandatory records, comma decimals, unbalanced vouchers, ...).
    """

    header: Header = field(default_factory=Header)
    company: Company = field(default_factory=Company)
    financial_years: tuple[FinancialYear, ...] = ()
    accounts: tuple[Account, ...] = ()
    dimensions: tuple[Dimension, ...] = ()
    objects: tuple[SieObject, ...] = ()
    balances: tuple[Balance, ...] = ()
    vouchers: tuple[Voucher, ...] = ()
    unknown: tuple[RawRecord, ...] = ()
    encoding: str = "cp437"
    checksum: ChecksumResult | None = None
    errors: tuple[SieError, ...] = ()
    warnings: tuple[SieError, ...] = ()
    line_count: int = 0

    @property
    def sie_type(self) -> SieType:
        """Shortcut for ``header.sie_type``."""
        return self.header.sie_type

    @property
    def ok(self) -> bool:
        """True when the reader found no errors (warnings allowed)."""
        return not self.errors

    @property
    def unbalanced_vouchers(self) -> tuple[Voucher, ...]:
        """Vouchers whose ``#TRANS`` rows do not sum to zero."""
        return tuple(voucher for voucher in self.vouchers if not voucher.is_balanced)

    def account(self, number: str) -> Account | None:
        """The account with this number, if declared."""
        for account in self.accounts:
            if account.number == number:
                return account
        return None
