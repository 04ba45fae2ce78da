"""``#KSUMMA``: the optional CRC-32 checksum of a SIE file (spec §10).

Layout: ``#FLAGGA 0``, then ``#KSUMMA`` with no value, then the records, and
last ``#KSUMMA <value>``.  The checksum is the standard reflected CRC-32
(polynomial EDB88320, preset FFFFFFFF, inverted at the end), i.e.
:func:`zlib.crc32`, over the records after the opening ``#KSUMMA`` up to but not
including the closing one.  For each record it covers the label (with its
``#``) followed by the contents of every field, as CP437 bytes.  Left out are the
spaces and tabs between fields, the quotes that delimit a field, the braces of an
object list and of a row block, and the backslash of an escaped quote.  Spaces
*inside* a quoted field are kept: ``#KONTO 1915 "Kassa \\"special\\""`` contributes
the bytes ``#KONTO1915Kassa "special"``.

Readers accept the value written signed or unsigned, and also the variant some
programs compute without the ``#`` of each label.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from engine.sie.encoding import CP437
from engine.sie.tokens import Field, field_content

_MASK: Final = 0xFFFFFFFF
_SOURCE_VARIANT_ENCODINGS: Final = {"utf-8": "utf-8", "utf-8-sig": "utf-8", "latin-1": "latin-1"}


def _without_hash(label: str) -> str:
    return label[1:] if label.startswith("#") else label


def record_bytes(
    label: str, fields: Sequence[Field], *, with_hash: bool = True, encoding: str = CP437
) -> bytes:
    """The bytes one record contributes to the checksum."""
    name = label if with_hash else _without_hash(label)
    text = name + "".join(field_content(value) for value in fields)
    return text.encode(encoding, errors="replace")


def checksum(records: Iterable[tuple[str, Sequence[Field]]], *, with_hash: bool = True) -> int:
    """CRC-32 (unsigned) over ``(label, fields)`` records, per spec §10.14."""
    crc = 0
    for label, fields in records:
        crc = zlib.crc32(record_bytes(label, fields, with_hash=with_hash), crc)
    return crc & _MASK


def parse_checksum_value(text: str) -> int | None:
    """The unsigned CRC a ``#KSUMMA`` value denotes, or ``None`` if it is not one.

    Both the unsigned (0 .. 2**32-1) and the signed (-2**31 .. 2**31-1) decimal
    forms are accepted.
    """
    body = text[1:] if text[:1] in "+-" else text
    if not body.isascii() or not body.isdigit():
        return None
    value = int(text)
    if -(2**31) <= value < 2**32:
        return value & _MASK
    return None


class ChecksumStatus(StrEnum):
    """Outcome of ``#KSUMMA`` verification."""

    ABSENT = "absent"
    VALID = "valid"
    INVALID = "invalid"
    TRUNCATED = "truncated"


@dataclass(frozen=True, slots=True)
class ChecksumResult:
    """What the reader found out about a file's ``#KSUMMA``.

    ``expected`` is the value written in the file and ``computed`` the CRC the
    reader computed by the spec rule (with ``#``, CP437 bytes), both unsigned.
    ``variant`` names the rule that matched for a valid checksum: ``spec``,
    ``no-hash`` (labels without ``#``), or one of those with ``/<encoding>`` when
    the file's own non-CP437 bytes matched.
    """

    status: ChecksumStatus
    line: int = 0
    expected: int | None = None
    computed: int | None = None
    variant: str | None = None


class ChecksumAccumulator:
    """Running CRCs over the records of a file, for every accepted variant.

    The variants are: labels with or without ``#``, crossed with CP437 bytes and,
    for files that were not CP437, the file's own bytes (UTF-8 or Latin-1).
    """

    __slots__ = ("_crcs",)

    def __init__(self, source_encoding: str = CP437) -> None:
        encodings = [CP437]
        own = _SOURCE_VARIANT_ENCODINGS.get(source_encoding)
        if source_encoding == "cp1252":
            own = "cp1252"
        if own is not None:
            encodings.append(own)
        self._crcs: dict[tuple[bool, str], int] = {
            (with_hash, encoding): 0 for encoding in encodings for with_hash in (True, False)
        }

    def add(self, label: str, fields: Sequence[Field]) -> None:
        """Add one record."""
        contents = "".join(field_content(value) for value in fields)
        bare = _without_hash(label)
        for key, crc in self._crcs.items():
            with_hash, encoding = key
            text = (label if with_hash else bare) + contents
            self._crcs[key] = zlib.crc32(text.encode(encoding, errors="replace"), crc)

    @property
    def computed(self) -> int:
        """The CRC by the spec rule (labels with ``#``, CP437 bytes)."""
        return self._crcs[(True, CP437)] & _MASK

    def match(self, expected: int) -> str | None:
        """The name of the variant whose CRC equals ``expected`` (unsigned), if any."""
        for (with_hash, encoding), crc in self._crcs.items():
            if crc & _MASK == expected:
                name = "spec" if with_hash else "no-hash"
                return name if encoding == CP437 else f"{name}/{encoding}"
        return None
