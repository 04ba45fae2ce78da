"""Reading SIE files of types 1, 2, 3, 4E and 4I into a :class:`SieDocument`.

The reader never raises on bad input.  Every problem becomes a
:class:`~engine.sie.model.SieError` with the 1-based line number, in
``document.errors`` when data was dropped or had to be guessed, or in
``document.warnings`` when the data was read as intended but the file deviates
from the standard.  Reading always continues with the next line.

Only :func:`read_sie_file` touches the file system.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Final

from engine.sie.checksum import ChecksumAccumulator, ChecksumResult, ChecksumStatus
from engine.sie.checksum import parse_checksum_value as _parse_checksum_value
from engine.sie.encoding import CHUNK, CP437, decode_chunks, scan_bytes
from engine.sie.model import (
    Account,
    Address,
    Balance,
    BalanceKind,
    Company,
    Dimension,
    FinancialYear,
    Header,
    ObjectRef,
    RawRecord,
    RowKind,
    SieDocument,
    SieError,
    SieObject,
    SieType,
    Voucher,
    VoucherRow,
)
from engine.sie.tokens import Field, tokenize

MAX_PROBLEMS: Final = 1000
"""At most this many errors (and as many warnings) are reported per file."""

MAX_LINE: Final = 100_000
"""A longer line is reported and skipped; it is never held in memory whole."""

# The common #TRANS row: account digits, an object list of dimension/object pairs without
# escapes, an amount with at most two decimals, then optionally a date and a plain quoted text.
_FAST_TRANS_RE: Final = re.compile(
    r'#TRANS[ \t]++([0-9]++)[ \t]++\{([^{}"\\]*+(?:"[^"\\]*+"[^{}"\\]*+)*+)\}[ \t]++'
    r'(-?[0-9]++(?:\.[0-9]{1,2})?+)(?:[ \t]++([0-9]{8})(?:[ \t]++"([^"\\]*+)")?+)?+'
)
_FAST_OBJECTS_RE: Final = re.compile(
    r'(?:[ \t]*+[0-9]++[ \t]++(?:"[^"\\]*+"|[^ \t"{}]++))*+[ \t]*+'
)
_FAST_OBJECT_RE: Final = re.compile(r'([0-9]++)[ \t]++(?:"([^"\\]*+)"|([^ \t"{}]++))')
_FAST_CACHE: Final = 4096

# The common voucher block, read whole in one match (the block path) instead of line by line:
# a #VER with plain fields (quoted without escapes, or bare) and valid dates, a '{' line,
# #TRANS rows of the common form (digits for the account, a simple object list, an amount with
# at most two decimals, optionally a valid date and a plain quoted text; no braces in quoted
# members or texts), a '}' line; LF line ends (CR LF included). Anything else, in or around
# the block, goes the line-by-line way. Every part is possessive: no backtracking.
_DATE: Final = (
    r"(?:(?:19|20)[0-9]{2}(?:(?:0[1-9]|1[0-2])(?:0[1-9]|1[0-9]|2[0-8])"
    r"|(?:0[13-9]|1[0-2])(?:29|30)|(?:0[13578]|1[02])31)"
    r"|(?:19(?:0[48]|[2468][048]|[13579][26])|20(?:[02468][048]|[13579][26]))0229)"
)
"""A valid date in the years 1900-2099 (month lengths and leap years; the common days first);
any other date, valid or not, sends its voucher the line-by-line way."""
_BARE: Final = r'[^ \t\r\n"{}\\]++'
_PLAIN: Final = r'(?:"([^"\\\r\n{}]*+)"|(' + _BARE + "))"
_TEXT: Final = r'"[^"\\\r\n{}]*+"'
_OBJECTS: Final = r"(?:[ \t]*+[0-9]++[ \t]++(?:" + _TEXT + r'|[^ \t\r\n"{}]++))*+[ \t]*+'
_ROW: Final = (
    r"[ \t\r]*+#TRANS[ \t]++([0-9]++)[ \t]++\{(" + _OBJECTS + r")\}[ \t]++"
    r"(-?[0-9]{1,8}+(?:\.[0-9]{1,2})?+)(?:[ \t]++(" + _DATE + r")(?:[ \t]++(" + _TEXT + r"))?+)?+"
    r"[ \t\r]*+\n"
)
_HEAD: Final = (
    r"[ \t\r]*+#VER[ \t]++" + _PLAIN + r"[ \t]++" + _PLAIN + r"[ \t]++(" + _DATE + ")"
    r"(?:[ \t]++" + _PLAIN + r"(?:[ \t]++(" + _DATE + r")(?:[ \t]++" + _PLAIN + r")?+)?+)?+"
)
_HEAD_RE: Final = re.compile(_HEAD)
"""A block's #VER, its fields captured (when they are first used)."""


def _uncaptured(pattern: str) -> str:
    return re.sub(r"\((?!\?)", "(?:", pattern)


_CAPTURED_ROWS: Final = 16
"""The block pattern captures the amounts of a block's first this many rows (a voucher with
more has the rest found by :data:`_AMOUNTS_RE`)."""
_AMOUNT_ROW: Final = _uncaptured(_ROW).replace(
    r"(?:-?[0-9]{1,8}+(?:\.[0-9]{1,2})?+)", r"(-?[0-9]{1,8}+(?:\.[0-9]{1,2})?+)", 1
)
"""A row of a block with its amount captured (nothing else: the other fields are taken when
used, and a capture costs time)."""


def _block_pattern() -> str:
    """A block: its #VER, '{', rows as nested optional groups (row k+1 is tried only after row
    k), each capturing its amount, so that the match's ``lastindex`` is the number of rows (up
    to :data:`_CAPTURED_ROWS`) and its groups are their amounts; '}'."""
    rows = _AMOUNT_ROW + r"(?:" + _uncaptured(_ROW) + r")*+"  # the rows after the captured
    for _ in range(_CAPTURED_ROWS - 1):
        rows = _AMOUNT_ROW + r"(?:" + rows + r")?+"
    return (
        _uncaptured(_HEAD) + r"[ \t\r]*+\n[ \t\r]*+\{[ \t\r]*+\n" + rows + r"[ \t\r]*+\}[ \t\r]*+\n"
    )


