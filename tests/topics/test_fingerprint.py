"""``registry.fingerprint`` and ``registry.same_message``: a resent message is told from a
changed one by value, whatever way the till writes the same numbers and instants."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from topics import registry

AT = dt.datetime(2026, 3, 14, 10, 0, tzinfo=dt.UTC)


def movement(delta: Any, at: dt.datetime, article: str = "A1") -> dict[str, Any]:
    return {
        "id": "m1",
        "tenant": "shop",
        "type": "till.stock.movement",
        "occurred_at": at.isoformat(),
        "source": "till",
        "data": {"article_number": article, "movement_id": "R1", "delta": delta, "reason": "other"},
    }


DELTAS = st.decimals(min_value=-1000, max_value=1000, places=3).filter(bool)
ZONES = st.integers(-14 * 60, 14 * 60).map(lambda m: dt.timezone(dt.timedelta(minutes=m)))


@settings(max_examples=200, deadline=None)
@given(delta=DELTAS, zone=ZONES, zeros=st.integers(0, 2), as_number=st.booleans())
def test_the_same_event_written_otherwise_has_the_same_fingerprint(
    delta: Decimal, zone: dt.timezone, zeros: int, as_number: bool
) -> None:
    first = registry.parse_till_event(movement(str(delta), AT))
    written = f"{delta:f}" + ("" if zeros == 0 or "." in f"{delta:f}" else "." + "0" * zeros)
    again = registry.parse_till_event(
        movement(Decimal(written) if as_number else written, AT.astimezone(zone))
    )
    assert again == first
    assert registry.fingerprint(again) == registry.fingerprint(first)
    assert registry.same_message(registry.dump(first), again)


@settings(max_examples=200, deadline=None)
@given(delta=DELTAS, other=DELTAS, seconds=st.integers(0, 3), article=st.sampled_from(["A1", "A2"]))
def test_another_event_has_another_fingerprint(
    delta: Decimal, other: Decimal, seconds: int, article: str
) -> None:
    first = registry.parse_till_event(movement(str(delta), AT))
    changed = registry.parse_till_event(
        movement(str(other), AT + dt.timedelta(seconds=seconds), article)
    )
    same = changed == first
    assert (registry.fingerprint(changed) == registry.fingerprint(first)) is same
    assert registry.same_message(registry.dump(first), changed) is same


def test_a_payload_that_no_longer_parses_is_not_the_same() -> None:
    event = registry.parse_till_event(movement("-1", AT))
    assert not registry.same_message(b'{"type": "till.stock.movement"}', event)
