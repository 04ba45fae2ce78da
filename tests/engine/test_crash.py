"""Kill the engine (SIGKILL) at 20 random moments while a till sends and a webshop sells; after
restarts nothing is written twice to Fortnox and no stock movement is lost."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import signal
import subprocess
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.secrets import generate_key
from engine.store.db import Database
from engine.store.packing import StateTable
from sandbox.fortnox.app import create_app as create_sandbox
from sandbox.fortnox.seed import seed_demo
from sandbox.fortnox.state import SandboxState
from sandbox.till import TillState
from sandbox.till import create_app as create_till
from tests.procs import terminate
from tests.scenarios.harness import TENANT, WINDOW
from tests.servers import add_till_master_shop, free_port, serve, start_engine

KILLS = int(os.environ.get("KASSASYNC_CRASH_KILLS", "20"))
pytestmark = pytest.mark.slow


class Engine:
    """``kassasync run`` as a child process that can be killed and started again."""

    def __init__(self, data: Path, port: int, env: dict[str, str]) -> None:
        self.data, self.port, self.env = data, port, env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = (data / "engine.log").open("ab")

    def start(self) -> None:
        self.proc = start_engine(self.data, self.port, self.env, self.log)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    async def stop(self) -> None:
        """SIGTERM; the engine must finish its work in hand and exit within 20 s."""
        assert self.proc is not None
        killed = await terminate(self.proc, timeout=20)
        assert not killed, f"the engine ignored SIGTERM for 20 s: see {self.log.name}"


def _quiet(data: Path) -> bool:
    db = Database(data / "kassasync.db")
    try:
        from engine.embedded.processor import Processor

        processor = Processor(db)
        lag = processor.lag()
        depth = processor.outbox.depth()
        wake = db.conn.execute("SELECT COUNT(*) FROM wake").fetchone()[0]
        return not any(lag.values()) and not any(depth.values()) and not wake
    finally:
        db.close()


def _possible_lost_sales(data: Path) -> set[str]:
    """Articles the engine reported a possible lost sale on (the tenant page's table)."""
    db = Database(data / "kassasync.db")
    try:
        rows = StateTable(db.conn).scan(TENANT, "stock.overlap")
        return {str(value["article"]) for _, value in rows}
    finally:
        db.close()


async def test_sigkill_at_random_points_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    rng = random.Random(20261121)
    key = generate_key()
    sandbox_state = SandboxState(rate_window_seconds=WINDOW)
    seeded = seed_demo(sandbox_state, client_id="kassasync-crash")
    sandbox_url, sandbox_server, sandbox_task = await serve(create_sandbox(sandbox_state))
    till = TillState(tenant=TENANT, token="till-token")
    till_url, till_server, till_task = await serve(create_till(till))
    credentials = seeded.credentials(sandbox_url)

    data = tmp_path / "engine"
    # With Fortnox's topics feed, as overwrite mode needs: the feed is how a sale inside a
    # write's read-to-write window is found at all (docs/reliability.md).
    api_key = add_till_master_shop(data, key, sandbox_url, credentials, till_url, feed=True)
    port = free_port()
    env = {
        **os.environ,
        "KASSASYNC_SECRET_KEY": key,
        "KASSASYNC_ADMIN_TOKEN": "crash-test-admin-token-0123456789",
    }
    engine = Engine(data, port, env)
    ingest = f"http://127.0.0.1:{port}/v1/tenants/{TENANT}/events"

    # The workload: till sales on stock articles, customers, invoices and Z-reports.
    stock_articles = ["1001", "1002", "1003", "1004", "2002", "2003", "A100", "D-401"]
    # The till and the webshop sell the same articles (issue 16). Fortnox has no compare-and-set
    # on QuantityInStock, so a webshop sale inside a write's read-to-write window, or one equal
    # to the delta of a write whose process died before it was settled, can still be lost; the
    # engine must then report a possible lost sale on that article (never silently).
    till_articles = webshop_articles = stock_articles
    events: list[dict[str, Any]] = []
    till_deltas: dict[str, int] = {a: 0 for a in stock_articles}
    for i in range(240):
        article = rng.choice(till_articles)
        delta = rng.choice([-1, -1, -2, 1])
        till_deltas[article] += delta
        events.append(
            {
                "type": "till.stock.movement",
                "data": {
                    "article_number": article,
                    "movement_id": f"mv{i}",
                    "delta": str(delta),
                    "reason": "sale" if delta < 0 else "delivery",
                },
            }
        )
        if i % 24 == 0:
            n = i // 24
            events.append(
                {
                    "type": "till.customer.upserted",
                    "data": {"till_customer_id": f"C{n}", "customer": {"name": f"Kund {n}"}},
                }
            )
            events.append(
                {
                    "type": "till.invoice.created",
                    "data": {
                        "invoice_id": f"I{n}",
                        "till_customer_id": f"C{n}",
                        "invoice_date": dt.date.today().isoformat(),
                        "rows": [
                            {
                                "description": "Kaffe",
                                "quantity": "1",
                                "unit_price": "69.00",
                                "vat_rate": "12",
                            }
                        ],
                    },
                }
            )
            events.append(
                {
                    "type": "till.zreport.closed",
                    "data": {
                        "z_number": n + 1,
                        "till_id": "K1",
                        "location_code": "100",
                        "business_date": dt.date.today().isoformat(),
                        "vat": [{"rate": "25", "sales_net": "80.00", "sales_vat": "20.00"}],
                        "payments": [{"method": "card", "amount": "100.00"}],
                    },
                }
            )
    for i, event in enumerate(events):
        event.update(
            id=f"ev{i}",
            tenant=TENANT,
            source="till",
            occurred_at=dt.datetime.now(dt.UTC).isoformat(),
        )

    webshop_sold: dict[str, int] = {a: 0 for a in stock_articles}
    async with httpx.AsyncClient(timeout=10) as http:
        sent = 0

        async def sender() -> None:
            nonlocal sent
            give_up = time.monotonic() + 300
            while sent < len(events):
                assert time.monotonic() < give_up, (
                    f"ingest stalled at {sent}: see {engine.log.name}"
                )
                batch = events[sent : sent + 6]
                try:
                    response = await http.post(
                        ingest,
                        json={"events": batch},
                        headers={"Authorization": f"Bearer {api_key}"},
                    )
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
                    continue
                if response.status_code in (200, 202):
                    sent += len(batch)
                    for event in batch:  # the till's own stock follows its own sales
                        if event["type"] == "till.stock.movement":
                            number = event["data"]["article_number"]
                            till.stock[number] = till.stock.get(number, Decimal(0)) + Decimal(
                                event["data"]["delta"]
                            )
                else:
                    assert response.status_code >= 500, response.text
                await asyncio.sleep(0.05)

        async def webshop() -> None:
            while sent < len(events):
                article = rng.choice(webshop_articles)
                await http.post(
                    f"{sandbox_url}/_sandbox/tenants/{seeded.tenant.id}/webshop-sale",
                    json={"article": article, "quantity": 1},
                )
                webshop_sold[article] += 1
                await asyncio.sleep(0.4)

        before = {
            a["ArticleNumber"]: Decimal(str(a["QuantityInStock"]))
            for a in (
                await http.get(
                    f"{sandbox_url}/_sandbox/tenants/{seeded.tenant.id}?registers=articles"
                )
            ).json()["articles"]
        }
        engine.start()
        tasks = [asyncio.create_task(sender()), asyncio.create_task(webshop())]
        for _ in range(KILLS):
            await asyncio.sleep(rng.uniform(0.4, 2.0))
            engine.kill()
            await asyncio.sleep(rng.uniform(0.0, 0.3))
            engine.start()
        await asyncio.gather(*tasks)
        # Let it finish: quiet for 6 s on end (twelve polls, so the webshop's last sale has been
        # read, and longer than the 5 s feed watch of the last stock write, whose report is
        # work too); then stop it and check from the outside that nothing is pending.
        deadline = time.monotonic() + 120
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            if await asyncio.to_thread(_quiet, data):
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= 6.0:
                    break
            else:
                quiet_since = None
            await asyncio.sleep(0.5)
        await engine.stop()
        state = (
            await http.get(
                f"{sandbox_url}/_sandbox/tenants/{seeded.tenant.id}"
                "?registers=articles,customers,orders,financialyears"
            )
        ).json()
    for server in (sandbox_server, till_server):
        server.should_exit = True
    await asyncio.gather(sandbox_task, till_task, return_exceptions=True)

    assert _quiet(data), "the engine never settled after the kills"
    fortnox_qty = {
        a["ArticleNumber"]: Decimal(str(a["QuantityInStock"])) for a in state["articles"]
    }
    reported = _possible_lost_sales(data)
    for article in stock_articles:
        expected = before[article] + till_deltas[article] - webshop_sold[article]
        assert fortnox_qty[article] == expected or article in reported, (
            article,
            "Fortnox lost or doubled a movement and no possible lost sale was reported",
        )
        assert till.stock[article] == fortnox_qty[article], (article, "the till and Fortnox differ")
    # No duplicate writes: one customer per till id, one order per invoice, one voucher per Z.
    refs = [c.get("ExternalReference") for c in state["customers"] if c.get("ExternalReference")]
    assert len(refs) == len(set(refs)) == 10
    orders = [
        o["ExternalInvoiceReference1"]
        for o in state["orders"]
        if str(o.get("ExternalInvoiceReference1", "")).startswith("KS-")
    ]
    assert len(orders) == len(set(orders)) == 10
    comments = [
        v.get("Comments")
        for fy in state["financialyears"]
        for v in fy["vouchers"]
        if "kassasync zreport" in (v.get("Comments") or "")
    ]
    assert len(comments) == len(set(comments)) == 10
