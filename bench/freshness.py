"""The calls-versus-freshness curve (issue 15): Kassasync's Fortnox calls in a day and its
freshness, next to the naive full sync's calls for the same day at a range of cycle periods.

The naive sync (``bench.naive.NaiveSync``) reads every page of every register each cycle and
writes every difference it finds, so at a cycle period ``P`` (its freshness: a change waits up
to ``P`` for the next cycle) it makes

* ``ceil(day / P)`` cycles of ``reads_per_cycle`` page reads (measured by running it), and
* the writes of each cycle: one stock write per article whose till stock moved by a net
  non-zero amount since the previous cycle (it overwrites Fortnox's level with the till's), one
  order per invoice and one voucher per Z-report (each once, at the first cycle after it).

``naive_calls`` computes that from the day's events exactly as ``NaiveSync.run`` applies them
(events before ``k * P`` go into cycle ``k``); ``tests/bench/test_freshness.py`` runs the naive
sync at several periods and checks the two agree. A period whose calls do not fit in Fortnox's
budget (25 requests per 5 s, all day) is marked infeasible: no integration could run it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bench.naive import DayEvent

#: The naive sync's periods on the curve (seconds), besides Kassasync's own freshness.
PERIODS: tuple[tuple[str, float], ...] = (
    ("nightly", 24 * 3600.0),
    ("hourly", 3600.0),
    ("15 min", 900.0),
    ("5 min", 300.0),
    ("1 min", 60.0),
    ("30 s", 30.0),
)

#: Fortnox's rate limit: 25 requests per 5 s per token.
FORTNOX_REQUESTS_PER_SECOND = 25 / 5.0


@dataclass(frozen=True)
class NaiveDay:
    """The naive sync's calls over one day at one cycle period."""

    cycles: int
    reads: int
    writes: int

    @property
    def calls(self) -> int:
        return self.reads + self.writes


def naive_calls(
    events: Sequence[DayEvent], day_seconds: float, period: float, reads_per_cycle: float
) -> NaiveDay:
    """The naive sync's calls for ``events`` over ``day_seconds`` at one cycle every ``period``
    seconds (the last cycle at or after the day's end; a period longer than the day is one
    cycle at ``period``, as a nightly run after closing)."""
    if period <= 0 or day_seconds <= 0:
        raise ValueError("the period and the day must be positive")
    cycles = math.ceil(day_seconds / period)
    ordered = sorted(events, key=lambda e: e.at)
    writes = 0
    index = 0
    for k in range(1, cycles + 1):
        horizon = k * period
        net: dict[str, int] = {}
        while index < len(ordered) and ordered[index].at < horizon:
            event = ordered[index]
            index += 1
            if event.kind == "movement":
                net[event.key] = net.get(event.key, 0) + int(event.data["delta"])
            elif event.kind in ("invoice", "zreport"):
                writes += 1
        writes += sum(1 for delta in net.values() if delta)
    return NaiveDay(cycles, round(reads_per_cycle * cycles), writes)


@dataclass(frozen=True)
class CurvePoint:
    """One point of the curve: the naive sync at ``period_seconds`` (its freshness)."""

    label: str
    period_seconds: float
    cycles: int
    reads: int
    writes: int
    calls: int
    #: Whether the naive sync's calls fit in Fortnox's budget over the day at all.
    feasible: bool
    #: The naive sync's calls over Kassasync's (> 1: Kassasync makes fewer).
    naive_vs_kassasync: float


def curve(
    events: Sequence[DayEvent],
    day_seconds: float,
    reads_per_cycle: float,
    kassasync_calls: int,
    kassasync_freshness_seconds: float,
    periods: Iterable[tuple[str, float]] = PERIODS,
) -> list[CurvePoint]:
    """The naive sync at each of ``periods`` and at Kassasync's own freshness (the last point,
    labelled ``kassasync``), each beside Kassasync's calls for the same day."""
    if kassasync_calls <= 0:
        raise ValueError("Kassasync's calls must be positive")
    budget = day_seconds * FORTNOX_REQUESTS_PER_SECOND
    points: list[CurvePoint] = []
    for label, period in [*periods, ("kassasync", kassasync_freshness_seconds)]:
        day = naive_calls(events, day_seconds, period, reads_per_cycle)
        points.append(
            CurvePoint(
                label=label,
                period_seconds=period,
                cycles=day.cycles,
                reads=day.reads,
                writes=day.writes,
                calls=day.calls,
                feasible=day.calls <= budget,
                naive_vs_kassasync=round(day.calls / kassasync_calls, 3),
            )
        )
    return points


def freshest_feasible(
    events: Sequence[DayEvent], day_seconds: float, reads_per_cycle: float
) -> tuple[float, NaiveDay]:
    """The shortest cycle period (a whole number of cycles in the day) at which the naive
    sync's calls still fit in Fortnox's budget over the day, and its calls there."""
    if reads_per_cycle <= 0:
        raise ValueError("the reads per cycle must be positive")
    budget = day_seconds * FORTNOX_REQUESTS_PER_SECOND
    cycles = math.floor(budget / reads_per_cycle)
    while cycles >= 1:
        period = day_seconds / cycles
        day = naive_calls(events, day_seconds, period, reads_per_cycle)
        if day.calls <= budget:
            return period, day
        cycles -= 1
    raise ValueError("not even one cycle fits in the budget")


def curve_json(points: Sequence[CurvePoint]) -> list[dict[str, Any]]:
    return [asdict(p) for p in points]
