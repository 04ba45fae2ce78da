from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from tests.scenarios.harness import EmbeddedRuntime

Factory = Callable[..., AbstractAsyncContextManager[EmbeddedRuntime]]


@pytest.fixture()
def runtime(tmp_path: Path) -> Factory:
    """Start the whole system with optional setting overrides: ``async with runtime(...) as rt``."""
    count = 0

    def make(settings: dict[str, Any] | None = None, **options: Any) -> EmbeddedRuntime:
        nonlocal count
        count += 1
        return EmbeddedRuntime(tmp_path / f"run{count}", settings, **options)

    return make