_BLOCK_RE: Final = re.compile(_block_pattern())
_ROW_LINE_RE: Final = re.compile("^" + _ROW, re.MULTILINE)
"""One row of a block, its fields captured (when the rows are built)."""
_AMOUNTS_RE: Final = re.compile(r"\}[ \t]++(-?[0-9.]++)")
"""The amounts of a block's rows: each row has one '}', the end of its object list."""
_ZERO: Final = Decimal(0)

NOT_SIE: Final = "no SIE records found: this is not a SIE file"

_INT_RE: Final = re.compile(r"[+-]?[0-9]+")
_DATE_RE: Final = re.compile(r"[0-9]{8}")
_PERIOD_RE: Final = re.compile(r"[0-9]{4}(?:0[1-9]|1[0-2])")
_AMOUNT_RE: Final = re.compile(r"(?P<sign>[+-]?)(?P<int>[0-9]*)(?:(?P<sep>[.,])(?P<frac>[0-9]*))?")

_ROW_LABELS: Final = {"#TRANS": RowKind.TRANS, "#RTRANS": RowKind.RTRANS, "#BTRANS": RowKind.BTRANS}
_BALANCE_LABELS: Final = frozenset(f"#{kind.value}" for kind in BalanceKind)
_ACCOUNT_TYPES: Final = frozenset("TSKI")


SHOWN_LIMIT: Final = 40
"""Values quoted in messages are cut to this many characters."""


def shown(value: Field) -> str:
    """``value`` as a message quotes it: its repr, cut to :data:`SHOWN_LIMIT` characters with the
    full length given, so that an oversized field does not repeat itself in every message."""
    if isinstance(value, tuple):
        text = "{" + " ".join(value) + "}"
        if len(text) <= SHOWN_LIMIT:
            return repr(value)
    else:
        text = value
        if len(text) <= SHOWN_LIMIT:
            return repr(text)
    return repr(text[:SHOWN_LIMIT]) + f"... ({len(text)} characters)"


class _RecordError(Exception):
    """A record cannot be used; the message says why."""


@dataclass(slots=True)
class _AccountDraft:
    number: str
    name: str = ""
    type: str | None = None
    unit: str | None = None
    sru: tuple[str, ...] = ()
    declared: bool = False


@dataclass(slots=True)
class _VoucherDraft:
    """A ``#VER`` whose block is being read; ``head`` is ``None`` if the #VER was unusable."""

    head: Voucher | None
    line: int
    rows: list[VoucherRow]
    in_block: bool = False
    braceless: bool = False  # rows that followed the #VER without a '{'
    pending_rtrans: VoucherRow | None = None


def _voucher_name(voucher: Voucher) -> str:
    series = voucher.series or '""'
    number = voucher.number or '""'
    return f"voucher {series} {number} dated {voucher.date.isoformat()}"


class _FastValues:
    """Object lists and dates of the fast paths, each read once (at most :data:`_FAST_CACHE`
    of each are kept); shared by the reader and the rows of its block vouchers, built later."""

    __slots__ = ("dates", "objects")

    def __init__(self) -> None:
        self.objects: dict[str, tuple[ObjectRef, ...]] = {}
        self.dates: dict[str, dt.date] = {}

    def objects_of(self, body: str) -> tuple[ObjectRef, ...] | None:
        """The objects of a simple object list, or None when it is not one."""
        found = self.objects.get(body)
        if found is not None:
            return found
        if _FAST_OBJECTS_RE.fullmatch(body) is None:
            return None
        found = tuple(
            ObjectRef(int(m[1]), m[2] if m[2] is not None else m[3])
            for m in _FAST_OBJECT_RE.finditer(body)
        )
        if len(self.objects) < _FAST_CACHE:
            self.objects[body] = found
        return found

    def date_of(self, day: str) -> dt.date | None:
        """The date of eight digits, or None when it is not a valid date."""
        found = self.dates.get(day)
        if found is not None:
            return found
        try:
            found = dt.date(int(day[:4]), int(day[4:6]), int(day[6:]))
        except ValueError:
            return None
        if len(self.dates) < _FAST_CACHE:
            self.dates[day] = found
        return found

    def rows(self, text: str, first: int) -> tuple[VoucherRow, ...]:
        """The rows of a block the block path read (every value was checked then), the first
        on line ``first``."""
        objects_of, date_of, trans = self.objects_of, self.date_of, RowKind.TRANS
        return tuple(
            VoucherRow(
                account,
                Decimal(amount),
                trans,
                objects_of(body) or (),
                date_of(day) if day else None,
                quoted[1:-1],
                None,
                "",
                line,
            )
            for line, (account, body, amount, day, quoted) in enumerate(
                _ROW_LINE_RE.findall(text), first
            )
        )


