"""``kassasync connect`` as a user types it, in a subprocess, against the sandbox over HTTP:
add a shop with no tokens, see "not connected", print its consent link, and connect on a single
machine through the loopback callback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine.secrets import KEY_ENV, generate_key
from sandbox.fortnox.app import create_app
from tests.fortnox.sandbox_env import serve

CLIENT_ID = "kassasync-cli"
CLIENT_SECRET = "cli-secret-0123456789"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def fortnox() -> Iterator[tuple[str, int]]:
    with serve(create_app()) as url, httpx.Client(base_url=url) as admin:
        made = admin.post(
            "/_sandbox/tenants",
            json={
                "seed": "demo",
                "clients": [
                    {
                        "client_id": CLIENT_ID,
                        "client_secret": CLIENT_SECRET,
                        "service_account": False,
                        "allow_loopback_redirects": True,
                        "redirect_uris": ["https://sync.example.se/fortnox/callback"],
                    }
                ],
            },
        )
        made.raise_for_status()
        yield url, int(made.json()["tenant_id"])


def environment(fortnox_url: str) -> dict[str, str]:
    return {
        **os.environ,
        KEY_ENV: generate_key(),
        "KASSASYNC_FORTNOX_CLIENT_ID": CLIENT_ID,
        "KASSASYNC_FORTNOX_CLIENT_SECRET": CLIENT_SECRET,
        "KASSASYNC_FORTNOX_AUTH_BASE": fortnox_url,
        "KASSASYNC_FORTNOX_API_BASE": fortnox_url,
        "KASSASYNC_PUBLIC_URL": "https://sync.example.se",
        "KASSASYNC_LOG_LEVEL": "WARNING",
    }


def kassasync(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_add_status_link_and_connect_on_this_machine(
    tmp_path: Path, fortnox: tuple[str, int]
) -> None:
    url, fortnox_tenant = fortnox
    env = environment(url)
    data = str(tmp_path / "data")

    added = kassasync(
        env, "connect", "hornan", "--add", "--name", "Hörnan", "--data", data, "--status"
    )
    assert added.returncode == 0, added.stderr
    first, second = added.stdout.splitlines()
    assert json.loads(first)["api_key"].startswith("ks_hornan_")
    status = json.loads(second)
    assert status["state"] == "not_connected" and status["text"].startswith("Not connected yet")

    link = kassasync(env, "connect", "hornan", "--link", "--data", data)
    assert link.returncode == 0, link.stderr
    assert link.stdout.startswith(f"{url}/oauth-v1/auth?client_id={CLIENT_ID}&redirect_uri=")
    assert "https%3A%2F%2Fsync.example.se%2Ffortnox%2Fcallback" in link.stdout

    # On a single machine: the command waits on a loopback callback; the "browser" approves.
    command = ["connect", "hornan", "--data", data, "--no-browser", "--port", "0"]
    waiting = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", *command],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert waiting.stderr is not None
        consent = ""
        for line in waiting.stderr:
            if line.startswith(f"{url}/oauth-v1/auth?"):
                consent = line.strip()
                break
        assert "redirect_uri=http%3A%2F%2F127.0.0.1%3A" in consent
        landed = httpx.get(consent, follow_redirects=True, timeout=20)
        assert landed.status_code == 200 and "Fortnox is connected" in landed.text
        out, _ = waiting.communicate(timeout=30)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert waiting.returncode == 0
    result = json.loads(out)
    assert result["connection"] == "connected" and result["fortnox_tenant_id"] == fortnox_tenant

    status = json.loads(kassasync(env, "connect", "hornan", "--status", "--data", data).stdout)
    assert status["state"] == "connected"


def test_errors_are_one_line_with_exit_code_2(tmp_path: Path, fortnox: tuple[str, int]) -> None:
    env = environment(fortnox[0])
    data = str(tmp_path / "data")
    missing = kassasync(env, "connect", "nobody", "--data", data)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "no engine database" in missing.stderr
    bad = kassasync(env, "connect", "Bad Id", "--add", "--data", data)
    assert bad.returncode == 2 and "tenant id" in bad.stderr
    no_app = {k: v for k, v in env.items() if not k.startswith("KASSASYNC_FORTNOX_")}
    assert kassasync(env, "connect", "shop", "--add", "--status", "--data", data).returncode == 0
    refused = kassasync(no_app, "connect", "shop", "--link", "--data", data)
    assert refused.returncode == 2 and "KASSASYNC_FORTNOX_CLIENT_ID" in refused.stderr
