"""Fortnox's WebSocket topics feed: one connection for all tenants.

Protocol (``wss://ws.fortnox.se/topics-v1``): send ``add-tenants-v1`` (client secret and the
tenants' access tokens), ``add-topics-v1`` (each topic with the offset to resume from, if any),
``subscribe-v1``; events then stream as ``{"topic", "offset", "type", "tenantId", "entityId",
"timestamp"}``. Delivery is at-least-once and a resumed offset is delivered again, so events
are de-duplicated by ``(topic, offset)``.

For every new event the caller's ``on_event`` coroutine runs (typically: fetch the entity over
REST). The event's offset is persisted only after ``on_event`` succeeded; if it fails, the
connection is dropped and re-opened from the persisted offsets after a backoff, so the event is
delivered again. Events are minimal and carry no data worth keeping, so nothing else is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from engine.fortnox.auth import TokenManager
from engine.fortnox.errors import FortnoxError
from engine.fortnox.observability import log
from engine.secrets import Secret

DEFAULT_FEED_URL = "wss://ws.fortnox.se/topics-v1"
DEFAULT_TOPICS: tuple[str, ...] = (
    "articles",
    "customers",
    "invoices",
    "orders",
    "vouchers",
    "warehouse-stockbalances",
)


class FeedProtocolError(Exception):
    """The feed answered a command with an error or not at all."""


@dataclass(frozen=True)
class TopicEvent:
    topic: str
    offset: str
    type: str
    tenant: str | None  # Kassasync's tenant key, when the Fortnox tenant id is known
    fortnox_tenant_id: int | None
    entity_id: str | None
    timestamp: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def parse(cls, data: Mapping[str, Any], tenants: Mapping[int, str]) -> TopicEvent:
        tid_raw = data.get("tenantId")
        try:
            tid = int(tid_raw) if tid_raw is not None else None
        except (TypeError, ValueError):
            tid = None
        entity = data.get("entityId")
        return cls(
            topic=str(data.get("topic")),
            offset=str(data.get("offset")),
            type=str(data.get("type") or ""),
            tenant=tenants.get(tid) if tid is not None else None,
            fortnox_tenant_id=tid,
            entity_id=str(entity) if entity is not None else None,
            timestamp=str(data["timestamp"]) if data.get("timestamp") is not None else None,
            raw=dict(data),
        )


class OffsetStore(Protocol):
    async def load_offsets(self) -> dict[str, str]:
        """The last processed offset of each topic."""
        ...

    async def save_offset(self, topic: str, offset: str) -> None: ...


class MemoryOffsetStore:
    def __init__(self, offsets: Mapping[str, str] | None = None) -> None:
        self.offsets: dict[str, str] = dict(offsets or {})

    async def load_offsets(self) -> dict[str, str]:
        return dict(self.offsets)

    async def save_offset(self, topic: str, offset: str) -> None:
        self.offsets[topic] = offset


#: Returns Kassasync tenant key -> current access token, for every tenant to follow.
TokenSource = Callable[[], Awaitable[Mapping[str, Secret]]]


def token_source(
    manager: TokenManager, tenants: Callable[[], Awaitable[Iterable[str]]]
) -> TokenSource:
    """A :data:`TokenSource` that asks ``manager`` for each tenant's token (skipping failures)."""

    async def source() -> Mapping[str, Secret]:
        out: dict[str, Secret] = {}
        for tenant in await tenants():
            try:
                out[tenant] = await manager.access_token(tenant)
            except FortnoxError as exc:
                log.warning("fortnox.feed.tenant_skipped", tenant=tenant, error=type(exc).__name__)
        return out

    return source


@dataclass
class FeedStats:
    connects: int = 0
    events: int = 0
    duplicates: int = 0
    failures: int = 0
    connected: bool = False
    tenants: int = 0


