"""The Kafka worker's till event ids (``~seen``) are bounded by the redelivery window: the
worker forgets ids older than it on the first till event of a later day (tombstones on the
compacted state changelog), and a resend inside the window is still a duplicate. Pure: the
worker's admission over a tenant's in-memory table, no broker."""

from __future__ import annotations

import datetime as dt

from engine.kafka.runtime import admit
from engine.kafka.store import SEEN, SWEPT, TenantData
from topics.common import REDELIVERY_WINDOW_DAYS
from topics.envelope import Envelope
from topics.names import Topic
from topics.till import StockMovement

AT = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)


def movement(n: int, at: dt.datetime) -> Envelope:
    return StockMovement.model_validate(
        {
            "id": f"ev-{n}",
            "tenant": "shop-a",
            "occurred_at": at,
            "data": {
                "article_number": "1001",
                "movement_id": f"mv-{n}",
                "delta": "-1",
                "reason": "sale",
            },
        }
    )


def deliver(data: TenantData, message: Envelope) -> bool:
    """Admit ``message`` as the worker does; False for a duplicate."""
    admitted = admit(data, Topic.TILL_EVENTS, message)
    if admitted is None:
        return False
    for (kind, key), value in admitted.puts.items():
        data.set(kind, key, value)
    return True


def test_seen_ids_are_forgotten_after_the_window_and_duplicates_inside_it() -> None:
    data = TenantData("shop-a")
    booked = "sie-v1-abc"  # a voucher queued from an SIE file: kept for ever
    data.set(SEEN, booked, {"at": AT.isoformat(), "fp": "f"})
    first = movement(1, AT)
    assert deliver(data, first)
    assert not deliver(data, first)  # a resend: a duplicate
    inside = AT + dt.timedelta(days=REDELIVERY_WINDOW_DAYS + 1)
    assert deliver(data, movement(2, inside))
    assert data.get(SEEN, first.id) is not None
    assert not deliver(data, first)  # still remembered
    past = AT + dt.timedelta(days=REDELIVERY_WINDOW_DAYS + 2)
    assert deliver(data, movement(3, past))
    assert data.get(SEEN, first.id) is None  # forgotten: a tombstone for the changelog
    assert data.get(SEEN, booked) is not None
    assert data.get(SEEN, "ev-2") is not None and data.get(SEEN, "ev-3") is not None
    assert data.get(SEEN, SWEPT) == {"day": past.date().isoformat()}
    # A later event on the same day sweeps nothing again.
    admitted = admit(data, Topic.TILL_EVENTS, movement(4, past + dt.timedelta(hours=1)))
    assert admitted is not None
    assert list(admitted.puts) == [(SEEN, "ev-4")]
