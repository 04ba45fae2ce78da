from __future__ import annotations

import asyncio
from bisect import bisect_right

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.fortnox.limiter import LimiterRegistry, SlidingWindow, SlidingWindowLimiter
from tests.fortnox.fakes import FakeClock

LIMIT, WINDOW = 25, 5.0


def max_in_any_window(times: list[float], window: float = WINDOW) -> int:
    """The most sends inside any half-open interval (t - window, t]."""
    ordered = sorted(times)
    best = 0
    for i, t in enumerate(ordered):
        first = bisect_right(ordered, t - window)
        best = max(best, i + 1 - first)
    return best


@settings(max_examples=300, deadline=None)
@given(
    gaps=st.lists(st.floats(min_value=0.0, max_value=1.5), min_size=1, max_size=150),
    margin=st.floats(min_value=0.0, max_value=0.2),
    burst=st.integers(min_value=1, max_value=LIMIT),
    paced=st.booleans(),
)
def test_core_never_exceeds_the_window(
    gaps: list[float], margin: float, burst: int, paced: bool
) -> None:
    period = WINDOW + margin
    window = SlidingWindow(
        LIMIT, period, min_interval=period / LIMIT if paced else 0.0, burst=burst
    )
    arrival = 0.0
    last_sent = 0.0
    sent: list[float] = []
    for gap in gaps:
        arrival += gap
        t = max(arrival, last_sent)  # FIFO: never before the one ahead
        t += window.delay(t)
        assert window.delay(t) == 0
        window.record(t)
        sent.append(t)
        last_sent = t
    assert max_in_any_window(sent) <= LIMIT


async def run_backlog(n: int, clock: FakeClock, limiter: SlidingWindowLimiter) -> list[int]:
    order: list[int] = []
    sent: list[float] = []

    async def one(i: int) -> None:
        await limiter.acquire()
        sent.append(clock())
        order.append(i)

    await asyncio.gather(*(one(i) for i in range(n)))
    assert max_in_any_window(sent) <= LIMIT
    return order


async def test_backlog_is_served_fifo_within_the_limit() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(clock=clock, sleep=clock.sleep)
    start = clock()
    order = await run_backlog(200, clock, limiter)
    assert order == list(range(200))
    elapsed = clock() - start
    # A burst of 5, then one every (5 + margin) / 25 seconds: 25 per 5.1 s in the long run.
    assert elapsed == pytest.approx(5.1 + (200 - 26) * 5.1 / 25, abs=1e-6)
    # Throughput with a backlog: >= 95 % of 5 requests/s.
    assert 200 / elapsed >= 0.95 * 5


async def test_stats_report_waits() -> None:
    clock = FakeClock()
    waits: list[float] = []
    limiter = SlidingWindowLimiter(clock=clock, sleep=clock.sleep, on_wait=waits.append)
    await run_backlog(30, clock, limiter)
    assert limiter.stats.acquired == 30
    # (Virtual time jumps while the 26th waits, so later ones start "after" the jump.)
    assert limiter.stats.waited >= 1
    assert limiter.stats.total_wait >= 5.0
    assert len(waits) == 30 and waits[:5] == [0.0] * 5
    assert limiter.stats.max_wait >= 5.0
    assert limiter.stats.waiting_now == 0


async def test_cancelled_waiter_does_not_block_the_queue() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(limit=1, window=1.0, clock=clock, sleep=clock.sleep)
    await limiter.acquire()
    gate = asyncio.Event()

    async def slow_sleep(seconds: float) -> None:
        await gate.wait()
        await clock.sleep(seconds)

    limiter._sleep = slow_sleep
    head = asyncio.create_task(limiter.acquire())
    second = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    head.cancel()
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.wait_for(second, 1) >= 1.0
    assert limiter.stats.waiting_now == 0


async def test_penalize_holds_everyone() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(clock=clock, sleep=clock.sleep)
    start = clock()
    limiter.penalize(5.0)
    await limiter.acquire()
    assert clock() - start >= 5.0
    assert limiter.stats.penalties == 1


async def test_small_bursts_then_paced() -> None:
    clock = FakeClock(0.0)
    limiter = SlidingWindowLimiter(clock=clock, sleep=clock.sleep, burst=5)
    sent: list[float] = []
    for _ in range(8):
        await limiter.acquire()
        sent.append(round(clock(), 3))
    assert sent == [0.0, 0.0, 0.0, 0.0, 0.0, 0.204, 0.408, 0.612]


async def test_unpaced_limiter_allows_a_full_burst() -> None:
    clock = FakeClock(0.0)
    limiter = SlidingWindowLimiter(clock=clock, sleep=clock.sleep, burst=None)
    for _ in range(25):
        await limiter.acquire()
    assert clock() == 0.0
    await limiter.acquire()
    assert clock() == pytest.approx(5.1)


