"""``kassasync ledger export`` and posting into old years, through the CLI against the sandbox:
the ``--year`` rule, said in the output or refused; ``#KPTYP``/``#ORGNR``/``#RAR``; ``#KSUMMA``
on request; every financial year Fortnox has is usable."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from engine.sie import ChecksumStatus, read_sie_file
from engine.sie.model import BalanceKind
from sandbox.fortnox.resources.bookkeeping import create_financial_year
from sandbox.fortnox.seed import setup_books
from tests.sie.cli import Sandbox, kassasync, kassasync_async, run_engine, setup_tenant
from tests.sie.test_import_cli import YEAR, sie_file, voucher

pytestmark = pytest.mark.slow

OLD = YEAR - 5  # a calendar year long before the two the engine used to know
SPLIT = YEAR - 10  # a July-June year: SPLIT-07-01 .. SPLIT+1-06-30


def _independent_check(path: Path) -> None:
    """Not our reader: every #VER block sums to zero and, per account, IB + #TRANS = UB."""
    lines = path.read_bytes().decode("cp437").splitlines()
    ib: dict[str, Decimal] = {}
    ub: dict[str, Decimal] = {}
    moved: dict[str, Decimal] = {}
    block: Decimal | None = None
    for line in lines:
        fields = line.split()
        if not fields:
            continue
        if fields[0] in ("#IB", "#UB") and fields[1] == "0":
            (ib if fields[0] == "#IB" else ub)[fields[2]] = Decimal(fields[3])
        elif fields[0] == "{":
            block = Decimal(0)
        elif fields[0] == "}":
            assert block == 0, f"a voucher ending on line {line!r} does not balance"
            block = None
        elif fields[0] == "#TRANS":
            amount = Decimal(fields[3])
            assert block is not None
            block += amount
            moved[fields[1]] = moved.get(fields[1], Decimal(0)) + amount
    for account, closing in ub.items():
        assert ib.get(account, Decimal(0)) + moved.get(account, Decimal(0)) == closing, account


async def test_ledger_export_year_rule_identification_and_checksum(tmp_path: Path) -> None:
    async with Sandbox() as sandbox:
        tenant = sandbox.seeded.tenant
        create_financial_year(
            tenant, {"FromDate": f"{SPLIT}-07-01", "ToDate": f"{SPLIT + 1}-06-30"}
        )
        data = tmp_path / "data"
        env = setup_tenant(data, sandbox.connection())
        out = tmp_path / "out"

        async def export(*args: str) -> tuple[int, list[dict[str, object]]]:
            ran = await kassasync_async(
                data,
                env,
                "ledger",
                "export",
                "--tenant",
                "shop",
                "--data",
                str(data),
                "--out",
                str(out),
                *args,
            )
            return ran.code, [json.loads(line) for line in ran.out.splitlines() if line.strip()]

        # The July-June year that contains 1 January of SPLIT+1 ...
        code, [first] = await export("--year", str(SPLIT + 1))
        assert code == 0
        assert (first["from_date"], first["selected"]) == (
            f"{SPLIT}-07-01",
            f"contains {SPLIT + 1}-01-01",
        )
        # ... is also the one that starts in SPLIT (no year contains SPLIT-01-01).
        code, [same] = await export("--year", str(SPLIT))
        assert (code, same["from_date"], same["selected"]) == (
            0,
            f"{SPLIT}-07-01",
            f"starts in {SPLIT}",
        )
        # A year Fortnox does not have: said, with the years it has, and a non-zero exit.
        code, [refused] = await export("--year", str(SPLIT - 30))
        assert code == 2
        assert f"no financial year in Fortnox contains {SPLIT - 30}-01-01" in str(refused["error"])
        assert f"{SPLIT}-07-01..{SPLIT + 1}-06-30" in str(refused["error"])

        code, [current] = await export("--year", str(YEAR), "--ksumma")
        assert code == 0 and current["checksum"] is True
        assert current["mismatched_accounts"] == [] and current["unbalanced"] == 0
        path = Path(str(current["path"]))
        document = read_sie_file(path)
        assert document.errors == ()
        assert document.checksum is not None and document.checksum.status is ChecksumStatus.VALID
        assert document.header.chart_type == "BAS2024"
        assert document.company.orgnr
        assert [y.index for y in document.financial_years] == [0, -1]
        assert any(b.kind is BalanceKind.UB for b in document.balances)
        assert document.vouchers and all(v.is_balanced for v in document.vouchers)
        _independent_check(path)


async def test_a_voucher_in_an_old_year_fortnox_has_is_posted(tmp_path: Path) -> None:
    async with Sandbox() as sandbox:
        tenant = sandbox.seeded.tenant
        setup_books(tenant, years=(OLD,))
        tenant.locked_until = None  # the shop has not locked that year
        data = tmp_path / "data"
        env = setup_tenant(data, sandbox.connection())
        old = voucher(
            "A",
            "9",
            f"{OLD}0314",
            "Gammal dag",
            ["1910 {} 125.00", "3001 {} -100.00", "2611 {} -25.00"],
        )
        ran = kassasync(
            data,
            env,
            "import-sie",
            str(sie_file(tmp_path / "old.si", old)),
            "--tenant",
            "shop",
            "--data",
            str(data),
        )
        assert ran.code == 0, ran.out
        [posted] = await run_engine(data, env, sandbox, expect=1)
        assert posted["TransactionDate"] == f"{OLD}-03-14"