class _BlockVoucher(Voucher):
    """A voucher the block path read. Every value was checked while reading (the pattern
    takes valid dates only); the fields are taken from the match and the rows built on first
    use (``sie check`` never needs them), so a voucher costs one small object while reading.
    It is a :class:`Voucher` in every way: the same fields, equal to (and hashing as) the
    voucher the line-by-line way builds; ``dataclasses.replace`` gives a plain
    :class:`Voucher`. It keeps the decoded piece of the file it was read from (shared by the
    vouchers read from it)."""

    __slots__ = ("_head", "_read", "_rows")

    #: The decoded piece of the file and where the block is in it (what :data:`_BLOCK_RE`
    #: matched; not the match, which holds every captured amount), the #VER's line, the
    #: balance, the date and row caches.
    _read: tuple[str, int, int, int, Decimal, _FastValues]
    _rows: tuple[VoucherRow, ...]
    _head: tuple[str | None, ...]

    def __new__(cls, *args: object, **kwargs: object) -> Voucher:  # type: ignore[misc]
        return Voucher(*args, **kwargs)  # type: ignore[arg-type]  # dataclasses.replace

    def _groups(self) -> tuple[str | None, ...]:
        try:
            return self._head
        except AttributeError:
            head = _HEAD_RE.match(self._read[0], self._read[1])
            assert head is not None  # the block's match began with it
            groups = head.groups()
            _set(self, "_head", groups)
            return groups

    def _field(self, quoted: int) -> str:
        groups = self._groups()
        value = groups[quoted - 1]
        if value is None:
            value = groups[quoted]
        return value or ""

    def _day(self, group: int) -> dt.date | None:
        day = self._groups()[group - 1]
        return None if day is None else self._read[5].date_of(day)

    @property
    def date(self) -> dt.date:
        found = self._day(5)
        assert found is not None  # the pattern requires a valid voucher date
        return found

    @property
    def series(self) -> str:
        return self._field(1)

    @property
    def number(self) -> str:
        return self._field(3)

    @property
    def text(self) -> str:
        return self._field(6)

    @property
    def reg_date(self) -> dt.date | None:
        return self._day(8)

    @property
    def sign(self) -> str:
        return self._field(9)

    @property
    def line(self) -> int:
        return self._read[3]

    @property
    def rows(self) -> tuple[VoucherRow, ...]:
        try:
            return self._rows
        except AttributeError:
            text, start, end, line, _balance, fast = self._read
            rows = fast.rows(text[start:end], line + 2)  # the rows are its only #TRANS lines
            _set(self, "_rows", rows)
            return rows

    @property
    def trans_rows(self) -> tuple[VoucherRow, ...]:
        return self.rows  # the block path reads #TRANS rows only

    @property
    def balance(self) -> Decimal:
        return self._read[4]

    def plain(self) -> Voucher:
        """The same voucher as a plain :class:`Voucher` (what copies and pickles give)."""
        return Voucher(
            self.date, self.series, self.number, self.text, self.reg_date, self.sign, self.rows,
            self.line,
        )  # fmt: skip

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Voucher):
            return NotImplemented
        return _compared(self) == _compared(other)

    __hash__ = Voucher.__hash__

    def __repr__(self) -> str:
        return repr(self.plain())

    def __reduce__(self) -> tuple[type[Voucher], tuple[object, ...]]:
        plain = self.plain()
        return Voucher, tuple(getattr(plain, f) for f in _VOUCHER_FIELDS)


_set: Final = object.__setattr__
_FLOAT_ROWS: Final = 200
"""Up to this many rows, a block's balance is checked in binary floating point (exactly):
each amount is k/100 for an integer k (at most two decimals), so the exact sum S is 0 or at
least 0.01 away from it; ``float(a)`` is within |a|·2⁻⁵³ of a and ``math.fsum`` rounds the sum
of the floats once, so |fsum - S| <= 2·n·A·2⁻⁵³, below 0.0045 for n <= 200 amounts under 10⁸
(the block pattern takes at most eight integer digits). So S is 0 exactly when |fsum| < 0.005;
an unbalanced voucher's difference is then summed in Decimal."""


_VOUCHER_FIELDS: Final = tuple(f.name for f in dataclasses.fields(Voucher))


def _compared(voucher: Voucher) -> tuple[object, ...]:
    return (
        voucher.date,
        voucher.series,
        voucher.number,
        voucher.text,
        voucher.reg_date,
        voucher.sign,
        voucher.rows,
    )


