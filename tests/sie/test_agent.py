"""The till-PC agent's rules one by one (engine/agent.py against a scripted engine), the upload
door as an attacker or a careless till would use it (engine/gateway/sie_files.py over HTTP),
and the agent's promise of few dependencies."""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from engine.agent import STATE_NAME, Agent, Config
from engine.embedded.edge import Edge
from engine.gateway.sie_files import router
from engine.ops import SqliteOpsStore
from engine.secrets import SecretBox, generate_key
from engine.store.db import Database
from engine.store.log import Log
from engine.store.packing import StateTable
from engine.tenants import TenantConfig, TenantDirectory
from tests.sie.test_import_cli import GOOD, sie_file
from topics.settings import TenantSettings

Handler = Callable[[httpx.Request], httpx.Response]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def make_agent(folder: Path, handler: Handler, clock: Clock) -> Agent:
    config = Config(
        folder=folder,
        url="http://engine.test",
        tenant="shop",
        key="k",
        state_file=folder / STATE_NAME,
        settle=2.0,
        max_backoff=60.0,
    )
    return Agent(config, client=httpx.Client(transport=httpx.MockTransport(handler)), clock=clock)


def accepted(request: httpx.Request) -> httpx.Response:
    body = {"file": "x", "outcome": "queued", "repeat": False, "message": "3 vouchers"}
    return httpx.Response(202, json=body)


def test_a_file_is_sent_only_once_it_has_settled_then_moved_with_a_report(tmp_path: Path) -> None:
    calls: list[httpx.Request] = []

    def engine(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return accepted(request)

    clock = Clock()
    agent = make_agent(tmp_path, engine, clock)
    path = sie_file(tmp_path / "Z 0115.SI", GOOD)
    (tmp_path / "Z0116.SI.tmp").write_bytes(b"half")
    (tmp_path / ".hidden").write_bytes(b"x")
    assert agent.step() == 0 and calls == []  # first seen
    clock.now += 1
    assert agent.step() == 0 and calls == []  # not settled yet
    with path.open("ab") as more:  # the till is still writing
        more.write(b"\r\n")
    clock.now += 1.5
    assert agent.step() == 0 and calls == []  # changed: the settling starts again
    clock.now += 2
    assert agent.step() == 1
    [request] = calls
    assert request.method == "PUT"
    assert request.url.raw_path == b"/v1/sie-files/shop/Z%200115.SI"
    assert request.headers["authorization"] == "Bearer k"
    data = (tmp_path / "sent" / "Z 0115.SI").read_bytes()
    assert request.content == data
    assert request.headers["x-content-sha256"] == hashlib.sha256(data).hexdigest()
    report = (tmp_path / "sent" / "Z 0115.SI.report.txt").read_text()
    assert "received by the engine (HTTP 202" in report and "Message: 3 vouchers" in report
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".hidden",
        STATE_NAME,
        "Z0116.SI.tmp",
        "sent",
    ]
    clock.now += 10
    assert agent.step() == 0 and len(calls) == 1


def test_an_unreachable_engine_is_retried_with_growing_waits_and_nothing_moves(
    tmp_path: Path,
) -> None:
    tries: list[float] = []
    clock = Clock()

    def down(request: httpx.Request) -> httpx.Response:
        tries.append(clock.now)
        if len(tries) < 5:
            raise httpx.ConnectError("refused", request=request)
        if len(tries) < 7:
            return httpx.Response(503, json={"error": "starting"})
        return accepted(request)

    agent = make_agent(tmp_path, down, clock)
    sie_file(tmp_path / "Z.SI", GOOD)
    agent.step()
    clock.now += 3
    while not (tmp_path / "sent").exists():
        assert clock.now < 1_000_000 + 600, tries
        agent.step()
        clock.now += 0.25
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(tries)]
    assert len(tries) == 7
    assert all(later > earlier for earlier, later in itertools.pairwise(gaps)), gaps
    assert gaps[3] >= 6, gaps  # 1, 2, 4, 8 s (less up to a fifth of jitter)
    assert "Attempts: 7" in (tmp_path / "sent" / "Z.SI.report.txt").read_text()


