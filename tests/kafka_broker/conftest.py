"""Fixtures for the tests that need a real Kafka 4.x broker (``pytest -m kafka``).

The broker is given by ``KASSASYNC_KAFKA_BOOTSTRAP`` (``make`` starts it with
``python deploy/kafka/broker.py start`` and exports it). When that variable is unset the tests
FAIL with instructions instead of being skipped, so a CI that forgot to start Kafka is red.
For local runs, ``KASSASYNC_KAFKA_AUTOSTART=1`` lets this session start (and stop) its own
broker through deploy/kafka/broker.py instead.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BROKER_PY = REPO_ROOT / "deploy" / "kafka" / "broker.py"

NOT_CONFIGURED = """\
KASSASYNC_KAFKA_BOOTSTRAP is not set: the `kafka` tests need a real Kafka 4.x broker.
Start one and point the tests at it:

    python deploy/kafka/broker.py start            # prints 127.0.0.1:19092
    KASSASYNC_KAFKA_BOOTSTRAP=127.0.0.1:19092 pytest -m kafka
    python deploy/kafka/broker.py stop

or let the test session start and stop its own: KASSASYNC_KAFKA_AUTOSTART=1 pytest -m kafka
(see docs/kafka-broker.md). Unit-test runs should deselect these with -m "not kafka"."""


def load_broker_module() -> ModuleType:
    """deploy/kafka/broker.py is a script, not a package: import it by path (once)."""
    name = "kassasync_kafka_broker"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BROKER_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses need the module registered while executing
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def broker_module() -> ModuleType:
    return load_broker_module()


@pytest.fixture(scope="session")
def kafka_bootstrap(broker_module: ModuleType) -> Iterator[str]:
    """``HOST:PORT`` of a broker that answers ApiVersions + Metadata."""
    bootstrap = os.environ.get("KASSASYNC_KAFKA_BOOTSTRAP", "").strip()
    if bootstrap:
        host, port = broker_module.parse_bootstrap(bootstrap)
        try:
            broker_module.wait_until_ready(host, port, timeout=30)
        except broker_module.BrokerError as exc:
            pytest.fail(
                f"KASSASYNC_KAFKA_BOOTSTRAP={bootstrap} but no Kafka broker answers there: {exc}",
                pytrace=False,
            )
        yield bootstrap
        return
    if os.environ.get("KASSASYNC_KAFKA_AUTOSTART") == "1":
        with broker_module.running_broker() as broker:
            yield broker.bootstrap
        return
    pytest.fail(NOT_CONFIGURED, pytrace=False)


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Topic/group names unique per test, so tests never see each other's data."""
    test = request.node.name.replace("[", "-").replace("]", "").replace("_", "-")[:40]

    def make(prefix: str) -> str:
        return f"ks-{prefix}-{test}-{uuid.uuid4().hex[:8]}"

    return make
