"""The Fortnox topics feeds of a runtime, kept for both: one connection per Fortnox app and feed
URL, carrying the tenants whose sessions run here (every tenant on the embedded engine, the
owned ones on a Kafka worker), each under the runtime's supervisor."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping

import structlog

from engine.executors.feed import FeedHandler, app_key
from engine.executors.fortnox import FortnoxSession
from engine.executors.ports import ExecutorPorts
from engine.fortnox.errors import FortnoxError
from engine.fortnox.onboarding import FortnoxApp
from engine.fortnox.topics_feed import OffsetStore, TopicsFeed
from engine.fortnox_factory import resolve_connection
from engine.secrets import Secret
from engine.supervision import Supervisor
from engine.tenants import TenantConfig

log = structlog.get_logger("kassasync.fortnox.feed")


class FeedKeeper:
    def __init__(
        self,
        supervisor: Supervisor,
        config_of: Callable[[str], TenantConfig | None],
        app: FortnoxApp | None,
        ports: ExecutorPorts,
        sessions: Mapping[str, FortnoxSession],
        offsets_for: Callable[[str], OffsetStore],
    ) -> None:
        self.supervisor = supervisor
        self.config_of = config_of
        self.app = app
        self.ports = ports
        self.sessions = sessions
        self.offsets_for = offsets_for
        #: By app key: the feed, the tenants it carries and its supervised task.
        self.feeds: dict[str, tuple[TopicsFeed, set[str], asyncio.Task[None]]] = {}
        self._generation: dict[str, int] = {}

    def ensure(self, stop: asyncio.Event) -> None:
        """A running feed for each app whose tenants have sessions here, carrying exactly them."""
        groups: dict[str, tuple[str, Secret, set[str]]] = {}
        for tenant in list(self.sessions):
            try:
                config = self.config_of(tenant)
            except Exception:  # reported by the tenant's session loop (SessionKeeper.ensure)
                continue
            if config is None or config.fortnox is None or not config.fortnox.topics_url:
                continue
            app = resolve_connection(config.fortnox, self.app).app
            key = app_key(app.client_id, config.fortnox.topics_url)
            _url, _secret, members = groups.setdefault(
                key, (config.fortnox.topics_url, app.client_secret, set())
            )
            members.add(tenant)
        for key in set(self.feeds) - set(groups):  # none of its tenants runs here any more
            _feed, _members, task = self.feeds.pop(key)
            task.cancel()
            log.info("fortnox.feed.closed", app=key)
        for key, (url, secret, members) in groups.items():
            running = self.feeds.get(key)
            if running is not None and running[1] == members and not running[2].done():
                self._follow(running[0], members)
                continue
            name = f"feed:{key}"
            if running is not None:
                # Its tenants changed: a new connection carries the new set. The cancelled
                # loop may not be done yet, so the new one runs under a name of its own.
                running[2].cancel()
                self._generation[key] = self._generation.get(key, 0) + 1
                name = f"{name}#{self._generation[key]}"
            feed = TopicsFeed(
                client_secret=secret,
                tokens=self._tokens(frozenset(members)),
                offsets=self.offsets_for(key),
                on_event=FeedHandler(self.ports, lambda: self.sessions),
                url=url,
            )
            task = self.supervisor.spawn(name, feed.run, stop, kind="feed")
            self.feeds[key] = (feed, members, task)
            self._follow(feed, members)

    async def stop(self) -> None:
        for feed, _members, _task in self.feeds.values():
            await feed.stop()

    def _follow(self, feed: TopicsFeed, members: set[str]) -> None:
        """Tell the members' sessions whether the feed announces their changes."""
        for tenant in members:
            session = self.sessions.get(tenant)
            if session is not None:
                session.feed_live = functools.partial(feed.covers, tenant)

    def _tokens(self, members: frozenset[str]) -> Callable[[], Awaitable[Mapping[str, Secret]]]:
        async def source() -> Mapping[str, Secret]:
            out: dict[str, Secret] = {}
            for tenant in sorted(members):
                session = self.sessions.get(tenant)
                if session is None:
                    continue
                try:
                    out[tenant] = await session.api.client.tokens.access_token(tenant)
                except FortnoxError as failed:
                    log.warning("fortnox.feed.tenant_skipped", tenant=tenant, error=str(failed))
            return out

        return source
