"""One supervised Fortnox session per tenant, the same in both runtimes.

Each tenant with a Fortnox connection gets a loop ``session:<tenant>`` under the runtime's
:class:`~engine.supervision.Supervisor`: it opens the tenant's Fortnox API (tokens from the token
store), runs the :class:`FortnoxSession` until the runtime stops it, and closes the API. Whatever
ends it early — a token store that cannot be read, a record the session cannot convert — is a
crash the supervisor logs, counts and restarts with backoff (no more restarting every 0.2 s), and
health is red for that tenant's session until it runs again. A tenant whose configuration cannot
be opened (a wrong ``KASSASYNC_SECRET_KEY``) is a fault of its session loop, cleared once it can.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Iterable

import httpx
import structlog

from engine.executors.fortnox import FortnoxSession, SessionTiming
from engine.executors.ports import ExecutorPorts
from engine.fortnox.api import FortnoxApi
from engine.fortnox.errors import FortnoxUnavailable
from engine.fortnox_factory import NoFortnoxApp
from engine.supervision import Supervisor, describe
from engine.tenants import TenantConfig
from topics.settings import TenantSettings

log = structlog.get_logger("kassasync.fortnox.sessions")


def session_loop(tenant: str) -> str:
    return f"session:{tenant}"


class SessionKeeper:
    def __init__(
        self,
        supervisor: Supervisor,
        config_of: Callable[[str], TenantConfig | None],
        api_for: Callable[[TenantConfig], Awaitable[FortnoxApi]],
        ports: ExecutorPorts,
        settings_for: Callable[[str], Callable[[], TenantSettings]],
        timing: SessionTiming,
    ) -> None:
        self.supervisor = supervisor
        self.config_of = config_of
        self.api_for = api_for
        self.ports = ports
        self.settings_for = settings_for
        self.timing = timing
        #: The running sessions by tenant (read by the feeds, the processor's wake-ups, tests).
        self.sessions: dict[str, FortnoxSession] = {}

    def ensure(
        self,
        tenants: Iterable[str],
        stop: asyncio.Event,
        wanted: Callable[[str], bool] = lambda _tenant: True,
    ) -> None:
        """Start a supervised session for every wanted tenant with Fortnox that has none."""
        for tenant in tenants:
            name = session_loop(tenant)
            if stop.is_set():
                return
            if self.supervisor.alive(name) or not wanted(tenant):
                continue
            try:
                config = self.config_of(tenant)
            except Exception as failed:  # one tenant's configuration must not stop the others
                self.supervisor.fault(name, describe(failed))
                continue
            self.supervisor.clear(name)
            if config is None or config.fortnox is None:
                continue
            self.supervisor.spawn(
                name,
                lambda tenant=tenant: self._run(tenant, stop, wanted),  # type: ignore[misc]
                stop,
                kind="session",
                finite=True,
                # Fortnox (or its OAuth server) not answering is the tenant's Fortnox flow
                # problem, shown on its page; the loop still retries with backoff. So is a
                # tenant added before the installation has a Fortnox app: it is not connected
                # (its connection page and the connect API say why), the engine is not ill.
                transient=(FortnoxUnavailable, httpx.TransportError, NoFortnoxApp),
            )

    async def _run(self, tenant: str, stop: asyncio.Event, wanted: Callable[[str], bool]) -> None:
        config = self.config_of(tenant)
        if config is None or config.fortnox is None or not wanted(tenant):
            return
        api = await self.api_for(config)
        session: FortnoxSession | None = None
        try:
            if stop.is_set() or not wanted(tenant):
                return  # revoked (Kafka) or stopping while the API was opened
            timing = dataclasses.replace(
                self.timing,
                poll_seconds=config.fortnox.poll_seconds,
                # The feed's safety net is never tighter than the tenant's own poll period.
                feed_poll_seconds=max(config.fortnox.poll_seconds, self.timing.feed_poll_seconds),
            )
            session = FortnoxSession(tenant, api, self.ports, self.settings_for(tenant), timing)
            self.sessions[tenant] = session
            await session.run(stop)
        finally:
            if session is not None and self.sessions.get(tenant) is session:
                del self.sessions[tenant]
            await api.client.aclose()

    def wake_all(self) -> None:
        for session in list(self.sessions.values()):
            session.wakeup.set()
