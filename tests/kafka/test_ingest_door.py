"""The Kafka ingest's door, with the real broker and one worker: the same answers as the
embedded door (tests/reliability/test_ingest_door.py) for hostile bodies, bodies capped while
they are read, and what it accepts processed by the worker without a dead letter, while
another tenant's events go on. A reused movement id, which only the reconciler can tell, is a
dead letter on this runtime too."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import httpx
from kafka.errors import KafkaTimeoutError

from engine.clock import skew
from engine.gateway.ingest import MAX_BODY_BYTES
from engine.kafka.config import KafkaConfig
from engine.kafka.ingest import create_app
from engine.secrets import SecretBox
from engine.tenants import TenantConfig
from reconcilers import stock_ids
from tests.kafka.harness import KafkaHarness, eventually, running
from tests.reliability.till_events import (
    HUGE,
    customer,
    invoice,
    movement,
    raw_with,
    voucher,
    zreport,
)

TENANTS = ("shop-a", "shop-b")


def refused_cases() -> list[tuple[bytes, int, str]]:
    """(body, status, a field the answer must name) — the same refusals as the embedded door."""
    year_one = movement(occurred_at="0001-01-01T00:00:00+01:00")
    return [
        (json.dumps(year_one).encode(), 422, "till.stock.movement.occurred_at"),
        (json.dumps(invoice(invoice_date="0001-01-01")).encode(), 422, "data.invoice_date"),
        (json.dumps(zreport(business_date="9999-12-31")).encode(), 422, "data.business_date"),
        (json.dumps(voucher(transaction_date="1999-12-31")).encode(), 422, "transaction_date"),
        (raw_with(movement(delta="@"), "@", HUGE), 422, "data.delta"),
        (raw_with(movement(delta="@"), "@", "1e-999999"), 422, "data.delta"),
        (raw_with(movement(delta="@"), "@", '"1e-999999"'), 422, "data.delta"),
        (raw_with(zreport(z_number="@"), "@", HUGE), 422, "data.z_number"),
        (raw_with(movement(delta="@"), "@", "NaN"), 400, ""),
        (json.dumps(movement(delta="3", reason="sale")).encode(), 422, "data"),
        (json.dumps(movement(delta="0")).encode(), 422, "data"),
        (json.dumps({**movement(), "type": "till.nope"}).encode(), 422, "type"),
        (HUGE.encode(), 422, ""),
    ]


class KafkaDoor:
    def __init__(self, harness: KafkaHarness, keys: dict[str, str]) -> None:
        self.harness = harness
        self.keys = keys
        assert harness.events is not None
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(create_app(harness.runtime.directory, harness.events)),
            base_url="http://ingest",
        )

    async def post(self, body: bytes | object, tenant: str = "shop-a") -> httpx.Response:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return await self.client.post(
            f"/v1/tenants/{tenant}/events",
            content=raw,
            headers={"Authorization": f"Bearer {self.keys[tenant]}"},
        )

    def record(self, tenant: str, kind: str, key: str) -> dict[str, Any] | None:
        return self.harness.state(tenant).get((kind, key))

    async def until_movement(self, tenant: str, movement_id: str, what: str) -> None:
        """Until the tenant's stock reconciler has applied ``movement_id``."""

        async def there() -> bool:
            state = self.harness.state(tenant)

            def get(kind: str, key: str) -> dict[str, Any] | None:
                return state.get((kind, key))

            return stock_ids.known(get, stock_ids.MOVEMENT_IDS, movement_id) is not None

        await eventually(there, 60, what)

    async def until(self, tenant: str, kind: str, key: str, what: str) -> dict[str, Any]:
        async def there() -> bool:
            return self.record(tenant, kind, key) is not None

        await eventually(there, 60, what)
        found = self.record(tenant, kind, key)
        assert found is not None
        return found


@contextlib.asynccontextmanager
async def door(tmp_path: Path, bootstrap: str, prefix: str) -> AsyncIterator[KafkaDoor]:
    config = KafkaConfig(bootstrap=bootstrap, prefix=prefix, data_dir=tmp_path / "kafka")
    harness = KafkaHarness(config, SecretBox.from_env())
    async with running(harness):
        keys = {t: await harness.add_tenant(TenantConfig(id=t)) for t in TENANTS}
        api = KafkaDoor(harness, keys)
        try:
            yield api
        finally:
            await api.client.aclose()


