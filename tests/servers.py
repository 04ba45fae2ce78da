"""Servers a process-level test runs in its own event loop (a sandbox Fortnox, a simulated till)
on loopback, for an engine started as a child process to talk to."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn

from engine.net import loopback_listener


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
