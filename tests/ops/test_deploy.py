"""The Grafana dashboard and the Prometheus files name only metrics the engine exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.ops.world import new_engine

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC = re.compile(r"\bkassasync_[a-z_]+")
SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")


def exported(tmp_path: Path) -> set[str]:
    engine = new_engine(tmp_path)
    engine.metrics.fortnox.limiter_waited(tenant="t", seconds=0.0)
    families = text_string_to_metric_families(engine.metrics.render().decode())
    return {f.name for f in families}


def base(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def test_dashboard_and_alerts_use_exported_metrics(tmp_path: Path) -> None:
    names = exported(tmp_path)
    dashboard = json.loads((DEPLOY / "grafana/dashboards/kassasync.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    rules = yaml.safe_load((DEPLOY / "prometheus/kassasync-alerts.yml").read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    used = {base(m) for e in exprs for m in METRIC.findall(e)}
    assert used and used <= names, used - names
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_prometheus_scrapes_the_metrics_path() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics" and job["static_configs"][0]["targets"]
    for path in ("datasources/prometheus.yml", "dashboards/kassasync.yml"):
        assert (
            yaml.safe_load((DEPLOY / "grafana/provisioning" / path).read_text())["apiVersion"] == 1
        )
