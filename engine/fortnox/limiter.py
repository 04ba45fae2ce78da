"""Client-side sliding-window rate limiting: 25 requests per 5 seconds per (client id, tenant).

Fortnox counts requests in a sliding 5-second window per client id and tenant and answers 429
(without ``Retry-After``) once a window holds more than 25. The limiter lets a request go only
when fewer than ``limit`` requests occupy the window. A request the transport sends occupies a
slot from the moment it is handed to the network until its answer, and then for the window after
the answer: Fortnox counts it when it arrives, which is somewhere between the two, so however
late it arrives (an event loop starved of CPU, a slow network) no 5 seconds of Fortnox's can hold
26 arrivals. The window is also widened by a small ``safety_margin`` for clock jitter.

Waiting coroutines are served strictly first come, first served. The clock and the sleep
function are injectable, so tests run in virtual time.

Bursts are kept small: once ``burst`` requests are in the window, further requests are paced
``window / limit`` apart instead of all 25 leaving at once. A burst of 25 arrives at Fortnox
with queueing jitter (new connections, server-side queues) that a later, faster burst can
overtake, which would squeeze 26 arrivals into 5 seconds; paced sends keep the arrival spacing
close to the send spacing. The long-run rate is unchanged (25 per window + margin).

A read-then-write pair (an absolute stock write: ``GET`` the article, ``PUT`` its new quantity)
takes its two slots together: inside ``async with limiter.pair():`` the first request waits
until the window has room for two and holds the second slot, so the second goes the moment it
is ready, with no pacing in between. Every other request sees the held slot as taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

DEFAULT_LIMIT = 25
DEFAULT_WINDOW = 5.0
DEFAULT_SAFETY_MARGIN = 0.1
DEFAULT_BURST = 5
#: Waits shorter than this are rounding errors of the clock arithmetic, not waits.
_EPSILON = 1e-9


class SlidingWindow:
    """The pure part: the requests in flight and the counted times of the last ``limit``.

    ``delay(now)`` is how long a request must wait before it may be sent; ``record(now)``
    counts one sent at ``now``; ``open(now)`` counts one in flight from ``now`` until
    ``close(sent, at)`` counts it at ``at``, its answer. Invariant: at no instant do more than
    ``limit`` requests occupy the window (in flight, or counted within ``period`` before it),
    provided each send follows a ``delay`` of zero at the same instant.
    """

    def __init__(
        self,
        limit: int = DEFAULT_LIMIT,
        period: float = DEFAULT_WINDOW,
        *,
        min_interval: float = 0.0,
        burst: int | None = None,
    ) -> None:
        if limit < 1 or period <= 0:
            raise ValueError("limit must be >= 1 and period > 0")
        self.limit = limit
        self.period = period
        self.min_interval = min_interval
        self.burst = limit if burst is None else burst
        #: Counted times (sends recorded, answers closed), in the order counted.
        self._sent: deque[float] = deque(maxlen=limit)
        #: Send times of the requests in flight (opened, not closed).
        self._open: list[float] = []
        self._last_send = float("-inf")
        self._blocked_until = float("-inf")
        #: Slots promised to the second request of a pair, not sent yet.
        self.reserved = 0

    def delay(self, now: float, need: int = 1) -> float:
        """How long until ``need`` requests may go (the first now, the others held for later)."""
        wait = self._blocked_until - now
        room = self.limit - self.reserved - len(self._open) - need
        if room < 0:
            # Held slots and requests in flight fill the window: wait for a pair to send (or
            # give up) its second, or for an answer.
            return max(wait, self.period / self.limit, 0.0)
        if len(self._sent) > room:
            wait = max(wait, self._sent[len(self._sent) - room - 1] + self.period - now)
        busy = self.in_window(now) + self.reserved
        if self.min_interval > 0 and self._last_send > float("-inf") and busy >= self.burst:
            wait = max(wait, self._last_send + self.min_interval - now)
        # A wait of a few ulps is float rounding of ``t + delay(t)``: no wait.
        return wait if wait > _EPSILON else 0.0

    def blocked_for(self, now: float) -> float:
        return max(0.0, self._blocked_until - now)

    def record(self, now: float) -> None:
        """A request sent and answered at ``now``."""
        self.open(now)
        self.close(now, now)

    def open(self, now: float) -> None:
        """A request sent at ``now`` is in flight: it occupies a slot until it is closed."""
        self._open.append(now)
        self._last_send = now

    def close(self, sent: float, at: float) -> None:
        """The request sent at ``sent`` was answered (or given up) at ``at``: it is counted
        there, Fortnox having received it at the latest then."""
        with contextlib.suppress(ValueError):
            self._open.remove(sent)
            self._sent.append(at)

    def block_until(self, when: float) -> None:
        """Send nothing before ``when`` (used after Fortnox answered 429)."""
        self._blocked_until = max(self._blocked_until, when)

    def in_window(self, now: float) -> int:
        return len(self._open) + sum(1 for t in self._sent if t > now - self.period)


@dataclass
class LimiterStats:
    """Counters for metrics: how many acquired, how long they waited."""

    acquired: int = 0
    waited: int = 0
    total_wait: float = 0.0
    max_wait: float = 0.0
    last_wait: float = 0.0
    penalties: int = 0
    waiting_now: int = 0

    @property
    def mean_wait(self) -> float:
        return self.total_wait / self.acquired if self.acquired else 0.0


@dataclass(frozen=True, slots=True)
class Slot:
    """A slot taken for one request: how long it waited for it, and when it was sent."""

    waited: float
    sent: float


@dataclass
class _Pair:
    """A read-then-write pair in progress: ``state`` is unused, held (the first request went
    and the second slot is kept) or spent."""

    limiter: SlidingWindowLimiter
    #: Only the task that opened the pair uses it (tasks it starts inherit the context).
    task: asyncio.Task[object] | None
    state: str = "unused"


_PAIR: contextvars.ContextVar[_Pair | None] = contextvars.ContextVar("limiter_pair", default=None)


class SlidingWindowLimiter:
    """Async, FIFO-fair limiter over a :class:`SlidingWindow`.

    ``acquire()`` returns the seconds it waited. The request must be sent right after it
    returns; the send is counted at that instant.
    """

    def __init__(
        self,
        limit: int = DEFAULT_LIMIT,
        window: float = DEFAULT_WINDOW,
        *,
        safety_margin: float = DEFAULT_SAFETY_MARGIN,
        burst: int | None = DEFAULT_BURST,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        effective = window + safety_margin
        self.window = SlidingWindow(
            limit,
            effective,
            min_interval=effective / limit if burst is not None and burst < limit else 0.0,
            burst=burst,
        )
        self.limit = limit
        self.period = window
        self._clock = clock
        self._sleep = sleep
        self._queue: deque[asyncio.Future[None]] = deque()
        self._on_wait = on_wait
        self.stats = LimiterStats()

    def _wake_head(self) -> None:
        if self._queue and not self._queue[0].done():
            self._queue[0].set_result(None)

    @contextlib.asynccontextmanager
    async def pair(self) -> AsyncIterator[None]:
        """The next two requests of this task on this limiter take their slots together."""
        pair = _Pair(self, asyncio.current_task())
        token = _PAIR.set(pair)
        try:
            yield
        finally:
            _PAIR.reset(token)
            if pair.state == "held":
                self.window.reserved -= 1
                pair.state = "spent"
                self._wake_head()

    async def acquire(self) -> float:
        """Wait for a slot for a request sent right after and answered at once (counted at the
        send). Returns the seconds waited."""
        slot = await self.acquire_slot()
        self.answered(slot)
        return slot.waited

    async def acquire_slot(self) -> Slot:
        """Wait for a slot for a request sent right after, which keeps it until
        :meth:`answered` (the transport's way: a late arrival stays counted)."""
        pair = _PAIR.get()
        if pair is not None and pair.limiter is self and pair.task is asyncio.current_task():
            if pair.state == "held":
                return await self._send_held(pair)
            if pair.state == "unused":
                pair.state = "held"
                return await self._acquire(2)
        return await self._acquire(1)

    def answered(self, slot: Slot) -> None:
        """The request of ``slot`` got its answer (or failed, or was given up) now."""
        self.window.close(slot.sent, self._clock())
        self._wake_head()

    async def _send_held(self, pair: _Pair) -> Slot:
        """The second request of a pair: its slot is held, so it waits only for a 429 pause."""
        start = self._clock()
        pair.state = "spent"
        self.window.reserved -= 1
        while (blocked := self.window.blocked_for(self._clock())) > 0:
            await self._sleep(blocked)
        now = self._clock()
        self.window.open(now)
        waited = max(0.0, now - start)
        self._account(waited)
        return Slot(waited, now)

    async def _acquire(self, need: int) -> Slot:
        start = self._clock()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(fut)
        self.stats.waiting_now += 1
        try:
            if self._queue[0] is fut:
                fut.set_result(None)
            await fut
            while True:
                delay = self.window.delay(self._clock(), need)
                if delay <= 0:
                    break
                await self._sleep(delay)
            now = self._clock()
            self.window.open(now)
            self.window.reserved += need - 1
        finally:
            self.stats.waiting_now -= 1
            with contextlib.suppress(ValueError):
                self._queue.remove(fut)
            self._wake_head()
        waited = max(0.0, now - start)
        self._account(waited)
        return Slot(waited, now)

    def _account(self, waited: float) -> None:
        s = self.stats
        s.acquired += 1
        s.last_wait = waited
        if waited > 0:
            s.waited += 1
            s.total_wait += waited
            s.max_wait = max(s.max_wait, waited)
        if self._on_wait is not None:
            self._on_wait(waited)

    def penalize(self, seconds: float | None = None) -> None:
        """Pause every request on this key (Fortnox answered 429: the window is full)."""
        self.stats.penalties += 1
        self.window.block_until(self._clock() + (self.period if seconds is None else seconds))

    def in_window(self) -> int:
        return self.window.in_window(self._clock())


class LimiterRegistry:
    """One limiter per (client id, tenant), shared by every client object in the process."""

    def __init__(self) -> None:
        self._limiters: dict[tuple[str, str], SlidingWindowLimiter] = {}

    def get(self, client_id: str, tenant: str, window: float | None = None) -> SlidingWindowLimiter:
        """The key's limiter; ``window``: the server's window for its 25 requests (None: the
        limiter the key has, or Fortnox's 5 s). A changed window replaces the limiter."""
        key = (client_id, tenant)
        limiter = self._limiters.get(key)
        if limiter is None or (window is not None and limiter.period != window):
            limiter = self._limiters[key] = SlidingWindowLimiter(window=window or DEFAULT_WINDOW)
        return limiter

    def stats(self) -> dict[tuple[str, str], LimiterStats]:
        return {k: v.stats for k, v in self._limiters.items()}
