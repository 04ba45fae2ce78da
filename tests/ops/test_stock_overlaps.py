"""A possible lost sale (issue 16) reaches the shop: the tenant page lists it with its numbers
and recommends the warehouse module; a metric counts them."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import httpx

from engine.clock import utcnow
from engine.embedded.runtime import EmbeddedEngine
from tests.ops.world import ADMIN_TOKEN, TENANT, add_tenant, new_engine
from topics import fortnox as fx

BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _overlap(engine: EmbeddedEngine, message_id: str, command_id: str) -> None:
    engine.ops.store.append(
        fx.FortnoxStockOverlapFound(
            id=message_id,
            tenant=TENANT,
            occurred_at=utcnow(),
            data=fx.StockOverlapData(
                article_number="D-401",
                command_id=command_id,
                overlap=fx.StockOverlap(
                    reason=fx.OverlapReason.FEED_EVENT_IN_WINDOW,
                    read=Decimal(12),
                    written=Decimal(10),
                    level=Decimal(10),
                    window_seconds=0.41,
                    events=1,
                ),
            ),
        )
    )


async def test_a_possible_lost_sale_is_on_the_tenant_page_and_in_the_metrics(
    tmp_path: Path,
) -> None:
    engine = new_engine(tmp_path)
    add_tenant(engine)
    engine.processor.step()
    _overlap(engine, "overlap-1", "stock.fx:D-401@1")
    _overlap(engine, "overlap-1-again", "stock.fx:D-401@1")  # the same write: one report
    engine.processor.step()

    transport = httpx.ASGITransport(engine.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as http:
        page = (await http.get(f"/tenants/{TENANT}", headers=BEARER)).text
        metrics = (await http.get("/metrics")).text
    section = page[page.index("Possible lost sales") :]
    assert "<code>D-401</code>" in section
    assert "<td>12</td><td>10</td><td>10</td><td></td><td>feed_event_in_window</td>" in section
    assert "Recommended:" in page and "<code>warehouse_documents</code>" in page
    assert "<code>fortnox.topics_url</code>" in page  # overwrite mode needs the feed
    assert f'kassasync_stock_possible_lost_sales{{tenant="{TENANT}"}} 1.0' in metrics


async def test_a_repaired_sale_is_counted_apart_and_is_not_a_possible_lost_sale(
    tmp_path: Path,
) -> None:
    engine = new_engine(tmp_path)
    add_tenant(engine)
    engine.processor.step()
    engine.ops.store.append(
        fx.FortnoxStockOverlapFound(
            id="overlap-2",
            tenant=TENANT,
            occurred_at=utcnow(),
            data=fx.StockOverlapData(
                article_number="D-401",
                command_id="stock.fx:D-401@2",
                seq=5,
                overlap=fx.StockOverlap(
                    reason=fx.OverlapReason.FEED_EVENT_IN_WINDOW,
                    read=Decimal(12),
                    written=Decimal(10),
                    foreign=Decimal(-1),
                    repaired=True,
                    repair_read=Decimal(10),
                    repair_written=Decimal(9),
                ),
            ),
        )
    )
    engine.processor.step()

    transport = httpx.ASGITransport(engine.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as http:
        page = (await http.get(f"/tenants/{TENANT}", headers=BEARER)).text
        metrics = (await http.get("/metrics")).text
    assert f'kassasync_stock_sales_repaired{{tenant="{TENANT}"}} 1.0' in metrics
    assert f'kassasync_stock_possible_lost_sales{{tenant="{TENANT}"}} 0.0' in metrics
    section = page[page.index("Possible lost sales") :]
    assert "<code>D-401</code>" not in section
