"""Fortnox's WebSocket topics feed, wired to the tenants' sessions.

One connection per Fortnox app (client id) carries every tenant of that app. An event makes the
tenant's session poll the announced resource at once (or refresh its master data), so a change
made in Fortnox arrives in seconds; while the feed is live, polling on a long interval stays as
the safety net. Events echoing the session's own writes are recognised and cost no poll.
A deletion event becomes a deletion record directly (REST polling never shows deletions).
Offsets are persisted per app and topic after the event was handled, and the client
de-duplicates by (topic, offset), so delivery is at-least-once without doubles.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import structlog
from pydantic import ValidationError

from engine.clock import utcnow
from engine.executors.fortnox import FortnoxSession
from engine.executors.ports import ExecutorPorts
from engine.fortnox.topics_feed import TopicEvent
from engine.store.db import Database
from topics import fortnox as fx
from topics.envelope import Envelope

log = structlog.get_logger("kassasync.fortnox.feed")


class DatabaseOffsets:
    """The feed's offsets, per app and topic, in the engine's database."""

    def __init__(self, db: Database, app: str) -> None:
        self.db = db
        self.prefix = f"{app}:"

    async def load_offsets(self) -> dict[str, str]:
        rows = self.db.conn.execute(
            'SELECT topic, "offset" FROM feed_offsets WHERE topic LIKE ?', (self.prefix + "%",)
        ).fetchall()
        return {topic[len(self.prefix) :]: offset for topic, offset in rows}

    async def save_offset(self, topic: str, offset: str) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                'INSERT INTO feed_offsets (topic, "offset") VALUES (?, ?) '
                'ON CONFLICT (topic) DO UPDATE SET "offset" = excluded."offset"',
                (self.prefix + topic, offset),
            )


def deletion(event: TopicEvent, tenant: str) -> Envelope | None:
    """The deletion record for a ``*-deleted-v1`` event, or None for other events (and for an
    entity id no record can carry: that deletion is left to the next full pass, never replayed
    in a loop)."""
    if event.entity_id is None:
        return None
    try:
        return _deletion(event, tenant)
    except ValidationError:
        log.warning(
            "fortnox.feed.deletion_unreadable",
            tenant=tenant,
            type=event.type,
            offset=event.offset,
            action="left_to_full_pass",
        )
        return None


def _deletion(event: TopicEvent, tenant: str) -> Envelope | None:
    assert event.entity_id is not None
    common = {"id": f"feed-{event.topic}-{event.offset}", "tenant": tenant, "occurred_at": utcnow()}
    if event.type == "article-deleted-v1":
        return fx.FortnoxArticleDeleted.model_validate(
            {**common, "data": {"article_number": event.entity_id}}
        )
    if event.type == "customer-deleted-v1":
        return fx.FortnoxCustomerDeleted.model_validate(
            {**common, "data": {"customer_number": event.entity_id}}
        )
    if event.type == "invoicepayment-deleted-v1":
        return fx.FortnoxPaymentDeleted.model_validate(
            {**common, "data": {"number": event.entity_id}}
        )
    return None


class FeedHandler:
    """What to do with one feed event."""

    def __init__(self, edge: ExecutorPorts, sessions: Callable[[], Mapping[str, FortnoxSession]]):
        self.edge = edge
        self.sessions = sessions
        self.handled = 0

    async def __call__(self, event: TopicEvent) -> None:
        if event.tenant is None:
            log.debug("fortnox.feed.unknown_tenant", fortnox_tenant_id=event.fortnox_tenant_id)
            return
        record = deletion(event, event.tenant)
        if record is not None:
            self.edge.publish([record])
        session = self.sessions().get(event.tenant)
        action = (
            "no_session"
            if session is None
            else session.on_feed(event.topic, event.entity_id, event.timestamp, event.type)
        )
        self.handled += 1
        log.info(
            "fortnox.feed.event",
            tenant=event.tenant,
            type=event.type,
            entity=event.entity_id,
            deletion=record is not None,
            action=action,
        )


def app_key(client_id: str, url: str) -> str:
    return f"{url}|{client_id}"
