"""Fortnox's WebSocket topics feed (``wss://ws.fortnox.se/topics-v1``), in memory.

Protocol (reference/fortnox-api.md §5.9): the client sends JSON commands
``add-tenants-v1`` (client secret + access tokens), ``add-topics-v1`` (topics, each with an
optional offset to replay from), ``subscribe-v1``; events then stream as
``{"topic","offset","type","tenantId","entityId","timestamp"}`` (voucher events add ``year`` and
``series``). Offsets are unique and increasing per topic; a given offset replays from that event
(inclusive, so resuming from the last processed offset repeats it: delivery is at-least-once,
deduplicate on ``(topic, offset)``); events are kept 14 days of business time; no offset means
"from now". The ``feed-duplicates`` fault sends some events twice.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from sandbox.fortnox.clock import BusinessClock, iso_millis

if TYPE_CHECKING:
    from sandbox.fortnox.faults import Faults

#: The 19 topics Fortnox publishes (zenta-ab/fortnox.NET ``WebSocketTopic.cs``).
TOPICS: frozenset[str] = frozenset(
    {
        "invoices",
        "customers",
        "orders",
        "offers",
        "articles",
        "currencies",
        "termsofdeliveries",
        "waysofdeliveries",
        "termsofpayments",
        "bureau-activities",
        "bureau-assignments",
        "cost-centers",
        "financial-years",
        "messages",
        "projects",
        "suppliers",
        "supplier-invoices",
        "vouchers",
        "warehouse-stockbalances",
    }
)

RETENTION_SECONDS = 14 * 24 * 3600
OFFSET_WIDTH = 8
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def encode_offset(seq: int) -> str:
    out = ""
    while seq:
        seq, r = divmod(seq, 36)
        out = _DIGITS[r] + out
    return out.rjust(OFFSET_WIDTH, "0")


def decode_offset(offset: str) -> int | None:
    try:
        return int(offset, 36) if offset else None
    except ValueError:
        return None


@dataclass
class _TopicLog:
    events: list[dict[str, Any]] = field(default_factory=list)
    stamps: list[float] = field(default_factory=list)
    first_seq: int = 1

    @property
    def next_seq(self) -> int:
        return self.first_seq + len(self.events)


class TopicsFeed:
    """The event log of every topic, shared by all tenants (events carry ``tenantId``)."""

    def __init__(self, clock: BusinessClock) -> None:
        self._clock = clock
        self._logs: dict[str, _TopicLog] = {t: _TopicLog() for t in TOPICS}
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._lock = threading.Lock()
        self.published = 0

    def publish(
        self,
        topic: str,
        event_type: str,
        tenant_id: int,
        entity_id: str,
        ts: float,
        **extra: Any,
    ) -> dict[str, Any]:
        with self._lock:
            log = self._logs[topic]
            seq = log.next_seq
            event: dict[str, Any] = {
                "topic": topic,
                "offset": encode_offset(seq),
                "type": event_type,
                "tenantId": tenant_id,
                "entityId": entity_id,
                "timestamp": iso_millis(ts),
                **extra,
            }
            log.events.append(event)
            log.stamps.append(ts)
            self.published += 1
            if self.published % 256 == 0:
                self._prune_locked()
            waiters = list(self._waiters)
        for loop, wake in waiters:
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:
                self._waiters.discard((loop, wake))
        return event

    def prune(self) -> None:
        with self._lock:
            self._prune_locked()

    def _prune_locked(self) -> None:
        edge = self._clock.time() - RETENTION_SECONDS
        for log in self._logs.values():
            cut = bisect.bisect_left(log.stamps, edge)
            if cut:
                del log.events[:cut]
                del log.stamps[:cut]
                log.first_seq += cut

    def start_position(self, topic: str, offset: str | None) -> int | None:
        """Where a subscription to ``topic`` starts (None: the offset is not valid)."""
        self.prune()
        log = self._logs[topic]
        if offset is None:
            return log.next_seq
        seq = decode_offset(str(offset))
        if seq is None or seq < 0 or seq > log.next_seq:
            return None
        return max(seq, log.first_seq)

    def read(self, topic: str, position: int, limit: int = 500) -> list[dict[str, Any]]:
        with self._lock:
            log = self._logs[topic]
            start = max(position, log.first_seq) - log.first_seq
            return log.events[start : start + limit]

    def events(
        self, topic: str | None = None, tenant_id: int | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Retained events, oldest first (for the admin API and tests)."""
        with self._lock:
            topics = [topic] if topic else sorted(self._logs)
            out = [
                e
                for t in topics
                for e in self._logs[t].events
                if tenant_id is None or e["tenantId"] == tenant_id
            ]
        out.sort(key=lambda e: e["timestamp"])
        return out[-limit:]

    def add_waiter(self, loop: asyncio.AbstractEventLoop, wake: asyncio.Event) -> None:
        self._waiters.add((loop, wake))

    def remove_waiter(self, loop: asyncio.AbstractEventLoop, wake: asyncio.Event) -> None:
        self._waiters.discard((loop, wake))


