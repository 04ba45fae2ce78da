"""The calls-versus-freshness curve (bench/freshness.py): the naive sync's calls computed from
a day's events agree with the naive sync run against the sandbox, at several periods."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from bench.fortnox_day import DayPlan, schedule, seed
from bench.freshness import (
    FORTNOX_REQUESTS_PER_SECOND,
    PERIODS,
    curve,
    freshest_feasible,
    naive_calls,
)
from bench.naive import NaiveSync
from sandbox.fortnox.state import SandboxState


@dataclass(frozen=True)
class Ev:
    at: float
    kind: str
    key: str
    data: dict[str, Any] = field(default_factory=dict)


def move(at: float, key: str, delta: int) -> Ev:
    return Ev(at, "movement", key, {"delta": delta})


def test_a_cycle_writes_each_article_whose_net_change_is_not_zero() -> None:
    events = [
        move(1, "A", -1),
        move(2, "A", 1),  # A is back where it was by the first cycle: no write
        move(3, "B", -2),
        move(12, "B", -1),
        move(13, "C", 5),
        Ev(14, "invoice", "INV1"),
        Ev(15, "customer_edit", "7"),  # goes to the till only: no Fortnox call
        Ev(25, "zreport", "1"),
    ]
    day = naive_calls(events, day_seconds=30, period=10, reads_per_cycle=4)
    assert (day.cycles, day.reads) == (3, 12)
    assert day.writes == 1 + 2 + 1 + 1  # B | B, C | the order | the voucher
    assert day.calls == 17
    nightly = naive_calls(events, day_seconds=30, period=86_400, reads_per_cycle=4)
    assert (nightly.cycles, nightly.reads, nightly.writes) == (1, 4, 2 + 2)  # B, C, order, voucher


def test_an_event_at_a_cycle_boundary_goes_to_the_next_cycle() -> None:
    # NaiveSync applies the events before k * period to cycle k.
    events = [move(10, "A", -1), move(10.5, "A", 1)]
    assert naive_calls(events, 20, 10, 1).writes == 0
    assert naive_calls(events, 20, 10.25, 1).writes == 2


def test_periods_must_be_positive() -> None:
    with pytest.raises(ValueError):
        naive_calls([], 10, 0, 1)


def test_the_computed_calls_agree_with_the_naive_sync_run_against_the_sandbox() -> None:
    plan = DayPlan(
        articles=600,
        customers=40,
        movements=400,
        moved_articles=120,
        customer_edits=5,
        invoices=4,
        zreports=1,
        hours=1.0,
    )
    events = schedule(plan)
    measured: dict[float, tuple[int, int]] = {}
    reads_per_cycle = 0.0
    for period in (3600.0, 600.0, 120.0, 30.0):
        state = SandboxState()
        naive = NaiveSync(state, seed(state, plan, "naive-test"), cycle_seconds=period)
        result = asyncio.run(naive.run(events, plan.day_seconds))
        measured[period] = (int(result["calls"]), int(result["writes"]))
        reads_per_cycle = result["reads"] / result["cycles"]
    for period, (calls, writes) in measured.items():
        computed = naive_calls(events, plan.day_seconds, period, reads_per_cycle)
        assert (computed.calls, computed.writes) == (calls, writes), period
    # The periods do differ in what they cost, so the agreement is not a coincidence.
    assert len({calls for calls, _ in measured.values()}) == len(measured)


def test_the_curve_ends_at_kassasyncs_freshness_and_marks_what_fortnox_cannot_serve() -> None:
    events = [move(float(i), f"A{i % 7}", -1) for i in range(0, 3600, 5)]
    points = curve(
        events,
        day_seconds=3600,
        reads_per_cycle=25,
        kassasync_calls=1000,
        kassasync_freshness_seconds=0.25,
    )
    assert [p.label for p in points] == [label for label, _ in PERIODS] + ["kassasync"]
    assert points[-1].period_seconds == 0.25
    budget = 3600 * FORTNOX_REQUESTS_PER_SECOND
    for p in points:
        assert p.calls == p.reads + p.writes
        assert p.feasible == (p.calls <= budget)
        assert p.naive_vs_kassasync == round(p.calls / 1000, 3)
    by_label = {p.label: p for p in points}
    assert by_label["nightly"].feasible and by_label["nightly"].cycles == 1
    assert by_label["30 s"].reads == 120 * 25
    assert not by_label["kassasync"].feasible  # 14,400 cycles of 25 reads
    assert by_label["kassasync"].reads == 14_400 * 25
    # Fresher costs the naive sync more, never less.
    calls = [p.calls for p in points]
    assert calls == sorted(calls)


def test_the_freshest_feasible_period_is_the_shortest_that_fits_fortnoxs_budget() -> None:
    # 3,600 s at 5 requests/s: 18,000 requests. 100 reads a cycle: at most 180 cycles, less the
    # writes: 720 movements of one article each, each cycle writing the ones it saw.
    events = [move(float(i), f"A{i}", -1) for i in range(0, 3600, 5)]
    period, day = freshest_feasible(events, 3600, 100)
    budget = 3600 * FORTNOX_REQUESTS_PER_SECOND
    assert day.calls <= budget
    assert naive_calls(events, 3600, 3600 / (day.cycles + 1), 100).calls > budget
    assert day.cycles == 172 and period == pytest.approx(3600 / 172)  # 17,200 reads + 720 writes
