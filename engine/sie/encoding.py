"""Character encoding of SIE files: detection and decoding.

The SIE 4B standard (§5.8) only allows IBM PC-8 / code page 437 (``#FORMAT PC8``).
Files from the wild are also written in UTF-8 (with or without a byte order mark)
and in Latin-1 / Windows-1252, so the reader detects the encoding before it
tokenizes anything.  The rule, applied in this order:

1. A UTF-8 byte order mark (EF BB BF) means ``utf-8-sig`` when the rest of the
   input is strict UTF-8; when it is not (a tool put the mark in front of CP437 or
   Latin-1 bytes), the mark is ignored and step 4 decides, and the reader warns.
   A UTF-16 byte order mark (FF FE or FE FF) means ``utf-16``.
2. Pure 7-bit ASCII is reported as ``cp437`` (the standard's encoding, and the
   two are identical on ASCII).
3. Input that contains non-ASCII bytes and decodes as strict UTF-8 is ``utf-8``.
   CP437 or Latin-1 Swedish text practically never forms valid multi-byte UTF-8
   sequences by accident.
4. Otherwise the Swedish and other common West European letters decide.  Bytes
   that are letters in CP437 (å 86, ä 84, ö 94, Å 8F, Ä 8E, Ö 99, é 82, É 90,
   ü 81, Ü 9A) are counted against bytes that are the same letters in Latin-1
   (E5, E4, F6, C5, C4, D6, E9, C9, FC, DC).  In Latin-1 text the CP437 letter
   bytes are C1 control codes and in CP437 text the Latin-1 letter bytes are
   box-drawing symbols, so real text scores heavily on one side.  When the
   Latin-1 count is strictly larger the file is ``latin-1``, or ``cp1252`` when
   it contains bytes in 80-9F (the Windows-1252 punctuation and € range).  A tie
   goes to ``cp437``.

Decoding never fails: CP437 and Latin-1 map every byte, the Windows-1252 holes
(81, 8D, 8F, 90, 9D) fall back to their Latin-1 code points, and UTF-16 input
with an odd trailing byte uses the replacement character.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

CP437: Final = "cp437"
UTF8: Final = "utf-8"
UTF8_SIG: Final = "utf-8-sig"
UTF16: Final = "utf-16"
LATIN1: Final = "latin-1"
CP1252: Final = "cp1252"

ENCODINGS: Final = (CP437, UTF8, UTF8_SIG, UTF16, LATIN1, CP1252)
BOM_UTF8: Final = b"\xef\xbb\xbf"

_C1_RANGE: Final = re.compile(rb"[\x80-\x9f]")
_CP437_LETTER_BYTES: Final = frozenset((0x86, 0x84, 0x94, 0x8F, 0x8E, 0x99, 0x82, 0x90, 0x81, 0x9A))
_LATIN1_LETTER_BYTES: Final = frozenset(
    (0xE5, 0xE4, 0xF6, 0xC5, 0xC4, 0xD6, 0xE9, 0xC9, 0xFC, 0xDC)
)


def _cp1252_table() -> dict[int, str]:
    """Translation from Latin-1 code points 80-9F to their Windows-1252 characters."""
    table: dict[int, str] = {}
    for byte in range(0x80, 0xA0):
        try:
            table[byte] = bytes((byte,)).decode(CP1252)
        except UnicodeDecodeError:
            continue  # undefined in Windows-1252: keep the Latin-1 code point
    return table


_CP1252_FROM_LATIN1: Final = _cp1252_table()


def _letter_table() -> bytes:
    """Every byte to ``.``, except CP437's Swedish letters to ``C`` and Latin-1's to ``L``."""
    table = bytearray(b"." * 256)
    for value in _CP437_LETTER_BYTES:
        table[value] = ord("C")
    for value in _LATIN1_LETTER_BYTES:
        table[value] = ord("L")
    return bytes(table)


_LETTERS: Final = _letter_table()
_NOT_LETTERS: Final = bytes(
    b for b in range(256) if b not in _CP437_LETTER_BYTES | _LATIN1_LETTER_BYTES
)


def _letter_scores(data: bytes) -> tuple[int, int]:
    """The CP437 and the Latin-1 letter counts of ``data``: one pass keeps the letters only,
    marked ``C`` or ``L`` (letters are few, so counting them is cheap)."""
    marked = data.translate(_LETTERS, _NOT_LETTERS)
    return marked.count(b"C"), marked.count(b"L")


CHUNK: Final = 1 << 18
"""Files are detected and decoded in pieces of this many bytes."""

_SNIFF: Final = 1 << 16
# Control bytes no text file holds (tab, line feed, form feed, carriage return and the DOS
# end-of-file mark 1A are allowed).
_CONTROL_BYTES: Final = bytes(b for b in range(32) if b not in (9, 10, 12, 13, 26))
_BINARY_SHARE: Final = 0.02


@dataclass(frozen=True, slots=True)
class ByteScan:
    """What one pass over a file's bytes found."""

    encoding: str
    #: ``"\n"`` when the file has any line feed, else ``"\r"`` (old Mac line ends).
    separator: str
    #: Why the input is binary data and not text, or ``None``.
    binary: str | None = None
    #: A UTF-8 byte order mark stood in front of bytes that are not UTF-8.
    bom_ignored: bool = False