@dataclass
class FeedGrant:
    """What an access token given to ``add-tenants-v1`` entitles the connection to."""

    tenant_id: int
    client_id: str
    is_active: Callable[[], bool]


TokenCheck = Callable[[str, str], FeedGrant | None]


@dataclass
class _Connection:
    tenants: dict[int, FeedGrant] = field(default_factory=dict)
    positions: dict[str, int] = field(default_factory=dict)
    subscribed: bool = False


def _reply(command: str | None, result: str = "ok", **extra: Any) -> str:
    return json.dumps({"response": command, "result": result, **extra})


def _handle_command(feed: TopicsFeed, conn: _Connection, raw: str, check_token: TokenCheck) -> str:
    try:
        msg = json.loads(raw)
    except ValueError:
        return _reply(None, "error", message="invalid JSON")
    if not isinstance(msg, dict):
        return _reply(None, "error", message="expected a JSON object")
    command = msg.get("command")
    if command == "add-tenants-v1":
        secret = str(msg.get("clientSecret") or "")
        tenant_ids: dict[str, int] = {}
        invalid: list[str] = []
        for token in msg.get("accessTokens") or []:
            raw_token = str(token)
            bare = raw_token[7:] if raw_token.lower().startswith("bearer ") else raw_token
            grant = check_token(bare, secret)
            if grant is None:
                invalid.append(raw_token)
            else:
                conn.tenants[grant.tenant_id] = grant
                tenant_ids[raw_token] = grant.tenant_id
        return _reply(command, tenantIds=tenant_ids, invalidTokens=invalid)
    if command == "add-topics-v1":
        bad: list[str] = []
        for item in msg.get("topics") or []:
            name = item.get("topic") if isinstance(item, dict) else item
            if not isinstance(name, str) or name not in TOPICS:
                bad.append(str(name))
                continue
            offset = item.get("offset") if isinstance(item, dict) else None
            position = feed.start_position(name, None if offset is None else str(offset))
            if position is None:
                bad.append(name)
                continue
            conn.positions[name] = position
        return _reply(command, invalidTopics=bad)
    if command == "subscribe-v1":
        conn.subscribed = True
        return _reply(command)
    if command == "remove-tenants-v1":
        for tid in msg.get("tenants") or []:
            try:
                conn.tenants.pop(int(tid), None)
            except (TypeError, ValueError):
                continue
        return _reply(command)
    if command == "list-tenants-v1":
        return _reply(command, tenantIds=sorted(conn.tenants))
    return _reply(command if isinstance(command, str) else None, "error", message="unknown command")


async def serve_topics(
    websocket: WebSocket, feed: TopicsFeed, faults: Faults, check_token: TokenCheck
) -> None:
    """Run one ``/topics-v1`` connection until the client goes away."""
    await websocket.accept()
    conn = _Connection()
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    feed.add_waiter(loop, wake)
    recv: asyncio.Task[str] = asyncio.ensure_future(websocket.receive_text())
    try:
        while True:
            waiter = asyncio.ensure_future(wake.wait())
            done, _ = await asyncio.wait(
                {recv, waiter}, timeout=0.5, return_when=asyncio.FIRST_COMPLETED
            )
            if not waiter.done():
                waiter.cancel()
            wake.clear()
            if recv in done:
                raw = recv.result()
                await websocket.send_text(_handle_command(feed, conn, raw, check_token))
                recv = asyncio.ensure_future(websocket.receive_text())
            if conn.subscribed:
                await _deliver(websocket, feed, faults, conn)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        feed.remove_waiter(loop, wake)
        if not recv.done():
            recv.cancel()


async def _deliver(
    websocket: WebSocket, feed: TopicsFeed, faults: Faults, conn: _Connection
) -> None:
    for topic, position in list(conn.positions.items()):
        while True:
            batch = feed.read(topic, position)
            if not batch:
                break
            for event in batch:
                position = (decode_offset(event["offset"]) or position) + 1
                grant = conn.tenants.get(event["tenantId"])
                if grant is None or not grant.is_active():
                    continue
                text = json.dumps(event)
                await websocket.send_text(text)
                if faults.duplicate_delivery():
                    await websocket.send_text(text)
            conn.positions[topic] = position
