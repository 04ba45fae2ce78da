"""``kassasync import-sie`` as an operator types it: what it refuses, and how (file, line,
voucher, value as written; one JSON line, no traceback); nothing is queued then."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from typing import Any

import pytest

from engine.embedded.edge import Edge
from engine.store.db import Database
from tests.sie.cli import kassasync, setup_tenant
from topics.names import Topic
from topics.till import VoucherSubmitted

from .support import CORPUS_DIR

YEAR = dt.date.today().year

HEAD = """#FLAGGA 0
#PROGRAM "Kassan" 2.1
#FORMAT PC8
#GEN {year}0701
#SIETYP 4
#ORGNR 556000-0001
#FNAMN "Exempelbutiken AB"
"""


def voucher(series: str, number: str, day: str, text: str, rows: list[str]) -> str:
    body = "\n".join(f"   #TRANS {row}" for row in rows)
    return f'#VER {series} {number} {day} "{text}" {day} "Anna"\n{{\n{body}\n}}\n'


def sie_file(path: Path, *vouchers: str, encoding: str = "cp437", head: str = HEAD) -> Path:
    text = head.format(year=YEAR) + "".join(vouchers)
    path.write_bytes(text.replace("\n", "\r\n").encode(encoding))
    return path


DAY = f"{YEAR}0115"
GOOD = voucher(
    "A", "1", DAY, "Dagskassa", ["1910 {} 125.00", '3001 {1 "100"} -100.00', "2611 {} -25.00"]
)


Shop = tuple[Path, dict[str, str]]


@pytest.fixture
def shop(tmp_path: Path) -> Shop:
    data = tmp_path / "data"
    return data, setup_tenant(data)


def queued(data: Path) -> int:
    db = Database(data / "kassasync.db")
    try:
        return Edge(db).log.count(Topic.TILL_EVENTS)
    finally:
        db.close()


def import_sie(shop: Shop, path: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    data, env = shop
    ran = kassasync(
        data, env, "import-sie", str(path), "--tenant", "shop", "--data", str(data), *extra
    )
    return ran.code, ran.json()


def test_a_full_ledger_is_refused_unless_a_date_range_is_named(shop: Shop, tmp_path: Path) -> None:
    ledger = CORPUS_DIR / "transaktioner_ovnbolag.se"
    code, result = import_sie(shop, ledger)
    assert code == 1
    assert result["sie_type"] == "4E"
    [error] = result["errors"]
    assert "full ledger" in error["message"] and "--ledger-range" in error["message"]
    assert "163 vouchers" in error["message"]
    assert queued(shop[0]) == 0


def test_type_1_to_3_files_are_refused(shop: Shop) -> None:
    for name, kind in (("typ1.se", "1"), ("typ2.se", "2"), ("typ3.se", "3")):
        code, result = import_sie(shop, CORPUS_DIR / name)
        assert code == 1, name
        assert result["sie_type"] == kind
        [error] = result["errors"]
        assert f"SIE type {kind} holds balances, not vouchers" in error["message"]
    assert queued(shop[0]) == 0


def test_markdown_and_binary_input_are_one_error_each(shop: Shop, tmp_path: Path) -> None:
    markdown = tmp_path / "README.md"
    markdown.write_text("# Kassan\n\nSome *notes*.\n\n## Export\n\n- one\n- two\n" * 50)
    binary = tmp_path / "random.si"
    binary.write_bytes(random.Random(14).randbytes(36_000))
    for path in (markdown, binary):
        code, result = import_sie(shop, path)
        assert code == 1
        assert result["errors"] == [
            {
                "file": path.name,
                "line": 1,
                "message": "no SIE records found: this is not a SIE file",
            }
        ]
    assert queued(shop[0]) == 0


def test_a_missing_file_or_a_directory_is_one_json_error_not_a_traceback(
    shop: Shop, tmp_path: Path
) -> None:
    for path, reason in ((tmp_path / "nope.si", "No such file"), (tmp_path, "Is a directory")):
        code, result = import_sie(shop, path)  # kassasync() asserts there is no traceback
        assert code == 1
        [error] = result["errors"]
        assert error["line"] == 0 and reason in error["message"]


def test_refusals_name_file_line_voucher_and_the_value_as_written(
    shop: Shop, tmp_path: Path
) -> None:
    odd_account = voucher("A", "3", DAY, "Fel konto", ["0351 {} 10.00", "1910 {} -10.00"])
    unbalanced = voucher("B", "7", DAY, "Obalans", ["1910 {} 10.00", "3001 {} -8.50"])
    path = sie_file(tmp_path / "bad.si", GOOD, odd_account, unbalanced)
    code, result = import_sie(shop, path)
    assert code == 1
    assert result["errors"] == [
        {
            "file": "bad.si",
            "line": 16,
            "voucher": "A 3",
            "value": "0351",
            "message": "account is not a Fortnox account number (four digits, 1000-9999)",
        },
        {
            "file": "bad.si",
            "line": 19,
            "voucher": "B 7",
            "value": "1.50",
            "message": "voucher does not balance: its #TRANS rows sum to 1.50",
        },
    ]
    assert queued(shop[0]) == 0  # all or nothing: the good voucher waits for a good file


def test_other_dimensions_are_refused_or_mapped_never_dropped(shop: Shop, tmp_path: Path) -> None:
    tagged = voucher("A", "4", DAY, "Dim 7", ['3001 {7 "47"} -10.00', "1910 {} 10.00"])
    path = sie_file(tmp_path / "dim.si", tagged)
    code, result = import_sie(shop, path)
    assert code == 1
    [error] = result["errors"]
    assert (error["line"], error["voucher"], error["value"]) == (10, "A 4", "'47'")
    assert "dimension 7" in error["message"] and "--dimension 7=costcenter" in error["message"]
    code, result = import_sie(shop, path, "--dimension", "7=costcenter")
    assert (code, result["accepted"]) == (0, 1)
    # A project (dimension 6) is the row's Fortnox project; another dimension may be mapped to
    # projects by a setting; two projects on one row are refused, never one dropped.
    project = voucher("A", "5", DAY, "Projekt", ['3001 {1 "100" 6 "P1"} -10.00', "1910 {} 10.00"])
    code, result = import_sie(shop, sie_file(tmp_path / "projekt.si", project))
    assert (code, result["accepted"]) == (0, 1), result
    two = voucher("A", "6", DAY, "Två", ['3001 {6 "P1" 20 "P2"} -10.00', "1910 {} 10.00"])
    path = sie_file(tmp_path / "tva.si", two)
    code, result = import_sie(shop, path)
    [error] = result["errors"]
    assert (code, error["value"]) == (1, "'P2'") and "--dimension 20=project" in error["message"]
    code, result = import_sie(shop, path, "--dimension", "20=project")
    [error] = result["errors"]
    assert (code, error["line"], error["voucher"], error["value"]) == (1, 10, "A 6", "'P2'")
    assert "two projects on one row (P1 and dimension 20's)" in error["message"]
    code, result = import_sie(shop, path, "--dimension", "20=invoice")
    assert code == 1 and "NUMBER=costcenter or NUMBER=project" in result["errors"][0]["message"]
    assert queued(shop[0]) == 2


def test_a_bom_in_front_of_cp437_is_read_as_cp437_with_a_warning(
    shop: Shop, tmp_path: Path
) -> None:
    swedish = voucher("A", "5", DAY, "Försäljning på öl", ["1910 {} 10.00", "3001 {} -10.00"])
    path = tmp_path / "bom.si"
    path.write_bytes(b"\xef\xbb\xbf" + sie_file(tmp_path / "x.si", swedish).read_bytes())
    code, result = import_sie(shop, path)
    assert code == 0, result
    assert result["encoding"] == "cp437"
    assert any("byte order mark" in w for w in result["warnings"])
    db = Database(shop[0] / "kassasync.db")
    try:
        [record] = Edge(db).log.read([Topic.TILL_EVENTS], {}, 10)
    finally:
        db.close()
    event = record.message()
    assert isinstance(event, VoucherSubmitted)
    assert event.data.description == "Försäljning på öl"


def test_a_text_with_a_replacement_character_is_never_sent(shop: Shop, tmp_path: Path) -> None:
    lost = voucher("A", "6", DAY, "F\ufffdrs\ufffdljning", ["1910 {} 10.00", "3001 {} -10.00"])
    code, result = import_sie(shop, sie_file(tmp_path / "lost.si", lost, encoding="utf-8"))
    assert code == 1
    [error] = result["errors"]
    assert (error["line"], error["voucher"]) == (8, "A 6") and "U+FFFD" in error["message"]


def test_vouchers_from_a_ledger_for_a_named_range(shop: Shop, tmp_path: Path) -> None:
    head = HEAD + "#RAR 0 {year}0101 {year}1231\n#IB 0 1910 1000.00\n"
    january = voucher("A", "1", f"{YEAR}0110", "Jan", ["1910 {} 10.00", "3001 {} -10.00"])
    march = voucher("A", "2", f"{YEAR}0310", "Mar", ["1910 {} 20.00", "3001 {} -20.00"])
    path = sie_file(tmp_path / "ledger.se", january, march, head=head)
    code, result = import_sie(shop, path)
    assert code == 1 and "full ledger" in result["errors"][0]["message"]
    code, result = import_sie(shop, path, "--ledger-range", f"{YEAR}-03-01:{YEAR}-03-31")
    assert (code, result["vouchers"], result["accepted"]) == (0, 1, 1)
    assert "kassasync run" in result["note"]


def test_import_sie_help_says_it_only_queues(shop: Shop) -> None:
    data, env = shop
    ran = kassasync(data, env, "import-sie", "--help")
    text = " ".join(ran.out.split())
    assert "This only queues: the running engine (kassasync run) posts them" in text


def test_texts_longer_than_fortnox_takes_are_said_to_be_cut(shop: Shop, tmp_path: Path) -> None:
    """Found from outside: a 300-character voucher text was accepted (exit 0) and posted cut
    to 200, row texts to 100, and the import said nothing."""
    long = voucher("A", "7", DAY, "K" * 300, ["1910 {} 10.00", '3001 {} -10.00 "" "Rad"'])
    code, result = import_sie(shop, sie_file(tmp_path / "long.si", long))
    assert code == 0 and result["accepted"] == 1, result
    assert any(
        "voucher A 7: its text (300 characters) is cut to 200" in w for w in result["warnings"]
    ), result
    # The row without a text of its own takes the voucher's: it is cut to 100; "Rad" is not.
    assert any("voucher A 7: 1 row text(s) longer than 100" in w for w in result["warnings"])
    short = voucher("A", "8", DAY, "Kort", ["1910 {} 10.00", "3001 {} -10.00"])
    code, result = import_sie(shop, sie_file(tmp_path / "short.si", short))
    assert code == 0 and "warnings" not in result, result
