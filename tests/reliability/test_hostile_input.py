"""Hostile input at the ingest API: whatever a till (or anyone holding a key) sends, the answer
is a 4xx with a clear message or a 2xx for a valid batch, never a 5xx, and nothing that was
accepted before is lost. Hypothesis generates the bodies; schemathesis generates requests from
the engine's own OpenAPI document; the SIE reader's fuzzing lives in tests/sie
(test_sie_properties.py), and ``kassasync sie check`` is fuzzed end to end here."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import negative_data_rejection, positive_data_acceptance
from starlette.testclient import TestClient

from engine.cli.main import main as kassasync
from engine.embedded.runtime import EmbeddedEngine
from engine.gateway.ingest import MAX_BATCH, MAX_BODY_BYTES
from engine.secrets import SecretBox, generate_key
from engine.tenants import TenantConfig

ADMIN = "reliability-admin-token-0123456789"
TENANTS = ("shop-a", "shop-b")
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


class Ingest:
    """The engine's HTTP app in-process (the ingest API writes straight to the SQLite log)."""

    def __init__(self, data: Path) -> None:
        self.engine = EmbeddedEngine(data, SecretBox(generate_key()), admin_token=ADMIN)
        self.keys = {}
        for tenant in TENANTS:
            key = self.engine.tenants.upsert(TenantConfig(id=tenant))
            assert key is not None
            self.keys[tenant] = key
        self.http = TestClient(
            self.engine.app, base_url="http://engine", raise_server_exceptions=False
        )
        #: The events the module's fixture stored before the fuzzing.
        self.kept: list[dict[str, Any]] = []

    def post(self, body: bytes, tenant: str = "shop-a", key: str | None = None) -> httpx.Response:
        return self.http.post(
            f"/v1/tenants/{tenant}/events",
            content=body,
            headers={
                "Authorization": f"Bearer {key or self.keys[tenant]}",
                "Content-Type": "application/json",
            },
        )

    def stored(self, tenant: str) -> set[str]:
        rows = self.engine.db.conn.execute(
            "SELECT msg_id FROM ingest_seen WHERE tenant = ?", (tenant,)
        )
        return {r[0] for r in rows}

    def on_log(self, tenant: str) -> int:
        row = self.engine.db.conn.execute(
            "SELECT COUNT(*) FROM log_till_events WHERE tenant = ?", (tenant,)
        ).fetchone()
        return int(row[0])


def movement(tenant: str, msg_id: str, **data: Any) -> dict[str, Any]:
    return {
        "id": msg_id,
        "tenant": tenant,
        "type": "till.stock.movement",
        "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
        "source": "till",
        "data": {
            "article_number": "1001",
            "movement_id": f"mv-{msg_id}",
            "delta": "-1",
            "reason": "sale",
            **data,
        },
    }


@pytest.fixture(scope="module")
def ingest() -> Iterator[Ingest]:
    with tempfile.TemporaryDirectory() as folder:
        api = Ingest(Path(folder))
        # What was accepted before the fuzzing starts must survive it.
        accepted = [movement("shop-a", f"kept-{i}") for i in range(5)]
        response = api.post(json.dumps({"events": accepted}).encode())
        assert response.status_code == 202, response.text
        api.kept = accepted
        yield api
        api.http.close()
        api.engine.db.close()


def check_answer(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body.get("error"), str) and body["error"], body
        for item in body.get("problems", []):
            assert {"index", "field", "problem"} <= set(item), item
            assert item["problem"], item


@contextlib.contextmanager
def nothing_lost(api: Ingest) -> Iterator[None]:
    before = api.stored("shop-a")
    letters = len(api.engine.processor.dead.list())
    yield
    after = api.stored("shop-a")
    assert before <= after, f"accepted events disappeared: {before - after}"
    assert api.on_log("shop-a") == len(after)
    # What was accepted is processed: a poison the door let through would raise here or
    # become a dead letter (tests/reliability/test_ingest_door.py goes further).
    processor = api.engine.processor
    while any(processor.lag().values()):
        processor.step()
    assert len(processor.dead.list()) == letters, processor.dead.list()[-1]


# -- strategies ------------------------------------------------------------------------------

#: Every character, control characters and lone surrogates included.
ODD_TEXT = st.text(
    st.characters(min_codepoint=0, max_codepoint=0x10FFFF, categories=None, codec=None),
    max_size=40,
) | st.sampled_from(["\x00", "\ud800", "\udfff", "\u202e", "\ufeff", "A\x1b[31m", "𝓀" * 50])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | ODD_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ODD_TEXT, inner, max_size=4),
    max_leaves=20,
)
FIELDS = ["id", "tenant", "type", "version", "occurred_at", "source", "data"]
DATA_FIELDS = ["article_number", "movement_id", "delta", "reason"]