def test_registry_shares_one_limiter_per_client_and_tenant() -> None:
    reg = LimiterRegistry()
    assert reg.get("c", "t1") is reg.get("c", "t1")
    assert reg.get("c", "t1") is not reg.get("c", "t2")
    assert reg.get("c", "t1") is not reg.get("d", "t1")
    assert set(reg.stats()) == {("c", "t1"), ("c", "t2"), ("d", "t1")}


@settings(max_examples=60, deadline=None)
@given(gaps=st.lists(st.floats(min_value=0.0, max_value=0.6), min_size=1, max_size=90))
def test_async_limiter_is_fifo_and_never_exceeds_the_window(gaps: list[float]) -> None:
    async def scenario() -> list[tuple[int, float]]:
        clock = FakeClock(0.0)
        limiter = SlidingWindowLimiter(clock=clock, sleep=clock.sleep)
        sent: list[tuple[int, float]] = []

        async def one(i: int) -> None:
            await limiter.acquire()
            sent.append((i, clock()))

        tasks = []
        arrival = 0.0
        for i, gap in enumerate(gaps):
            arrival += gap
            clock.now = max(clock.now, arrival)
            tasks.append(asyncio.create_task(one(i)))
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        return sent

    sent = asyncio.run(scenario())
    assert [i for i, _ in sent] == list(range(len(gaps)))  # first come, first served
    assert max_in_any_window([t for _, t in sent]) <= LIMIT


def test_registry_follows_the_servers_window() -> None:
    reg = LimiterRegistry()
    assert reg.get("c", "t").period == 5.0
    faster = reg.get("c", "t", 1.0)
    assert faster.period == 1.0
    assert reg.get("c", "t") is faster and reg.get("c", "t", 1.0) is faster


@settings(max_examples=300, deadline=None)
@given(
    requests=st.lists(
        st.tuples(
            # the gap before it is wanted (often none: a backlog)
            st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=1.0)),
            # send to answer: a starved event loop, a slow network
            st.one_of(st.sampled_from([0.0, 0.05, 4.0, 6.0]), st.floats(0.0, 8.0)),
            # where in between Fortnox receives it
            st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0)),
        ),
        min_size=1,
        max_size=120,
    ),
    burst=st.integers(min_value=1, max_value=LIMIT),
)
# 25 requests that reach Fortnox 4 s late, and 25 more the moment their send times leave the
# window: counted at the send alone, all 50 arrive within 0.2 s.
@example(requests=[(0.0, 4.0, 1.0)] * LIMIT + [(0.0, 0.0, 0.0)] * LIMIT, burst=LIMIT)
def test_late_arrivals_never_put_26_requests_into_fortnoxs_window(
    requests: list[tuple[float, float, float]], burst: int
) -> None:
    """Counted at the send alone, a request that reaches Fortnox seconds late (its sender
    starved of CPU) lands in a window the limiter thinks empty: Fortnox sees 26 and answers 429.
    Held until its answer and counted from there, it cannot."""
    window = SlidingWindow(LIMIT, WINDOW + 0.1, min_interval=(WINDOW + 0.1) / LIMIT, burst=burst)
    in_flight: list[tuple[float, float]] = []  # (answer time, send time), by answer time
    arrivals: list[float] = []
    t = 0.0

    def answer_until(now: float) -> None:
        in_flight.sort()
        while in_flight and in_flight[0][0] <= now:
            answered, sent = in_flight.pop(0)
            window.close(sent, answered)

    for gap, latency, where in requests:
        t += gap
        while True:
            answer_until(t)
            delay = window.delay(t)
            if delay == 0:
                break
            next_answer = min((a for a, _ in in_flight), default=float("inf"))
            t = min(t + delay, next_answer) if next_answer > t else t + delay
        window.open(t)
        in_flight.append((t + latency, t))
        arrivals.append(t + latency * where)
    assert max_in_any_window(arrivals) <= LIMIT


async def test_the_transport_holds_a_slot_until_the_answer() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(burst=None, clock=clock, sleep=clock.sleep)
    slots = [await limiter.acquire_slot() for _ in range(LIMIT)]
    assert limiter.in_window() == LIMIT
    clock.now += WINDOW + 1  # no answer yet: the window is still full
    assert limiter.window.delay(clock()) > 0
    limiter.answered(slots[0])
    assert limiter.window.delay(clock()) > 0  # counted from its answer, for a window
    clock.now += WINDOW + 0.2
    assert limiter.window.delay(clock()) == 0
    for slot in slots[1:]:
        limiter.answered(slot)
    assert limiter.in_window() == LIMIT - 1