class TopicsFeed:
    def __init__(
        self,
        *,
        client_secret: Secret,
        tokens: TokenSource,
        offsets: OffsetStore,
        on_event: Callable[[TopicEvent], Awaitable[None]],
        topics: Sequence[str] = DEFAULT_TOPICS,
        url: str = DEFAULT_FEED_URL,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        reply_timeout: float = 15.0,
        dedupe_size: int = 50_000,
        on_offset_rejected: Callable[[str], Awaitable[None]] | None = None,
        connect: Callable[[str], Any] = ws_connect,
    ) -> None:
        self._secret = client_secret
        self._tokens = tokens
        self._offsets = offsets
        self._on_event = on_event
        self.topics = list(topics)
        self.url = url
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.reply_timeout = reply_timeout
        self._dedupe_size = dedupe_size
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._on_offset_rejected = on_offset_rejected
        self._connect = connect
        self._stopping = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._tenant_keys: dict[int, str] = {}
        self.stats = FeedStats()
        self.subscribed = asyncio.Event()

    def __repr__(self) -> str:
        return f"TopicsFeed(url={self.url!r}, topics={self.topics!r})"

    def covers(self, tenant: str) -> bool:
        """Subscribed, with ``tenant`` among the tenants Fortnox accepted."""
        return self.subscribed.is_set() and tenant in self._tenant_keys.values()

    async def stop(self) -> None:
        self._stopping.set()
        if self._ws is not None:
            await self._ws.close()

    async def run(self) -> None:
        """Follow the feed until :meth:`stop`; reconnects with backoff, resuming from offsets."""
        failures = 0
        while not self._stopping.is_set():
            reason = "closed"
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except _CallbackFailed:
                reason = "callback_failed"
                failures += 1  # a failing event must not replay in a tight loop
            except (
                ConnectionClosed,
                InvalidHandshake,
                InvalidURI,
                OSError,
                TimeoutError,
                FeedProtocolError,
            ) as exc:
                reason = type(exc).__name__
                failures = 1 if self.subscribed.is_set() else failures + 1
            else:
                failures = 1 if self.subscribed.is_set() else failures + 1
            finally:
                self.stats.connected = False
                self.subscribed.clear()
                self._ws = None
            if self._stopping.is_set():
                break
            self.stats.failures += 1
            delay = random.uniform(
                self.backoff_base / 2, min(self.backoff_max, self.backoff_base * 2**failures)
            )
            log.warning(
                "fortnox.feed.reconnect", reason=reason, attempt=failures, backoff=round(delay, 3)
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)

    async def _session(self) -> None:
        async with self._connect(self.url) as ws:
            self._ws = ws
            self.stats.connects += 1
            self.stats.connected = True
            await self._add_tenants(ws)
            await self._add_topics(ws)
            await self._command(ws, {"command": "subscribe-v1"})
            self.subscribed.set()
            log.info("fortnox.feed.subscribed", tenants=self.stats.tenants, topics=self.topics)
            async for message in ws:
                if self._stopping.is_set():
                    return
                await self._handle(message)

    async def _add_tenants(self, ws: ClientConnection) -> None:
        tokens = await self._tokens()
        by_token = {token.reveal(): tenant for tenant, token in tokens.items()}
        reply = await self._command(
            ws,
            {
                "command": "add-tenants-v1",
                "clientSecret": self._secret.reveal(),
                "accessTokens": list(by_token),
            },
        )
        mapping = reply.get("tenantIds") or {}
        self._tenant_keys = {}
        for token, tid in mapping.items() if isinstance(mapping, dict) else ():
            tenant = by_token.get(str(token))
            if tenant is not None:
                try:
                    self._tenant_keys[int(tid)] = tenant
                except (TypeError, ValueError):
                    continue
        invalid = [by_token.get(str(t), "?") for t in reply.get("invalidTokens") or []]
        if invalid:
            log.warning("fortnox.feed.tenants_rejected", tenants=invalid)
        self.stats.tenants = len(self._tenant_keys)

    async def _add_topics(self, ws: ClientConnection) -> None:
        offsets = await self._offsets.load_offsets()
        for topic, offset in offsets.items():
            self._remember((topic, offset))  # a resumed offset is delivered again
        wanted = [
            {"topic": t, "offset": offsets[t]} if t in offsets else {"topic": t}
            for t in self.topics
        ]
        reply = await self._command(ws, {"command": "add-topics-v1", "topics": wanted})
        rejected = [str(t) for t in reply.get("invalidTopics") or []]
        retry = [t for t in rejected if t in offsets]
        unknown = [t for t in rejected if t not in offsets]
        if unknown:
            log.warning("fortnox.feed.topics_rejected", topics=unknown)
        if retry:
            # The offset is older than the feed keeps (14 days): follow from now and tell the
            # caller, who must reconcile by polling.
            log.warning("fortnox.feed.offset_expired", topics=retry, action="follow_from_now")
            await self._command(
                ws, {"command": "add-topics-v1", "topics": [{"topic": t} for t in retry]}
            )
            if self._on_offset_rejected is not None:
                for topic in retry:
                    await self._on_offset_rejected(topic)

    async def _command(self, ws: ClientConnection, command: dict[str, Any]) -> dict[str, Any]:
        name = command["command"]
        await ws.send(json.dumps(command))
        try:
            async with asyncio.timeout(self.reply_timeout):
                while True:
                    raw = await ws.recv()
                    data = _loads(raw)
                    if data is None:
                        continue
                    if data.get("response") == name or ("response" in data and "topic" not in data):
                        if data.get("result", "ok") != "ok":
                            raise FeedProtocolError(f"{name} failed: {data.get('message', '')}")
                        return data
                    if "topic" in data:
                        await self._handle_event(data)
        except TimeoutError:
            raise FeedProtocolError(f"no answer to {name}") from None

    async def _handle(self, raw: str | bytes) -> None:
        data = _loads(raw)
        if data is None:
            return
        if "topic" in data and "offset" in data:
            await self._handle_event(data)
        elif data.get("result") not in (None, "ok"):
            log.warning("fortnox.feed.error", response=data.get("response"))

    def _remember(self, key: tuple[str, str]) -> None:
        self._seen[key] = None
        self._seen.move_to_end(key)
        while len(self._seen) > self._dedupe_size:
            self._seen.popitem(last=False)

    async def _handle_event(self, data: Mapping[str, Any]) -> None:
        event = TopicEvent.parse(data, self._tenant_keys)
        key = (event.topic, event.offset)
        if key in self._seen:
            self.stats.duplicates += 1
            return
        try:
            await self._on_event(event)
        except Exception as exc:
            log.warning(
                "fortnox.feed.callback_failed",
                tenant=event.tenant,
                topic=event.topic,
                offset=event.offset,
                error=type(exc).__name__,
                action="reconnect_and_replay",
            )
            raise _CallbackFailed(str(exc)) from exc
        await self._offsets.save_offset(event.topic, event.offset)
        self._remember(key)
        self.stats.events += 1


class _CallbackFailed(Exception):
    pass


def _loads(raw: str | bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
