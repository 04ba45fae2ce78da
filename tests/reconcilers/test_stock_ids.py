"""A till's movement and count ids: one id is one movement (or count). The same movement sent
twice is applied once; the id reused for another article or value is refused with the reason
(the runtimes dead-letter it), and the state is left as it was."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconcilers.context import Refused
from reconcilers.dispatch import reconcile
from reconcilers.state import MemoryState
from reconcilers.stock import KIND
from reconcilers.stock_ids import (
    BUCKETS,
    COUNT_IDS,
    DAYS,
    DAYS_KEY,
    MOVEMENT_IDS,
    Known,
    bucket_key,
    known,
)
from topics.common import REDELIVERY_WINDOW_DAYS
from topics.envelope import Envelope
from topics.till import StockCounted, StockMovement

TENANT = "shop"
AT = dt.datetime(2026, 3, 14, 10, 0, tzinfo=dt.UTC)


def move(n: int, movement_id: str, delta: str, article: str = "A1") -> Envelope:
    return StockMovement.model_validate(
        {
            "id": f"m{n}",
            "tenant": TENANT,
            "occurred_at": AT + dt.timedelta(seconds=n),
            "data": {
                "article_number": article,
                "movement_id": movement_id,
                "delta": delta,
                "reason": "correction",
            },
        }
    )


def count(n: int, count_id: str, quantity: str) -> Envelope:
    return StockCounted.model_validate(
        {
            "id": f"c{n}",
            "tenant": TENANT,
            "occurred_at": AT + dt.timedelta(seconds=n),
            "data": {"article_number": "A1", "count_id": count_id, "quantity": quantity},
        }
    )


def apply(state: MemoryState, message: Envelope) -> list[str]:
    decision = reconcile(state, message)
    state.apply(decision)
    return [n.event for n in decision.notes]


def till_level(state: MemoryState, article: str = "A1") -> Decimal:
    record = state.get(KIND, article)
    assert record is not None
    return Decimal(record["till"])


NONZERO = st.integers(-50, 50).filter(bool).map(str)


@settings(max_examples=150, deadline=None)
@given(first=NONZERO, second=NONZERO, other_article=st.booleans())
def test_a_reused_movement_id_is_refused_unless_it_is_the_same_movement(
    first: str, second: str, other_article: bool
) -> None:
    state = MemoryState()
    apply(state, move(0, "R1", first))
    before: dict[tuple[str, str], Any] = dict(state.records)
    again = move(1, "R1", second, "A2" if other_article else "A1")
    if second == first and not other_article:
        assert apply(state, again) == ["stock.movement.duplicate"]
        assert till_level(state) == Decimal(first)
        return
    with pytest.raises(Refused) as refused:
        reconcile(state, again)
    assert "movement_id 'R1'" in str(refused.value)
    assert f"delta {Decimal(second)}" in str(refused.value)
    assert state.records == before


def test_a_movement_recorded_before_deltas_were_kept_compares_by_article() -> None:
    state = MemoryState({("stock.mv", "R0"): {"article": "A1"}})
    assert apply(state, move(0, "R0", "-3")) == ["stock.ids.upgraded", "stock.movement.duplicate"]
    with pytest.raises(Refused):
        reconcile(state, move(1, "R0", "-3", "A2"))


def test_a_reused_count_id_with_another_quantity_is_refused() -> None:
    state = MemoryState()
    apply(state, count(0, "K1", "7"))
    assert known(state.get, COUNT_IDS, "K1") == Known("A1", "7")
    assert "K1" in state.records[(COUNT_IDS, bucket_key("2026-03-14", "K1"))]["ids"]
    assert apply(state, count(1, "K1", "7.0")) == ["stock.count.duplicate"]
    with pytest.raises(Refused, match="count_id 'K1'"):
        reconcile(state, count(2, "K1", "8"))
    assert till_level(state) == Decimal(7)


def later(message: Envelope, days: float) -> Envelope:
    return message.model_copy(update={"occurred_at": message.occurred_at + dt.timedelta(days=days)})


def test_movement_ids_are_remembered_through_the_redelivery_window_then_forgotten() -> None:
    """Inside the window (plus the day the id was applied on) a resent movement is a duplicate;
    on the first movement of a day past it, the old ids are forgotten, together, by the message's
    own time (ingest refuses an event that old: docs/contract.md, *Redelivery window*)."""
    state = MemoryState()
    apply(state, move(0, "R1", "-1"))
    apply(state, count(1, "K1", "5"))
    inside = REDELIVERY_WINDOW_DAYS + 1
    assert apply(state, later(move(2, "R1", "-1"), inside)) == ["stock.movement.duplicate"]
    assert known(state.get, MOVEMENT_IDS, "R1") == Known("A1", "-1")
    assert till_level(state) == Decimal(5)
    notes = apply(state, later(move(3, "R2", "-1"), inside + 1))
    assert "stock.ids.forgotten" in notes
    assert known(state.get, MOVEMENT_IDS, "R1") is None
    assert known(state.get, COUNT_IDS, "K1") is None
    assert known(state.get, MOVEMENT_IDS, "R2") is not None
    today = (AT + dt.timedelta(days=inside + 1)).date().isoformat()
    assert state.get(DAYS, DAYS_KEY) == {"day": today, "days": [today]}
    # The forgotten day's records are gone, not emptied.
    assert not [k for k in state.records if k[0] in (MOVEMENT_IDS, COUNT_IDS) and k[1] < today]


def test_ids_remembered_before_they_carried_a_day_count_from_the_next_new_day() -> None:
    state = MemoryState({("stock.mv", "OLD"): {"article": "A1", "delta": "-1"}})
    apply(state, move(0, "R1", "-1"))
    assert ("stock.mv", "OLD") not in state.records
    assert "OLD" in state.records[(MOVEMENT_IDS, bucket_key("2026-03-14", "OLD"))]["ids"]
    assert apply(state, move(1, "OLD", "-1")) == ["stock.movement.duplicate"]
    apply(state, later(move(2, "R2", "-1"), REDELIVERY_WINDOW_DAYS + 2))
    assert known(state.get, MOVEMENT_IDS, "OLD") is None


def test_ids_kept_one_record_each_are_moved_to_their_days_on_the_first_id_after_the_upgrade() -> (
    None
):
    """A store from before the buckets: its ids (with their days) are moved into their days'
    records by the first movement or count after the upgrade, resends of them are still found,
    and they are forgotten with their day."""
    day0 = AT.date()
    state = MemoryState(
        {
            ("stock.mv", "M-old"): {"article": "A1", "delta": "-2", "on": str(day0)},
            ("stock.mv", "M-older"): {
                "article": "A2",
                "delta": "1",
                "on": str(day0 - dt.timedelta(days=1)),
            },
            ("stock.count", "C-old"): {"article": "A1", "quantity": "9", "on": str(day0)},
            ("stock.ids", "last"): {"day": str(day0)},
        }
    )
    notes = apply(state, count(0, "C-new", "4"))
    assert "stock.ids.upgraded" in notes
    assert not [k for k in state.records if k[0] in ("stock.mv", "stock.count")]
    assert state.get(DAYS, DAYS_KEY) == {
        "day": str(day0),
        "days": [str(day0 - dt.timedelta(days=1)), str(day0)],
    }
    assert apply(state, move(1, "M-older", "1", "A2")) == ["stock.movement.duplicate"]
    with pytest.raises(Refused, match="count_id 'C-old'"):
        reconcile(state, count(2, "C-old", "8"))
    assert apply(state, count(3, "C-old", "9")) == ["stock.count.duplicate"]
    # The older day leaves the window one day before the other.
    apply(state, later(move(4, "R-a", "-1"), REDELIVERY_WINDOW_DAYS + 1))
    assert known(state.get, MOVEMENT_IDS, "M-older") is None
    assert known(state.get, MOVEMENT_IDS, "M-old") == Known("A1", "-2")


def test_a_message_of_an_earlier_day_keeps_its_id_under_that_day() -> None:
    state = MemoryState()
    apply(state, later(move(0, "R-late", "-1"), 2))
    apply(state, move(1, "R-early", "-1"))
    days = state.get(DAYS, DAYS_KEY)
    assert days == {"day": "2026-03-16", "days": ["2026-03-14", "2026-03-16"]}
    assert apply(state, later(move(2, "R-early", "-1"), 2)) == ["stock.movement.duplicate"]


def test_a_busy_day_is_held_in_at_most_the_buckets_records() -> None:
    state = MemoryState()
    for n in range(600):
        apply(state, move(n, f"R{n}", "-1", f"A{n % 7}"))
    records = [k for k in state.records if k[0] == MOVEMENT_IDS]
    assert len(records) == BUCKETS
    assert sum(len(state.records[k]["ids"]) for k in records) == 600
    assert all(known(state.get, MOVEMENT_IDS, f"R{n}") is not None for n in range(600))


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 9), st.sampled_from(["R1", "R2", "R3", "R4"])),
        min_size=1,
        max_size=25,
    )
)
def test_ids_are_duplicates_exactly_while_their_day_is_in_the_window(
    steps: list[tuple[int, str]],
) -> None:
    """Against a model: an id is a duplicate while it is kept; a new id of a later day forgets
    the ids of days older than the window; days may come out of order."""
    state = MemoryState()
    kept: dict[str, int] = {}
    latest: int | None = None
    for n, (day, ident) in enumerate(steps):
        notes = apply(state, later(move(n, ident, "-1"), day))
        if ident in kept:
            assert notes == ["stock.movement.duplicate"], (n, day, ident, kept)
            continue
        assert "stock.movement.duplicate" not in notes, (n, day, ident, kept)
        kept[ident] = day
        if latest is None or day > latest:
            latest = day
            kept = {i: d for i, d in kept.items() if d >= day - (REDELIVERY_WINDOW_DAYS + 1)}