def _binary_reason(head: bytes) -> str | None:
    if b"\x00" in head:
        return "it holds NUL bytes"
    controls = len(head) - len(head.translate(None, _CONTROL_BYTES))
    if head and controls / len(head) > _BINARY_SHARE:
        return f"{controls} control bytes in its first {len(head)} bytes"
    return None


def scan_bytes(chunks: Iterable[bytes]) -> ByteScan:
    """Detect the encoding of a file given in pieces, in one pass and bounded memory.

    See the module documentation for the rule; binary data (NUL bytes, or more than 2% control
    bytes at the start) is reported so that the caller can refuse it as one error.
    """
    first = True
    encoding: str | None = None
    bom = False
    ascii_only = True
    utf8 = codecs.getincrementaldecoder(UTF8)()
    utf8_valid = True
    cp437_score = latin1_score = 0
    c1 = False
    newline = False
    binary: str | None = None
    for chunk in chunks:
        if first:
            first = False
            if chunk.startswith((b"\xff\xfe", b"\xfe\xff")):
                encoding = UTF16
            else:
                binary = _binary_reason(chunk[:_SNIFF])
            if chunk.startswith(BOM_UTF8):
                bom = True
                chunk = chunk[len(BOM_UTF8) :]
        newline = newline or (b"\n" in chunk)
        if encoding is not None:
            continue
        if ascii_only and chunk.isascii():
            continue
        ascii_only = False
        if utf8_valid:
            try:
                utf8.decode(chunk)
            except UnicodeDecodeError:
                utf8_valid = False
        cp437_letters, latin1_letters = _letter_scores(chunk)
        cp437_score += cp437_letters
        latin1_score += latin1_letters
        c1 = c1 or _C1_RANGE.search(chunk) is not None
    separator = "\n" if newline else "\r"
    if encoding is not None:
        return ByteScan(encoding, separator)
    if utf8_valid and not ascii_only:
        try:
            utf8.decode(b"", final=True)
        except UnicodeDecodeError:
            utf8_valid = False
    if bom and (utf8_valid or ascii_only):
        return ByteScan(UTF8_SIG, separator, binary)
    if ascii_only:
        return ByteScan(CP437, separator, binary)
    if utf8_valid:
        return ByteScan(UTF8, separator, binary)
    legacy = CP437
    if latin1_score > cp437_score:
        legacy = CP1252 if c1 else LATIN1
    return ByteScan(legacy, separator, binary, bom_ignored=bom)


def detect_encoding(data: bytes) -> str:
    """Return the name of the encoding ``data`` is most likely written in.

    The result is one of ``cp437``, ``utf-8``, ``utf-8-sig``, ``utf-16``,
    ``latin-1`` and ``cp1252``; see the module documentation for the rule.
    """
    return scan_bytes([data]).encoding


def decode_chunks(chunks: Iterable[bytes], encoding: str) -> Iterator[str]:
    """Decode a file given in pieces (see :func:`decode`), piece by piece."""
    first = True
    if encoding == CP1252:
        for chunk in chunks:
            if first and chunk.startswith(BOM_UTF8):
                chunk = chunk[len(BOM_UTF8) :]
            first = False
            yield chunk.decode(LATIN1).translate(_CP1252_FROM_LATIN1)
        return
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    for chunk in chunks:
        if first:
            first = False
            if encoding in (CP437, LATIN1) and chunk.startswith(BOM_UTF8):
                chunk = chunk[len(BOM_UTF8) :]
            text = decoder.decode(chunk)
            yield text[1:] if encoding == UTF8 and text.startswith("\ufeff") else text
        else:
            yield decoder.decode(chunk)
    tail = decoder.decode(b"", final=True)
    if tail:
        yield tail


def decode(data: bytes, encoding: str) -> str:
    """Decode ``data`` as ``encoding``; undecodable bytes become U+FFFD.

    Never raises for the names :func:`detect_encoding` returns (other codec names
    are passed to Python; an unknown one raises :class:`LookupError`).  A leading
    byte order mark is removed, also in front of legacy bytes.
    """
    if encoding in (CP437, LATIN1, CP1252) and data.startswith(BOM_UTF8):
        data = data[len(BOM_UTF8) :]
    if encoding == CP1252:
        return data.decode(LATIN1).translate(_CP1252_FROM_LATIN1)
    if encoding == UTF16:
        return data.decode(UTF16, errors="replace")
    if encoding == UTF8:
        text = data.decode(UTF8, errors="replace")
        return text[1:] if text.startswith("\ufeff") else text
    return data.decode(encoding, errors="replace")


def decode_sie_bytes(data: bytes) -> tuple[str, str]:
    """Detect the encoding of ``data`` and decode it; returns ``(text, encoding)``."""
    encoding = detect_encoding(data)
    return decode(data, encoding), encoding


def encode_cp437(text: str) -> bytes:
    """Encode ``text`` strictly as CP437, replacing unmappable characters (such as €) by '?'."""
    return text.encode(CP437, errors="replace")
