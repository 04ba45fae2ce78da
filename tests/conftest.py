"""Suite-wide collection order for ``make test``'s parallel pass."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import structlog


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """In a pytest-xdist worker, files with a test marked ``slow`` come first (otherwise in
    collection order, a file's tests together and in order): ``--dist loadfile`` hands files out
    in this order, so the long ones start early and no worker ends the run alone on one. Runs
    without xdist keep pytest's own order."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    slow_files = {str(item.path) for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: str(item.path) not in slow_files)


@pytest.fixture(autouse=True)
def _structlog_config_restored() -> Iterator[None]:
    """Each test gets the structlog configuration the one before it found: a test that runs the
    CLI in-process configures logging (say at WARNING, which filters info events before any
    processor), and a later test in the same process that captures info events
    (``structlog.testing.capture_logs``) would see none. With one process the file order hid
    it; pytest-xdist hands the files out in another order each run."""
    saved: dict[str, Any] = structlog.get_config()
    yield
    structlog.configure(**saved)
