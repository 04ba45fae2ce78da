"""Every long-running loop of either runtime runs under one :class:`Supervisor`.

A loop that raises is logged at error with its traceback, counted
(``kassasync_loop_restarts_total{loop=<kind>}``) and started again after an exponential backoff
with jitter (``BACKOFF_FIRST`` doubling to ``BACKOFF_MAX``; a run that lasted ``STABLE_SECONDS``
starts the backoff over). Nothing a loop raises stops the engine, and nothing stops silently.

Health is what ``/healthz`` and the dashboard show. It is red while
- a loop's last run ended in a crash and it has not run ``STABLE_SECONDS`` since (it is down or
  crashing over and over), naming the loop and the cause;
- a fault was reported for a loop that keeps running (a tenant whose configuration the secret key
  cannot open, say) and has not been cleared;
- a watched backlog (the reconcilers' lag) is above zero and has not moved for ``STALL_SECONDS``;
- a check says so (the data folder's disk is almost full).
A fault, once its cause is gone, clears by itself: the crashed loop runs stably again, the
reporting loop clears its fault, the backlog moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import random
import shutil
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import structlog
from pydantic import ValidationError

from engine.secrets import SecretDecryptError, SecretKeyError

log = structlog.get_logger("kassasync.supervisor")

BACKOFF_FIRST = 0.2
BACKOFF_MAX = 30.0
#: A run this long after a crash counts as recovered (health green, backoff starts over).
STABLE_SECONDS = 5.0
#: A backlog above zero that has not moved this long is a stall (red).
STALL_SECONDS = 5.0


class RestartCounter(Protocol):
    """Where restarts are counted (the engine's Prometheus metrics)."""

    def loop_restarted(self, kind: str) -> None: ...


#: A cause is shown on the public /healthz: at most this long.
MAX_CAUSE = 400


def describe(failed: BaseException) -> str:
    """A cause an operator can act on, short enough for /healthz; never a secret value (the
    secrets module keeps its values out of its messages) and never the data a model refused
    (a ValidationError is named by its locations and messages, without the input values)."""
    return _describe(failed)[:MAX_CAUSE]


def _describe(failed: BaseException) -> str:
    if isinstance(failed, ValidationError):
        where = "; ".join(
            f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}"
            for e in failed.errors(include_url=False, include_input=False)[:5]
        )
        return f"ValidationError ({failed.title}, {failed.error_count()} errors): {where}"
    text = f"{type(failed).__name__}: {str(failed).splitlines()[0] if str(failed) else ''}"
    if isinstance(failed, SecretDecryptError):
        return (
            "a stored secret cannot be opened: KASSASYNC_SECRET_KEY is not the key it was sealed "
            f"with (or the value was tampered with) ({text})"
        )
    if isinstance(failed, SecretKeyError):
        return f"KASSASYNC_SECRET_KEY is missing or malformed ({text})"
    if isinstance(failed, sqlite3.OperationalError):
        message = str(failed).lower()
        if "disk is full" in message:
            return f"disk full: the database cannot be written ({text})"
        if "disk i/o" in message:
            return f"the disk failed a read or write ({text})"
        if "unable to open" in message or "readonly" in message or "read-only" in message:
            return f"a database file cannot be opened or written (permissions, path?) ({text})"
        if "locked" in message:
            return f"the database is locked by another process ({text})"
        return f"database error ({text})"
    if isinstance(failed, OSError):
        if failed.errno == errno.ENOSPC:
            return f"disk full ({text})"
        if failed.errno in (errno.EACCES, errno.EPERM):
            return f"permission denied ({text})"
    return text


@dataclass(slots=True)
class LoopState:
    name: str
    kind: str
    running: bool = False
    started_at: float = 0.0
    restarts: int = 0
    last_cause: str | None = None
    failed_at: float | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Problem:
    """Why health is red: which loop, and the cause."""

    loop: str
    cause: str
    since: float
    restarts: int = 0


@dataclass(frozen=True, slots=True)
class Health:
    problems: tuple[Problem, ...]
    loops: int

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(slots=True)
class _Watch:
    reading: Callable[[], tuple[int, int]]
    value: int = 0
    moved_at: float = 0.0
    backlog: int = 0


#: Below this many free bytes on a runtime's data folder, health is red (SQLite writes are
#: about to fail with "database or disk is full").
MIN_FREE_BYTES = 16 * 1024 * 1024


