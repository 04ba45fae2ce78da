"""List requests as Fortnox answers them: parameters, paging, ``lastmodified``, search, JSON.

* ``limit`` (default 100, max 500), ``page`` (1-based), ``offset`` (skip N before paging);
* ``lastmodified=YYYY-MM-DD[ HH:MM[:SS]]`` in Swedish local time, minute resolution: records
  modified at or after the start of that minute;
* ``sortby`` / ``sortorder=ascending|descending`` per resource;
* ``filter=...`` per resource; an unknown value gives 400 ``2000587``;
* search parameters match a case-insensitive substring (``ILIKE '%value%'``);
* any other parameter gives 400 ``2000588`` ("Ogiltig parameter i anropet.");
* the body is ``{"MetaInformation": {"@TotalResources", "@TotalPages", "@CurrentPage"},
  "<Plural>": [...]}``; an empty result has ``@TotalPages`` 0 (recorded traffic).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from starlette.responses import Response

from sandbox.fortnox import errors as E
from sandbox.fortnox.clock import wall_of
from sandbox.fortnox.collection import Record

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
PAGING = frozenset({"limit", "page", "offset"})
SORTING = frozenset({"sortby", "sortorder"})

_LASTMODIFIED = re.compile(
    r"^(?P<d>\d{4}-\d{2}-\d{2})(?:[ T](?P<h>\d{1,2}):(?P<m>\d{2})(?::(?P<s>\d{2}(?:\.\d+)?))?)?$"
)


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(dumps(obj), status_code=status, media_type="application/json")


def lowered_params(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Query parameters with lower-case names (the last of repeated ones wins)."""
    return {k.lower(): v for k, v in items}


def parse_lastmodified(value: str) -> float:
    """The start of the given minute as Swedish wall-clock seconds (see ``clock.wall_seconds``)."""
    m = _LASTMODIFIED.match(value.strip())
    if not m:
        raise E.INVALID_PARAMETER()
    try:
        day = datetime.fromisoformat(m.group("d"))
        when = day.replace(hour=int(m.group("h") or 0), minute=int(m.group("m") or 0))
    except ValueError:
        raise E.INVALID_PARAMETER() from None
    return wall_of(when)


@dataclass(frozen=True)
class ListQuery:
    """A parsed list request."""

    limit: int = DEFAULT_LIMIT
    page: int = 1
    offset: int = 0
    since: float | None = None
    sortby: str | None = None
    descending: bool = False
    filter: str | None = None
    search: tuple[tuple[str, str], ...] = ()
    other: Mapping[str, str] = field(default_factory=dict)

    def cache_key(self) -> Hashable:
        return (self.sortby, self.filter, self.search, tuple(sorted(self.other.items())))


def parse_list_query(
    params: Mapping[str, str],
    *,
    search: Iterable[str] = (),
    sortby: Iterable[str] = (),
    filters: Iterable[str] = (),
    lastmodified: bool = True,
    extra: Iterable[str] = (),
) -> ListQuery:
    search_set, sort_set, filter_set = set(search), set(sortby), set(filters)
    allowed = set(PAGING) | set(extra) | search_set
    if sort_set:
        allowed |= SORTING
    if filter_set:
        allowed.add("filter")
    if lastmodified:
        allowed.add("lastmodified")
    for name in params:
        if name not in allowed:
            raise E.INVALID_PARAMETER()
    limit = _int_param(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    page = _int_param(params, "page", 1, 1, 10**9)
    offset = _int_param(params, "offset", 0, 0, 10**12)
    since = parse_lastmodified(params["lastmodified"]) if "lastmodified" in params else None
    sort = params.get("sortby")
    if sort is not None:
        sort = sort.lower()
        if sort not in sort_set:
            raise E.INVALID_PARAMETER()
    order = params.get("sortorder", "ascending").lower()
    if order not in ("ascending", "descending"):
        raise E.INVALID_PARAMETER()
    flt = params.get("filter")
    if flt is not None:
        flt = flt.lower()
        if flt not in filter_set:
            raise E.INVALID_FILTER()
    found = tuple((name, params[name].lower()) for name in sorted(search_set) if name in params)
    other = {k: v for k, v in params.items() if k in set(extra)}
    return ListQuery(limit, page, offset, since, sort, order == "descending", flt, found, other)


def _int_param(params: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise E.INVALID_PARAMETER() from None
    if not lo <= value <= hi:
        raise E.INVALID_PARAMETER()
    return value


def contains(value: Any, needle: str) -> bool:
    """Fortnox's ``ILIKE '%needle%'``."""
    if value is None:
        return needle == ""
    return needle in str(value).lower()


def search_predicate(
    query: ListQuery, fields: Mapping[str, Callable[[Record], Any]]
) -> Callable[[Record], bool] | None:
    """A predicate for the search parameters present in ``query`` (None: no search)."""
    if not query.search:
        return None
    getters = [(fields[name], needle) for name, needle in query.search]

    def match(rec: Record) -> bool:
        return all(contains(get(rec), needle) for get, needle in getters)

    return match


def both(
    a: Callable[[Record], bool] | None, b: Callable[[Record], bool] | None
) -> Callable[[Record], bool] | None:
    if a is None:
        return b
    if b is None:
        return a
    return lambda rec: a(rec) and b(rec)


@dataclass(frozen=True)
class Page:
    keys: list[str]
    total: int
    pages: int
    current: int

    def meta(self) -> dict[str, int]:
        return {
            "@TotalResources": self.total,
            "@TotalPages": self.pages,
            "@CurrentPage": self.current,
        }


def paginate(keys: list[str], query: ListQuery) -> Page:
    total = len(keys)
    start = query.offset + (query.page - 1) * query.limit
    pages = math.ceil(max(total - query.offset, 0) / query.limit)
    return Page(keys[start : start + query.limit], total, pages, query.page)


def list_response(wrapper: str, page: Page, items: Iterable[bytes]) -> Response:
    body = b"".join(
        (
            b'{"MetaInformation":',
            dumps(page.meta()),
            b',"',
            wrapper.encode(),
            b'":[',
            b",".join(items),
            b"]}",
        )
    )
    return Response(body, media_type="application/json")


def plain_list_response(wrapper: str, rows: list[dict[str, Any]]) -> Response:
    """A small, unpaged list with Fortnox's MetaInformation."""
    meta = {"@TotalResources": len(rows), "@TotalPages": 1 if rows else 0, "@CurrentPage": 1}
    return json_response({"MetaInformation": meta, wrapper: rows})


def num_text(value: float | int) -> str:
    """A number as Fortnox writes it in text: ``25``, ``-8``, ``1.123``."""
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def numbers_as_text(obj: Any) -> Any:
    """Every JSON number in ``obj`` as a string (booleans and nulls untouched)."""
    if isinstance(obj, bool) or obj is None:
        return obj
    if isinstance(obj, int | float):
        return num_text(obj)
    if isinstance(obj, dict):
        return {k: numbers_as_text(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [numbers_as_text(v) for v in obj]
    return obj
