"""Splitting one SIE line into fields (spec §5.3-5.7).

Rules implemented here:

* Fields are separated by one or more spaces or tabs.  No other character is a
  separator (a no-break space is part of a field).
* Any field may be quoted with ``"``.  Inside quotes, ``\\"`` is a literal quote
  and a backslash that is *not* followed by a quote stays a literal backslash
  (``"C:\\temp"`` reads as ``C:\\temp``).  Braces inside quotes are text.
* An unquoted field runs to the next space or tab.  A field that *starts* with
  ``{`` is an object list, which runs to the matching ``}``; its members are
  quoted or unquoted values (``{1 "100" 6 "P1"}``, ``{"1" "456"}``, ``{}``,
  ``{ }``).  Inside a list an unquoted value also stops at ``}``.
* A quoted field that is still open at the end of the line runs to the end of
  the line (some programs cut long texts at a fixed width, closing quote and
  all), with a warning.  If the line ends in ``\\"`` that is read as a literal
  backslash followed by the closing quote (a text that ends in a backslash).

The result of :func:`tokenize` keeps the order of the fields; an object list is
returned as a tuple of its member strings.  The tokenizer only uses possessive
regular expressions, so a line is scanned in linear time with no backtracking.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

ObjectList = tuple[str, ...]
Field = str | ObjectList

# A quoted field is runs of ordinary characters or a backslash optionally followed
# by a quote (an escaped quote).  All quantifiers are possessive: no backtracking.
_QUOTED_BODY: Final = r'(?:[^"\\]++|\\"?+)*+'

# Top level: (open quote, body, close quote) | (open brace, list body, close brace) | bare.
# Whitespace matches no alternative, so findall skips it.
_TOP_RE: Final = re.compile(
    r'(")(' + _QUOTED_BODY + r')("?+)'
    r'|(\{)((?:[^"}]++|"' + _QUOTED_BODY + r'"?+)*+)(\}?+)'
    r'|([^ \t"{][^ \t]*+)'
)

# Inside an object list: (open quote, body, close quote) | bare | a stray '{'.
_MEMBER_RE: Final = re.compile(r'(")(' + _QUOTED_BODY + r')("?+)|([^ \t"{]++)|(\{)')

_TRAILING_ESCAPE_WARNING: Final = (
    "quoted field ends with a backslash before the closing quote; read as a literal backslash"
)


@dataclass(slots=True)
class TokenizedLine:
    """Fields of one line, plus any problems met while splitting it."""

    fields: list[Field]
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _unquote(raw: str, closed: bool, line: TokenizedLine) -> str:
    if closed:
        return raw.replace('\\"', '"')
    if raw.endswith('\\"'):
        line.warnings.append(_TRAILING_ESCAPE_WARNING)
        return raw[:-2].replace('\\"', '"') + "\\"
    line.warnings.append("quoted field is not closed; read to the end of the line")
    return raw.replace('\\"', '"')


def _object_list(body: str, line: TokenizedLine) -> ObjectList:
    """Members of an object list, given the text between its braces."""
    if '"' not in body and "{" not in body:
        return tuple(part for part in body.replace("\t", " ").split(" ") if part)
    members: list[str] = []
    for quote, quoted, close, bare, brace in _MEMBER_RE.findall(body):
        if quote:
            members.append(_unquote(quoted, close != "", line))
        elif bare:
            members.append(bare)
        elif brace:
            line.errors.append("'{' inside an object list")
    return tuple(members)


def tokenize(text: str) -> TokenizedLine:
    """Split one line (without its line break) into fields."""
    if '"' not in text and "{" not in text:
        return TokenizedLine([part for part in text.replace("\t", " ").split(" ") if part])
    line = TokenizedLine([])
    fields = line.fields
    for quote, quoted, close, _brace, body, brace_close, bare in _TOP_RE.findall(text):
        if bare:
            fields.append(bare)
        elif quote:
            fields.append(_unquote(quoted, close != "", line))
        else:
            fields.append(_object_list(body, line))
            if not brace_close:
                line.errors.append("object list is missing its closing '}'")
    return line


def field_content(value: Field) -> str:
    """The characters of a field that count for ``#KSUMMA`` (no quotes, braces or escapes)."""
    if isinstance(value, tuple):
        return "".join(value)
    return value
