"""The embedded runtime: one process, no broker. The composition root wires the store, the
processor, the tick scheduler, the executors, the Fortnox sessions and the HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import structlog
import uvicorn
from fastapi import FastAPI

from engine.clock import utcnow
from engine.embedded.edge import Edge
from engine.embedded.processor import BatchResult, Processor
from engine.embedded.scheduler import TickScheduler
from engine.executors.feed import DatabaseOffsets
from engine.executors.feeds import FeedKeeper
from engine.executors.fortnox import WATCH_FINISH_SECONDS, FortnoxSession, SessionTiming
from engine.executors.probe import probe_now
from engine.executors.sessions import SessionKeeper
from engine.executors.till import TillDelivery
from engine.fortnox.api import FortnoxApi
from engine.fortnox.limiter import LimiterRegistry
from engine.fortnox.onboarding import (
    FortnoxApp,
    Onboarding,
    public_url_from_env,
    renew_idle_logins,
)
from engine.fortnox.tokens import SqliteTokenStore
from engine.fortnox_factory import open_api
from engine.gateway.ingest import MAX_BODY_BYTES as INGEST_BODY_BYTES
from engine.gateway.ingest import SEEN_FOR, SIE_IDS
from engine.gateway.ingest import router as ingest_router
from engine.gateway.sie_files import MAX_FILE_BYTES as SIE_FILE_BYTES
from engine.gateway.sie_files import PATH_PREFIX as SIE_FILES_PATH
from engine.gateway.sie_files import router as sie_files_router
from engine.metrics import EngineMetrics, MeteredPorts
from engine.ops import EmbeddedProbe, Ops, SqliteOpsStore, Throughput
from engine.ops.records import PendingCommand
from engine.secrets import SecretBox
from engine.store.db import Database
from engine.store.retention import Retention, RetentionPolicy
from engine.store.state import CACHE_BYTES
from engine.supervision import DiskCheck, Health, Supervisor, describe
from engine.tenants import TenantConfig, TenantDirectory
from engine.web import mount as mount_web
from engine.web.api import healthz_router
from engine.web.auth import AdminAuth, resolve_admin_token
from engine.web.connect import resume_if_waiting_for_consent, resume_where_connected
from engine.web.door import DoorSettings, server_config
from topics.settings import TenantSettings

#: How often every tenant with Fortnox is checked for a running session (and ticks at least).
SESSIONS_CHECK_SECONDS = 0.2
#: How often idle tenants' Fortnox logins are checked (and renewed before they lapse).
LOGINS_CHECK_SECONDS = 3600.0
#: How often tenants paused for their Fortnox connection are checked for new tokens.
CONSENT_CHECK_SECONDS = 2.0
#: How often retention runs by default (``KASSASYNC_RETENTION_INTERVAL_SECONDS``).
RETENTION_SECONDS = 600.0

log = structlog.get_logger("kassasync.engine")


@dataclass
class Counters:
    events_in: int = 0
    commands_out: int = 0
    dead_letters: int = 0


class EmbeddedEngine:
    def __init__(
        self,
        data_dir: Path,
        box: SecretBox,
        *,
        host: str = "127.0.0.1",
        http_port: int = 8080,
        timing: SessionTiming | None = None,
        admin_token: str | None = None,
        door: DoorSettings | None = None,
        fortnox_app: FortnoxApp | None = None,
        public_url: str | None = None,
        log_keep: dt.timedelta = dt.timedelta(days=1),
        retention_seconds: float = RETENTION_SECONDS,
        state_cache_bytes: int = CACHE_BYTES,
    ) -> None:
        self.data_dir = data_dir
        #: The HTTP port's limits (body caps, read timeouts); the ingest API takes 1 MB bodies,
        #: the till-PC agent's SIE file uploads 8 MB.
        self.door = dataclasses.replace(
            door or DoorSettings(),
            caps={
                "/v1/": INGEST_BODY_BYTES,
                SIE_FILES_PATH: SIE_FILE_BYTES,
                **(door.caps if door else {}),
            },
        )
        self.db = Database(data_dir / "kassasync.db")
        self.box = box
        self.edge = Edge(self.db)
        self.counters = Counters()
        self.metrics = EngineMetrics()
        self.throughput = Throughput()
        #: What the executors write through: the edge, counted for /metrics.
        self.ports = MeteredPorts(self.edge, self.metrics)
        self.processor = Processor(self.db, on_batch=self._counted, cache_bytes=state_cache_bytes)
        self.scheduler = TickScheduler(self.db, self.edge.log)
        self.tenants = TenantDirectory(self.db, box)
        self.token_store = SqliteTokenStore(data_dir / "tokens.db", box)
        self.limiters = LimiterRegistry()
        #: The Fortnox app, configured once (``KASSASYNC_FORTNOX_CLIENT_ID`` / ``_SECRET``).
        self.fortnox_app = fortnox_app or FortnoxApp.from_env()
        self.ops = Ops(
            SqliteOpsStore(self.db, self.edge.log),
            EmbeddedProbe(self.db, limiters=self.limiters, throughput=self.throughput),
        )
        self.ops.on_retry_now = self._probe_now
        #: The till delivery while :meth:`run` runs (an operator's retry probes its breaker).
        self._delivery: TillDelivery | None = None
        self.metrics.watch(self.ops)
        #: Trims the log, expires de-duplication records, returns free pages (0 s: off).
        self.retention = Retention(
            self.db,
            RetentionPolicy(log_keep=log_keep, seen_for=SEEN_FOR, kept_ids=SIE_IDS),
        )
        self.retention_seconds = retention_seconds
        self.metrics.watch_retention(self.retention)
        #: The dashboard's admin token (``KASSASYNC_ADMIN_TOKEN``, else generated and printed).
        self.admin_token, self.admin_token_generated = resolve_admin_token(admin_token)
        self.announce_admin_token = self.admin_token_generated
        self.admin = AdminAuth(self.admin_token)
        self.host = host
        self.http_port = http_port
        #: Where shops' browsers reach the dashboard (the consent callback lives there).
        self.public_url = (
            public_url or public_url_from_env() or f"http://{host}:{http_port}"
        ).rstrip("/")
        self.onboarding = (
            Onboarding(
                self.fortnox_app,
                self.token_store,
                box,
                public_url=self.public_url,
                on_connected=self._connected,
            )
            if self.fortnox_app is not None
            else None
        )
        self.timing = timing or SessionTiming()
        #: Every long-running loop runs under it; /healthz and the dashboard read its health.
        self.supervisor = Supervisor(self.metrics)
        self.supervisor.watch("processor.lag", self._lag_reading)
        #: Below this many free bytes on the data folder's disk, health is red (writes are about
        #: to fail with "database or disk is full").
        self.disk = DiskCheck(self.data_dir)
        self.supervisor.check("disk", self.disk)
        self.metrics.watch_health(self.health)
        self.keeper = SessionKeeper(
            self.supervisor,
            self.tenants.get,
            self._api_for,
            self.ports,
            self._settings_for,
            self.timing,
        )
        self.sessions: dict[str, FortnoxSession] = self.keeper.sessions
        self.feeds = FeedKeeper(
            self.supervisor,
            self.tenants.get,
            self.fortnox_app,
            self.ports,
            self.sessions,
            lambda key: DatabaseOffsets(self.db, key),
        )
        self._http: httpx.AsyncClient | None = None
        #: Set when the ingest API stored events (the processor need not wait out its idle nap).
        self._work = asyncio.Event()
        #: Set when the processor handled messages (it may have written new wake-up times).
        self._wakes_changed = asyncio.Event()
        self.app = self._app()
        self.server: uvicorn.Server | None = None

    def stored(self) -> None:
        """Events were appended to the log (the ingest API, or anything that appends as it
        does): the processor reads them now instead of at the end of its idle nap."""
        self._work.set()

    def _counted(self, result: BatchResult) -> None:
        self.counters.events_in += result.processed
        self.counters.commands_out += result.commands
        self.counters.dead_letters += result.dead_letters
        self.metrics.batch(result.by_type, result.commands_by_type, result.dead_letters)
        self.throughput.add_types(result.by_type)

    def _app(self) -> FastAPI:
        # The OpenAPI document describes the till-facing API; no interactive docs pages.
        app = FastAPI(title="Kassasync", version="0.1.0", docs_url=None, redoc_url=None)
        app.include_router(ingest_router(self.tenants, self.edge, on_stored=self.stored))
        app.include_router(sie_files_router(self.tenants, self.edge, on_stored=self.stored))
        mount_web(
            app,
            ops=self.ops,
            auth=self.admin,
            metrics=self.metrics,
            door=self.door,
            onboarding=lambda: self.onboarding,
            tenants=self.tenants,
            health=self.health,
            open_fortnox=self._api_for,
        )
        app.include_router(
            healthz_router(self.health, lambda: {"tenants": len(self.tenants.ids())})
        )
        return app

    def settings_of(self, tenant: str) -> TenantSettings:
        config = self.tenants.get(tenant)
        return config.settings if config else TenantSettings()

    def _settings_for(self, tenant: str) -> Callable[[], TenantSettings]:
        return lambda: self.settings_of(tenant)

    # -- Fortnox sessions -----------------------------------------------------------------------

    async def _connected(self, tenant: str) -> None:
        """A shop approved Kassasync in Fortnox: resume it if it waited for that, and wake its
        session so the first sync starts at once."""
        resume_if_waiting_for_consent(self.ops, tenant)
        session = self.sessions.get(tenant)
        if session is not None:
            session.wakeup.set()

    async def _api_for(self, config: TenantConfig) -> FortnoxApi:
        return await open_api(
            config,
            self.token_store,
            limiters=self.limiters,
            metrics=self.metrics.fortnox,
            app=self.fortnox_app,
        )

    def _ensure_sessions(self, stop: asyncio.Event) -> None:
        self.keeper.ensure(self.tenants.ids(), stop)
        self.feeds.ensure(stop)

    def _apply_what_is_left(self, rounds: int = 4) -> None:
        """At a stop, after the sessions ended: apply what they published as they stopped (the
        reports of their last writes' watches), so a graceful stop leaves no log behind. At most
        a few batches: a backlog the processor had not reached waits for the next start, as it
        would have without this, and the stop stays quick."""
        try:
            for _ in range(rounds):
                if not self.processor.step(limit=500).processed:
                    break
            # The state held in memory goes to the table: the next start runs nothing again.
            self.processor.write_state()
        except Exception as failed:  # the next start applies it: never fail the stop
            log.warning("engine.stop.left_to_next_start", cause=describe(failed))

    # -- loops (each under the supervisor) --------------------------------------------------

    async def _process_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._work.clear()
            result = self.processor.step(limit=500)
            if result.commands:
                self.keeper.wake_all()
            if result.processed:
                self._wakes_changed.set()
                await asyncio.sleep(0)
            else:
                # Until the ingest API appends (it sets _work) or, as a safety net, 50 ms.
                await _first(stop, self._work, timeout=0.05)

    async def _logins_loop(self, stop: asyncio.Event) -> None:
        """Renew idle tenants' refresh tokens before their 45 days run out (a paused tenant's
        session makes no requests, so nothing else would)."""
        while not stop.is_set():
            managers = {t: s.api.client.tokens for t, s in self.sessions.items()}
            await renew_idle_logins(self.token_store, managers)
            await _first(stop, asyncio.Event(), timeout=LOGINS_CHECK_SECONDS)

    async def _consent_loop(self, stop: asyncio.Event) -> None:
        """Resume tenants paused for their connection once they have tokens (see
        :func:`resume_where_connected`), and wake their sessions."""
        while not stop.is_set():
            for tenant in await resume_where_connected(
                self.ops, self.token_store, list(self.sessions)
            ):
                self.sessions[tenant].wakeup.set()
            await _first(stop, asyncio.Event(), timeout=CONSENT_CHECK_SECONDS)

    async def _retention_loop(self, stop: asyncio.Event) -> None:
        """Every ``retention_seconds``: one retention pass, yielding to the other loops between
        its chunks (engine/store/retention.py)."""
        while not stop.is_set():
            for _ in self.retention.run():
                await asyncio.sleep(0)
                if stop.is_set():
                    return
            await _first(stop, asyncio.Event(), timeout=self.retention_seconds)

    async def _tick_loop(self, stop: asyncio.Event) -> None:
        """Ticks tenants whose wake-up time has come (with no flush window, the batch that left
        a change waiting has just committed), waking at the earliest wake-up time or when the
        processor wrote new ones, at least every 0.2 s."""
        while not stop.is_set():
            self._wakes_changed.clear()
            now = utcnow()
            if self.scheduler.due(now):
                # The processor need not wait out its idle nap for the ticks just appended.
                self._work.set()
            timeout = SESSIONS_CHECK_SECONDS
            earliest = self.scheduler.earliest()
            if earliest is not None:
                timeout = min(timeout, seconds_until(earliest))
            # Never less than 5 ms: this loop must always yield to the others.
            await _first(stop, self._wakes_changed, timeout=max(timeout, 0.005))

    async def _history_loop(self, stop: asyncio.Event) -> None:
        """Every 10 s: a sample for the dashboard's charts, and dead letters whose problem is
        fixed by now marked resolved (:meth:`engine.ops.Ops.housekeeping`)."""
        while not stop.is_set():
            self.ops.housekeeping()
            await _first(stop, asyncio.Event(), timeout=self.ops.history.every)

    async def _session_loop(self, stop: asyncio.Event) -> None:
        """Every 0.2 s: a supervised session for every tenant with Fortnox, and their feeds."""
        while not stop.is_set():
            self._ensure_sessions(stop)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=SESSIONS_CHECK_SECONDS)

    def _lag_reading(self) -> tuple[int, int]:
        """(messages waiting for the reconcilers, messages they consumed so far)."""
        lag = self.processor.lag()
        return sum(lag.values()), sum(self.processor.position().values())

    def health(self) -> Health:
        return self.supervisor.health()

    def _probe_now(self, command: PendingCommand) -> None:
        """An operator's retry is a probe: a target taken for down (its breaker) does not hold
        it back until the end of the backoff the retry cut short (as on Kafka)."""
        probe_now(command.target, command.tenant, self.sessions, self._delivery)

    async def run(self, stop: asyncio.Event, *, serve_http: bool = True) -> None:
        async with httpx.AsyncClient() as http:
            self._http = http
            delivery = self._delivery = TillDelivery(
                self.ports, self.tenants.get, http, self.supervisor
            )
            spawn = self.supervisor.spawn
            tasks = [
                spawn("processor", lambda: self._process_loop(stop), stop, backoff_max=5.0),
                spawn("ticks", lambda: self._tick_loop(stop), stop, backoff_max=5.0),
                spawn("sessions", lambda: self._session_loop(stop), stop, backoff_max=5.0),
                spawn("till", lambda: delivery.run(stop), stop, backoff_max=5.0),
                spawn("watchdog", lambda: self.supervisor.watchdog(stop), stop),
                spawn("logins", lambda: self._logins_loop(stop), stop),
                spawn("consent", lambda: self._consent_loop(stop), stop),
                spawn("history", lambda: self._history_loop(stop), stop),
            ]
            if self.retention_seconds > 0:
                tasks.append(
                    spawn("retention", lambda: self._retention_loop(stop), stop, backoff_max=60.0)
                )
            if serve_http:
                config = server_config(
                    self.app, host=self.host, port=self.http_port, settings=self.door
                )
                self.server = uvicorn.Server(config)
                tasks.append(asyncio.create_task(self.server.serve()))
                if self.announce_admin_token:
                    print(
                        f"kassasync: dashboard http://{self.host}:{self.http_port}/ - admin token "
                        f"(generated; set KASSASYNC_ADMIN_TOKEN to choose one): {self.admin_token}",
                        file=sys.stderr,
                        flush=True,
                    )
            log.info("engine.started", data_dir=str(self.data_dir), http_port=self.http_port)
            await stop.wait()
            if self.server is not None:
                self.server.should_exit = True
            # The sessions end first, while the feed still runs: each finishes the watch of its
            # last stock writes (at most SessionTiming's watch lag), engine/executors/fortnox.py.
            # None waits for Fortnox at a stop (FortnoxSession._when_stopped); one that still
            # runs after WATCH_FINISH_SECONDS is cancelled, its work in hand left to the next
            # start as after a crash, so the stop ends whatever Fortnox answers.
            await self.supervisor.end("session", timeout=WATCH_FINISH_SECONDS)
            self._apply_what_is_left()
            await self.feeds.stop()
            await asyncio.gather(*tasks, *self.supervisor.tasks(), return_exceptions=True)
        log.info("engine.stopped")

    # -- for the demo, tests and ops ----------------------------------------------------------

    def quiet(self) -> bool:
        """Nothing left to process or deliver (the flush windows included)."""
        lag = self.processor.lag()
        depth = self.edge.outbox.depth()
        wake = self.db.conn.execute("SELECT COUNT(*) FROM wake").fetchone()[0]
        return not any(lag.values()) and not any(depth.values()) and not wake


def seconds_until(moment: dt.datetime) -> float:
    """Seconds of the event loop's clock until the business time ``moment`` (the same clock in
    production; a simulation that runs business time faster replaces this)."""
    return (moment - utcnow()).total_seconds()


async def _first(stop: asyncio.Event, event: asyncio.Event, *, timeout: float) -> None:
    """Wait until ``stop`` or ``event`` is set, or ``timeout`` seconds have passed."""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(event.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
