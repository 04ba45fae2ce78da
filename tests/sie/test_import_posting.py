"""``kassasync import-sie`` then ``kassasync run``, as an operator types them, against the
sandbox: each source voucher is booked once, in date order, with its identity in Fortnox; a
re-import books nothing and a corrected voucher with the same identity is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.sie.cli import Sandbox, kassasync, run_engine, setup_tenant
from tests.sie.test_import_cli import YEAR, sie_file, voucher

pytestmark = pytest.mark.slow

JUNE = voucher(
    "A", "24", f"{YEAR}0620", "Juni", ["1910 {} 250.00", '3001 {1 "100"} -200.00', "2611 {} -50.00"]
)
JANUARY = voucher(
    "A", "25", f"{YEAR}0115", "Januari", ["1910 {} 125.00", "3001 {} -100.00", "2611 {} -25.00"]
)
MARCH = voucher(
    "A", "3", f"{YEAR}0310", "Mars", ["1930 {} 62.50", "3001 {} -50.00", "2611 {} -12.50"]
)


async def test_each_source_voucher_is_booked_once_in_date_order_and_a_change_is_a_conflict(
    tmp_path: Path,
) -> None:
    async with Sandbox() as sandbox:
        data = tmp_path / "data"
        env = setup_tenant(data, sandbox.connection())
        path = sie_file(tmp_path / "bok.si", JUNE, JANUARY, MARCH)

        def import_sie(file: Path) -> tuple[int, dict[str, Any]]:
            ran = kassasync(
                data, env, "import-sie", str(file), "--tenant", "shop", "--data", str(data)
            )
            return ran.code, ran.json()

        code, first = import_sie(path)
        assert (code, first["vouchers"], first["accepted"]) == (0, 3, 3)
        assert await sandbox.imported() == []  # the import only queues
        posted = await run_engine(data, env, sandbox, expect=3)
        assert [v["TransactionDate"] for v in posted] == [
            f"{YEAR}-01-15",
            f"{YEAR}-03-10",
            f"{YEAR}-06-20",
        ]  # numbered in date order, not in file order
        january = posted[0]
        assert january["Description"] == "Januari"
        comments = january["Comments"]
        for part in (
            "källa A 25",
            f"reg {YEAR}-01-15",
            "sign Anna",
            "från Kassan / 556000-0001",
            "fil bok.si rad 14",
        ):
            assert part in comments, comments
        june_rows = {r["Account"]: r for r in posted[2]["VoucherRows"]}
        assert june_rows[3001].get("CostCenter") == "100"

        # The same file again, under another name: nothing new.
        again = tmp_path / "bok-kopia.si"
        again.write_bytes(path.read_bytes())
        code, second = import_sie(again)
        assert (code, second["accepted"], second["duplicates"]) == (0, 0, 3)
        # A corrected January voucher with the same series, number and date: a conflict.
        corrected = JANUARY.replace("125.00", "126.25").replace("-25.00", "-26.25")
        code, third = import_sie(sie_file(tmp_path / "rattad.si", corrected))
        assert code == 1
        [error] = third["errors"]
        assert (error["voucher"], error["line"]) == ("A 25", 8)
        assert "imported before with other content" in error["message"]
        assert len(await run_engine(data, env, sandbox, expect=4, timeout=10)) == 3
