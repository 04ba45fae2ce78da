"""The redelivery window (docs/contract.md, *Redelivery window*), from outside: a till posting
to the embedded engine's HTTP door while the engine's clock runs on for days and retention
trims the log and forgets old message ids.

Inside the window a resent event is a duplicate (200), also once its log row has been trimmed
(a digest recognises it) and a changed event under the same id is still a conflict (409); after
the window the resend is refused with the reason (422), never stored a second time. /metrics
shows what retention did.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from engine.clock import skew
from engine.embedded.runtime import EmbeddedEngine
from engine.secrets import SecretBox, generate_key
from engine.store.log import Log
from engine.tenants import TenantConfig
from tests.reliability.till_events import movement
from topics.names import Topic
from topics.settings import StockSettings, TenantSettings

ADMIN = "redelivery-window-admin-token-0123"
TENANT = "shop-a"


class Till:
    def __init__(self, data: Path) -> None:
        self.engine = EmbeddedEngine(data, SecretBox(generate_key()), admin_token=ADMIN)
        settings = TenantSettings(stock=StockSettings(enabled=True))
        key = self.engine.tenants.upsert(TenantConfig(id=TENANT, settings=settings))
        assert key is not None
        self.key = key
        self.http = TestClient(self.engine.app, base_url="http://engine")

    def post(self, *events: dict[str, Any]) -> httpx.Response:
        return self.http.post(
            f"/v1/tenants/{TENANT}/events",
            content=json.dumps({"events": list(events)}).encode(),
            headers={"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"},
        )

    def process(self) -> None:
        while any(self.engine.processor.lag().values()):
            self.engine.processor.step()

    def on_log(self, message_id: str) -> bool:
        records = Log(self.engine.db).read([Topic.TILL_EVENTS], {}, 10**6, tenant=TENANT)
        return any(record.msg_id == message_id for record in records)

    def metrics(self) -> dict[str, float]:
        text = self.http.get("/metrics").text
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("kassasync_") and " " in line:
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out


@pytest.fixture
def till(tmp_path: Path) -> Iterator[Till]:
    previous = skew(dt.timedelta(0))
    try:
        yield Till(tmp_path)
    finally:
        skew(previous)


def later(days: float) -> None:
    """The engine's clock ``days`` after the real time."""
    skew(dt.timedelta(days=days))


def test_a_resent_id_is_a_duplicate_inside_the_window_and_refused_after(till: Till) -> None:
    first = movement(TENANT, movement_id="mv-window-1")
    assert till.post(first).status_code == 202
    assert till.post(first).json() == {"accepted": 0, "duplicates": 1}
    till.process()

    # Two hours on: retention marks where the log stands.
    later(2 / 24)
    till.engine.retention.run_once()
    # A day and a half on: new events arrive, and retention trims the log below the mark.
    later(1.5)
    now = dt.datetime.now(dt.UTC) + dt.timedelta(days=1.5)
    second = movement(TENANT, movement_id="mv-window-2", occurred_at=now.isoformat())
    assert till.post(second).status_code == 202
    till.process()
    till.engine.retention.run_once()
    assert not till.on_log(first["id"])  # trimmed: only the digest remembers it
    assert till.post(first).json() == {"accepted": 0, "duplicates": 1}
    changed = {**first, "data": {**first["data"], "delta": "-5"}}
    conflict = till.post(changed)
    assert conflict.status_code == 409, conflict.text
    assert first["id"] in conflict.json()["error"]

    # Past the window: the id is forgotten, and the resend is refused for its age.
    later(3.1)
    till.engine.retention.run_once()
    remembered = till.engine.db.conn.execute(
        "SELECT COUNT(*) FROM ingest_seen WHERE msg_id = ?", (first["id"],)
    ).fetchone()[0]
    assert remembered == 0
    refused = till.post(first)
    assert refused.status_code == 422, refused.text
    problem = refused.json()["problems"][0]
    assert problem["field"] == "occurred_at"
    assert "redelivery window (3 days)" in problem["problem"]
    assert not till.on_log(first["id"])

    shown = till.metrics()
    assert shown["kassasync_retention_passes"] == 3
    assert shown["kassasync_retention_log_rows_trimmed"] >= 1
    assert shown["kassasync_retention_seen_expired"] >= 1
    assert shown["kassasync_store_bytes"] > 0
    assert "kassasync_log_oldest_age_seconds" in shown
