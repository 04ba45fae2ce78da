"""Field types shared by the messages."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, Field, PlainSerializer, StringConstraints

TENANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

TenantId = Annotated[str, StringConstraints(pattern=TENANT_PATTERN)]
#: Identifiers chosen by a till or by Fortnox: printable, no control characters, bounded.
Ident = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")
]
ShortText = Annotated[
    str, StringConstraints(max_length=200, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]*$")
]
LongText = Annotated[
    str, StringConstraints(max_length=1000, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]*$")
]
ArticleNumber = Annotated[
    str, StringConstraints(min_length=1, max_length=50, pattern=r"^[A-Za-z0-9_+/.\-]+$")
]
CustomerNumber = Annotated[
    str, StringConstraints(min_length=1, max_length=50, pattern=r"^[A-Za-z0-9_+/\-]+$")
]
Email = Annotated[
    str,
    StringConstraints(
        max_length=200, pattern=r"^[^@\s\x00-\x1f]+@[^@\s\x00-\x1f]+\.[^@\s\x00-\x1f]+$"
    ),
]
Ean = Annotated[str, StringConstraints(min_length=1, max_length=30, pattern=r"^[0-9A-Za-z]+$")]
CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
AccountNumber = Annotated[int, Field(ge=1000, le=9999)]


def _two_decimals(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("amount must be a finite number")
    if value.as_tuple().exponent < -2:  # type: ignore[operator]
        raise ValueError("amount has more than 2 decimals")
    if abs(value) >= Decimal("1e15"):
        raise ValueError("amount is out of range")
    return value


def _finite(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("quantity must be a finite number")
    if abs(value) >= Decimal("1e14"):
        raise ValueError("quantity is out of range")
    return value


#: Money: a decimal with at most two decimals; sent as a string to keep it exact.
Money = Annotated[
    Decimal,
    AfterValidator(_two_decimals),
    PlainSerializer(lambda v: format(v, "f"), return_type=str, when_used="json"),
]
#: Stock quantities: decimals (weighed goods), sent as strings.
Quantity = Annotated[
    Decimal,
    AfterValidator(_finite),
    PlainSerializer(lambda v: format(v.normalize(), "f"), return_type=str, when_used="json"),
]

#: The redelivery window (docs/contract.md, *Redelivery window*): a till event whose
#: ``occurred_at`` is older than this is refused at ingest, and what Kassasync remembers to
#: recognise a resend (message ids, stock movement and count ids) is forgotten after it.
REDELIVERY_WINDOW_DAYS = 3

#: What a number sent to Kassasync may look like: at most this many significant digits...
MAX_DIGITS = 20
#: ... and at most this many decimals once trailing zeros are dropped (``"1.50"`` is 1.5).
MAX_DECIMALS = 6


class OversizedNumber:
    """A JSON number with more than :data:`MAX_DIGITS` significant digits or an exponent out of
    range, kept as its text. The ingest API's JSON parser returns it instead of converting the
    number (a 5,000-digit integer costs seconds and raises in ``int()``); every field type
    refuses it, so the problem names the field."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        shown = (
            self.text if len(self.text) <= 40 else f"{self.text[:20]}...({len(self.text)} chars)"
        )
        return f"OversizedNumber({shown})"


def bounded_decimal(value: Decimal) -> Decimal:
    """``value`` if it is finite, has at most :data:`MAX_DIGITS` significant digits and at most
    :data:`MAX_DECIMALS` decimals; raises ValueError otherwise. Checked before anything formats
    the number: ``"1e-999999"`` written out in full is a megabyte."""
    if not value.is_finite():
        raise ValueError("must be a finite number")
    digits = value.as_tuple().digits
    if len(digits) > MAX_DIGITS:
        raise ValueError(f"has more than {MAX_DIGITS} significant digits")
    if value.is_zero():
        return Decimal(0)  # "0E+999999" is zero too, and is stored as "0"
    # At most MAX_DIGITS digits, so normalize() (28 digits of precision) cannot round.
    exponent = value.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    if exponent < -MAX_DECIMALS:
        raise ValueError(f"has more than {MAX_DECIMALS} decimals")
    if value.adjusted() >= MAX_DIGITS:
        raise ValueError(f"has more than {MAX_DIGITS} digits before the decimal point")
    return value


VatRate = Annotated[Decimal, AfterValidator(bounded_decimal), Field(ge=0, le=100)]
#: A percentage (a discount): 0 to 100, bounded like every decimal.
Percent = Annotated[Decimal, AfterValidator(bounded_decimal), Field(ge=0, le=100)]
#: Stock quantities a till sends: a :data:`Quantity` with the door's bounds on digits.
TillQuantity = Annotated[
    Decimal,
    AfterValidator(bounded_decimal),
    AfterValidator(_finite),
    PlainSerializer(lambda v: format(v.normalize(), "f"), return_type=str, when_used="json"),
]

#: The years a till's dates and times may fall in. Outside them a value is a till's bug (year 1
#: is what an unset date turns into), and converting it to UTC or adding a flush window to it
#: can overflow.
FIRST_YEAR = 2000
LAST_YEAR = 2100


def _in_years(year: int) -> None:
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise ValueError(f"must be in the years {FIRST_YEAR} to {LAST_YEAR} (it is year {year})")


def _sane_date(value: dt.date) -> dt.date:
    _in_years(value.year)
    return value


def _sane_time(value: dt.datetime) -> dt.datetime:
    _in_years(value.year)
    return value


#: A date a till sends (invoice, business, transaction dates).
TillDate = Annotated[dt.date, AfterValidator(_sane_date)]
#: A time a till sends: with a time zone, in the years above.
TillTime = Annotated[AwareDatetime, AfterValidator(_sane_time)]
#: A count or serial number a till sends (Z-report number, receipts): fits every store.
TillCount = Annotated[int, Field(ge=0, le=10**12)]
