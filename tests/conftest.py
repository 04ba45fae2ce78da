"""Suite-wide collection order for ``make test``'s parallel pass."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """In a pytest-xdist worker, files with a test marked ``slow`` come first (otherwise in
    collection order, a file's tests together and in order): ``--dist loadfile`` hands files out
    in this order, so the long ones start early and no worker ends the run alone on one. Runs
    without xdist keep pytest's own order."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    slow_files = {str(item.path) for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: str(item.path) not in slow_files)
