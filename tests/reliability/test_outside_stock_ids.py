"""Stock movement and count ids tried from the till's side, over HTTP (docs/contract.md,
``till.stock.movement``: "in one batch it is refused (422 on data.movement_id); arriving
later, it becomes a dead letter with the reason [...] The same holds for a stock count's
count_id with another quantity")."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.test_ingest_door import Door
from tests.reliability.till_events import event


def count(count_id: str, quantity: str, article: str = "1001") -> dict[str, object]:
    return event(
        "shop-a",
        "till.stock.counted",
        {
            "article_number": article,
            "count_id": count_id,
            "quantity": quantity,
            "last_applied_command_id": None,
        },
    )


@pytest.fixture()
def door() -> Iterator[Door]:
    with tempfile.TemporaryDirectory() as folder:
        api = Door(Path(folder))
        yield api
        api.http.close()
        api.engine.db.close()


def test_a_reused_count_id_in_one_batch_is_422_as_a_movement_id_is(door: Door) -> None:
    """Two counts of one batch with the same ``count_id`` and other quantities: the contract
    says this is refused like a reused ``movement_id`` in one batch (422, nothing stored).
    Seen: 202, both stored, the second one dead-lettered by the reconciler."""
    answer = door.post({"events": [count("C-batch", "10"), count("C-batch", "11")]})
    assert answer.status_code == 422, answer.text
    [problem] = answer.json()["problems"]
    assert problem["index"] == 1 and problem["field"] == "data.count_id", problem
    assert door.on_log("shop-a") == 0
