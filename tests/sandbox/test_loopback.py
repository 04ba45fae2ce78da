"""The sandbox over real loopback HTTP and WebSocket (uvicorn in a thread), and its CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import uvicorn
import websockets

from engine.net import loopback_listener
from sandbox.fortnox.app import create_app
from sandbox.fortnox.seed import Seeded
from sandbox.fortnox.state import SandboxState

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server(state: SandboxState, demo: Seeded) -> Iterator[str]:
    sock = loopback_listener(64)
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(state), log_level="critical", lifespan="off")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)
    sock.close()


def test_oauth_and_paging_over_http(server: str, demo: Seeded) -> None:
    with httpx.Client(base_url=server, timeout=5) as http:
        r = http.get(
            "/oauth-v1/auth",
            params={
                "client_id": demo.client.client_id,
                "redirect_uri": "http://127.0.0.1:8765/callback",  # any loopback port is accepted
                "scope": "article companyinformation",
                "state": "s1",
                "response_type": "code",
                "access_type": "offline",
            },
        )
        assert r.status_code == 302
        code = parse_qs(urlsplit(r.headers["location"]).query)["code"][0]
        tokens = http.post(
            "/oauth-v1/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": "http://127.0.0.1:8765/callback",
            },
            auth=(demo.client.client_id, demo.client.client_secret),
        ).json()
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        info = http.get("/3/companyinformation", headers=auth).json()["CompanyInformation"]
        assert info["DatabaseNumber"] == demo.tenant.id
        seen: list[str] = []
        for page in (1, 2):
            body = http.get("/3/articles", params={"limit": 30, "page": page}, headers=auth).json()
            seen += [a["ArticleNumber"] for a in body["Articles"]]
        assert len(set(seen)) == 50
        assert http.get("/3/articles").content == b'{"message":"unauthorized"}'


def test_drop_after_commit_is_a_transport_error_over_http(
    server: str, api: httpx.AsyncClient
) -> None:
    token = api.headers["Authorization"]
    with httpx.Client(base_url=server, timeout=5, headers={"Authorization": token}) as http:
        http.post("/_sandbox/faults/drop-after-commit", json={"next": 1})
        body = {"Order": {"CustomerNumber": "1", "ExternalInvoiceReference1": "loop-1"}}
        with pytest.raises(httpx.TransportError):
            http.post("/3/orders", json=body)
        found = http.get("/3/orders", params={"externalinvoicereference1": "loop-1"}).json()
        assert len(found["Orders"]) == 1


async def test_topics_feed_over_a_real_websocket(
    server: str, api: httpx.AsyncClient, demo: Seeded
) -> None:
    token = api.headers["Authorization"].removeprefix("Bearer ")
    ws_url = server.replace("http://", "ws://") + "/topics-v1"
    async with websockets.connect(ws_url) as ws:
        await ws.send(
            json.dumps(
                {
                    "command": "add-tenants-v1",
                    "clientSecret": demo.client.client_secret,
                    "accessTokens": [token],
                }
            )
        )
        assert json.loads(await ws.recv())["tenantIds"] == {token: demo.tenant.id}
        await ws.send(json.dumps({"command": "add-topics-v1", "topics": [{"topic": "customers"}]}))
        assert json.loads(await ws.recv())["result"] == "ok"
        await ws.send(json.dumps({"command": "subscribe-v1"}))
        assert json.loads(await ws.recv())["result"] == "ok"
        async with httpx.AsyncClient(
            base_url=server, headers={"Authorization": f"Bearer {token}"}
        ) as http:
            r = await http.put("/3/customers/2", json={"Customer": {"City": "Borås"}})
            assert r.status_code == 200
        event = json.loads(await ws.recv())
        assert (event["type"], event["entityId"]) == ("customer-updated-v2", "2")


def test_cli_prints_credentials_then_serves_until_sigterm() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox.fortnox", "--port", "0", "--seed", "demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert set(first) == {"base_url", "client_id", "client_secret", "tenant_id"}
        assert first["base_url"].startswith("http://127.0.0.1:")
        with httpx.Client(base_url=first["base_url"], timeout=5) as http:
            assert http.get("/_sandbox/health").json()["ok"] is True
            tokens = http.post(
                "/oauth-v1/token",
                data={"grant_type": "client_credentials"},
                headers={"TenantId": str(first["tenant_id"])},
                auth=(first["client_id"], first["client_secret"]),
            ).json()
            r = http.get(
                "/3/customers", headers={"Authorization": f"Bearer {tokens['access_token']}"}
            )
            assert r.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_refuses_non_loopback_hosts() -> None:
    from sandbox.fortnox import cli

    assert cli.main(["--host", "0.0.0.0"]) == 2