@st.composite
def tampered_event(draw: st.DrawFn) -> dict[str, Any]:
    event = movement("shop-a", f"fz-{draw(st.uuids()).hex[:12]}")
    how = draw(st.sampled_from(["drop", "replace", "replace_data", "drop_data", "extra"]))
    if how == "drop":
        event.pop(draw(st.sampled_from(FIELDS)), None)
    elif how == "replace":
        event[draw(st.sampled_from(FIELDS))] = draw(JSON)
    elif how == "replace_data":
        event["data"][draw(st.sampled_from(DATA_FIELDS))] = draw(JSON)
    elif how == "drop_data":
        del event["data"][draw(st.sampled_from(DATA_FIELDS))]
    else:
        event["data"][draw(ODD_TEXT)] = draw(JSON)
    return event


def encode(body: Any, ascii_only: bool) -> bytes:
    # Lone surrogates: as JSON escapes (valid JSON, invalid Unicode) or as raw bytes that are
    # not UTF-8 at all.
    return json.dumps(body, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


# -- the properties --------------------------------------------------------------------------


@FUZZ
@given(body=JSON, ascii_only=st.booleans())
def test_any_json_body_gets_a_clear_4xx(ingest: Ingest, body: Any, ascii_only: bool) -> None:
    with nothing_lost(ingest):
        check_answer(ingest.post(encode(body, ascii_only)))


@FUZZ
@given(events=st.lists(tampered_event(), min_size=1, max_size=5), ascii_only=st.booleans())
def test_tampered_events_are_refused_with_their_index(
    ingest: Ingest, events: list[dict[str, Any]], ascii_only: bool
) -> None:
    good = movement("shop-a", f"good-{len(ingest.stored('shop-a'))}")
    with nothing_lost(ingest):
        response = ingest.post(encode({"events": [good, *events]}, ascii_only))
        check_answer(response)
        if response.status_code == 422:
            # All or nothing: the valid event of a refused batch is not stored either.
            assert good["id"] not in ingest.stored("shop-a")
            indexes = {p["index"] for p in response.json().get("problems", [])}
            assert 0 not in indexes


@FUZZ
@given(raw=st.binary(max_size=300))
def test_bytes_that_are_not_json(ingest: Ingest, raw: bytes) -> None:
    with nothing_lost(ingest):
        check_answer(ingest.post(raw))


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 200_000 + b"]" * 200_000,
        b'{"events": [' + b"[" * 50_000 + b"]" * 50_000 + b"]}",
        json.dumps(movement("shop-a", "deep", extra=None))
        .replace("null", '{"a":' * 5_000 + "1" + "}" * 5_000)
        .encode(),
    ],
    ids=["deep-array", "deep-in-batch", "deep-in-data"],
)
def test_deeply_nested_payloads(ingest: Ingest, raw: bytes) -> None:
    with nothing_lost(ingest):
        response = ingest.post(raw)
        check_answer(response)
        assert response.status_code in (400, 413, 422)


def test_huge_payloads_are_refused_before_they_are_stored(ingest: Ingest) -> None:
    with nothing_lost(ingest):
        big = movement("shop-a", "big", movement_id="x" * (MAX_BODY_BYTES + 10))
        response = ingest.post(json.dumps(big).encode())
        assert response.status_code == 413 and "smaller" in response.json()["error"]
        many = [movement("shop-a", f"many-{i}") for i in range(MAX_BATCH + 1)]
        response = ingest.post(json.dumps({"events": many}).encode())
        assert response.status_code == 413 and str(MAX_BATCH) in response.json()["error"]
        assert not {"big", "many-0"} & ingest.stored("shop-a")


def test_a_body_without_length_is_cut_off_at_the_limit(ingest: Ingest) -> None:
    """A chunked body with no Content-Length: the API stops reading past the limit (a client
    streaming 64 MB is refused after about 1 MB, not after buffering it all)."""
    pulled = 0
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b" " * 1_000_000, "more_body": pulled < 64}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/tenants/shop-a/events",
        "raw_path": b"/v1/tenants/shop-a/events",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"authorization", f"Bearer {ingest.keys['shop-a']}".encode()),
            (b"content-type", b"application/json"),
            (b"transfer-encoding", b"chunked"),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("engine", 80),
    }
    asyncio.run(ingest.engine.app(scope, receive, send))
    assert status == 413
    assert pulled <= 2, f"read {pulled} MB before refusing"


def test_another_tenants_id_and_key(ingest: Ingest) -> None:
    with nothing_lost(ingest):
        # shop-a's key on shop-b's URL: 401, whatever the body.
        body = json.dumps(movement("shop-b", "cross-1")).encode()
        assert ingest.post(body, tenant="shop-b", key=ingest.keys["shop-a"]).status_code == 401
        # shop-a's URL and key, shop-b in the event: refused, with the field named.
        response = ingest.post(body)
        assert response.status_code == 422
        assert response.json()["problems"][0]["field"] == "tenant"
        assert "cross-1" not in ingest.stored("shop-b") | ingest.stored("shop-a")
        # No key, a malformed header, a key of no tenant, an unknown tenant.
        for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer "}):
            answer = ingest.http.post("/v1/tenants/shop-a/events", content=body, headers=headers)
            assert answer.status_code == 401
        assert ingest.post(body, tenant="no-such-shop", key="ks_x_y").status_code == 401
        assert ingest.post(body, tenant="../etc", key="k").status_code in (401, 404)


