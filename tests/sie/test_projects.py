"""SIE dimension 6 becomes the row's Fortnox project, through ``kassasync import-sie`` and
``kassasync run`` against the sandbox: a project Fortnox has is posted on the row; one it lacks
makes the voucher wait with the shop's fix (nothing is dropped), and it posts once the project
exists."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.store.db import Database
from engine.store.packing import StateTable
from sandbox.fortnox.resources.projects import create_project
from tests.sie.cli import Sandbox, kassasync, run_engine, setup_tenant
from tests.sie.test_import_cli import YEAR, sie_file, voucher

pytestmark = pytest.mark.slow

KIOSK = voucher(
    "P", "1", f"{YEAR}0301", "Kiosk", ['3001 {6 "P1"} -80.00', "2611 {} -20.00", "1910 {} 100.00"]
)
FAIR = voucher(
    "P", "2", f"{YEAR}0302", "Mässa", ['3001 {6 "P9"} -40.00', "2611 {} -10.00", "1910 {} 50.00"]
)


def waiting_errors(data: Path) -> list[dict[str, object]]:
    db = Database(data / "kassasync.db")
    try:
        table = StateTable(db.conn)
        found = [
            record
            for tenant in table.tenants()
            for key, record in table.scan(tenant, "zr")
            if key.startswith("sie:")
        ]
    finally:
        db.conn.close()
    return [r["error"] for r in found if r.get("status") == "waiting" and r.get("error")]


async def test_dimension_6_posts_as_the_rows_project_and_a_missing_project_waits(
    tmp_path: Path,
) -> None:
    async with Sandbox() as sandbox:
        fortnox = sandbox.seeded.tenant
        create_project(fortnox, {"ProjectNumber": "P1", "Description": "Sommarkiosk"})
        data = tmp_path / "data"
        env = setup_tenant(data, sandbox.connection())
        path = sie_file(tmp_path / "projekt.si", KIOSK, FAIR)
        ran = kassasync(data, env, "import-sie", str(path), "--tenant", "shop", "--data", str(data))
        assert (ran.code, ran.json()["accepted"]) == (0, 2), ran.out

        [kiosk] = await run_engine(data, env, sandbox, expect=2, timeout=20)
        rows = {row["Account"]: row for row in kiosk["VoucherRows"]}
        assert rows[3001]["Project"] == "P1"
        assert rows[1910]["Project"] == ""
        [error] = waiting_errors(data)
        assert error["kind"] == "project_missing"
        assert 'Project "P9" is missing in Fortnox' in str(error["message"])
        assert "dimension 6" in str(error["fix"])

        # The shop adds the project in Fortnox: the waiting voucher posts, once.
        create_project(fortnox, {"ProjectNumber": "P9", "Description": "Mässan"})
        posted = await run_engine(data, env, sandbox, expect=2)
        assert [v["Description"] for v in posted] == ["Kiosk", "Mässa"]
        rows = {row["Account"]: row for row in posted[1]["VoucherRows"]}
        assert rows[3001]["Project"] == "P9"
        assert waiting_errors(data) == []