@dataclass
class DiskCheck:
    """The supervisor's check of a data folder's free space, for both runtimes."""

    folder: Path
    min_free_bytes: int = MIN_FREE_BYTES

    def __call__(self) -> str | None:
        free = shutil.disk_usage(self.folder).free
        if free >= self.min_free_bytes:
            return None
        return (
            f"disk full: {free} bytes free where the data lives ({self.folder}); "
            f"writes fail below {self.min_free_bytes}"
        )


class Supervisor:
    def __init__(
        self,
        counter: RestartCounter | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        backoff_first: float = BACKOFF_FIRST,
        backoff_max: float = BACKOFF_MAX,
        stable_seconds: float = STABLE_SECONDS,
        stall_seconds: float = STALL_SECONDS,
    ) -> None:
        self.counter = counter
        self.clock = clock
        self.backoff_first = backoff_first
        self.backoff_max = backoff_max
        self.stable_seconds = stable_seconds
        self.stall_seconds = stall_seconds
        self.loops: dict[str, LoopState] = {}
        self.faults: dict[str, Problem] = {}
        self._watches: dict[str, _Watch] = {}
        self._checks: dict[str, Callable[[], str | None]] = {}

    # -- loops --------------------------------------------------------------------------------

    def spawn(
        self,
        name: str,
        body: Callable[[], Awaitable[None]],
        stop: asyncio.Event,
        *,
        kind: str | None = None,
        finite: bool = False,
        backoff_max: float | None = None,
        transient: tuple[type[BaseException], ...] = (),
    ) -> asyncio.Task[None]:
        """Run ``body`` until ``stop``, restarting it after a crash. A ``finite`` body may return
        when its work is done (a tenant's till delivery with nothing left); any other body that
        returns before ``stop`` is set is treated as a crash. ``backoff_max`` caps the wait between
        restarts below the supervisor's (a loop everything waits for comes back sooner).
        ``transient`` failures are another system being unavailable (Fortnox down): restarted
        with the same backoff and logged at warning, but not the engine's ill health (the
        tenant's flows show it on the dashboard)."""
        state = self.loops.get(name)
        if state is not None and state.task is not None and not state.task.done():
            return state.task
        if state is None:
            state = LoopState(name=name, kind=kind or name.split(":", 1)[0])
            self.loops[name] = state
        cap = self.backoff_max if backoff_max is None else min(backoff_max, self.backoff_max)
        task = asyncio.create_task(
            self._supervise(state, body, stop, finite, cap, transient), name=name
        )
        state.task = task
        return task

    def alive(self, name: str) -> bool:
        """Whether a loop of this name is running or waiting out its backoff."""
        state = self.loops.get(name)
        return state is not None and state.task is not None and not state.task.done()

    def tasks(
        self, *, but: tuple[str, ...] = (), kind: str | None = None
    ) -> list[asyncio.Task[None]]:
        """Every supervised task still running (to wait for at shutdown), except ``but``; only
        the loops of ``kind`` if given."""
        return [
            s.task
            for s in self.loops.values()
            if s.task is not None
            and not s.task.done()
            and s.name not in but
            and (kind is None or s.kind == kind)
        ]

    async def wait_for(self, kind: str, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the loops of ``kind`` to end (a stop was asked)."""
        tasks = self.tasks(kind=kind)
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    async def end(self, kind: str, timeout: float) -> None:
        """A stop was asked: wait up to ``timeout`` seconds for the loops of ``kind`` to end,
        then cancel those still running (and wait for them to unwind)."""
        await self.wait_for(kind, timeout)
        late = self.tasks(kind=kind)
        if not late:
            return
        log.warning(
            "loop.cancelled_at_stop",
            kind=kind,
            loops=sorted(task.get_name() for task in late),
            waited=timeout,
        )
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    async def _supervise(
        self,
        state: LoopState,
        body: Callable[[], Awaitable[None]],
        stop: asyncio.Event,
        finite: bool,
        cap: float,
        transient: tuple[type[BaseException], ...] = (),
    ) -> None:
        delay = min(self.backoff_first, cap)
        while not stop.is_set():
            passing = False
            state.running = True
            state.started_at = self.clock()
            try:
                await body()
            except asyncio.CancelledError:
                state.running = False
                raise
            except Exception as failed:  # the point of a supervisor: nothing stops the engine
                cause = describe(failed)
                passing = isinstance(failed, transient)
            else:
                state.running = False
                if finite or stop.is_set():
                    state.failed_at = None
                    state.last_cause = None
                    return
                cause = "the loop ended without being asked to stop"
            state.running = False
            if self.clock() - state.started_at >= self.stable_seconds:
                delay = min(self.backoff_first, cap)
            state.restarts += 1
            wait = delay * (0.5 + random.random() / 2)
            if passing:
                state.last_cause = None
                state.failed_at = None
                log.warning(
                    "loop.unavailable", loop=state.name, cause=cause, restart_in=round(wait, 3)
                )
            else:
                state.last_cause = cause
                state.failed_at = self.clock()
                if self.counter is not None:
                    self.counter.loop_restarted(state.kind)
                log.error(
                    "loop.crashed",
                    loop=state.name,
                    cause=cause,
                    restarts=state.restarts,
                    restart_in=round(wait, 3),
                    exc_info=True,
                )
            await _sleep_unless(stop, wait)
            delay = min(delay * 2, cap)
        state.running = False

    # -- faults a running loop reports --------------------------------------------------------

    def fault(self, loop: str, cause: str) -> None:
        """``loop`` keeps running but cannot do its work (logged at error when the cause is new)."""
        known = self.faults.get(loop)
        if known is not None and known.cause == cause:
            return
        self.faults[loop] = Problem(loop=loop, cause=cause, since=self.clock())
        log.error("loop.fault", loop=loop, cause=cause)

    def clear(self, loop: str) -> None:
        if self.faults.pop(loop, None) is not None:
            log.info("loop.fault_cleared", loop=loop)

    # -- backlogs that must move --------------------------------------------------------------

    def watch(self, name: str, reading: Callable[[], tuple[int, int]]) -> None:
        """``reading()`` -> (backlog, progress): red when the backlog stays above zero while the
        progress counter does not move for ``stall_seconds``."""
        self._watches[name] = _Watch(reading=reading, moved_at=self.clock())

    def check(self, name: str, probe: Callable[[], str | None]) -> None:
        """``probe()`` -> the cause of a problem, or None when all is well: a fault of ``name``
        while it says so (a disk that is almost full, say)."""
        self._checks[name] = probe

    def sample(self) -> None:
        """Read the watched backlogs and run the checks (the watchdog, about once a second)."""
        for name, probe in self._checks.items():
            try:
                cause = probe()
            except Exception as failed:  # a check that cannot look is itself the problem
                cause = describe(failed)
            if cause is None:
                self.clear(name)
            else:
                self.fault(name, cause)
        now = self.clock()
        for watch in self._watches.values():
            backlog, progress = watch.reading()
            if progress != watch.value or backlog == 0:
                watch.moved_at = now
            watch.value = progress
            watch.backlog = backlog

    # -- health -------------------------------------------------------------------------------

    def health(self) -> Health:
        now = self.clock()
        problems: list[Problem] = []
        for state in self.loops.values():
            if state.failed_at is None or state.last_cause is None:
                continue
            if state.running and now - state.started_at >= self.stable_seconds:
                continue
            if state.task is None or state.task.done():
                continue
            problems.append(
                Problem(
                    loop=state.name,
                    cause=state.last_cause,
                    since=state.failed_at,
                    restarts=state.restarts,
                )
            )
        problems.extend(self.faults.values())
        for name, watch in self._watches.items():
            stalled = now - watch.moved_at
            if watch.backlog > 0 and stalled >= self.stall_seconds:
                problems.append(
                    Problem(
                        loop=name,
                        cause=f"{watch.backlog} waiting, no progress for {stalled:.0f} s",
                        since=watch.moved_at,
                    )
                )
        problems.sort(key=lambda p: (p.since, p.loop))
        return Health(problems=tuple(problems), loops=len(self.loops))

    async def watchdog(self, stop: asyncio.Event, every: float = 1.0) -> None:
        """Sample the watched backlogs until ``stop`` (itself run under :meth:`spawn`)."""
        while not stop.is_set():
            self.sample()
            await _sleep_unless(stop, every)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


def health_json(health: Health, now_monotonic: float, **extra: object) -> dict[str, object]:
    """``/healthz``'s body."""
    return {
        "ok": health.ok,
        **extra,
        "loops": health.loops,
        "problems": [
            {
                "loop": p.loop,
                "cause": p.cause,
                "for_seconds": round(max(0.0, now_monotonic - p.since), 1),
                "restarts": p.restarts,
            }
            for p in health.problems
        ],
    }