def test_duplicate_ids_in_one_batch(ingest: Ingest) -> None:
    with nothing_lost(ingest):
        twice = [movement("shop-a", "dup-1"), movement("shop-a", "dup-1", delta="-5")]
        response = ingest.post(json.dumps({"events": twice}).encode())
        assert response.status_code == 422
        assert response.json()["problems"] == [
            {"index": 1, "field": "id", "problem": "repeated in this batch"}
        ]
        assert "dup-1" not in ingest.stored("shop-a")
        # Resending an accepted event is a duplicate, not an error, and is not stored twice
        # (the same id with other content is a conflict: tests/reliability/test_ingest_door.py).
        once = ingest.post(json.dumps(ingest.kept[0]).encode())
        assert once.status_code == 200 and once.json() == {"accepted": 0, "duplicates": 1}


# -- schemathesis: requests generated from the engine's OpenAPI document -------------------


def _schema() -> Any:
    folder = tempfile.mkdtemp()
    api = Ingest(Path(folder))
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.engine.app)
    schema.config.update(headers={"Authorization": f"Bearer {api.keys['shop-a']}"})
    return schema.include(path="/v1/tenants/{tenant}/events")


schema = _schema()


@schema.parametrize()
@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
def test_openapi_generated_requests(case: Any) -> None:
    case.path_parameters = {"tenant": "shop-a"}
    response = case.call()
    assert response.status_code < 500, response.text[:500]
    if response.status_code >= 400 and case.method == "POST":
        assert response.json().get("error"), (response.status_code, response.text[:300])
    # A schema-valid event can still be refused for what a schema cannot say (another
    # tenant's id in the body, a time in the future), and a batch over 500 events is a 413,
    # not one of the statuses schemathesis expects; every answer must still be one the
    # document describes (status, content type, body schema) and never a server error.
    case.validate_response(
        response, excluded_checks=[positive_data_acceptance, negative_data_rejection]
    )


def test_the_openapi_document_describes_the_ingest_body() -> None:
    with tempfile.TemporaryDirectory() as folder:
        api = Ingest(Path(folder))
        operation = api.engine.app.openapi()["paths"]["/v1/tenants/{tenant}/events"]["post"]
        api.engine.db.close()
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    batch, single = body["oneOf"]
    assert batch["properties"]["events"]["maxItems"] == MAX_BATCH
    types = {option["properties"]["type"]["const"] for option in single["oneOf"]}
    assert "till.stock.movement" in types and "till.zreport.closed" in types
    assert {"202", "400", "401", "413", "422"} <= set(operation["responses"])


# -- kassasync sie check, end to end --------------------------------------------------------

SIE = (
    "#FLAGGA 0\n#FORMAT PC8\n#SIETYP 4\n#PROGRAM kassa 1.0\n#GEN 20250314\n"
    '#FNAMN "Exempelbutiken AB"\n#RAR 0 20250101 20251231\n#KONTO 1910 "Kassa"\n'
    '#KONTO 3001 "Försäljning 25 %"\n#KONTO 2611 "Utgående moms 25 %"\n'
    '#VER A 1 20250314 "Z-rapport 1"\n{\n#TRANS 1910 {} 125.00\n#TRANS 3001 {} -100.00\n'
    "#TRANS 2611 {} -25.00\n}\n"
).encode("cp437")


@st.composite
def mangled_sie(draw: st.DrawFn) -> bytes:
    data = bytearray(SIE)
    for _ in range(draw(st.integers(1, 8))):
        where = draw(st.integers(0, len(data)))
        how = draw(st.sampled_from(["insert", "delete", "flip"]))
        if how == "insert":
            data[where:where] = draw(st.binary(min_size=1, max_size=12))
        elif how == "delete" and data:
            del data[where : where + draw(st.integers(1, 20))]
        elif data:
            data[min(where, len(data) - 1)] ^= draw(st.integers(1, 255))
    return bytes(data)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=mangled_sie() | st.binary(max_size=400))
def test_sie_check_reports_and_never_crashes(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "dag.se"
        path.write_bytes(raw)
        out = io.StringIO()
        saved = structlog.get_config()
        try:
            with contextlib.redirect_stdout(out):
                status = kassasync(["--log-level", "ERROR", "sie", "check", str(path)])
        finally:
            structlog.configure(**saved)
    assert status in (0, 1)
    lines = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0]["file"] == str(path), out.getvalue()[:500]
