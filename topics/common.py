"""Field types shared by the messages."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, Field, PlainSerializer, StringConstraints

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
VatRate = Annotated[Decimal, Field(ge=0, le=100)]