class _Reader:
    """One pass over the lines of a decoded SIE text."""

    def __init__(self, encoding: str, on_voucher: Callable[[Voucher], None] | None = None) -> None:
        self.encoding = encoding
        self.line = 0
        self.label = ""
        self.errors: list[SieError] = []
        self.warnings: list[SieError] = []
        self.header = Header()
        self.company = Company()
        self.years: list[FinancialYear] = []
        self.accounts: dict[str, _AccountDraft] = {}
        self.dimensions: list[Dimension] = []
        self.objects: list[SieObject] = []
        self.balances: list[Balance] = []
        self.vouchers: list[Voucher] = []
        self.unknown: list[RawRecord] = []
        self.seen: dict[str, int] = {}
        self.odd_accounts: set[str] = set()
        self.known_count = 0
        self._fast = _FastValues()
        self._fast_objects = self._fast.objects
        self._fast_dates = self._fast.dates
        self.on_voucher = on_voucher
        self.first_label: str | None = None
        #: A voucher block was read (labels and counts it would have noted were noted).
        self.blocks_read = False
        self.voucher: _VoucherDraft | None = None
        self.crc: ChecksumAccumulator | None = None
        self.crc_open_line = 0
        self.checksum: ChecksumResult | None = None
        self.after_checksum_warned = False
        self.handlers: dict[str, Callable[[list[Field]], None]] = {
            "#FLAGGA": self._flagga,
            "#PROGRAM": self._program,
            "#FORMAT": self._format,
            "#GEN": self._gen,
            "#SIETYP": self._sietyp,
            "#PROSA": self._prosa,
            "#FTYP": self._ftyp,
            "#FNR": self._fnr,
            "#ORGNR": self._orgnr,
            "#BKOD": self._bkod,
            "#ADRESS": self._adress,
            "#FNAMN": self._fnamn,
            "#RAR": self._rar,
            "#TAXAR": self._taxar,
            "#OMFATTN": self._omfattn,
            "#KPTYP": self._kptyp,
            "#VALUTA": self._valuta,
            "#KONTO": self._konto,
            "#KTYP": self._ktyp,
            "#ENHET": self._enhet,
            "#SRU": self._sru,
            "#DIM": self._dim,
            "#UNDERDIM": self._underdim,
            "#OBJEKT": self._objekt,
            "#IB": self._year_balance,
            "#UB": self._year_balance,
            "#RES": self._year_balance,
            "#OIB": self._object_balance,
            "#OUB": self._object_balance,
            "#PSALDO": self._period_balance,
            "#PBUDGET": self._period_balance,
            "#VER": self._ver,
            "#KSUMMA": self._ksumma,
        }

    # ------------------------------------------------------------------ problems

    def _add(self, target: list[SieError], line: int, message: str) -> None:
        if len(target) < MAX_PROBLEMS:
            target.append(SieError(line, message))
        elif len(target) == MAX_PROBLEMS:
            target.append(SieError(line, "too many problems; the rest are not reported"))

    def error(self, message: str, line: int | None = None) -> None:
        self._add(self.errors, self.line if line is None else line, message)

    def warn(self, message: str, line: int | None = None) -> None:
        self._add(self.warnings, self.line if line is None else line, message)

    # ------------------------------------------------------------------ main loop

    def run(self, lines: Iterable[str | None]) -> SieDocument:
        """Read ``lines`` (without their line breaks; ``None`` stands for an overlong line)."""
        number = 0
        for number, raw in enumerate(lines, 1):
            self._take(number, raw)
        return self._end(number)

    def _take(self, number: int, raw: str | None) -> None:
        self.line = number
        if raw is None:
            self.error(f"the line is longer than {MAX_LINE} characters; ignored")
            return
        stripped = raw.strip(" \t\r")
        if stripped:
            self._line(stripped)

    def run_texts(self, texts: Iterable[str], separator: str) -> SieDocument:
        """Read a text given in pieces: line by line as :func:`split_lines` cuts it, except that
        a common voucher block (:data:`_BLOCK_RE`) is read whole where it starts a line."""
        number = 0
        carry = ""
        skipping = False  # inside an overlong line already reported
        blocks = separator == "\n"
        take, match, amounts_of = self._take, _BLOCK_RE.match, _AMOUNTS_RE.findall
        fsum, new, setter, fast = math.fsum, object.__new__, object.__setattr__, self._fast
        block_voucher, zero, float_rows, max_line = _BlockVoucher, _ZERO, _FLOAT_ROWS, MAX_LINE
        captured_rows = _CAPTURED_ROWS
        amounts: Sequence[str]
        emit = self.vouchers.append if self.on_voucher is None else self.on_voucher
        for text in texts:
            buffer = carry + text if carry else text
            last = buffer.rfind(separator) + 1  # the end of the last complete line
            position = 0
            if skipping and last:
                position = buffer.find(separator) + 1  # the overlong line's last piece
                skipping = False
            while position < last:
                if blocks and self.voucher is None and self.crc is None and self.checksum is None:
                    if not self.blocks_read:
                        found = match(buffer, position, last)
                        if found is not None and found.end() - position <= MAX_LINE:
                            self._first_block(number + 1)
                    # Voucher blocks one after the other, each read as the line-by-line way
                    # would: the same voucher, rows, line numbers and warnings. Inline: this
                    # runs once per voucher (nothing here changes what the checks above saw).
                    found = match(buffer, position, last)
                    while found is not None:
                        end = found.end()
                        if end - position > max_line:
                            break
                        count = found.lastindex or 0  # the rows, up to captured_rows
                        if count < captured_rows:
                            amounts = found.groups()[:count]
                        else:
                            amounts = amounts_of(buffer, position, end)  # one '}' per row
                            count = len(amounts)
                        number += 1  # the #VER's line
                        if count <= float_rows and -0.005 < fsum(map(float, amounts)) < 0.005:
                            balance = zero
                        else:
                            balance = sum(map(Decimal, amounts), zero)
                        voucher = new(block_voucher)
                        setter(voucher, "_read", (buffer, position, end, number, balance, fast))
                        emit(voucher)
                        if balance:
                            self._unbalanced(voucher, balance, number)
                        number += count + 2  # '{', the rows, '}'
                        position = end
                        found = match(buffer, position, last)
                    if position >= last:
                        break
                end = buffer.find(separator, position, last)
                number += 1
                take(number, buffer[position:end] if end - position <= MAX_LINE else None)
                position = end + 1
            carry = buffer[last:]
            if len(carry) > MAX_LINE:
                if not skipping:
                    number += 1
                    take(number, None)
                skipping, carry = True, ""
        if carry and not skipping:
            number += 1
            take(number, carry)
        return self._end(number)

    def _first_block(self, line: int) -> None:
        """What the first record of a voucher block (its #VER on ``line``) notes."""
        self.blocks_read = True
        self.known_count += 1
        if self.first_label is None:
            self.first_label = "#VER"
        self.seen.setdefault("#VER", line)
        self.seen.setdefault("#TRANS", line + 2)

    def _unbalanced(self, voucher: Voucher, balance: Decimal, line: int) -> None:
        self.warn(
            f"{_voucher_name(voucher)} does not balance: its #TRANS rows sum to {balance}", line
        )

    def _end(self, number: int) -> SieDocument:
        line_count = max(number, 1)
        self.line = line_count
        self._finish_voucher(at_eof=True)
        self._finish_checksum()
        if self.known_count == 0:
            self.errors = [SieError(1, NOT_SIE)]
            self.warnings = []
        else:
            self._check_conformance()
        return self._document(line_count)

    def _line(self, stripped: str) -> None:
        first = stripped[0]
        if first == "{":
            self._open_block(stripped)
            return
        if first == "}":
            self._close_block(stripped)
            return
        if first != "#":
            self.error("line does not start with a '#' label, '{' or '}'; ignored")
            return
        if stripped.startswith("#TRANS") and self._fast_trans(stripped):
            return
        tokens = tokenize(stripped)
        fields = tokens.fields
        raw_label = fields[0]
        assert isinstance(raw_label, str)  # a line starting with '#' starts with a plain field
        label = raw_label.upper()
        self.label = label
        if label in self.handlers or label in _ROW_LABELS:
            self.known_count += 1
        if self.first_label is None:
            self.first_label = label
        for message in tokens.errors:
            self.error(f"{label}: {message}")
        for message in tokens.warnings:
            self.warn(f"{label}: {message}")
        args = fields[1:]
        if label != "#KSUMMA":
            if self.crc is not None:
                self.crc.add(raw_label, args)
            elif self.checksum is not None and not self.after_checksum_warned:
                self.after_checksum_warned = True
                self.warn("records after the closing #KSUMMA are not covered by the checksum")
        self.seen.setdefault(label, self.line)
        try:
            self._record(label, raw_label, args)
        except _RecordError as exc:
            self.error(f"{label}: {exc}")
        except Exception as exc:  # defensive: a reader bug must not lose the whole file
            self.error(f"{label}: internal error while reading the record: {exc!r}")

    def _fast_trans(self, stripped: str) -> bool:
        """The common ``#TRANS`` row (plain account, simple object list, amount with at most two
        decimals, optional valid date and plain quoted text) read in one match; anything else
        (and any row while a checksum is being computed) goes the general way. Same result."""
        voucher = self.voucher
        if (
            voucher is None
            or not voucher.in_block
            or voucher.pending_rtrans is not None
            or self.crc is not None
        ):
            return False
        match = _FAST_TRANS_RE.fullmatch(stripped)
        if match is None:
            return False
        account, body, amount, day, text = match.groups()
        objects = self._fast_objects.get(body)
        if objects is None:
            if _FAST_OBJECTS_RE.fullmatch(body) is None:
                return False
            objects = tuple(
                ObjectRef(int(m[1]), m[2] if m[2] is not None else m[3])
                for m in _FAST_OBJECT_RE.finditer(body)
            )
            if len(self._fast_objects) < _FAST_CACHE:
                self._fast_objects[body] = objects
        trans_date: dt.date | None = None
        if day is not None:
            trans_date = self._fast_dates.get(day)
            if trans_date is None:
                try:
                    trans_date = dt.date(int(day[:4]), int(day[4:6]), int(day[6:]))
                except ValueError:
                    return False
                if len(self._fast_dates) < _FAST_CACHE:
                    self._fast_dates[day] = trans_date
        self.label = "#TRANS"
        self.known_count += 1
        if self.first_label is None:
            self.first_label = "#TRANS"
        if "#TRANS" not in self.seen:
            self.seen["#TRANS"] = self.line
        if voucher.head is not None:
            voucher.rows.append(
                VoucherRow(
                    account,
                    Decimal(amount),
                    RowKind.TRANS,
                    objects,
                    trans_date,
                    text or "",
                    None,
                    "",
                    self.line,
                )
            )
        return True

    def _record(self, label: str, raw_label: str, args: list[Field]) -> None:
        voucher = self.voucher
        if voucher is not None:
            if not voucher.in_block and label in _ROW_LABELS:
                self.error(
                    f"#VER on line {voucher.line} is not followed by a '{{' block; "
                    "its rows are read up to the next other record"
                )
                voucher.in_block = voucher.braceless = True
            if voucher.in_block:
                kind = _ROW_LABELS.get(label)
                if kind is not None:
                    self._row(voucher, kind, args)
                    return
                if label not in self.handlers:
                    self.unknown.append(RawRecord(raw_label, tuple(args), self.line))
                    return
                if not voucher.braceless:
                    self.error(
                        f"the #VER block opened on line {voucher.line} has no closing '}}' "
                        f"before this {label}"
                    )
            else:
                self.error(f"#VER on line {voucher.line} is not followed by a '{{' block")
            self._finish_voucher()
        if label in _ROW_LABELS:
            raise _RecordError("voucher row outside a #VER block; ignored")
        handler = self.handlers.get(label)
        if handler is None:
            self.unknown.append(RawRecord(raw_label, tuple(args), self.line))
            return
        handler(args)

    # ------------------------------------------------------------------ fields

    def _field(self, args: list[Field], index: int, name: str) -> str:
        """An optional plain field; ``""`` when absent."""
        if index >= len(args):
            return ""
        value = args[index]
        if isinstance(value, str):
            return value
        raise _RecordError(f"{name} is an object list")

    def _required(self, args: list[Field], index: int, name: str) -> str:
        """A plain field that must be present and non-empty."""
        if index < len(args):
            value = args[index]
            if isinstance(value, str):
                if value:
                    return value
            else:
                raise _RecordError(f"{name} is an object list")
        raise _RecordError(f"missing {name}")

    def _optional(self, args: list[Field], index: int, name: str) -> str | None:
        value = self._field(args, index, name)
        return value or None

    def _int(self, text: str, name: str) -> int:
        if _INT_RE.fullmatch(text) is None:
            raise _RecordError(f"{name} {shown(text)} is not an integer")
        return int(text)

    def _date(self, text: str, name: str) -> dt.date:
        if _DATE_RE.fullmatch(text) is None:
            raise _RecordError(f"{name} {shown(text)} is not a date (YYYYMMDD)")
        try:
            return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
        except ValueError:
            raise _RecordError(f"{name} {shown(text)} is not a valid date") from None

    def _optional_date(self, args: list[Field], index: int, name: str) -> dt.date | None:
        value = self._field(args, index, name)
        return self._date(value, name) if value else None

    def _decimal(self, text: str, name: str, *, amount: bool) -> Decimal:
        match = _AMOUNT_RE.fullmatch(text)
        if match is None or not (match.group("int") or match.group("frac")):
            raise _RecordError(f"{name} {shown(text)} is not a number")
        sign, whole, sep, frac = match.group("sign", "int", "sep", "frac")
        if sep == ",":
            self.warn(f"{self.label}: comma used as decimal separator in {name} {shown(text)}")
        if sign == "+":
            self.warn(f"{self.label}: {name} {shown(text)} has a '+' sign")
        if amount and frac is not None and len(frac.rstrip("0")) > 2:
            self.warn(f"{self.label}: {name} {shown(text)} has more than 2 decimals")
        digits = f"{whole or '0'}.{frac}" if frac else whole or "0"
        return Decimal(f"-{digits}" if sign == "-" else digits)

    def _amount(self, args: list[Field], index: int, name: str = "amount") -> Decimal:
        return self._decimal(self._required(args, index, name), name, amount=True)

    def _quantity(self, args: list[Field], index: int) -> Decimal | None:
        value = self._field(args, index, "quantity")
        return self._decimal(value, "quantity", amount=False) if value else None

    def _account(self, args: list[Field], index: int) -> str:
        number = self._required(args, index, "account number")
        if not (number.isascii() and number.isdigit()) and number not in self.odd_accounts:
            self.odd_accounts.add(number)
            self.warn(f"{self.label}: account number {shown(number)} is not numeric")
        return number

    def _objects(self, value: Field) -> tuple[ObjectRef, ...]:
        if isinstance(value, str):
            raise _RecordError(f"expected an object list, found {shown(value)}")
        if len(value) % 2:
            raise _RecordError(f"object list {shown(value)} has an odd number of members")
        pairs = []
        for position in range(0, len(value), 2):
            dimension = self._int(value[position], "dimension number")
            pairs.append(ObjectRef(dimension, value[position + 1]))
        return tuple(pairs)

    def _object_list_at(self, args: list[Field], index: int) -> tuple[tuple[ObjectRef, ...], int]:
        """Objects at ``index`` and the index of the next field.

        A missing object list (a plain field where the list belongs) is accepted
        with a warning and the remaining fields shift one place left.
        """
        if index < len(args) and isinstance(args[index], tuple):
            return self._objects(args[index]), index + 1
        self.warn(f"{self.label}: object list missing, read as {{}}")
        return (), index

    # ------------------------------------------------------------------ identification

    def _flagga(self, args: list[Field]) -> None:
        flag = self._int(self._required(args, 0, "flag"), "flag")
        self.header = replace(self.header, flag=flag)

    def _program(self, args: list[Field]) -> None:
        name = self._required(args, 0, "program name")
        version = self._optional(args, 1, "program version")
        self.header = replace(self.header, program=name, program_version=version)

    def _format(self, args: list[Field]) -> None:
        value = self._required(args, 0, "format")
        self.header = replace(self.header, format=value)
        if value.upper() != "PC8":
            self.warn(f"#FORMAT {shown(value)}: the standard only allows PC8")

    def _gen(self, args: list[Field]) -> None:
        date = self._date(self._required(args, 0, "date"), "date")
        sign = self._optional(args, 1, "signature")
        self.header = replace(self.header, gen_date=date, gen_sign=sign)

    def _sietyp(self, args: list[Field]) -> None:
        value = self._int(self._required(args, 0, "type"), "type")
        if value not in (1, 2, 3, 4):
            raise _RecordError(f"type {value} is not 1, 2, 3 or 4")
        self.header = replace(self.header, declared_type=value)

    def _prosa(self, args: list[Field]) -> None:
        self.header = replace(self.header, comment=self._field(args, 0, "comment"))

    def _kptyp(self, args: list[Field]) -> None:
        chart = self._required(args, 0, "chart of accounts type")
        self.header = replace(self.header, chart_type=chart)

    def _valuta(self, args: list[Field]) -> None:
        self.header = replace(self.header, currency=self._required(args, 0, "currency"))

    def _taxar(self, args: list[Field]) -> None:
        year = self._int(self._required(args, 0, "tax year"), "tax year")
        self.header = replace(self.header, tax_year=year)

    def _omfattn(self, args: list[Field]) -> None:
        date = self._date(self._required(args, 0, "date"), "date")
        self.header = replace(self.header, balances_until=date)

    def _fnamn(self, args: list[Field]) -> None:
        self.company = replace(self.company, name=self._field(args, 0, "company name"))

    def _orgnr(self, args: list[Field]) -> None:
        self.company = replace(
            self.company,
            orgnr=self._optional(args, 0, "organisation number"),
            acquisition_number=self._optional(args, 1, "acquisition number"),
            activity_number=self._optional(args, 2, "activity number"),
        )

    def _fnr(self, args: list[Field]) -> None:
        self.company = replace(self.company, company_id=self._required(args, 0, "company id"))

    def _ftyp(self, args: list[Field]) -> None:
        company_type = self._required(args, 0, "company type")
        self.company = replace(self.company, company_type=company_type)

    def _bkod(self, args: list[Field]) -> None:
        self.company = replace(self.company, sni_code=self._required(args, 0, "SNI code"))

    def _adress(self, args: list[Field]) -> None:
        address = Address(
            self._field(args, 0, "contact"),
            self._field(args, 1, "street address"),
            self._field(args, 2, "postal address"),
            self._field(args, 3, "phone"),
        )
        self.company = replace(self.company, address=address)

    def _rar(self, args: list[Field]) -> None:
        index = self._int(self._required(args, 0, "year number"), "year number")
        start = self._field(args, 1, "start date")
        end = self._field(args, 2, "end date")
        if not start and not end:
            self.warn(f"#RAR {index} has no dates; ignored")
            return
        year = FinancialYear(
            index,
            self._date(self._required(args, 1, "start date"), "start date"),
            self._date(self._required(args, 2, "end date"), "end date"),
        )
        if year.end < year.start:
            raise _RecordError(f"year {index} ends before it starts")
        self.years.append(year)

    # ------------------------------------------------------------------ chart of accounts

    def _account_draft(self, number: str) -> _AccountDraft:
        draft = self.accounts.get(number)
        if draft is None:
            draft = self.accounts[number] = _AccountDraft(number)
        return draft

    def _konto(self, args: list[Field]) -> None:
        number = self._account(args, 0)
        name = self._field(args, 1, "account name")
        draft = self._account_draft(number)
        if draft.declared:
            self.warn(f"#KONTO {number} declared again; the last name is kept")
        draft.name = name
        draft.declared = True

    def _ktyp(self, args: list[Field]) -> None:
        number = self._account(args, 0)
        kind = self._field(args, 1, "account type")
        if not kind:
            self.warn(f"#KTYP {number} has no account type; ignored")
            return
        if kind.upper() not in _ACCOUNT_TYPES:
            self.warn(f"#KTYP {number}: account type {shown(kind)} is not T, S, K or I")
        self._account_draft(number).type = kind.upper()

    def _enhet(self, args: list[Field]) -> None:
        number = self._account(args, 0)
        self._account_draft(number).unit = self._required(args, 1, "unit")

    def _sru(self, args: list[Field]) -> None:
        number = self._account(args, 0)
        code = self._field(args, 1, "SRU code")
        if not code:
            self.warn(f"#SRU {number} has no SRU code; ignored")
            return
        draft = self._account_draft(number)
        draft.sru = (*draft.sru, code)

    def _dim(self, args: list[Field]) -> None:
        number = self._int(self._required(args, 0, "dimension number"), "dimension number")
        self.dimensions.append(Dimension(number, self._field(args, 1, "dimension name")))

    def _underdim(self, args: list[Field]) -> None:
        number = self._int(self._required(args, 0, "dimension number"), "dimension number")
        name = self._field(args, 1, "dimension name")
        parent = self._int(self._required(args, 2, "parent dimension"), "parent dimension")
        self.dimensions.append(Dimension(number, name, parent))

    def _objekt(self, args: list[Field]) -> None:
        dimension = self._int(self._required(args, 0, "dimension number"), "dimension number")
        number = self._required(args, 1, "object number")
        self.objects.append(SieObject(dimension, number, self._field(args, 2, "object name")))

    # ------------------------------------------------------------------ balances

    def _kind(self) -> BalanceKind:
        return BalanceKind(self.label[1:])

    def _year(self, args: list[Field]) -> int:
        return self._int(self._required(args, 0, "year number"), "year number")

    def _year_balance(self, args: list[Field]) -> None:
        year = self._year(args)
        account = self._account(args, 1)
        amount = self._amount(args, 2)
        quantity = self._quantity(args, 3)
        self.balances.append(Balance(self._kind(), year, account, amount, quantity, line=self.line))

    def _object_balance(self, args: list[Field]) -> None:
        year = self._year(args)
        account = self._account(args, 1)
        objects, next_index = self._object_list_at(args, 2)
        amount = self._amount(args, next_index)
        quantity = self._quantity(args, next_index + 1)
        self.balances.append(
            Balance(self._kind(), year, account, amount, quantity, None, objects, self.line)
        )

    def _period_balance(self, args: list[Field]) -> None:
        year = self._year(args)
        period = self._required(args, 1, "period")
        if _PERIOD_RE.fullmatch(period) is None:
            raise _RecordError(f"period {shown(period)} is not a month (YYYYMM)")
        account = self._account(args, 2)
        objects, next_index = self._object_list_at(args, 3)
        amount = self._amount(args, next_index)
        quantity = self._quantity(args, next_index + 1)
        self.balances.append(
            Balance(self._kind(), year, account, amount, quantity, period, objects, self.line)
        )

    # ------------------------------------------------------------------ vouchers

    def _ver(self, args: list[Field]) -> None:
        draft = _VoucherDraft(None, self.line, [])
        self.voucher = draft  # even an unusable #VER owns the block that follows
        series = self._field(args, 0, "series")
        number = self._field(args, 1, "voucher number")
        date = self._date(self._required(args, 2, "voucher date"), "voucher date")
        text = self._field(args, 3, "voucher text")
        reg_date = self._optional_date(args, 4, "registration date")
        sign = self._field(args, 5, "signature")
        draft.head = Voucher(date, series, number, text, reg_date, sign, line=self.line)

    def _open_block(self, stripped: str) -> None:
        voucher = self.voucher
        if voucher is not None and not voucher.in_block:
            voucher.in_block = True
        elif voucher is not None and voucher.braceless:
            self.error("'{' after the rows of a #VER; ignored")
            return
        elif voucher is not None:
            self.error("'{' inside a #VER block; ignored")
            return
        else:
            self.error("'{' without a #VER before it; the block is skipped")
            self.voucher = _VoucherDraft(None, self.line, [], in_block=True)
        if stripped != "{":
            self.error("text after '{' on the same line; ignored")

    def _close_block(self, stripped: str) -> None:
        voucher = self.voucher
        if voucher is None or not voucher.in_block:
            if voucher is not None:
                self.error(f"#VER on line {voucher.line} is not followed by a '{{' block")
                self._finish_voucher()
            self.error("'}' without an open #VER block; ignored")
            return
        if stripped != "}":
            self.error("text after '}' on the same line; ignored")
        self._finish_voucher()

    def _row(self, voucher: _VoucherDraft, kind: RowKind, args: list[Field]) -> None:
        pending = voucher.pending_rtrans
        voucher.pending_rtrans = None
        if pending is not None and kind is not RowKind.TRANS:
            self.warn(f"#RTRANS on line {pending.line} is not followed by its #TRANS", pending.line)
        row = self._parse_row(kind, args)
        if kind is RowKind.RTRANS:
            voucher.pending_rtrans = row
        elif pending is not None and (
            (row.account, row.amount, row.objects)
            != (pending.account, pending.amount, pending.objects)
        ):
            self.warn(f"#TRANS differs from the #RTRANS on line {pending.line} before it")
        if voucher.head is not None:
            voucher.rows.append(row)

    def _parse_row(self, kind: RowKind, args: list[Field]) -> VoucherRow:
        account = self._account(args, 0)
        objects, index = self._object_list_at(args, 1)
        amount = self._amount(args, index)
        date_field = self._field(args, index + 1, "transaction date")
        text = self._field(args, index + 2, "transaction text")
        trans_date: dt.date | None = None
        if date_field:
            try:
                trans_date = self._date(date_field, "transaction date")
            except _RecordError:
                if len(args) > index + 2:
                    raise
                self.warn(
                    f"{self.label}: {shown(date_field)} stands where the transaction date belongs; "
                    "read as the row text"
                )
                text = date_field
        quantity = self._quantity(args, index + 3)
        sign = self._field(args, index + 4, "signature")
        return VoucherRow(
            account, amount, kind, objects, trans_date, text, quantity, sign, self.line
        )

    def _finish_voucher(self, *, at_eof: bool = False) -> None:
        draft = self.voucher
        if draft is None:
            return
        self.voucher = None
        if at_eof and not draft.braceless:
            if draft.in_block:
                self.error(f"the #VER block opened on line {draft.line} has no closing '}}'")
            else:
                self.error(f"#VER on line {draft.line} is not followed by a '{{' block", draft.line)
        if draft.pending_rtrans is not None:
            line = draft.pending_rtrans.line
            self.warn(f"#RTRANS on line {line} is not followed by its #TRANS", line)
        if draft.head is None:
            return
        head = draft.head  # built anew, not dataclasses.replace: this runs once per voucher
        voucher = Voucher(
            head.date,
            head.series,
            head.number,
            head.text,
            head.reg_date,
            head.sign,
            tuple(draft.rows),
            head.line,
        )
        self._emit(voucher, draft.line)

    def _emit(self, voucher: Voucher, line: int) -> None:
        if self.on_voucher is None:
            self.vouchers.append(voucher)
        else:
            self.on_voucher(voucher)
        balance = voucher.balance
        if not voucher.rows:
            self.warn(f"{_voucher_name(voucher)} has no rows", line)
        elif balance != 0:
            self.warn(
                f"{_voucher_name(voucher)} does not balance: its #TRANS rows sum to {balance}",
                line,
            )

    # ------------------------------------------------------------------ checksum

    def _ksumma(self, args: list[Field]) -> None:
        value = self._field(args, 0, "checksum")
        if not value:
            if self.crc is not None or self.checksum is not None:
                raise _RecordError("a second opening #KSUMMA; ignored")
            self.crc = ChecksumAccumulator(self.encoding)
            self.crc_open_line = self.line
            return
        crc = self.crc
        if crc is None:
            if self.checksum is not None:
                raise _RecordError("a second closing #KSUMMA; ignored")
            self.checksum = ChecksumResult(ChecksumStatus.INVALID, self.line)
            raise _RecordError("checksum without an opening #KSUMMA; it cannot be verified")
        self.crc = None
        expected = _parse_checksum_value(value)
        if expected is None:
            self.checksum = ChecksumResult(ChecksumStatus.INVALID, self.line, None, crc.computed)
            raise _RecordError(f"checksum {shown(value)} is not a 32-bit integer")
        variant = crc.match(expected)
        if variant is None:
            self.checksum = ChecksumResult(
                ChecksumStatus.INVALID, self.line, expected, crc.computed
            )
            raise _RecordError(
                f"checksum mismatch: the file says {value}, the records give {crc.computed}"
            )
        self.checksum = ChecksumResult(
            ChecksumStatus.VALID, self.line, expected, crc.computed, variant
        )
        if variant != "spec":
            self.warn(f"#KSUMMA matches only the non-standard variant '{variant}'")

    def _finish_checksum(self) -> None:
        if self.crc is not None:
            self.checksum = ChecksumResult(
                ChecksumStatus.TRUNCATED, self.crc_open_line, None, self.crc.computed
            )
            self.error(
                f"the file is truncated: the #KSUMMA on line {self.crc_open_line} "
                "has no closing #KSUMMA",
                self.crc_open_line,
            )

    # ------------------------------------------------------------------ result

    def _sie_type(self) -> SieType:
        declared = self.header.declared_type
        if declared == 4:
            if any(label in _BALANCE_LABELS for label in self.seen):
                return SieType.TYPE_4E
            return SieType.TYPE_4I
        if declared in (2, 3):
            return SieType(str(declared))
        return SieType.TYPE_1

    def _check_conformance(self) -> None:
        sie_type = self._sie_type()
        if self.first_label != "#FLAGGA":
            self.warn("the first record is not #FLAGGA", 1)
        for label in ("#PROGRAM", "#FORMAT", "#GEN", "#FNAMN"):
            if label not in self.seen:
                self.warn(f"mandatory record {label} is missing", 1)
        if sie_type is not SieType.TYPE_4I and "#RAR" not in self.seen:
            self.warn(f"mandatory record #RAR is missing (required in type {sie_type})", 1)
        if sie_type.number < 4 and "#VER" in self.seen:
            self.warn(f"#VER is not allowed in type {sie_type} files", self.seen["#VER"])
        if self.encoding not in (CP437, "ascii"):
            self.warn(f"the file is encoded as {self.encoding}, not CP437 (#FORMAT PC8)", 1)

    def _document(self, line_count: int) -> SieDocument:
        header = replace(self.header, sie_type=self._sie_type())
        accounts = tuple(
            Account(draft.number, draft.name, draft.type, draft.unit, draft.sru)
            for draft in self.accounts.values()
        )
        return SieDocument(
            header=header,
            company=self.company,
            financial_years=tuple(self.years),
            accounts=accounts,
            dimensions=tuple(self.dimensions),
            objects=tuple(self.objects),
            balances=tuple(self.balances),
            vouchers=tuple(self.vouchers),
            unknown=tuple(self.unknown),
            encoding=self.encoding,
            checksum=self.checksum or ChecksumResult(ChecksumStatus.ABSENT),
            errors=tuple(self.errors),
            warnings=tuple(self.warnings),
            line_count=line_count,
        )


