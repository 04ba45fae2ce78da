"""Bounded reading: encoding fallbacks, binary input, oversized fields and lines, memory."""

from __future__ import annotations

import random
import tracemalloc
from pathlib import Path

from engine.sie import read_sie, read_sie_file
from engine.sie.encoding import detect_encoding, scan_bytes
from engine.sie.reader import MAX_LINE, NOT_SIE

HEAD = b"#FLAGGA 0\r\n#PROGRAM Kassan 1\r\n#FORMAT PC8\r\n#GEN 20250101\r\n#SIETYP 4\r\n"


def test_a_utf8_bom_in_front_of_cp437_bytes_is_read_as_cp437_with_a_warning() -> None:
    body = '#FNAMN "Café Åhléns"\r\n'.encode("cp437")
    data = b"\xef\xbb\xbf" + HEAD + body
    assert detect_encoding(data) == "cp437"
    document = read_sie(data)
    assert document.encoding == "cp437"
    assert document.company.name == "Café Åhléns"
    assert "\ufffd" not in document.company.name
    assert any("byte order mark" in w.message for w in document.warnings)
    # A real UTF-8 file with its mark is still UTF-8, without that warning.
    utf8 = read_sie(b"\xef\xbb\xbf" + HEAD + '#FNAMN "Café Åhléns"\r\n'.encode())
    assert (utf8.encoding, utf8.company.name) == ("utf-8-sig", "Café Åhléns")
    assert not any("byte order mark" in w.message for w in utf8.warnings)


def test_a_utf8_bom_in_front_of_latin1_bytes_is_read_as_latin1() -> None:
    data = b"\xef\xbb\xbf" + HEAD + '#FNAMN "Åhléns Café och Bär"\r\n'.encode("latin-1")
    assert scan_bytes([data]).bom_ignored
    assert read_sie(data).company.name == "Åhléns Café och Bär"


def test_binary_and_text_that_is_not_sie_are_one_error(tmp_path: Path) -> None:
    noise = random.Random(6).randbytes(36_000)
    markdown = b"# Title\n\nText *here*.\n\n## More\n\n" * 200
    for data in (noise, noise.replace(b"\x00", b"\x01"), markdown, HEAD[:0] + b"\x1b[0m" * 900):
        document = read_sie(data)
        assert [(e.line, e.message) for e in document.errors] == [(1, NOT_SIE)]
        assert document.warnings == ()


def test_an_oversized_field_is_cut_in_every_message() -> None:
    huge = "9" * 50 + "x" * 200_00
    document = read_sie(HEAD + f"#VER A 1 {huge}\r\n{{\r\n}}\r\n".encode())
    [error] = [e for e in document.errors if "voucher date" in e.message]
    assert len(error.message) < 150
    assert f"({len(huge)} characters)" in error.message


def test_an_overlong_line_is_reported_and_never_held_whole(tmp_path: Path) -> None:
    path = tmp_path / "long.si"
    with path.open("wb") as out:
        out.write(HEAD)
        out.write(b'#FNAMN "' + b"A" * 8_000_000 + b'"\r\n')
        out.write(b"#KONTO 1910 Kassa\r\n")
    tracemalloc.start()
    try:
        document = read_sie_file(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [(e.line, e.message) for e in document.errors] == [
        (6, f"the line is longer than {MAX_LINE} characters; ignored")
    ]
    assert [a.number for a in document.accounts] == ["1910"]
    assert peak < 8_000_000  # less than the line itself: it streamed by in pieces


def _streamed_peak(path: Path) -> tuple[int, int]:
    seen = 0

    def count(_voucher: object) -> None:
        nonlocal seen
        seen += 1

    tracemalloc.start()
    try:
        document = read_sie_file(path, on_voucher=count)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (document.vouchers, document.errors) == ((), ())
    return seen, peak


def test_a_streamed_read_holds_memory_independent_of_the_number_of_vouchers(
    tmp_path: Path,
) -> None:
    block = (
        b'#VER A 1 20250101 "Dag"\r\n{\r\n#TRANS 1910 {} 10.00\r\n#TRANS 3001 {} -10.00\r\n}\r\n'
    )
    small, big = tmp_path / "small.si", tmp_path / "big.si"
    small.write_bytes(HEAD + block * 60_000)  # about 4.5 MB
    big.write_bytes(HEAD + block * 240_000)  # about 18 MB
    small_seen, small_peak = _streamed_peak(small)
    big_seen, big_peak = _streamed_peak(big)
    assert (small_seen, big_seen) == (60_000, 240_000)
    assert small_peak < small.stat().st_size
    assert big_peak < 1.25 * small_peak  # four times the file, not more memory


def test_the_fast_row_path_reads_as_the_general_one() -> None:
    """Every corpus file read as written (common rows take the one-match path) and with its
    row labels in lower case (the general path: labels are case-insensitive) gives the same
    vouchers, rows, errors and warnings."""
    from .support import CORPUS_DIR

    compared = 0
    for path in sorted(CORPUS_DIR.iterdir()):
        if path.suffix.lower() not in (".se", ".si"):
            continue
        data = path.read_bytes()
        if b"#TRANS " not in data:
            continue
        fast = read_sie(data)
        general = read_sie(data.replace(b"#TRANS ", b"#trans "))
        assert fast.vouchers == general.vouchers, path.name
        assert [r.line for v in fast.vouchers for r in v.rows] == [
            r.line for v in general.vouchers for r in v.rows
        ]
        assert fast.errors == general.errors and fast.warnings == general.warnings, path.name
        compared += sum(len(v.rows) for v in fast.vouchers)
    assert compared > 5000


def test_the_fast_row_path_on_every_object_list_form() -> None:
    rows = [
        '#TRANS 3001 {1 100 6 "P 1"} -10.00 20250101 "Text"',
        '#TRANS 3001 {1\t""} 10.00',
        '#TRANS 3001 {"1" "456" "7" "47"} 1.5 20250101',
        '#TRANS 3001 { } -1.50 20250101 ""',
        '#TRANS 3001 {1 "a}b"} 0 20250101 "x"',
        '#TRANS 3001 {1 "a\\"b"} 0 20250101 "x"',
        "#TRANS 3001 {1 2 3} 0",
        "#TRANS 3001 {} 0 20250230",
        '#TRANS 0351 {} 00.10 20250101 "Café"',
    ]
    text = "#FLAGGA 0\n#SIETYP 4\n#VER A 1 20250101\n{\n" + "\n".join(rows) + "\n}\n"
    fast = read_sie(text.encode("cp437"))
    general = read_sie(text.replace("#TRANS ", "#trans ").encode("cp437"))
    assert fast.vouchers == general.vouchers
    assert fast.errors == general.errors and fast.warnings == general.warnings
    [voucher] = fast.vouchers
    assert voucher.rows[0].objects[1].number == "P 1"
    assert voucher.rows[1].objects[0].number == ""
