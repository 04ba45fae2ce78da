"""Ledger to the back office, SIE export per year, and the manual Z-report export."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest

from engine.clock import utcnow
from engine.ledger import export_sie, sync_vouchers
from engine.sie import read_sie_file
from tests.scenarios.conftest import Factory
from tests.scenarios.test_bookkeeping import worked_example
from topics.outcomes import ExportRequested, ExportRequestedData

pytestmark = pytest.mark.slow


async def test_ledger_sync_hands_each_voucher_to_the_till_once(
    runtime: Factory, tmp_path: Path
) -> None:
    async with runtime({"ledger": {"enabled": True}}) as rt:
        await rt.settle()
        first = await sync_vouchers(rt.api, "shop", rt.publish, download_dir=tmp_path)
        await rt.settle()
        assert first.vouchers > 0 and len(rt.till.ledger) == first.vouchers
        again = await sync_vouchers(rt.api, "shop", rt.publish, year=utcnow().year)
        await rt.settle()
        assert again.vouchers <= first.vouchers
        assert len(rt.till.ledger) == first.vouchers  # a re-sync sends nothing new


async def test_ledger_export_writes_a_readable_sie_file_per_year(
    runtime: Factory, tmp_path: Path
) -> None:
    async with runtime() as rt:
        await rt.settle()
        years = await export_sie(rt.api, tmp_path)
        assert len(years) == 2
        for year in years:
            document = read_sie_file(year.path)
            assert not document.errors
            assert year.accounts > 0 and year.unbalanced == 0


async def test_manual_export_posts_only_what_is_missing(runtime: Factory) -> None:
    # Automatic posting is off: Z-reports wait for a manual export.
    async with runtime({"zreports": {"enabled": False}}) as rt:
        await rt.settle()
        await rt.send(worked_example())
        await rt.settle()
        assert (rt.state("zr", "K1:1234") or {})["status"] == "disabled"
        request = ExportRequested(
            id=f"export-{uuid.uuid4().hex}",
            tenant="shop",
            occurred_at=utcnow(),
            data=ExportRequestedData(from_date=dt.date.today(), to_date=dt.date.today()),
        )
        rt.publish([request])
        await rt.settle()
        assert (rt.state("zr", "K1:1234") or {})["status"] == "posted"
        rt.publish([request.model_copy(update={"id": "export-again"})])
        await rt.settle()
        vouchers = [
            v
            for fy in (await rt.fortnox("financialyears"))["financialyears"]
            for v in fy["vouchers"]
            if "kassasync zreport K1:1234" in (v.get("Comments") or "")
        ]
        assert len(vouchers) == 1
