"""``lastmodified`` polling with an overlap window and exact de-duplication.

Fortnox's ``lastmodified`` filter takes Swedish local wall-clock time at minute resolution
(``YYYY-MM-DD HH:MM``; the timezone is undocumented, Stockholm is the belief). The cursor is
Fortnox's own time: the ``Date`` header of its answer to the poll's first page (list items carry
no modification time of their own). Our clock is never compared with Fortnox's, so an engine
whose clock runs minutes ahead of or behind Fortnox loses nothing; only when Fortnox sends no
``Date`` does the poll fall back to our clock (logged ``fortnox.poll.no_server_time``). Minutes
are truncated and a record saved while we were polling may carry a time just before the cursor,
so each poll asks from ``cursor - overlap``. Records already seen are then dropped *exactly*:
the cursor carries the (entity key -> content fingerprint) of every record the last poll
returned, and a record is a change only if its fingerprint differs.

A record that the tolerant model cannot read either is not an error of the poll: it is handed
over as a change with ``item`` None and the ``problem`` in words, so one odd record never stops
the rest of the register.

Flow::

    batch = await poller.poll(cursor)          # cursor=None: from `initial_since`
    apply(batch.changes)                        # the caller's work
    persist(batch.next_cursor.to_json())        # only after apply succeeded
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

from engine.fortnox.errors import UnexpectedResponse
from engine.fortnox.models import FortnoxModel
from engine.fortnox.observability import log
from engine.fortnox.paging import ServedAt, iterate_raw, parse_item

if TYPE_CHECKING:
    from engine.fortnox.client import FortnoxClient

STOCKHOLM = ZoneInfo("Europe/Stockholm")
DEFAULT_OVERLAP = timedelta(minutes=10)
#: Items of a poll read between two turns of the event loop (about 4 ms of parsing).
YIELD_EVERY = 50
M = TypeVar("M", bound=FortnoxModel)


def format_lastmodified(moment: datetime, tz: ZoneInfo = STOCKHOLM) -> str:
    """``moment`` as Fortnox's ``lastmodified`` value: local wall clock, minute, rounded down."""
    if moment.tzinfo is None:
        raise ValueError("lastmodified needs an aware datetime")
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def lookback_value(since: datetime, now: datetime, tz: ZoneInfo = STOCKHOLM) -> str:
    """The ``lastmodified`` to ask for when everything after ``since`` is wanted.

    If the local clock was turned back (end of summer time) between ``since`` and ``now``,
    records saved after the change carry local times up to an hour *earlier* than ``since``'s
    local time; the lookback is moved back by the difference so they are not missed.
    """
    local_since = since.astimezone(tz)
    shift = (local_since.utcoffset() or timedelta()) - (
        now.astimezone(tz).utcoffset() or timedelta()
    )
    wall = local_since.replace(tzinfo=None)
    if shift > timedelta(0):
        wall -= shift
    return wall.strftime("%Y-%m-%d %H:%M")


