"""Running ``kassasync`` as a user types it (a child process) against a data folder, and the
sandbox the engine posts to."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from engine.net import loopback_listener
from engine.secrets import SecretBox, generate_key
from engine.store.db import Database
from engine.tenants import FortnoxConnection, TenantConfig, TenantDirectory
from sandbox.fortnox.app import create_app as create_sandbox
from sandbox.fortnox.seed import Seeded, seed_demo
from sandbox.fortnox.state import SandboxState
from tests.procs import terminate
from tests.scenarios.harness import BASE_SETTINGS, TENANT, WINDOW, merged
from tests.servers import start_engine
from topics.settings import TenantSettings

ADMIN_TOKEN = "sie-cli-test-admin-token-0123456789"


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        lines = self.out.strip().splitlines()
        assert len(lines) == 1, self.out
        return json.loads(lines[0])


def kassasync(data: Path, env: dict[str, str], *args: str) -> Ran:
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "--log-level", "WARNING", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        cwd=data.parent,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return Ran(done.returncode, done.stdout, done.stderr)


async def kassasync_async(data: Path, env: dict[str, str], *args: str) -> Ran:
    """:func:`kassasync` from a test whose event loop serves the sandbox the command talks to."""
    return await asyncio.to_thread(kassasync, data, env, *args)


def setup_tenant(
    data: Path, fortnox: FortnoxConnection | None = None, settings: dict[str, Any] | None = None
) -> dict[str, str]:
    """A data folder with tenant ``shop``; returns the environment the commands need (with the
    tenant's ingest key as ``SIE_TEST_INGEST_KEY``)."""
    key = generate_key()
    directory = TenantDirectory(Database(data / "kassasync.db"), SecretBox(key))
    ingest_key = directory.upsert(
        TenantConfig(
            id=TENANT,
            settings=TenantSettings.model_validate(merged(BASE_SETTINGS, settings or {})),
            fortnox=fortnox,
        )
    )
    directory.db.close()
    return {
        **os.environ,
        "KASSASYNC_SECRET_KEY": key,
        "KASSASYNC_ADMIN_TOKEN": ADMIN_TOKEN,
        "SIE_TEST_INGEST_KEY": ingest_key or "",
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Sandbox:
    """The Fortnox sandbox served from the test's event loop."""

    def __init__(self) -> None:
        self.state = SandboxState(rate_window_seconds=WINDOW)
        self.seeded: Seeded = seed_demo(self.state, client_id="kassasync-sie-cli")
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Sandbox:
        sock = loopback_listener()
        self._server = uvicorn.Server(
            uvicorn.Config(create_sandbox(self.state), log_level="warning", lifespan="off")
        )
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            await asyncio.sleep(0.01)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None and self._task is not None
        self._server.should_exit = True
        await asyncio.gather(self._task, return_exceptions=True)

    def connection(self) -> FortnoxConnection:
        return FortnoxConnection.at(
            self.url,
            self.seeded.credentials(self.url),
            poll_seconds=0.5,
            rate_window_seconds=WINDOW,
        )

    async def registers(self, names: str) -> dict[str, Any]:
        async with httpx.AsyncClient() as http:
            response = await http.get(
                f"{self.url}/_sandbox/tenants/{self.seeded.tenant.id}?registers={names}"
            )
            return dict(response.json())

    async def imported(self) -> list[dict[str, Any]]:
        """The vouchers ``import-sie`` posted, oldest number first."""
        state = await self.registers("financialyears")
        found = [
            v
            for fy in state["financialyears"]
            for v in fy["vouchers"]
            if "kassasync zreport sie:" in (v.get("Comments") or "")
        ]
        return sorted(found, key=lambda v: (v["VoucherSeries"], int(v["VoucherNumber"])))


@contextlib.asynccontextmanager
async def engine(data: Path, env: dict[str, str], port: int | None = None) -> AsyncIterator[str]:
    """``kassasync run`` as a child process (on ``port``, else a free one); yields its base URL;
    SIGTERM at the end."""
    log = (data / "engine.log").open("ab")
    port = port or free_port()
    proc = start_engine(data, port, env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as http:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, f"the engine exited: see {log.name}"
                assert time.monotonic() < deadline, f"the engine did not listen: see {log.name}"
                try:
                    await http.get(f"{url}/metrics")
                    break
                except httpx.HTTPError:
                    await asyncio.sleep(0.2)
        yield url
    finally:
        killed = await terminate(proc, timeout=20)
        log.close()
        assert not killed, "the engine ignored SIGTERM"


async def run_engine(
    data: Path, env: dict[str, str], sandbox: Sandbox, expect: int, *, timeout: float = 60
) -> list[dict[str, Any]]:
    """``kassasync run`` until ``expect`` imported vouchers are in the sandbox and the engine
    has been quiet a moment; then SIGTERM. Returns the imported vouchers."""
    async with engine(data, env):
        deadline = time.monotonic() + timeout
        found = await sandbox.imported()
        while len(found) < expect and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            found = await sandbox.imported()
        await asyncio.sleep(3)  # anything more it would post (it must not) has time to arrive
        return await sandbox.imported()