async def test_the_kafka_door_refuses_what_the_embedded_door_refuses(
    tmp_path: Path, bootstrap: str, prefix: str
) -> None:
    async with door(tmp_path, bootstrap, prefix) as api:
        for body, status, field in refused_cases():
            answer = await api.post(body)
            assert answer.status_code == status, (body[:120], answer.text[:300])
            fields = [p["field"] for p in answer.json().get("problems", [])]
            assert not field or [f for f in fields if f.endswith(field)], (field, fields)
        # A body without a length is cut off while it is read, as on the embedded API.
        pulled = 0

        async def chunks() -> AsyncIterator[bytes]:
            nonlocal pulled
            for _ in range(64):
                pulled += 1
                yield b" " * 1_000_000

        answer = await api.client.post(
            "/v1/tenants/shop-a/events",
            content=chunks(),
            headers={"Authorization": f"Bearer {api.keys['shop-a']}"},
        )
        assert answer.status_code == 413 and str(MAX_BODY_BYTES) in answer.text
        assert pulled <= 3, f"read {pulled} MB before refusing"

        # What the door accepts, the worker processes: the edge of the range, the till's
        # order of a customer's edits (the real latest edit wins over one stamped ahead), and
        # the other tenant goes on. Nothing is dead-lettered.
        # The edge of the range is older than the redelivery window today (refused with that
        # reason); with the engine's clock at the start of 2000 the door takes it.
        edge = movement(occurred_at="2000-01-01T00:00:00+14:00")
        refused = await api.post(edge)
        assert refused.status_code == 422 and "redelivery window" in refused.text
        previous = skew(dt.datetime(2000, 1, 1, 9, tzinfo=dt.UTC) - dt.datetime.now(dt.UTC))
        try:
            assert (await api.post(edge)).status_code == 202
        finally:
            skew(previous)
        ahead = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=4)).isoformat()
        batch = [
            customer("C-k", "v1", 1),
            customer("C-k", "v2", 2, occurred_at=ahead),
            customer("C-k", "v3", 3),
            customer("C-k", "stale", 2),
        ]
        answer = await api.post({"events": batch})
        assert answer.status_code == 202, answer.text
        other = movement("shop-b", movement_id=f"b-{uuid.uuid4().hex[:8]}")
        assert (await api.post(other, tenant="shop-b")).status_code == 202
        await api.until_movement("shop-b", other["data"]["movement_id"], "shop-b's movement")
        await api.until_movement("shop-a", edge["data"]["movement_id"], "the edge movement")
        rec = await api.until("shop-a", "cust.till", "C-k", "the customer")

        async def settled() -> bool:
            found = api.record("shop-a", "cust.till", "C-k") or {}
            return batch[-1]["id"] in found.get("till_ids", ())

        await eventually(settled, 60, "every edit of C-k")
        rec = api.record("shop-a", "cust.till", "C-k") or {}
        assert rec["fields"]["name"] == "v3", rec
        report = api.record("shop-a", "report", "customer:C-k:order")
        assert report is not None and report["kind"] == "till_edit_out_of_order"
        assert api.harness.runtime.counters.dead_letters == 0


async def test_a_reused_movement_id_is_a_dead_letter_on_kafka(
    tmp_path: Path, bootstrap: str, prefix: str
) -> None:
    async with door(tmp_path, bootstrap, prefix) as api:
        first = movement(movement_id="R-k", article_number="4001")
        assert (await api.post(first)).status_code == 202
        await api.until_movement("shop-a", "R-k", "the first movement")
        reused = movement(movement_id="R-k", article_number="4001", delta="-6")
        assert (await api.post(reused)).status_code == 202

        async def lettered() -> bool:
            return api.harness.runtime.counters.dead_letters == 1

        await eventually(lettered, 60, "the reused movement id's dead letter")
        level = api.record("shop-a", "stock", "4001")
        assert level is not None and Decimal(level["till"]) == -1, level
        other = movement("shop-b", movement_id="b-after")
        assert (await api.post(other, tenant="shop-b")).status_code == 202
        await api.until_movement("shop-b", "b-after", "shop-b after the dead letter")


class _Stuck:
    """A deployment that does not answer (its broker stopped with SIGSTOP): reading the tenants'
    keys blocks until released, then fails as kafka-python does; storing never returns."""

    def __init__(self, keys_answer: bool) -> None:
        self.keys_answer = keys_answer
        self.release = threading.Event()

    def verify_key(self, _tenant: str, _key: str) -> bool:
        if self.keys_answer:
            return True
        self.release.wait(10)
        raise KafkaTimeoutError("Failed to update metadata after 60.0 secs.")

    async def store(self, _tenant: str, _events: list[Any]) -> Any:
        await asyncio.sleep(3600)


async def test_a_deployment_that_does_not_answer_is_503_within_the_bound() -> None:
    """Found from outside: with the broker frozen, a till's POST got no answer for 40 s and the
    ingest logged an uncaught KafkaTimeoutError from reading the tenants' keys. Now each door
    answers 503 ("send again later") within its bound: nothing was stored, and a resend after
    a late store is a duplicate by its id."""
    body = {"events": [movement("shop")]}
    for stuck in (_Stuck(keys_answer=False), _Stuck(keys_answer=True)):
        app = create_app(cast(Any, stuck), stuck, answer_seconds=0.5)
        try:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app), base_url="http://ingest", timeout=10
            ) as http:
                started = time.monotonic()
                answer = await http.post(
                    "/v1/tenants/shop/events", json=body, headers={"Authorization": "Bearer k"}
                )
                assert answer.status_code == 503, answer.text
                assert "later" in answer.json()["error"]
                assert time.monotonic() - started < 3
        finally:
            stuck.release.set()
