"""A Z-report dated before the Z-report start date, through the ingest API and the CLI: not
posted, and visibly so — skipped with the reason on the dashboard's API, and ``kassasync export
zreports`` for its date says why it posts nothing."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path

import httpx
import pytest

from tests.sie.cli import ADMIN_TOKEN, Sandbox, engine, kassasync, setup_tenant

pytestmark = pytest.mark.slow


async def test_a_zreport_before_the_start_date_is_skipped_with_the_reason(tmp_path: Path) -> None:
    today = dt.date.today()
    early = today - dt.timedelta(days=3)
    async with Sandbox() as sandbox:
        data = tmp_path / "data"
        env = setup_tenant(
            data, sandbox.connection(), {"zreports": {"start_date": today.isoformat()}}
        )
        report = {
            "id": "z-early",
            "tenant": "shop",
            "type": "till.zreport.closed",
            "source": "till",
            "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
            "data": {
                "z_number": 7,
                "till_id": "K1",
                "business_date": early.isoformat(),
                "vat": [{"rate": "25", "sales_net": "80.00", "sales_vat": "20.00"}],
                "payments": [{"method": "card", "amount": "100.00"}],
            },
        }
        async with engine(data, env) as url, httpx.AsyncClient() as http:
            sent = await http.post(
                f"{url}/v1/tenants/shop/events",
                json={"events": [report]},
                headers={"Authorization": f"Bearer {env['SIE_TEST_INGEST_KEY']}"},
            )
            assert sent.status_code == 202, sent.text
            admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            deadline = time.monotonic() + 30
            while True:
                detail = (await http.get(f"{url}/ops/api/tenants/shop", headers=admin)).json()
                skipped = [r for r in detail["reports"] if "skipped_before_start" in str(r)]
                if skipped or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            assert skipped, detail["reports"]
            text = str(skipped[0])
            assert "K1:7" in text and f"before the Z-report start date {today}" in text
            ran = await asyncio.to_thread(
                kassasync,
                data,
                env,
                "export",
                "zreports",
                "--tenant",
                "shop",
                "--data",
                str(data),
                "--from",
                early.isoformat(),
                "--to",
                early.isoformat(),
            )
            assert ran.code == 0
            said = ran.json()
            assert f"before the Z-report start date {today}" in said["not_posted"]
            [item] = said["skipped"]
            assert item["key"] == "K1:7" and f"dated {early}" in item["reason"]
            await asyncio.sleep(2)
        state = await sandbox.registers("financialyears")
        posted = [
            v
            for fy in state["financialyears"]
            for v in fy["vouchers"]
            if "kassasync zreport K1:7" in (v.get("Comments") or "")
        ]
        assert posted == []
