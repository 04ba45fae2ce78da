"""The till-PC agent on a Kafka deployment, end to end as a shop runs it: ``kassasync agent
watch`` and ``kassasync kafka ingest`` as child processes, a Kafka worker, the sandbox as
Fortnox. A file dropped in the till's folder becomes posted vouchers exactly once, across an
ingest that is down, an ingest restart and an agent restart; the same file again (by name and
bytes, or under another name) books nothing more; a refused file goes to ``refused/``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from kafka.errors import KafkaTimeoutError

from engine.kafka.bookkeeping import KafkaBooks
from engine.kafka.config import KafkaConfig
from engine.kafka.directory import KafkaTenantDirectory
from engine.kafka.ingest import EventProducer, SieFileDoor, create_app
from engine.kafka.ops import KafkaOps
from engine.kafka.runtime import KafkaRuntime
from engine.kafka.topics import init_topics
from engine.ops import TenantDetail
from engine.secrets import KEY_ENV, SecretBox
from engine.tenants import TenantConfig
from tests.procs import terminate
from tests.scenarios.harness import BASE_SETTINGS, FAST_TIMING, TENANT
from tests.sie.cli import Sandbox, free_port
from tests.sie.test_agent_end_to_end import BROKEN, MONDAY, TUESDAY, agent, names, posted, until
from tests.sie.test_import_cli import sie_file
from topics.settings import TenantSettings


@contextlib.asynccontextmanager
async def ingest(config: KafkaConfig, key: str, port: int, log: Path) -> AsyncIterator[str]:
    """``kassasync kafka ingest`` as a child process on ``port``; SIGTERM at the end."""
    out = log.open("ab")
    env = {**os.environ, KEY_ENV: key}
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "engine.cli", "--log-level", "INFO", "kafka", "ingest",
            "--bootstrap", config.bootstrap, "--prefix", config.prefix,
            "--partitions", str(config.partitions), "--data", str(config.data_dir),
            "--port", str(port),
        ],
        stdout=out,
        stderr=out,
        env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as http:

            async def up() -> bool:
                try:
                    return (await http.get(f"{url}/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            for _ in range(300):
                assert proc.poll() is None, log.read_text()
                if await up():
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("kafka ingest did not come up: " + log.read_text())
        yield url
    finally:
        killed = await terminate(proc, timeout=20)
        out.close()
        assert not killed, "kafka ingest ignored SIGTERM"


def dashboard_detail(config: KafkaConfig) -> TenantDetail:
    """The tenant's page of ``kassasync kafka ops`` on the ingest's data folder."""
    kafka = KafkaOps(config)
    try:
        kafka.catch_up()
        detail = kafka.ops.tenant(TENANT)
        assert detail is not None
        return detail
    finally:
        kafka.close()


async def test_a_dropped_file_is_posted_once_by_the_kafka_runtime(
    tmp_path: Path, bootstrap: str, prefix: str, secret_key: str
) -> None:
    async with Sandbox() as sandbox:
        config = KafkaConfig(
            bootstrap=bootstrap, prefix=prefix, partitions=2, data_dir=tmp_path / "kafka"
        )
        await asyncio.to_thread(init_topics, config)
        box = SecretBox(secret_key)
        worker = KafkaRuntime(config, box, timing=FAST_TIMING)
        shop = TenantConfig(
            id=TENANT,
            settings=TenantSettings.model_validate(BASE_SETTINGS),
            fortnox=sandbox.connection(),
        )
        key = await asyncio.to_thread(worker.directory.upsert, shop)
        assert key is not None
        folder = tmp_path / "till" / "sie"
        folder.mkdir(parents=True)
        sent, refused = folder / "sent", folder / "refused"
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        agent_log, ingest_log = tmp_path / "agent.log", tmp_path / "ingest.log"
        await worker.start()
        try:
            # 1. The agent starts while the ingest is down: the file waits, the agent retries.
            async with agent(folder, url, key, agent_log):
                sie_file(folder / "Z0112.SI", *MONDAY)
                await until(lambda: "agent.engine_unavailable" in agent_log.read_text(), "a retry")
                assert "Z0112.SI" in names(folder) and not sent.exists()

                # 2. The ingest comes up: the file is sent, moved with its report, and the
                # worker posts its vouchers.
                async with ingest(config, secret_key, port, ingest_log):
                    await until(lambda: "Z0112.SI" in names(sent), "Z0112.SI in sent/")
                    report = (sent / "Z0112.SI.report.txt").read_text(encoding="utf-8")
                    assert "received by the engine" in report and "2 vouchers" in report, report
                    assert len(await posted(sandbox, 2)) == 2
            # Both stopped. The till writes Tuesday's file while neither runs.
            sie_file(folder / "Z0113.SI", *TUESDAY)

            # 3. The agent restarts first (the ingest is still down), then the ingest restarts.
            async with agent(folder, url, key, agent_log):
                await asyncio.sleep(1.5)
                assert "Z0113.SI" in names(folder)  # waiting, not lost and not refused
                async with ingest(config, secret_key, port, ingest_log):
                    await until(lambda: "Z0113.SI" in names(sent), "Z0113.SI in sent/")
                    assert len(await posted(sandbox, 3)) == 3
                    # Monday's file again, same name and bytes: the restarted ingest remembers.
                    sie_file(folder / "Z0112.SI", *MONDAY)
                    await until(lambda: "Z0112.2.SI" in names(sent), "the repeat in sent/")
                    repeat = (sent / "Z0112.2.SI.report.txt").read_text(encoding="utf-8")
                    assert "had received this file before" in repeat, repeat
                    # The same vouchers under another name: received, nothing more booked.
                    sie_file(folder / "Kopia.SI", *MONDAY)
                    await until(lambda: "Kopia.SI" in names(sent), "Kopia.SI in sent/")
                    copy = (sent / "Kopia.SI.report.txt").read_text(encoding="utf-8")
                    assert "had all been received before" in copy, copy
                    # A file with an account Fortnox cannot have: refused, with the reason.
                    sie_file(folder / "Z0114.SI", *BROKEN)
                    await until(lambda: "Z0114.SI" in names(refused), "Z0114.SI in refused/")
                    why = (refused / "Z0114.SI.report.txt").read_text(encoding="utf-8")
                    assert "REFUSED" in why and "line 10, voucher Z 4, value '0351'" in why, why
                    # The port's caps: a file over 1 MB is not cut at the events' cap, one
                    # over 8 MB is refused unread.
                    auth = {"Authorization": f"Bearer {key}"}
                    async with httpx.AsyncClient(timeout=60) as http:
                        big = b"#FLAGGA 0\r\n" * 150_000
                        answer = await http.put(
                            f"{url}/v1/sie-files/{TENANT}/Big.SI", content=big, headers=auth
                        )
                        assert answer.status_code == 422, answer.text  # read whole: not SIE 4
                        assert answer.json()["outcome"] == "refused"
                    # 9 MB declared: 413 straight after the headers, nothing read.
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.write(
                        f"PUT /v1/sie-files/{TENANT}/Huge.SI HTTP/1.1\r\nHost: ingest\r\n"
                        f"Authorization: Bearer {key}\r\nContent-Length: {9 * 2**20}\r\n\r\n"
                        "".encode()
                    )
                    await writer.drain()
                    status = await asyncio.wait_for(reader.readline(), 10)
                    writer.close()
                    assert status.startswith(b"HTTP/1.1 413 "), status
                    # The Kafka dashboard on the same data folder says why, in the shop's words.
                    detail = await asyncio.to_thread(dashboard_detail, config)
                    shown = {str(key): record for key, record in detail.reports}
                    message = shown["sie-file:Z0114.SI"]["message"]
                    assert message.startswith("The till's file Z0114.SI was not booked"), message
                    assert "2 vouchers will be booked" in shown["sie-file:Z0112.SI"]["message"]
                    await asyncio.sleep(3)  # anything more it would post (it must not) arrives
                    found = await sandbox.imported()
        finally:
            await worker.stop()

        # Exactly once: three source vouchers, three Fortnox vouchers, in date order.
        assert [v["Description"] for v in found] == [
            "Dagskassa 12/1",
            "Kortterminal",
            "Dagskassa 13/1",
        ], found
        assert names(sent) == {
            "Z0112.SI",
            "Z0112.SI.report.txt",
            "Z0113.SI",
            "Z0113.SI.report.txt",
            "Z0112.2.SI",
            "Z0112.2.SI.report.txt",
            "Kopia.SI",
            "Kopia.SI.report.txt",
        }


async def test_the_kafka_door_answers_503_and_queues_nothing_while_the_deployment_is_away(
    tmp_path: Path, bootstrap: str, prefix: str, secret_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent sends the file again on a 503 (tests/sie/test_agent.py); nothing of it is kept
    as received, so the next upload imports it."""
    config = KafkaConfig(
        bootstrap=bootstrap, prefix=prefix, partitions=2, data_dir=tmp_path / "kafka"
    )
    await asyncio.to_thread(init_topics, config)
    box = SecretBox(secret_key)
    directory = KafkaTenantDirectory(config, box)
    shop = TenantConfig(id=TENANT, settings=TenantSettings.model_validate(BASE_SETTINGS))
    key = await asyncio.to_thread(directory.upsert, shop)
    events = EventProducer(config)
    uploads = SieFileDoor(KafkaBooks(config, box))
    data = sie_file(tmp_path / "Z0112.SI", *MONDAY).read_bytes()

    def away() -> None:
        raise KafkaTimeoutError("the broker did not answer")

    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(create_app(directory, events, uploads)),
            base_url="http://ingest",
        ) as client:

            async def put() -> httpx.Response:
                return await client.put(
                    f"/v1/sie-files/{TENANT}/Z0112.SI",
                    content=data,
                    headers={"Authorization": f"Bearer {key}"},
                )

            monkeypatch.setattr(uploads.books, "catch_up", away)
            answer = await put()
            assert answer.status_code == 503, answer.text
            assert "send it again later" in answer.json()["error"]
            uploads_kept = uploads.books.ops.db.conn.execute("SELECT COUNT(*) FROM sie_uploads")
            assert uploads_kept.fetchone()[0] == 0
            monkeypatch.undo()
            answer = await put()
            assert answer.status_code == 202, answer.text
            assert answer.json()["report"]["accepted"] == 2
    finally:
        uploads.close()
        events.close()
