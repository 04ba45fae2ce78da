"""``sie check``: the per-file summary, the JSON lines and the exit code; reading speed."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest

from engine.sie import check_file, main_check, read_sie

from .support import CORPUS_DIR, z_report_example_bytes

KEYS = {
    "file",
    "sie_type",
    "program",
    "encoding",
    "accounts",
    "vouchers",
    "unbalanced",
    "unbalanced_vouchers",
    "errors",
}


def test_check_file_on_the_example(tmp_path: Path) -> None:
    path = tmp_path / "Z1234.SI"
    path.write_bytes(z_report_example_bytes())
    result = check_file(path)
    assert result == {
        "file": str(path),
        "sie_type": "4I",
        "program": "KassaSync",
        "encoding": "cp437",
        "accounts": 12,
        "vouchers": 1,
        "unbalanced": 0,
        "unbalanced_vouchers": [],
        "errors": [],
    }


def test_check_file_on_an_unbalanced_corpus_file() -> None:
    result = check_file(str(CORPUS_DIR / "testWrite.se"))
    assert set(result) == KEYS
    assert (result["sie_type"], result["vouchers"], result["unbalanced"]) == ("4E", 65, 1)
    assert result["errors"] == []
    # Which voucher, where, and by how much (12.00 debit against 10.00 credit).
    assert result["unbalanced_vouchers"] == [
        {"line": 1368, "series": "1", "number": "1", "date": "2015-09-12", "difference": "2.00"}
    ]


def test_sie_check_exits_non_zero_on_an_unbalanced_voucher_through_the_cli() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "sie", "check", str(CORPUS_DIR / "testWrite.se")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert result["unbalanced_vouchers"][0]["line"] == 1368
    assert result["unbalanced_vouchers"][0]["difference"] == "2.00"


def test_check_file_reports_errors_with_lines(tmp_path: Path) -> None:
    path = tmp_path / "broken.si"
    path.write_bytes(b"#FLAGGA 0\n#KSUMMA\n#KONTO 1910 Kassa\n#TRANS 1910 {} 1\n")
    result = check_file(path)
    assert result["errors"] == [
        {"line": 4, "message": "#TRANS: voucher row outside a #VER block; ignored"},
        {
            "line": 2,
            "message": "the file is truncated: the #KSUMMA on line 2 has no closing #KSUMMA",
        },
    ]


def test_check_file_on_a_missing_file(tmp_path: Path) -> None:
    result = check_file(tmp_path / "nope.se")
    assert set(result) == KEYS
    assert result["sie_type"] is None
    assert result["errors"][0]["line"] == 0
    assert result["errors"][0]["message"].startswith("cannot read the file")


def test_main_check_prints_json_lines_and_returns_the_exit_code(tmp_path: Path) -> None:
    good = tmp_path / "good.si"
    good.write_bytes(z_report_example_bytes())
    bad = tmp_path / "bad.si"
    bad.write_bytes(b"not a sie file\n")
    out = io.StringIO()
    assert main_check([str(good), str(CORPUS_DIR / "Sie4.se")], out) == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert [json.loads(line)["file"] for line in lines] == [str(good), str(CORPUS_DIR / "Sie4.se")]
    assert all(set(json.loads(line)) == KEYS for line in lines)
    out = io.StringIO()
    assert main_check([str(good), str(bad)], out) == 1
    assert json.loads(out.getvalue().splitlines()[1])["errors"] == [
        {"line": 1, "message": "no SIE records found: this is not a SIE file"}
    ]


def test_main_check_writes_to_stdout_and_needs_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_check([str(CORPUS_DIR / "FAKT.SI")]) == 0
    assert json.loads(capsys.readouterr().out)["program"] == "Visma Fakturering"
    assert main_check([]) == 2
    assert "usage" in capsys.readouterr().err


def _big_file(size: int) -> bytes:
    """A type 4E file of about ``size`` bytes: the corpus ledger, its vouchers repeated."""
    data = (CORPUS_DIR / "transaktioner_ovnbolag.se").read_bytes()
    first = data.index(b"#VER")
    head, body = data[:first], data[first:]
    return head + body * max(1, (size - len(head)) // len(body))


@pytest.mark.slow
def test_reading_is_linear_and_a_10_mb_file_reads_in_seconds() -> None:
    small = _big_file(1_000_000)
    big = _big_file(10_000_000)
    start = time.perf_counter()
    small_doc = read_sie(small)
    small_time = time.perf_counter() - start
    start = time.perf_counter()
    big_doc = read_sie(big)
    big_time = time.perf_counter() - start
    assert len(big) > 9_000_000
    assert big_doc.errors == ()
    assert len(big_doc.vouchers) == len(big_doc.vouchers) // 163 * 163
    assert len(big_doc.vouchers) > 9 * len(small_doc.vouchers)
    assert big_time < 30
    # Linear: ten times the data may not take much more than ten times as long.
    assert big_time < 25 * max(small_time, 0.05)