def read_sie_text(text: str, *, encoding: str = CP437) -> SieDocument:
    """Read an already decoded SIE text.

    ``encoding`` is only recorded in the document and used for the checksum
    variants; the text is not decoded again.
    """
    separator = "\n" if "\n" in text else "\r"
    return _Reader(encoding).run_texts([text], separator)


def read_sie(
    data: bytes,
    *,
    encoding: str | None = None,
    on_voucher: Callable[[Voucher], None] | None = None,
) -> SieDocument:
    """Read ``data`` as a SIE file.

    The encoding is detected (see :mod:`engine.sie.encoding`) unless given; pass
    ``encoding="cp437"`` for files known to follow the standard.  Never raises for
    bad data: problems are reported in ``errors`` and ``warnings``.  With
    ``on_voucher`` each voucher is handed to the callback as soon as it is read and
    ``document.vouchers`` stays empty (memory stays bounded on any input).
    """
    view = memoryview(data)
    return _read_chunks(
        lambda: (view[i : i + CHUNK].tobytes() for i in range(0, len(view), CHUNK)),
        encoding,
        on_voucher,
    )


def read_sie_file(
    path: str | os.PathLike[str],
    *,
    encoding: str | None = None,
    on_voucher: Callable[[Voucher], None] | None = None,
) -> SieDocument:
    """Read the SIE file at ``path``, streaming it in chunks; see :func:`read_sie`.

    Raises :class:`OSError` if the file cannot be opened (or is a directory).
    """

    def chunks() -> Iterator[bytes]:
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                yield chunk

    with open(path, "rb"):
        pass  # a missing file or a directory raises here, before any reading
    return _read_chunks(chunks, encoding, on_voucher)


