"""Security of a running engine (in-process, real HTTP on loopback, the Fortnox sandbox and
tills of the chaos harness): ingest keys stored hashed, the admin token in front of the
dashboard and the ops API, tenants isolated from each other, tokens and client secrets
encrypted at rest with the key from the environment, request size limits, and no secret in any
log line, HTTP answer or error message, also while Fortnox fails and tokens are refreshed."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import structlog

from chaos.processes import REPO
from engine.logging import configure
from engine.tenants import hash_key
from tests.reliability.live import ADMIN_TOKEN, Live

pytestmark = pytest.mark.slow


def files_bytes(folder: Path) -> bytes:
    """Every byte Kassasync keeps on disk (databases, WAL and shared-memory files)."""
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def spellings(secret: str) -> list[bytes]:
    """The ways a secret could sit in a file: as text, UTF-16, base64, hex."""
    raw = secret.encode()
    return [
        raw,
        secret.encode("utf-16-le"),
        base64.b64encode(raw),
        base64.urlsafe_b64encode(raw).rstrip(b"="),
        raw.hex().encode(),
    ]


async def seeded_secrets(live: Live) -> dict[str, str]:
    found: dict[str, str] = {
        "admin token": ADMIN_TOKEN,
        "secret box key": live.key,
    }
    for tenant in live.workload.tenants:
        seeded = live.world.seeded[tenant]
        found[f"{tenant} ingest key"] = live.keys[tenant]
        found[f"{tenant} till token"] = live.world.tills[tenant].token
        found[f"{tenant} Fortnox client secret"] = seeded.client.client_secret
        tokens = await live.engine.token_store.load(tenant)
        if tokens is not None:
            found[f"{tenant} access token"] = tokens.access_token.reveal()
            if tokens.refresh_token is not None:
                found[f"{tenant} refresh token"] = tokens.refresh_token.reveal()
    return found


async def test_keys_hashed_and_secrets_sealed_at_rest(tmp_path: Path) -> None:
    async with Live(tmp_path / "engine") as live:
        await live.send_all()
        await live.settle()
        secrets = await seeded_secrets(live)
        assert any("access token" in name for name in secrets), "no token was stored"
        # The ingest keys: their hashes are what the tenants table holds.
        rows = dict(live.engine.db.conn.execute("SELECT id, api_key_hash FROM tenants"))
        for tenant, key in live.keys.items():
            assert rows[tenant] == hash_key(key)
        live.engine.db.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        stored = files_bytes(tmp_path / "engine")
    for name, secret in secrets.items():
        for spelling in spellings(secret):
            assert spelling not in stored, f"the {name} is stored readable on disk"
    assert b"v1." in stored, "no sealed value found: are secrets stored at all?"


def test_sealed_values_need_the_key_from_the_environment(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KASSASYNC_SECRET_KEY"}
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "run", "--data", str(tmp_path), "--http-port", "0"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "KASSASYNC_SECRET_KEY is not set" in done.stderr


async def test_admin_token_and_tenant_isolation(tmp_path: Path) -> None:
    async with Live(tmp_path) as live:
        shop_a, shop_b = live.workload.tenants
        await live.send(shop_a, slice(0, 2))
        key_a = live.keys[shop_a]
        http = live.http
        ops_reads = [
            "/ops/api/overview",
            f"/ops/api/tenants/{shop_a}",
            f"/ops/api/tenants/{shop_b}",
            "/ops/api/system",
            "/ops/api/deadletters",
            f"/ops/api/deadletters?tenant={shop_b}",
        ]
        ops_actions = [
            f"/ops/api/tenants/{shop_b}/pause",
            f"/ops/api/tenants/{shop_b}/resume",
            "/ops/api/deadletters/x/retry",
            "/ops/api/deadletters/x/discard",
        ]
        pages = ["/", f"/tenants/{shop_a}", f"/tenants/{shop_b}", "/system"]
        wrong = {
            "no token": {},
            "tenant A's ingest key": {"Authorization": f"Bearer {key_a}"},
            "a wrong token": {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
            "the token as Basic": {
                "Authorization": "Basic " + base64.b64encode(ADMIN_TOKEN.encode()).decode()
            },
        }
        # Each wrong token from a loopback address of its own: ten from one address lock that
        # address out (429; tests/web/test_door.py::test_wrong_bearer_tokens_are_throttled_...).
        sources = (f"127.0.1.{n}" for n in range(1, 255))
        for how, headers in wrong.items():
            for method, path in [("GET", p) for p in ops_reads + pages] + [
                ("POST", p) for p in ops_actions
            ]:
                transport = httpx.AsyncHTTPTransport(local_address=next(sources))
                async with httpx.AsyncClient(transport=transport, timeout=30) as one:
                    answer = await one.request(method, f"{live.url}{path}", headers=headers)
                assert answer.status_code == 401, (how, path, answer.status_code)
                assert ADMIN_TOKEN not in answer.text and key_a not in answer.text
        assert live.engine.edge.paused(shop_b) is None, "an unauthenticated pause went through"
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        for path in ops_reads + pages:
            assert (await http.get(f"{live.url}{path}", headers=admin)).status_code == 200, path
        # /metrics and /healthz are public and name no secret.
        for path in ("/metrics", "/healthz"):
            answer = await http.get(f"{live.url}{path}")
            assert answer.status_code == 200
            assert key_a not in answer.text and ADMIN_TOKEN not in answer.text

        # Tenant A's key neither writes nor reads tenant B.
        event = live.plan(shop_b).batches[0][0]
        as_a = {"Authorization": f"Bearer {key_a}"}
        url_b = f"{live.url}/v1/tenants/{shop_b}/events"
        assert (await http.post(url_b, json=event, headers=as_a)).status_code == 401
        url_a = f"{live.url}/v1/tenants/{shop_a}/events"
        answer = await http.post(url_a, json=event, headers=as_a)
        assert answer.status_code == 422
        assert answer.json()["problems"][0]["field"] == "tenant"
        for method in ("GET", "PUT", "DELETE"):
            assert (await http.request(method, url_b, headers=as_a)).status_code in (401, 405)
        seen = live.engine.db.conn.execute(
            "SELECT COUNT(*) FROM ingest_seen WHERE tenant = ?", (shop_b,)
        ).fetchone()[0]
        assert seen == 0, "tenant A's key stored events of tenant B"


async def test_request_size_limits_over_http(tmp_path: Path) -> None:
    async with Live(tmp_path) as live:
        tenant = live.workload.tenants[0]
        url = f"{live.url}/v1/tenants/{tenant}/events"
        headers = {"Authorization": f"Bearer {live.keys[tenant]}"}
        answer = await live.http.post(url, content=b"{" + b" " * 1_100_000 + b"}", headers=headers)
        assert answer.status_code == 413
        batch = {"events": [dict(live.plan(tenant).batches[0][0], id=f"e{i}") for i in range(501)]}
        answer = await live.http.post(url, json=batch, headers=headers)
        assert answer.status_code == 413
        # Unauthenticated bodies are refused before they are read.
        answer = await live.http.post(url, content=b"x" * 2_000_000)
        assert answer.status_code == 401


async def test_no_secret_in_logs_answers_or_errors(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A run through the paths that handle secrets (token fetch and refresh after expiry,
    5xx and dropped answers from Fortnox, a revoked consent, wrong ingest keys and admin
    tokens, a till that refuses Kassasync's token) with every log line of the engine, the
    Fortnox client, the till delivery and the ingest API captured, plus every ops API answer."""
    buffer = io.StringIO()
    saved = structlog.get_config()
    handlers = list(logging.getLogger().handlers)
    configure("DEBUG", stream=buffer)
    answers: list[str] = []
    try:
        async with Live(tmp_path) as live:
            shop_a, shop_b = live.workload.tenants
            await live.send_all(slice(0, 3))
            await live.fault("expire-tokens")
            await live.fault("errors", status=500, next=5)
            await live.fault("drop-after-commit", next=2, method="POST", path_prefix="/3/")
            await live.send_all(slice(3, 7))
            # Wrong keys and tokens, with secrets in them.
            for tenant in (shop_a, shop_b):
                url = f"{live.url}/v1/tenants/{tenant}/events"
                other = live.keys[shop_b if tenant == shop_a else shop_a]
                for auth in (f"Bearer {other}", f"Bearer {ADMIN_TOKEN}", other):
                    answer = await live.http.post(url, json={}, headers={"Authorization": auth})
                    answers.append(answer.text)
            login = await live.http.post(f"{live.url}/login", data={"token": live.keys[shop_a]})
            answers.append(login.text)
            # Tenant B's till stops accepting Kassasync's token; tenant A's consent is revoked.
            live.world.tills[shop_b].token = "rotated-by-the-shop"
            seeded = live.world.seeded[shop_a]
            await live.world.admin(
                "POST", "/faults/revoke-consent", json={"tenant_id": seeded.tenant.id}
            )
            await live.send_all(slice(7, None))
            await asyncio.sleep(4)
            admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            for path in (
                "/overview",
                f"/tenants/{shop_a}",
                f"/tenants/{shop_b}",
                "/deadletters",
                "/system",
            ):
                answers.append(
                    (await live.http.get(f"{live.url}/ops/api{path}", headers=admin)).text
                )
            for path in ("/", f"/tenants/{shop_a}", f"/tenants/{shop_b}"):
                answers.append((await live.http.get(f"{live.url}{path}", headers=admin)).text)
            secrets = await seeded_secrets(live)
            paused = (await live.ops(f"/tenants/{shop_a}")).json()["summary"]["paused"]
    finally:
        structlog.configure(**saved)
        logging.getLogger().handlers[:] = handlers
    captured = capfd.readouterr()
    logs = buffer.getvalue() + captured.out + captured.err
    lines = [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]
    events = {line["event"] for line in lines}
    # The run went through the paths that handle secrets.
    assert {"fortnox.token.refreshed", "ingest.accepted", "tenant.paused"} <= events, events
    assert paused is not None and paused["kind"] == "consent_revoked"
    text = logs + "\n".join(answers)
    for name, secret in secrets.items():
        for spelling in spellings(secret)[:3]:
            assert spelling.decode("latin-1") not in text, f"the {name} leaked"
        assert hashlib.sha256(secret.encode()).hexdigest() not in text, name
