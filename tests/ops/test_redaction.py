"""Secrets never reach the logs: the ``redact`` processor on its own, and a real engine run
(sandbox Fortnox over loopback, a till, the ingest API, the dashboard) with seeded secrets
whose every captured log line is searched for them. The same run checks that every event
about a tenant carries the tenant, and that events about a message or command carry its id.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from engine.clock import utcnow
from engine.logging import REDACTED, configure, redact
from engine.secrets import Secret, generate_key
from engine.tenants import FortnoxConnection, new_api_key
from sandbox.fortnox.app import create_app as create_sandbox
from sandbox.fortnox.seed import seed_demo
from sandbox.fortnox.state import SandboxState
from tests.ops.world import (
    ADMIN_TOKEN,
    TENANT,
    TILL_TOKEN,
    Live,
    Till,
    add_tenant,
    free_port,
    new_engine,
    wait_for,
)

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJrYXNzYXN5bmMiLCJ0aWQiOjQyfQ."
    "c2lnbmF0dXJlLXZhbHVlLXRoYXQtaXMtbG9uZw"
)
INGEST_KEY = new_api_key("my-shop.1")
CLIENT_SECRET = "cs-8f3a1b2c4d5e6f708192a3b4"
REFRESH = "rt-0a1b2c3d4e5f60718293a4b5c6d7e8f9"


def rendered(**fields: Any) -> str:
    """One event through the processor and the JSON renderer, as the engine writes it."""
    event = redact(None, "info", {"event": "something.happened", **fields})
    return structlog.processors.JSONRenderer()(None, "info", event)  # type: ignore[return-value]


@pytest.mark.parametrize(
    "fields",
    [
        {"access_token": JWT},
        {"refresh_token": REFRESH},
        {"client_secret": CLIENT_SECRET},
        {"api_key": INGEST_KEY},
        {"Authorization": f"Bearer {JWT}"},
        {"headers": {"authorization": f"bearer {REFRESH}", "Cookie": f"s={REFRESH}"}},
        {"detail": f"sent Bearer {REFRESH} to the till"},
        {"detail": f"authorization: bearer {REFRESH}"},
        {
            "detail": "Authorization: Basic "
            + base64.b64encode(f"id:{CLIENT_SECRET}".encode()).decode()
        },
        {"detail": f"token {JWT} was rejected"},
        {"detail": f"the till used {INGEST_KEY}"},
        {"detail": f"grant_type=refresh_token&refresh_token={REFRESH}&client_secret={REFRESH}"},
        {"form": f"client_id=kassasync&client_secret={CLIENT_SECRET}"},
        {"url": f"https://apps.fortnox.se/oauth-v1/token?access_token={REFRESH}&x=1"},
        {"body": json.dumps({"access_token": JWT, "refresh_token": REFRESH, "expires_in": 3600})},
        {"body": json.dumps({"client_secret": CLIENT_SECRET}).encode()},
        {"attempts": [{"token": REFRESH}, f"Bearer {JWT}"]},
        {"secret": Secret(CLIENT_SECRET)},
        {"value": Secret(CLIENT_SECRET)},
        {"password": "hunter2-hunter2"},
    ],
    ids=lambda f: next(iter(f)),
)
def test_secrets_are_redacted(fields: dict[str, Any]) -> None:
    line = rendered(**fields)
    for secret in (JWT, REFRESH, CLIENT_SECRET, INGEST_KEY, "hunter2-hunter2"):
        assert secret not in line, line
    assert REDACTED in line


def test_what_is_not_secret_stays() -> None:
    line = json.loads(
        rendered(
            tenant="shop1",
            message_id="m-1",
            command_id="till.article.upsert:A1@ab",
            detail="Basic auth was used",
            resource="/3/articles",
            count=3,
        )
    )
    assert line == {
        "event": "something.happened",
        "tenant": "shop1",
        "message_id": "m-1",
        "command_id": "till.article.upsert:A1@ab",
        "detail": "Basic auth was used",
        "resource": "/3/articles",
        "count": 3,
    }
    # An event name that mentions tokens is kept.
    assert json.loads(rendered())["event"] == "something.happened"
    assert redact(None, "info", {"event": "fortnox.token.refreshed"})["event"] == (
        "fortnox.token.refreshed"
    )


#: Events about the process rather than one tenant.
#: Events about the whole engine, not one tenant (the dashboard's samples and pages are reads).
PROCESS_EVENTS = {
    "engine.started",
    "engine.stopped",
    "web.login.failed",
    "web.login.ok",
    "dashboard.history.sampled",
    "dashboard.overview.page",
    # Retention works on the shared log and store, for all tenants at once.
    "retention.marked",
    "retention.base_moved",
    "retention.log_trimmed",
    "retention.pass",
}


def test_an_engine_run_logs_no_secret(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    box_key = generate_key()
    monkeypatch.setenv("KASSASYNC_SECRET_KEY", box_key)
    buffer = io.StringIO()
    saved = structlog.get_config()
    configure("DEBUG", stream=buffer)
    try:
        secrets, session_cookie = _run(tmp_path)
    finally:
        structlog.configure(**saved)
    captured = capfd.readouterr()
    text = buffer.getvalue() + captured.out + captured.err
    lines = [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]
    assert len(lines) > 20
    for name, secret in {**secrets, "session cookie": session_cookie, "box key": box_key}.items():
        assert secret and secret not in text, f"the {name} leaked into the logs"
    events = {line["event"] for line in lines}
    # The run went through the paths that handle secrets.
    assert {"fortnox.polled", "ingest.accepted", "web.login.failed", "tenant.paused"} <= events
    for line in lines:
        if line["event"] not in PROCESS_EVENTS:
            assert line.get("tenant") == TENANT, line
        if "command_id" in line or line["event"].startswith(("ops.", "message.")):
            assert "command_id" in line or "message_id" in line, line


def _run(tmp_path: Path) -> tuple[dict[str, str], str]:
    state = SandboxState()
    seeded = seed_demo(state, client_id="kassasync-secrets-test", client_secret=CLIENT_SECRET)
    till = Till(accept=True)
    engine = new_engine(tmp_path / "engine", http_port=free_port())
    live = Live(engine, {"fortnox": create_sandbox(state), "till": till.app()})
    fortnox_url = live.url_of("fortnox")
    credentials = seeded.credentials(fortnox_url)
    api_key = add_tenant(
        engine,
        till_url=live.url_of("till") + "/kassasync/commands",
        fortnox=FortnoxConnection.at(fortnox_url, credentials, poll_seconds=1),
    )
    wrong_key = new_api_key(TENANT)
    with live, live.api() as api, httpx.Client(base_url=live.url, timeout=10) as http:
        wait_for(lambda: api.get(f"/ops/api/tenants/{TENANT}").json()["cursors"], 20)
        movement = {
            "id": "mv-secret-1",
            "tenant": TENANT,
            "type": "till.stock.movement",
            "occurred_at": utcnow().isoformat(),
            "source": "till",
            "data": {"article_number": "A1", "movement_id": "m1", "delta": "-1", "reason": "sale"},
        }
        url = f"/v1/tenants/{TENANT}/events"
        assert http.post(
            url, json=movement, headers={"Authorization": f"Bearer {api_key}"}
        ).is_success
        assert (
            http.post(
                url, json=movement, headers={"Authorization": f"Bearer {wrong_key}"}
            ).status_code
            == 401
        )
        assert http.post("/login", data={"token": "not-the-token-" + api_key}).status_code == 401
        login = http.post("/login", data={"token": ADMIN_TOKEN})
        cookie = login.headers["set-cookie"].split(";")[0].split("=", 1)[1]
        # The shop withdraws Kassasync's access: requests fail, the tenant is paused.
        revoked = httpx.post(
            f"{fortnox_url}/_sandbox/tenants/{credentials['tenant_id']}/revoke-consent",
            json={"client_id": credentials["client_id"]},
        )
        assert revoked.is_success
        wait_for(lambda: api.get("/ops/api/overview").json()["tenants"][0]["paused"], 20)
        time.sleep(0.3)
    tokens = asyncio.run(engine.token_store.load(TENANT))
    assert tokens is not None
    secrets = {
        "Fortnox client secret": CLIENT_SECRET,
        "Fortnox access token": tokens.access_token.reveal(),
        "till token": TILL_TOKEN,
        "ingest key": api_key,
        "wrong ingest key": wrong_key,
        "admin token": ADMIN_TOKEN,
    }
    if tokens.refresh_token is not None:
        secrets["Fortnox refresh token"] = tokens.refresh_token.reveal()
    return secrets, cookie
