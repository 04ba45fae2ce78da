"""Servers a process-level test runs in its own event loop (a sandbox Fortnox, a simulated till)
on loopback, the shop it configures and the engine it starts as a child process to talk to
them."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import uvicorn

from engine.net import loopback_listener
from engine.secrets import SecretBox
from engine.store.db import Database
from engine.tenants import FortnoxConnection, TenantConfig, TenantDirectory, TillConnection
from tests.scenarios.harness import BASE_SETTINGS, TENANT, WINDOW, merged
from topics.settings import TenantSettings


def free_port() -> int:
    """A loopback port free now (for a child process to listen on)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def serve(app: Any) -> tuple[str, uvicorn.Server, asyncio.Task[None]]:
    """Serve ``app`` on a loopback port: its URL, the server (``should_exit`` stops it) and the
    task serving it."""
    sock = loopback_listener()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server, task


def add_till_master_shop(
    data: Path,
    key: str,
    sandbox_url: str,
    credentials: Mapping[str, Any],
    till_url: str,
    *,
    feed: bool = False,
) -> str:
    """The test shop (the till masters customers) in the engine's store at ``data``, sealed
    with ``key``, its Fortnox the sandbox at ``sandbox_url`` (polled every 0.5 s; ``feed``: with
    the topics feed), its till at ``till_url``; returns the till's API key."""
    directory = TenantDirectory(Database(data / "kassasync.db"), SecretBox(key))
    try:
        api_key = directory.upsert(
            TenantConfig(
                id=TENANT,
                settings=TenantSettings.model_validate(
                    merged(BASE_SETTINGS, {"customers": {"master": "till"}})
                ),
                till=TillConnection(endpoint=f"{till_url}/kassasync/commands", token="till-token"),
                fortnox=FortnoxConnection.at(
                    sandbox_url,
                    credentials,
                    poll_seconds=0.5,
                    feed=feed,
                    rate_window_seconds=WINDOW,
                ),
            )
        )
    finally:
        directory.db.close()
    assert api_key is not None, "the test shop was there already: no new till key"
    return api_key


def start_engine(
    data: Path, port: int, env: dict[str, str], out: IO[bytes], *, log_level: str = "WARNING"
) -> subprocess.Popen[bytes]:
    """``kassasync run`` on ``data`` as a child process listening on ``port``, its output to
    ``out``."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "engine.cli",
            "--log-level",
            log_level,
            "run",
            "--data",
            str(data),
            "--http-port",
            str(port),
        ],
        env=env,
        stdout=out,
        stderr=out,
    )
