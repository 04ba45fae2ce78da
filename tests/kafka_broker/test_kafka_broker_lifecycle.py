"""deploy/kafka/broker.py itself: jar cache reuse, start/stop/status/wait, refusals, stale state.

These start their own brokers on a separate port (KASSASYNC_KAFKA_LIFECYCLE_PORT, default
19192, controller on +1), so they do not disturb the broker given by KASSASYNC_KAFKA_BOOTSTRAP.
They need java and mvn (or the cached jars), not KASSASYNC_KAFKA_BOOTSTRAP.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer

pytestmark = pytest.mark.kafka

REPO_ROOT = Path(__file__).resolve().parents[2]
BROKER_PY = REPO_ROOT / "deploy" / "kafka" / "broker.py"
PORT = int(os.environ.get("KASSASYNC_KAFKA_LIFECYCLE_PORT", "19192"))


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KASSASYNC_KAFKA_PORT"}
    return subprocess.run(
        [sys.executable, str(BROKER_PY), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
        env=env,
    )


def status(port: int = PORT) -> dict[str, Any]:
    result = cli("status", "--port", str(port))
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


@pytest.fixture
def lifecycle_port(broker_module: ModuleType) -> Iterator[int]:
    """PORT, free before the test; brokers this test started there are stopped afterwards.

    A broker already running on PORT is somebody else's (another session or developer on
    the same machine): the test fails instead of stopping it.
    """
    running = broker_module.find_broker(PORT)
    if running is not None:
        pytest.fail(
            f"a Kafka broker (pid {running.pid}) already runs on port {PORT}, not started by "
            "this test; set KASSASYNC_KAFKA_LIFECYCLE_PORT to a free port"
        )
    broker_module.stop_broker(PORT)  # nothing runs: this only removes a stale run dir
    for port in (PORT, PORT + 1):
        if not broker_module._port_free(port):
            pytest.fail(
                f"port {port} is taken by another process; set KASSASYNC_KAFKA_LIFECYCLE_PORT"
            )
    test_started = time.time()
    yield PORT
    leftover = broker_module.find_broker(PORT)
    if leftover is None or leftover.started_at >= test_started:
        broker_module.stop_broker(PORT)


def test_ensure_jars_reuses_the_cache(
    broker_module: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    libs = broker_module.ensure_jars()
    assert libs == broker_module.libs_dir()
    assert libs.parent.name == broker_module.kafka_version()
    jars = {p.name for p in libs.glob("*.jar")}
    version = broker_module.kafka_version()
    for needed in (f"kafka_2.13-{version}.jar", f"kafka-server-{version}.jar", "log4j-core"):
        assert any(j.startswith(needed.removesuffix(".jar")) for j in jars), needed

    def no_maven() -> list[str]:
        raise AssertionError("ensure_jars ran mvn although the jars are cached")

    monkeypatch.setattr(broker_module, "_mvn", no_maven)
    started = time.monotonic()
    assert broker_module.ensure_jars() == libs
    assert time.monotonic() - started < 1
    assert cli("fetch").returncode == 0  # the CLI reuses it too (mvn would take seconds)


def test_stop_and_status_are_safe_when_nothing_runs(lifecycle_port: int) -> None:
    result = cli("stop", "--port", str(lifecycle_port))
    assert result.returncode == 0, result.stderr
    assert "no broker was running" in result.stderr
    assert status(lifecycle_port)["running"] is False
    result = cli("wait", "--port", str(lifecycle_port), "--timeout", "1")
    assert result.returncode == 1
    assert "no broker started by broker.py runs" in result.stderr


def test_start_refuses_a_port_in_use(broker_module: ModuleType, lifecycle_port: int) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", lifecycle_port + 1))  # the controller port
        squatter.listen()
        with pytest.raises(broker_module.PortInUse, match=str(lifecycle_port + 1)):
            broker_module.start_broker(lifecycle_port)
    assert not broker_module.run_dir_for(lifecycle_port).exists()


def test_cli_start_refuses_a_second_broker_and_stop_cleans_up(
    broker_module: ModuleType, lifecycle_port: int
) -> None:
    port = str(lifecycle_port)
    started = cli("start", "--port", port)
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == f"127.0.0.1:{port}"
    assert "answering after" in started.stderr

    state = status(lifecycle_port)
    assert state["running"] is True and state["answering"] is True
    assert state["brokers"] == [f"127.0.0.1:{port} (node 1)"]
    assert float(state["startup_seconds"]) > 0
    run_dir = broker_module.run_dir_for(lifecycle_port)
    assert (run_dir / "broker.pid").read_text().strip() == str(state["pid"])
    assert (run_dir / "bootstrap").read_text().strip() == f"127.0.0.1:{port}"
    assert (run_dir / "logs" / "server.log").is_file()
    properties = (run_dir / "server.properties").read_text()
    listeners = f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{lifecycle_port + 1}"
    assert f"\nlisteners={listeners}\n" in properties
    assert f"\nlog.dirs={run_dir}/data-" in properties
    assert "process.roles=broker,controller" in properties
    assert "num.partitions=8" in properties

    second = cli("start", "--port", port)
    assert second.returncode == 1
    assert "already runs" in second.stderr
    with pytest.raises(broker_module.BrokerAlreadyRunning):
        broker_module.start_broker(lifecycle_port)
    assert status(lifecycle_port)["pid"] == state["pid"]  # the first one is untouched

    waited = cli("wait", "--port", port, "--timeout", "10")
    assert waited.returncode == 0, waited.stderr
    waited = cli("wait", "--bootstrap", f"127.0.0.1:{port}", "--timeout", "10")
    assert waited.returncode == 0, waited.stderr

    stopped = cli("stop", "--port", port)
    assert stopped.returncode == 0, stopped.stderr
    assert "broker stopped" in stopped.stderr
    assert not run_dir.exists()
    assert broker_module._process_args(int(state["pid"])) is None
    assert broker_module._port_free(lifecycle_port)
    assert cli("stop", "--port", port).returncode == 0  # twice is fine


def test_stale_pid_file_is_cleaned_and_context_manager(
    broker_module: ModuleType, lifecycle_port: int
) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run_dir = broker_module.run_dir_for(lifecycle_port)
    run_dir.mkdir(parents=True)
    (run_dir / "broker.pid").write_text(f"{dead.pid}\n")  # pid file only, no broker.json

    with broker_module.running_broker(lifecycle_port) as broker:
        assert broker.pid != dead.pid
        assert broker.is_running()
        assert broker.bootstrap == f"127.0.0.1:{lifecycle_port}"
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
        producer.send("lifecycle", key=b"k", value=b"hello").get(timeout=30)
        producer.close()
        consumer = KafkaConsumer(
            "lifecycle", bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest"
        )
        deadline = time.monotonic() + 30
        values: list[bytes] = []
        while not values and time.monotonic() < deadline:
            values += [r.value for rs in consumer.poll(timeout_ms=500).values() for r in rs]
        consumer.close()
        assert values == [b"hello"]
    assert not broker.is_running()
    assert not run_dir.exists()

    # A stale state (broker.json of a dead broker) is reported and removed by `status`.
    run_dir.mkdir(parents=True)
    stale = {"port": lifecycle_port, "pid": dead.pid, "run_dir": str(run_dir), "version": "x"}
    (run_dir / "broker.json").write_text(json.dumps(stale))
    state = status(lifecycle_port)
    assert state["running"] is False and state["stale_state_removed"] is True
    assert not run_dir.exists()