def fingerprint(item: Mapping[str, Any]) -> str:
    """A stable digest of a record's content (key order and number spelling do not matter)."""
    canonical = json.dumps(item, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


class PollCursor(BaseModel):
    """Where a poll stream stands. Persist ``to_json()`` after applying a batch."""

    since: datetime
    seen: dict[str, str] = Field(default_factory=dict)

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> PollCursor:
        return cls.model_validate_json(text)


@dataclass
class Change(Generic[M]):
    key: str
    #: The record read with the tolerant model; None when even that failed (see ``problem``).
    item: M | None
    raw: dict[str, Any]
    fingerprint: str
    problem: str | None = None


@dataclass
class PollBatch(Generic[M]):
    changes: list[Change[M]]
    next_cursor: PollCursor
    fetched: int = 0
    duplicates: int = 0
    query: dict[str, str] = field(default_factory=dict)

    @property
    def items(self) -> list[M]:
        return [c.item for c in self.changes if c.item is not None]


class LastModifiedPoller(Generic[M]):
    """Polls one list endpoint by ``lastmodified`` and returns only real changes."""

    def __init__(
        self,
        client: FortnoxClient,
        path: str,
        key: str,
        model: type[M],
        entity_key: Callable[[dict[str, Any]], str],
        *,
        params: Mapping[str, str] | None = None,
        overlap: timedelta = DEFAULT_OVERLAP,
        initial_since: datetime | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        tz: ZoneInfo = STOCKHOLM,
        on_repeat: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.path = path
        self.key = key
        self.model = model
        self.entity_key = entity_key
        self.params = dict(params or {})
        self.overlap = overlap
        self.initial_since = initial_since
        self.clock = clock
        self.tz = tz
        #: Told the key of every item dropped as the overlap's duplicate. Where list items are a
        #: subset of the record, the same item again may hide a change outside the view (a
        #: customer's Type): the caller then forgets what it knew of the whole record.
        self.on_repeat = on_repeat

    async def poll(
        self,
        cursor: PollCursor | None,
        on_changes: Callable[[list[Change[M]]], Awaitable[None]] | None = None,
        chunk: int = 100,
    ) -> PollBatch[M]:
        """One poll. With ``on_changes``, the changes are handed over ``chunk`` at a time as the
        pages arrive (the caller's work overlaps the rate limiter's waits) and the batch returned
        holds none of them; the cursor is still only for after the last chunk was applied.

        Every ``YIELD_EVERY`` items the event loop gets a turn: the pages read ahead are sent
        when the limiter lets them go, not when a page's worth of parsing is over (the limiter
        counts from each actual send, so a late send would push every later one back).

        The next cursor's ``since`` is Fortnox's clock at its answer to the first page."""
        started = self.clock()
        served = ServedAt()
        query = dict(self.params)
        seen: Mapping[str, str] = {}
        if cursor is not None:
            query["lastmodified"] = lookback_value(cursor.since - self.overlap, started, self.tz)
            seen = cursor.seen
        elif self.initial_since is not None:
            query["lastmodified"] = lookback_value(self.initial_since, started, self.tz)
        changes: list[Change[M]] = []
        returned: dict[str, str] = {}
        fetched = duplicates = handed = 0
        async for raw in iterate_raw(self.client, self.path, self.key, query, served=served):
            fetched += 1
            if fetched % YIELD_EVERY == 0:
                await asyncio.sleep(0)
            key = self.entity_key(raw)
            digest = fingerprint(raw)
            if returned.get(key) == digest or seen.get(key) == digest:
                if self.on_repeat is not None:
                    self.on_repeat(key)
                duplicates += 1
                returned[key] = digest
                continue
            returned[key] = digest
            item: M | None = None
            problem: str | None = None
            try:
                item = parse_item(self.model, raw, self.client.tenant, self.path)
            except UnexpectedResponse as unreadable:
                problem = unreadable.message
                log.warning(
                    "fortnox.poll.record_unreadable",
                    tenant=self.client.tenant,
                    resource=self.path,
                    key=key,
                    problem=problem,
                )
            changes.append(Change(key=key, item=item, raw=raw, fingerprint=digest, problem=problem))
            if on_changes is not None and len(changes) >= chunk:
                handed += len(changes)
                await on_changes(changes)
                changes = []
        if on_changes is not None and changes:
            handed += len(changes)
            await on_changes(changes)
            changes = []
        since = served.first
        if since is None:
            since = started
            log.warning(
                "fortnox.poll.no_server_time",
                tenant=self.client.tenant,
                resource=self.path,
                action="cursor_from_own_clock",
            )
        # Everything this poll returned may come back in the next one's overlap.
        next_cursor = PollCursor(since=since, seen=returned)
        log.info(
            "fortnox.poll",
            tenant=self.client.tenant,
            resource=self.path,
            lastmodified=query.get("lastmodified"),
            fetched=fetched,
            changes=handed + len(changes),
            duplicates=duplicates,
            since=since.isoformat(),
            skew_seconds=round((started - since).total_seconds(), 1),
        )
        return PollBatch(
            changes=changes,
            next_cursor=next_cursor,
            fetched=fetched,
            duplicates=duplicates,
            query=query,
        )
