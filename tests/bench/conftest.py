"""The benchmarks' own logging set-up, tamed for the test process."""

from __future__ import annotations

from typing import Any

import pytest
import structlog


@pytest.fixture(autouse=True)
def _loggers_not_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    """``bench.common.quiet_logs`` caches loggers on first use (cheaper while a benchmark
    runs). In the test process a module's logger cached that way keeps its processors for good:
    ``structlog.testing.capture_logs`` in any later test of the same process would not see its
    events (with pytest-xdist, whichever test file the worker is handed next)."""
    configure = structlog.configure

    def uncached(**settings: Any) -> None:
        configure(**{**settings, "cache_logger_on_first_use": False})

    monkeypatch.setattr(structlog, "configure", uncached)
