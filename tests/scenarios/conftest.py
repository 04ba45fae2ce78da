"""One scenario suite, both runtimes: every scenario runs on the embedded engine and on a Kafka
worker against the real broker ``make test`` starts. A feature exists when it passes on both."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from tests.scenarios.harness import EmbeddedRuntime, ScenarioRuntime

Factory = Callable[..., AbstractAsyncContextManager[ScenarioRuntime]]


@pytest.fixture(params=["embedded", "kafka"])
def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    """Start the whole system with optional setting overrides: ``async with runtime(...) as rt``."""
    count = 0
    kind = str(request.param)
    if kind == "kafka":
        request.applymarker(pytest.mark.kafka)
        gap = request.node.get_closest_marker("embedded_only")
        if gap is not None:
            pytest.skip(f"not on the Kafka runtime yet: {gap.kwargs['reason']}")

    def make(settings: dict[str, Any] | None = None, **options: Any) -> ScenarioRuntime:
        nonlocal count
        count += 1
        if kind == "kafka":
            from tests.scenarios.kafka_runtime import KafkaScenarioRuntime

            return KafkaScenarioRuntime(tmp_path / f"run{count}", settings, **options)
        return EmbeddedRuntime(tmp_path / f"run{count}", settings, **options)

    return make
