"""docker-compose.yml checked without Docker: its structure and services, the broker settings
(the same deploy/kafka/server.properties as the tests' broker), the files it references and
the commands it runs (parsed by kassasync's own parser)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.cli.main import build_parser
from engine.tenants import load_config_file

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def properties(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def test_services_and_structure(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"kafka", "kafka-init", "worker", "ingest", "prometheus", "grafana"} <= set(services)
    assert services["worker"]["deploy"]["replicas"] == "${KASSASYNC_WORKERS:-2}"
    for name, service in services.items():
        assert "image" in service, name
        assert service.get("network_mode") == "host", name
    for name in ("worker", "ingest"):
        depends = services[name]["depends_on"]["kafka-init"]
        assert depends["condition"] == "service_completed_successfully"
    assert services["kafka-init"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert set(compose["volumes"]) == {"kafka-data", "tokens", "readmodel"}
    # The ingest and the ops service share the read model (DATA/ops): the till-PC agent's
    # uploads and their reports, which the dashboard shows.
    for name in ("ingest", "ops"):
        assert "readmodel:/var/lib/kassasync/ops" in services[name]["volumes"], name
    # All workers share one token store (its refresh lease: one refresher per tenant).
    assert "tokens:/var/lib/kassasync/tokens" in services["worker"]["volumes"]
    assert "/var/lib/kassasync/tokens/tokens.db" in services["worker"]["command"]


def test_referenced_files_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name}: {source} is missing"
        build = service.get("build")
        if build is not None:
            assert (REPO / build["context"] / build["dockerfile"]).is_file()


def test_broker_settings_are_the_tests_broker_settings(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert (
        "./deploy/kafka/server.properties:/etc/kassasync/server.properties:ro" in kafka["volumes"]
    )
    settings = properties(REPO / "deploy/kafka/server.properties")
    assert settings["process.roles"] == "broker,controller"  # KRaft, combined
    start = (REPO / "deploy/compose/kafka-start.sh").read_text()
    rewritten = set(re.findall(r"s\|\^([a-z.\\]+)=", start))
    assert {key.replace("\\", "") for key in rewritten} == {"log.dirs"}
    assert "/etc/kassasync/server.properties" in start
    pom = (REPO / "deploy/kafka/pom.xml").read_text()
    version = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom)
    assert version is not None
    assert kafka["image"] == f"apache/kafka:${{KAFKA_VERSION:-{version.group(1)}}}"
    plaintext = re.search(r"PLAINTEXT://([0-9.:]+)", settings["listeners"])
    assert plaintext is not None
    env = compose["x-kassasync"]["environment"]
    assert env["KASSASYNC_KAFKA_BOOTSTRAP"] == plaintext.group(1)
    assert plaintext.group(1) in " ".join(kafka["healthcheck"]["test"])


def test_commands_parse(compose: dict[str, Any]) -> None:
    parser = build_parser()
    for name in ("kafka-init", "kafka-tenants", "worker", "ingest", "ops"):
        args = parser.parse_args(compose["services"][name]["command"])
        assert callable(args.func), name


def test_prometheus_scrapes_the_service_that_serves_metrics(compose: dict[str, Any]) -> None:
    """The target is the ops service, which serves /metrics (tests/kafka/test_ops_surface.py
    reads its kassasync_* series); the ingest API serves none, so it is not a target."""
    scrape = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    targets = [
        t for job in scrape["scrape_configs"] for s in job["static_configs"] for t in s["targets"]
    ]
    ops = compose["services"]["ops"]["command"]
    assert ops[:2] == ["kafka", "ops"]
    assert targets == [f"127.0.0.1:{ops[ops.index('--port') + 1]}"]
    ingest = compose["services"]["ingest"]["command"]
    assert not any(t.endswith(f":{ingest[ingest.index('--port') + 1]}") for t in targets)
    grafana = compose["services"]["grafana"]["volumes"]
    assert any(v.startswith("./deploy/grafana/provisioning/datasources:") for v in grafana)


def test_example_tenants_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_TILL_TOKEN", "till-secret")
    monkeypatch.setenv("DEMO_FORTNOX_CLIENT_SECRET", "fortnox-secret")
    configs = load_config_file(REPO / "deploy/compose/tenants.yaml")
    assert [c.id for c in configs] == ["demo"]


def test_dockerfile_installs_the_cli() -> None:
    text = (REPO / "deploy/compose/Dockerfile").read_text()
    assert 'ENTRYPOINT ["kassasync"]' in text
    for line in text.splitlines():
        if line.startswith("COPY "):
            for source in shlex.split(line)[1:-1]:
                assert (REPO / source).exists(), source
