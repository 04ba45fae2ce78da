"""Child processes of tests that serve HTTP from the test's own event loop."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time


async def terminate(
    *procs: subprocess.Popen[bytes], timeout: float = 30.0
) -> list[subprocess.Popen[bytes]]:
    """SIGTERM each process and wait for all of them without blocking the event loop: a child
    that is finishing a request to a server in this loop (a sandbox, a till) gets its answer.
    Whatever has not exited after ``timeout`` seconds is killed, and returned."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(proc.poll() is None for proc in procs) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    killed = [proc for proc in procs if proc.poll() is None]
    for proc in killed:
        proc.kill()
        proc.wait()
    return killed