def _read_chunks(
    chunks: Callable[[], Iterator[bytes]],
    encoding: str | None,
    on_voucher: Callable[[Voucher], None] | None,
) -> SieDocument:
    scan = scan_bytes(chunks())
    if scan.binary:
        return SieDocument(
            encoding=scan.encoding,
            errors=(SieError(1, NOT_SIE),),
            line_count=1,
        )
    chosen = encoding or scan.encoding
    reader = _Reader(chosen, on_voucher)
    if encoding is None and scan.bom_ignored:
        reader.warn(
            f"the file starts with a UTF-8 byte order mark but is not UTF-8; read as {chosen}",
            1,
        )
    return reader.run_texts(decode_chunks(chunks(), chosen), scan.separator)


def split_lines(texts: Iterable[str], separator: str) -> Iterator[str | None]:
    """The lines of a text given in pieces, without their separator; ``None`` for a line
    longer than :data:`MAX_LINE` characters (its text is dropped as it streams by)."""
    carry = ""
    skipping = False
    for text in texts:
        parts = (carry + text).split(separator)
        carry = parts.pop()
        for part in parts:
            if skipping:
                skipping = False  # the overlong line's last piece: already reported
                continue
            yield None if len(part) > MAX_LINE else part
        if len(carry) > MAX_LINE:
            if not skipping:
                yield None
            skipping, carry = True, ""
    if carry and not skipping:
        yield carry
    elif not carry and not skipping:
        return
