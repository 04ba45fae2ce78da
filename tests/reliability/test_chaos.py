"""The crash harness, short: ``python -m chaos`` with 10 kills per runtime (``make chaos`` runs
50). Each run is compared with an uninterrupted run of the same workload: no duplicate, no lost
stock movement or event, no drift. The Kafka run uses a broker of its own (port
``KASSASYNC_CHAOS_KAFKA_PORT``, default 19592), because it restarts it."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from chaos.cli import FIGURES, measure
from tests.scenarios.harness import WINDOW

KILLS = int(os.environ.get("KASSASYNC_CHAOS_KILLS", "10"))
KAFKA_PORT = int(os.environ.get("KASSASYNC_CHAOS_KAFKA_PORT", "19592"))
# The tests' rate window (25 requests per second, sandbox and engine): the kills, not the rate
# limit, are what is tested here. ``make chaos`` keeps Fortnox's own 5 s.
# Serial: whether a kill lands just after a committed write depends on timing; with the rest
# of the suite sharing the cores (make test's parallel pass) no kill did, so make test runs
# these alone, after the parallel pass.
pytestmark = [pytest.mark.slow, pytest.mark.serial]


def check(line: dict[str, Any], details: list[str]) -> None:
    print(json.dumps(line))
    assert line["uninterrupted_clean"], details[:30]
    assert line["settled"], details[:30]
    assert line["kills"] == KILLS
    assert line["kills_after_commit"] > 0, "no kill hit the moment after a committed write"
    for figure in FIGURES:
        assert line[figure] == 0, (figure, details[:30])


def test_embedded_survives_sigkills(tmp_path: Path) -> None:
    line, details = asyncio.run(
        measure("embedded", kills=KILLS, tenants=2, work=tmp_path, rate_window=WINDOW)
    )
    check(line, details)


@pytest.mark.kafka
def test_kafka_survives_worker_kills_and_a_broker_restart(tmp_path: Path) -> None:
    line, details = asyncio.run(
        measure(
            "kafka",
            kills=KILLS,
            tenants=2,
            work=tmp_path,
            kafka_port=KAFKA_PORT,
            rate_window=WINDOW,
        )
    )
    check(line, details)
    assert line["disturbances"] and "broker restarted" in line["disturbances"][0]
