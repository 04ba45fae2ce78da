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
from reconcilers.stock import COUNTS, IDS_DAY, KIND, MOVEMENTS
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
    state = MemoryState({(MOVEMENTS, "R0"): {"article": "A1"}})
    assert apply(state, move(0, "R0", "-3")) == ["stock.movement.duplicate"]
    with pytest.raises(Refused):
        reconcile(state, move(1, "R0", "-3", "A2"))


def test_a_reused_count_id_with_another_quantity_is_refused() -> None:
    state = MemoryState()
    apply(state, count(0, "K1", "7"))
    assert state.get(COUNTS, "K1") == {"article": "A1", "quantity": "7", "on": "2026-03-14"}
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
    assert state.get(MOVEMENTS, "R1") is not None
    assert till_level(state) == Decimal(5)
    notes = apply(state, later(move(3, "R2", "-1"), inside + 1))
    assert "stock.ids.forgotten" in notes
    assert state.get(MOVEMENTS, "R1") is None
    assert state.get(COUNTS, "K1") is None
    assert state.get(MOVEMENTS, "R2") is not None
    assert state.get(IDS_DAY, "last") == {
        "day": (AT + dt.timedelta(days=inside + 1)).date().isoformat()
    }


def test_ids_remembered_before_they_carried_a_day_count_from_the_next_new_day() -> None:
    state = MemoryState({(MOVEMENTS, "OLD"): {"article": "A1", "delta": "-1"}})
    apply(state, move(0, "R1", "-1"))
    assert state.get(MOVEMENTS, "OLD") == {"article": "A1", "delta": "-1", "on": "2026-03-14"}
    apply(state, later(move(1, "R2", "-1"), REDELIVERY_WINDOW_DAYS + 2))
    assert state.get(MOVEMENTS, "OLD") is None
