"""The till-PC agent end to end, as a shop runs it: ``kassasync agent watch`` and ``kassasync
run`` as child processes, the sandbox as Fortnox. A file dropped in the till's folder becomes
posted vouchers exactly once, across an engine that is down, an engine restart and an agent
restart; a refused file goes to ``refused/`` with its report and the dashboard says why."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.agent import STATE_NAME
from tests.procs import terminate
from tests.sie.cli import ADMIN_TOKEN, Sandbox, engine, free_port, setup_tenant
from tests.sie.test_import_cli import YEAR, sie_file, voucher

pytestmark = pytest.mark.slow

MONDAY = [
    voucher(
        "Z",
        "1",
        f"{YEAR}0112",
        "Dagskassa 12/1",
        ["1910 {} 250.00", "3001 {} -200.00", "2611 {} -50.00"],
    ),
    voucher(
        "Z",
        "2",
        f"{YEAR}0112",
        "Kortterminal",
        ["1580 {} 125.00", "3001 {} -100.00", "2611 {} -25.00"],
    ),
]
TUESDAY = [
    voucher(
        "Z",
        "3",
        f"{YEAR}0113",
        "Dagskassa 13/1",
        ["1910 {} 62.50", "3001 {} -50.00", "2611 {} -12.50"],
    ),
]
BROKEN = [voucher("Z", "4", f"{YEAR}0114", "Dagskassa 14/1", ["0351 {} 10.00", "3001 {} -10.00"])]


@contextlib.asynccontextmanager
async def agent(folder: Path, url: str, key: str, log: Path) -> AsyncIterator[None]:
    """``kassasync agent watch`` as a child process; SIGTERM at the end (it must obey)."""
    out = log.open("ab")
    key_file = log.with_name("ingest.key")
    key_file.write_text(key + "\n", encoding="utf-8")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "engine.cli", "agent", "watch", str(folder),
            "--url", url, "--tenant", "shop", "--interval", "0.2", "--settle", "0.3",
            "--max-backoff", "1", "--key-file", str(key_file),
        ],
        stdout=out,
        stderr=out,
    )  # fmt: skip
    try:
        await asyncio.sleep(0.5)
        assert proc.poll() is None, log.read_text()
        yield
    finally:
        killed = await terminate(proc, timeout=20)
        out.close()
        assert not killed, "the agent ignored SIGTERM"
        assert proc.returncode == 0, log.read_text()


async def until(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        await asyncio.sleep(0.2)


async def posted(sandbox: Sandbox, expect: int, timeout: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    found = await sandbox.imported()
    while len(found) < expect and time.monotonic() < deadline:
        await asyncio.sleep(0.3)
        found = await sandbox.imported()
    return found


def names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


async def test_a_dropped_file_is_posted_once_across_engine_and_agent_restarts(
    tmp_path: Path,
) -> None:
    async with Sandbox() as sandbox:
        data = tmp_path / "data"
        env = setup_tenant(data, sandbox.connection())
        key = env["SIE_TEST_INGEST_KEY"]
        folder = tmp_path / "till" / "sie"
        folder.mkdir(parents=True)
        sent, refused = folder / "sent", folder / "refused"
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        agent_log = tmp_path / "agent.log"

        # 1. The agent starts while the engine is down: the file waits, the agent retries.
        async with agent(folder, url, key, agent_log):
            sie_file(folder / "Z0112.SI", *MONDAY)
            await until(lambda: "agent.engine_unavailable" in agent_log.read_text(), "a retry")
            assert "Z0112.SI" in names(folder) and not sent.exists()

            # 2. The engine comes up: the file is sent, moved with its report, and posted.
            async with engine(data, env, port):
                await until(lambda: "Z0112.SI" in names(sent), "Z0112.SI in sent/")
                report = (sent / "Z0112.SI.report.txt").read_text(encoding="utf-8")
                assert "received by the engine" in report and "2 vouchers" in report, report
                assert len(await posted(sandbox, 2)) == 2
                # The log lines docs/sie.md promises on stderr, through `kassasync agent watch`.
                logged = agent_log.read_text()
                assert "agent.sent" in logged and "agent.moved" in logged, logged
        # Both stopped. The till writes Tuesday's file while nothing runs.
        sie_file(folder / "Z0113.SI", *TUESDAY)

        # 3. The agent restarts first (the engine is still down), then the engine restarts.
        async with agent(folder, url, key, agent_log):
            await asyncio.sleep(1.5)
            assert "Z0113.SI" in names(folder)  # waiting, not lost and not refused
            async with engine(data, env, port):
                await until(lambda: "Z0113.SI" in names(sent), "Z0113.SI in sent/")
                found = await posted(sandbox, 3)
                # The till writes Monday's file again, same name and bytes: received before.
                sie_file(folder / "Z0112.SI", *MONDAY)
                await until(lambda: "Z0112.2.SI" in names(sent), "the repeat in sent/")
                repeat = (sent / "Z0112.2.SI.report.txt").read_text(encoding="utf-8")
                assert "had received this file before" in repeat, repeat
                # Not a second "will be booked" that reads as new: the first answer, so labelled.
                assert "\nMessage:" not in repeat, repeat
                assert "The engine's answer to the first upload: " in repeat, repeat
                # A file with an account Fortnox cannot have: refused, with the reason.
                sie_file(folder / "Z0114.SI", *BROKEN)
                await until(lambda: "Z0114.SI" in names(refused), "Z0114.SI in refused/")
                why = (refused / "Z0114.SI.report.txt").read_text(encoding="utf-8")
                assert "REFUSED" in why and "line 10, voucher Z 4, value '0351'" in why, why
                async with httpx.AsyncClient() as http:
                    answer = await http.get(
                        f"{url}/ops/api/tenants/shop",
                        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                    )
                reports = str(answer.json())
                assert "The till's file Z0114.SI was not booked, none of it" in reports, reports
                await asyncio.sleep(3)  # anything more it would post (it must not) arrives
                found = await sandbox.imported()

        # Exactly once: three source vouchers, three Fortnox vouchers, in date order.
        assert [v["Description"] for v in found] == [
            "Dagskassa 12/1",
            "Kortterminal",
            "Dagskassa 13/1",
        ], found
        assert names(folder) == {"sent", "refused", STATE_NAME}
        assert names(sent) == {
            "Z0112.SI",
            "Z0112.SI.report.txt",
            "Z0113.SI",
            "Z0113.SI.report.txt",
            "Z0112.2.SI",
            "Z0112.2.SI.report.txt",
        }
