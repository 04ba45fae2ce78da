"""The embedded engine without Fortnox: ingest -> log -> reconcilers -> outbox -> till delivery.

Fortnox-side facts are appended as the Fortnox session would append them, so these tests cover
the store, the processor's exactly-once batches, the tick scheduler, the ingest API's validation
and the till delivery protocol against the simulated till.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from engine.clock import utcnow
from engine.embedded.edge import Edge
from engine.embedded.processor import Processor
from engine.embedded.scheduler import TickScheduler
from engine.executors.till import TillDelivery
from engine.gateway.ingest import router
from engine.secrets import SecretBox, generate_key
from engine.store.db import Database
from engine.tenants import TenantConfig, TenantDirectory, TillConnection
from sandbox.till import TillState, create_app
from topics import fortnox as fx
from topics.names import Topic
from topics.settings import TenantSettings

TENANT = "shop1"


@pytest.fixture()
def world(tmp_path: Path) -> dict[str, object]:
    db = Database(tmp_path / "k.db")
    box = SecretBox(generate_key())
    directory = TenantDirectory(db, box)
    config = TenantConfig(
        id=TENANT,
        settings=TenantSettings.model_validate({"flush_window_seconds": 0}),
        till=TillConnection(endpoint="http://till/kassasync/commands", token="till-secret"),
    )
    key = directory.upsert(config)
    edge = Edge(db)
    app = FastAPI()
    app.include_router(router(directory, edge))
    return {"db": db, "directory": directory, "edge": edge, "app": app, "key": key}


def event(
    type_: str, data: dict[str, object], msg_id: str, tenant: str = TENANT
) -> dict[str, object]:
    return {
        "id": msg_id,
        "tenant": tenant,
        "type": type_,
        "occurred_at": utcnow().isoformat(),
        "source": "till",
        "data": data,
    }


async def post(app: FastAPI, key: str | None, body: object, tenant: str = TENANT) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://k") as c:
        return await c.post(f"/v1/tenants/{tenant}/events", json=body, headers=headers)


async def test_ingest_validates_authenticates_and_deduplicates(world: dict[str, object]) -> None:
    app, key, edge = world["app"], world["key"], world["edge"]
    assert isinstance(app, FastAPI) and isinstance(key, str) and isinstance(edge, Edge)
    movement = event(
        "till.stock.movement",
        {"article_number": "A1", "movement_id": "m1", "delta": "-1", "reason": "sale"},
        "e1",
    )
    for wrong in (None, "ks_shop1_wrong"):
        refused = await post(app, wrong, movement)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == 'Bearer realm="kassasync-ingest"'
    bad = event("till.stock.movement", {"article_number": "A1", "delta": "x"}, "e2")
    answer = await post(app, key, {"events": [movement, bad]})
    assert answer.status_code == 422
    fields = {p["field"] for p in answer.json()["problems"]}
    assert {"till.stock.movement.data.movement_id", "till.stock.movement.data.delta"} <= fields
    assert all(p["index"] == 1 for p in answer.json()["problems"])
    assert edge.log.count(Topic.TILL_EVENTS) == 0  # the whole batch was refused
    first = await post(app, key, {"events": [movement]})
    again = await post(app, key, movement)
    assert (first.status_code, first.json()) == (202, {"accepted": 1, "duplicates": 0})
    assert (again.status_code, again.json()) == (200, {"accepted": 0, "duplicates": 1})
    other = event("till.customer.deleted", {"till_customer_id": "c"}, "e3", tenant="shop2")
    assert (await post(app, key, other)).status_code == 422
    future = event("till.customer.deleted", {"till_customer_id": "c"}, "e4")
    future["occurred_at"] = (utcnow() + dt.timedelta(hours=1)).isoformat()
    assert (await post(app, key, future)).status_code == 422


async def test_articles_and_stock_reach_the_till_exactly_once(world: dict[str, object]) -> None:
    db, edge, directory = world["db"], world["edge"], world["directory"]
    assert isinstance(db, Database) and isinstance(edge, Edge)
    assert isinstance(directory, TenantDirectory)
    till = TillState(tenant=TENANT, token="till-secret")
    transport = httpx.ASGITransport(create_app(till))
    processor = Processor(db)
    scheduler = TickScheduler(db, edge.log)
    seq = iter(range(1, 1000))
    articles = [
        fx.FortnoxArticle(
            article_number="A1",
            description="Kaffe",
            ean="111",
            stock_goods=True,
            quantity_in_stock=Decimal(10),
            price=Decimal("25.00"),
        ),
        fx.FortnoxArticle(
            article_number="A2",
            description="Te",
            ean="111",
            stock_goods=True,
            quantity_in_stock=Decimal(5),
            price=Decimal("20.00"),
        ),
        fx.FortnoxArticle(article_number="A3", description="Gammal #E#", stock_goods=False),
    ]
    edge.publish(
        [
            fx.FortnoxArticleChanged(
                id=f"fx-{a.article_number}",
                tenant=TENANT,
                occurred_at=utcnow(),
                data=fx.FortnoxArticleData(article=a, observed=fx.Observation(seq=next(seq))),
            )
            for a in articles
        ]
    )
    async with httpx.AsyncClient(transport=transport) as http:
        delivery = TillDelivery(edge, directory.get, http)
        stop = asyncio.Event()
        for _ in range(5):
            processor.step()
            scheduler.due(utcnow() + dt.timedelta(seconds=1))
            processor.step()
            await delivery.deliver_tenant(TENANT, stop)
            processor.step()
    assert set(till.articles) == {"A1"}  # A2 loses the barcode conflict, A3 is excluded
    assert till.stock == {"A1": Decimal(10)}
    state = processor.store
    assert state.get(TENANT, "barcode.wait", "111") == {"queue": ["A2"]}
    # The same Fortnox fact delivered again changes nothing and sends nothing.
    before = edge.outbox.depth()
    edge.publish(
        [
            fx.FortnoxArticleChanged(
                id="fx-A1-again",
                tenant=TENANT,
                occurred_at=utcnow(),
                data=fx.FortnoxArticleData(article=articles[0], observed=fx.Observation(seq=1)),
            )
        ]
    )
    processor.step()
    assert edge.outbox.depth() == before
