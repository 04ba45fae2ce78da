"""The till's movement and count ids the stock reconciler has applied, kept through the
redelivery window (``docs/contract.md``) so that one movement sent twice is applied once.

The ids of one day (the day of the message that brought them, so a replay keeps and forgets the
same ids at the same message) are spread over :data:`BUCKETS` records by a hash of the id: a
record holds a few hundred ids of a busy shop, not one row each (the per-row cost of the store
was most of a shop's state once the window was full: ``docs/performance.md``). A lookup reads the
id's bucket of each kept day; on the first id of a later day, the days older than the window
are forgotten whole, without reading an id.

Records:

* ``stock.mvids`` and ``stock.cntids``, key ``<day>/<bucket>``: ``{"ids": {id: [article,
  value]}}`` (the movement's delta or the count's quantity, as text; ``None`` for an id kept
  before values were);
* ``stock.ids`` ``last``: ``{"day": <the latest day>, "days": [<the kept days>]}``.

Ids kept one record each (``stock.mv``, ``stock.count``: before this layout) are moved into the
buckets on the first id a tenant receives after the upgrade.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from reconcilers.context import Ctx
from reconcilers.state import Record
from topics.common import REDELIVERY_WINDOW_DAYS

MOVEMENT_IDS = "stock.mvids"
COUNT_IDS = "stock.cntids"
KINDS = (MOVEMENT_IDS, COUNT_IDS)
#: The record of the kept days.
DAYS = "stock.ids"
DAYS_KEY = "last"
#: A day's ids are spread over this many records.
BUCKETS = 16
#: The layout before this one: one record per id, ``{"article", "delta"|"quantity", "on"}``.
LEGACY = {MOVEMENT_IDS: ("stock.mv", "delta"), COUNT_IDS: ("stock.count", "quantity")}

Get = Callable[[str, str], Record | None]


@dataclass(frozen=True, slots=True)
class Known:
    """An id applied before: the article and value it was applied with (``None``: kept before
    values were, compared by article only)."""

    article: str
    value: str | None


def _bucket(ident: str) -> str:
    """The part of a record's key after the day: which of the day's records holds ``ident``."""
    return f"/{zlib.crc32(ident.encode()) % BUCKETS:02d}"


def bucket_key(day: str, ident: str) -> str:
    """The key of the record that holds ``ident`` among the ids of ``day``."""
    return day + _bucket(ident)


def known(get: Get, kind: str, ident: str) -> Known | None:
    """``ident`` of ``kind`` (:data:`MOVEMENT_IDS` or :data:`COUNT_IDS`) if it was applied within
    the kept days. ``get`` reads one tenant's records (a reconciler's ``ctx.txn.get``, or a
    store's, for tests and operators)."""
    record = get(DAYS, DAYS_KEY)
    if record is None:
        return None
    suffix = _bucket(ident)
    for day in record.get("days", ()):
        bucket = get(kind, day + suffix)
        if bucket is None:
            continue
        found = bucket["ids"].get(ident)
        if found is not None:
            article, value = found
            return Known(str(article), None if value is None else str(value))
    return None


def recall(ctx: Ctx, kind: str, ident: str) -> Known | None:
    """:func:`known` for the message being handled, ids kept the old way moved first."""
    _upgrade(ctx)
    return known(ctx.txn.get, kind, ident)


def remember(ctx: Ctx, kind: str, ident: str, article: str, value: str) -> None:
    """Keep ``ident`` (not :func:`recall`-ed: a new one) under the day of the message being
    handled; on the first id of a later day, forget the days older than the redelivery window:
    a resend that old is refused at ingest, so nothing can ask for them."""
    get = ctx.txn.get
    day = ctx.now.date()
    on = day.isoformat()
    key = bucket_key(on, ident)
    bucket = get(kind, key)
    ids = {} if bucket is None else dict(bucket["ids"])
    ids[ident] = [article, value]
    ctx.txn.put(kind, key, {"ids": ids})
    if bucket is not None:  # the day has ids already: it is kept
        return
    record = get(DAYS, DAYS_KEY)
    days = [] if record is None else list(record["days"])
    if on in days:
        return
    latest = max(days) if days else None
    days.append(on)
    if latest is not None and on < latest:  # an older day's message, kept with the others
        ctx.txn.put(DAYS, DAYS_KEY, {"day": latest, "days": sorted(days)})
        return
    cutoff = (day - dt.timedelta(days=REDELIVERY_WINDOW_DAYS + 1)).isoformat()
    old = [d for d in days if d < cutoff]
    forgotten = sum(_forget_day(ctx, d) for d in old)
    ctx.txn.put(DAYS, DAYS_KEY, {"day": on, "days": sorted(d for d in days if d >= cutoff)})
    if old:
        ctx.note("stock.ids.forgotten", before=cutoff, days=len(old), ids=forgotten)


def _forget_day(ctx: Ctx, day: str) -> int:
    """Delete the records of ``day``'s ids; how many ids they held."""
    forgotten = 0
    for kind in KINDS:
        for bucket in range(BUCKETS):
            key = f"{day}/{bucket:02d}"
            record = ctx.txn.get(kind, key)
            if record is not None:
                forgotten += len(record["ids"])
                ctx.txn.delete(kind, key)
    return forgotten


def _upgrade(ctx: Ctx) -> None:
    """Move ids kept one record each (the layout before this one) into the buckets, once per
    tenant: when the kept days are not on record yet."""
    record = ctx.txn.get(DAYS, DAYS_KEY)
    if record is not None and "days" in record:
        return
    today = ctx.now.date().isoformat()
    days: set[str] = set()
    buckets: dict[tuple[str, str], dict[str, list[str | None]]] = {}
    moved = 0
    for kind, (legacy, field) in LEGACY.items():
        for ident, old in ctx.txn.scan(legacy):
            day = str(old.get("on") or today)  # kept before ids carried a day: from today
            value = old.get(field)
            key = bucket_key(day, ident)
            ids = buckets.get((kind, key))
            if ids is None:
                current = ctx.txn.get(kind, key)
                ids = buckets[(kind, key)] = {} if current is None else dict(current["ids"])
            ids[ident] = [str(old.get("article")), None if value is None else str(value)]
            days.add(day)
            ctx.txn.delete(legacy, ident)
            moved += 1
    for (kind, key), ids in buckets.items():
        ctx.txn.put(kind, key, {"ids": ids})
    latest = max(days) if days else (str(record["day"]) if record is not None else today)
    ctx.txn.put(DAYS, DAYS_KEY, {"day": latest, "days": sorted(days)})
    if moved:
        ctx.note("stock.ids.upgraded", ids=moved, days=len(days))
