"""The Kafka runtime's tests run against the real broker named by KASSASYNC_KAFKA_BOOTSTRAP
(``make test`` starts one). Unset, they FAIL with instructions; they are never skipped."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from engine.secrets import KEY_ENV, generate_key

NOT_CONFIGURED = """\
KASSASYNC_KAFKA_BOOTSTRAP is not set: tests/kafka need a real Kafka 4.x broker.
    python deploy/kafka/broker.py start --port 19392    # prints 127.0.0.1:19392
    KASSASYNC_KAFKA_BOOTSTRAP=127.0.0.1:19392 pytest tests/kafka
    python deploy/kafka/broker.py stop --port 19392
(`make test` does this for the whole suite; see docs/kafka.md)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/kafka/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session")
def bootstrap() -> str:
    value = os.environ.get("KASSASYNC_KAFKA_BOOTSTRAP", "").strip()
    if not value:
        pytest.fail(NOT_CONFIGURED, pytrace=False)
    return value


@pytest.fixture
def prefix() -> str:
    """A fresh topic/group namespace per test: tests never see each other's data."""
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture(autouse=True)
def secret_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    key = os.environ.get(KEY_ENV) or generate_key()
    monkeypatch.setenv(KEY_ENV, key)
    yield key