@pytest.mark.parametrize("status", [401, 404])
def test_a_wrong_key_or_tenant_never_refuses_the_file(tmp_path: Path, status: int) -> None:
    clock = Clock()
    agent = make_agent(tmp_path, lambda r: httpx.Response(status, json={"error": "no"}), clock)
    sie_file(tmp_path / "Z.SI", GOOD)
    for _ in range(20):
        agent.step()
        clock.now += 5
    assert (tmp_path / "Z.SI").exists()
    assert not (tmp_path / "refused").exists() and not (tmp_path / "sent").exists()


def test_a_refusal_moves_the_file_to_refused_with_each_problem(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        errors = [
            {"file": "Z.SI", "line": 16, "voucher": "A 3", "value": "0351", "message": "account"},
            {"file": "Z.SI", "line": 19, "voucher": "B 7", "message": "does not balance"},
        ]
        body = {"outcome": "refused", "message": "not booked", "report": {"errors": errors}}
        return httpx.Response(422, json=body)

    clock = Clock()
    agent = make_agent(tmp_path, refuse, clock)
    sie_file(tmp_path / "Z.SI", GOOD)
    agent.step()
    clock.now += 3
    assert agent.step() == 1
    report = (tmp_path / "refused" / "Z.SI.report.txt").read_text()
    assert "Problem: line 16, voucher A 3, value '0351': account" in report
    assert "Problem: line 19, voucher B 7: does not balance" in report


def test_a_restart_after_the_answer_moves_the_file_without_asking_again(tmp_path: Path) -> None:
    calls: list[httpx.Request] = []

    def engine(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return accepted(request)

    clock = Clock()
    agent = make_agent(tmp_path, engine, clock)
    sie_file(tmp_path / "Z.SI", GOOD)
    agent.step()
    clock.now += 3
    # The till PC holds the file open (Windows): the move fails after the engine answered.
    real_replace = __import__("os").replace

    def locked(src: object, dst: object) -> None:
        if str(src).endswith("Z.SI"):
            raise PermissionError("in use")
        real_replace(src, dst)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("engine.agent.os.replace", locked)
        assert agent.step() == 0
    assert len(calls) == 1 and (tmp_path / "Z.SI").exists()
    saved = json.loads((tmp_path / STATE_NAME).read_text())
    assert saved["files"]["Z.SI"]["outcome"]["verdict"] == "sent"
    # The agent restarts (a new process reads the state file) and finishes the move.
    again = make_agent(tmp_path, engine, clock)
    clock.now += 1
    assert again.step() == 1
    assert len(calls) == 1 and (tmp_path / "sent" / "Z.SI").exists()


def test_the_agent_needs_only_httpx_and_the_standard_library() -> None:
    probe = (
        "import sys, engine.agent; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'pydantic', 'fastapi', 'structlog', 'starlette', 'topics', 'reconcilers', 'sandbox'} "
        "or (m.startswith('engine.') and m != 'engine.agent')))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


# -- the upload door -------------------------------------------------------------------------------


@pytest.fixture(params=["embedded", "kafka"])
def door(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[TestClient, str, Database]]:
    """The upload door on each runtime: the embedded engine's (its log in SQLite), and the Kafka
    ingest's (``kassasync kafka ingest``: onto ``till.events`` of the real broker, the uploads
    kept in its read model's database, which the Kafka dashboard reads)."""
    box = SecretBox(generate_key())
    shop = TenantConfig(id="shop", settings=TenantSettings())
    if request.param == "embedded":
        db = Database(tmp_path / "kassasync.db")
        directory = TenantDirectory(db, box)
        key = directory.upsert(shop) or ""
        app = FastAPI()
        app.include_router(router(directory, Edge(db)))
        yield TestClient(app), key, db
        return
    request.applymarker(pytest.mark.kafka)
    from engine.kafka.bookkeeping import KafkaBooks
    from engine.kafka.config import KafkaConfig
    from engine.kafka.directory import KafkaTenantDirectory
    from engine.kafka.ingest import EventProducer, SieFileDoor, create_app
    from engine.kafka.topics import init_topics
    from tests.scenarios.kafka_runtime import kafka_bootstrap

    config = KafkaConfig(
        bootstrap=kafka_bootstrap(),
        prefix=f"a{uuid.uuid4().hex[:10]}.",
        partitions=2,
        data_dir=tmp_path / "kafka",
    )
    init_topics(config)
    kafka_directory = KafkaTenantDirectory(config, box)
    key = kafka_directory.upsert(shop) or ""
    events = EventProducer(config)
    uploads = SieFileDoor(KafkaBooks(config, box))
    try:
        yield TestClient(create_app(kafka_directory, events, uploads)), key, uploads.books.ops.db
    finally:
        uploads.close()
        events.close()


def test_the_upload_door_checks_key_name_checksum_and_size(
    door: tuple[TestClient, str, Database], tmp_path: Path
) -> None:
    client, key, _db = door
    data = sie_file(tmp_path / "Z.SI", GOOD).read_bytes()
    auth = {"Authorization": f"Bearer {key}"}
    missing = client.put("/v1/sie-files/shop/Z.SI", content=data)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="kassasync-ingest"'
    wrong = {"Authorization": "Bearer nope"}
    assert client.put("/v1/sie-files/shop/Z.SI", content=data, headers=wrong).status_code == 401
    assert client.put("/v1/sie-files/other/Z.SI", content=data, headers=auth).status_code == 401
    for name in ("..", "%2E%2E", "a%5Cb", "a%3Ab", "a%0Ab"):
        assert client.put(f"/v1/sie-files/shop/{name}", content=data, headers=auth).status_code in (
            400,
            404,
        ), name
    cut = {**auth, "X-Content-SHA256": hashlib.sha256(data[:-5]).hexdigest()}
    answer = client.put("/v1/sie-files/shop/Z.SI", content=data, headers=cut)
    assert answer.status_code == 400 and "X-Content-SHA256" in answer.json()["error"]
    huge = b"#FLAGGA 0\r\n" * 900_000
    assert client.put("/v1/sie-files/shop/Big.SI", content=huge, headers=auth).status_code == 413


def test_an_upload_is_queued_once_and_a_refusal_is_on_the_dashboard_in_the_shops_words(
    door: tuple[TestClient, str, Database], tmp_path: Path
) -> None:
    client, key, db = door
    auth = {"Authorization": f"Bearer {key}"}
    data = sie_file(tmp_path / "Z.SI", GOOD).read_bytes()
    first = client.put("/v1/sie-files/shop/Z.SI", content=data, headers=auth)
    assert first.status_code == 202, first.text
    assert (first.json()["outcome"], first.json()["report"]["accepted"]) == ("queued", 1)
    again = client.put("/v1/sie-files/shop/Z.SI", content=data, headers=auth)
    assert again.status_code == 200 and again.json()["repeat"] is True
    other_name = client.put("/v1/sie-files/shop/Kopia.SI", content=data, headers=auth)
    assert other_name.status_code == 202
    assert other_name.json()["report"]["duplicates"] == 1  # the vouchers are known: none booked
    broken = data.replace(b"#TRANS 1910", b"#TRANS 0351")
    refused = client.put("/v1/sie-files/shop/Fel.SI", content=broken, headers=auth)
    assert refused.status_code == 422
    [error] = refused.json()["report"]["errors"]
    assert (error["file"], error["voucher"], error["value"]) == ("Fel.SI", "A 1", "0351")
    assert "report" not in StateTable(db.conn).counts("shop")
    reports = dict(SqliteOpsStore(db, Log(db)).records("shop", "report"))
    shown = reports["sie-file:Fel.SI"]
    assert shown["kind"] == "sie_file_refused"
    assert shown["message"].startswith("The till's file Fel.SI was not booked, none of it: line")
    assert "'0351'" in shown["message"] and "Correct it in the till" in shown["message"]
