"""Bounded reading: encoding fallbacks, binary input, oversized fields and lines, memory."""

from __future__ import annotations

import copy
import datetime as dt
import pickle
import random
import tracemalloc
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

from engine.sie import read_sie, read_sie_file
from engine.sie.encoding import detect_encoding, scan_bytes
from engine.sie.model import SieDocument, SieError, Voucher
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


def _three_ways(data: bytes) -> list[SieDocument]:
    """``data`` read as written (common voucher blocks take the block path), with ``#ver`` in
    lower case (no block path; rows one by one, the common ones in one match) and with
    ``#trans`` too (the general path for everything: labels are case-insensitive)."""
    no_blocks = data.replace(b"#VER", b"#ver")
    return [read_sie(data), read_sie(no_blocks), read_sie(no_blocks.replace(b"#TRANS", b"#trans"))]


def _unsummed(problems: tuple[SieError, ...]) -> list[SieError]:
    return [p for p in problems if "#KSUMMA" not in p.message]


def _assert_same_reading(documents: list[SieDocument], name: str) -> int:
    first = documents[0]
    for other in documents[1:]:
        assert first.vouchers == other.vouchers, name
        assert [hash(v) for v in first.vouchers] == [hash(v) for v in other.vouchers], name
        assert [v.line for v in first.vouchers] == [v.line for v in other.vouchers], name
        assert [r.line for v in first.vouchers for r in v.rows] == [
            r.line for v in other.vouchers for r in v.rows
        ], name
        assert [v.balance for v in first.vouchers] == [v.balance for v in other.vouchers], name
        # Labels as written are part of a #KSUMMA: lower-case ones change the sum.
        assert _unsummed(first.errors) == _unsummed(other.errors), name
        assert _unsummed(first.warnings) == _unsummed(other.warnings), name
        assert first.line_count == other.line_count, name
    return len(first.vouchers)


def test_the_block_path_reads_every_corpus_file_as_the_line_by_line_way() -> None:
    from .support import CORPUS_DIR

    compared = 0
    for path in sorted(CORPUS_DIR.iterdir()):
        if path.suffix.lower() in (".se", ".si") and b"#VER" in path.read_bytes():
            compared += _assert_same_reading(_three_ways(path.read_bytes()), path.name)
    assert compared > 1500


def test_the_block_path_over_chunk_boundaries_and_on_every_departure(tmp_path: Path) -> None:
    """A file several read chunks long, with a voucher of each kind the block path must hand to
    the line-by-line way (or read as it would) scattered through it."""
    from bench.sie_read import generate

    path = tmp_path / "big.se"
    generate(path, 900_000)
    lines = path.read_bytes().split(b"\r\n")
    odd = [
        b'#VER B 1 20250230 "invalid voucher date"\r\n{\r\n#TRANS 1910 {} 1.00\r\n'
        b"#TRANS 3001 {} -1.00\r\n}",
        b'#VER B 2 20250101 "invalid row date"\r\n{\r\n#TRANS 1910 {} 1.00 20251301\r\n'
        b"#TRANS 3001 {} -1.00\r\n}",
        b'#VER B 3 20240229 "leap day" 00040229 "Sign"\r\n{\r\n#TRANS 1910 {} 1.00\r\n'
        b"#TRANS 3001 {} -1.00 21000229\r\n}",
        b'#VER B 4 20250101 "unbalanced"\r\n{\r\n#TRANS 1910 {} 1.00\r\n#TRANS 3001 {} -2\r\n}',
        b'#VER B 5 20250101 "three decimals"\r\n{\r\n#TRANS 1910 {} 1.005\r\n'
        b"#TRANS 3001 {} -1.005\r\n}",
        b'#VER "" "" 20250101 ""\r\n  {  \r\n\t#TRANS 1910 {1 "a b" 6 P1} 1,00\r\n'
        b'#TRANS 3001 {} -1.00 20250101 "brace } in text"\r\n  }\t',
        b'#VER B 7 20250101 "blank line"\r\n{\r\n#TRANS 1910 {} 1.00\r\n\r\n'
        b"#TRANS 3001 {} -1.00\r\n}",
        b'#VER B 8 20250101 "rtrans"\r\n{\r\n#RTRANS 1910 {} 1.00\r\n#TRANS 1910 {} 1.00\r\n'
        b"#TRANS 3001 {} -1.00\r\n}",
        b'#VER B 9 00000101 "year 0"\r\n{\r\n#TRANS 1910 {} 1.00\r\n#TRANS 3001 {} -1.00\r\n}',
        b'#VER B 10 20250101 "text" 20250101 "sign" extra\r\n{\r\n#TRANS 1910 {} 1\r\n'
        b"#TRANS 3001 {} -1\r\n}",
        b'#VER B 11 20250101 "no close"\r\n{\r\n#TRANS 1910 {} 1\r\n#TRANS 3001 {} -1',
        b'#VER B 12 20250101 "escaped \\" quote"\r\n{\r\n#TRANS 1910 {} 1\r\n'
        b"#TRANS 3001 {} -1\r\n}",
        b'#VER B 13 20250101\r\n{\r\n#TRANS 1910 {} 1 20250101 "x" 2 "sign"\r\n'
        b"#TRANS 3001 {} -1\r\n}",
        b"#VER B 14 20250101 text 20250101 sign\r\n{\r\n#TRANS 0351 {} -0.5\r\n"
        b"#TRANS 3001 {} 0.50 20250101\r\n}",
    ]
    rng = random.Random(14)
    for block in odd:
        at = rng.randrange(10, len(lines) - 10)
        while not lines[at].startswith(b"#VER"):
            at += 1
        lines[at:at] = block.split(b"\r\n")
    data = b"\r\n".join(lines)
    documents = _three_ways(data)
    assert len(data) > 3 * 262_144  # several read chunks
    assert _assert_same_reading(documents, "big.se") > 2000
    assert documents[0].errors and documents[0].warnings  # the odd ones were noticed
    # Lone CR line ends: no block path, the same reading.
    assert _assert_same_reading(_three_ways(data.replace(b"\r\n", b"\r")), "cr.se") > 2000


def test_a_voucher_from_the_block_path_is_a_plain_voucher_to_every_user() -> None:
    data = HEAD + (
        b'#VER A 1 20250101 "Text" 20250102 "Anna"\r\n{\r\n   #TRANS 1910 {} 10.00 20250101 "a"'
        b'\r\n   #TRANS 3001 {1 "100"} -10.00\r\n}\r\n'
    )
    block, _rows_alone, general = (d.vouchers[0] for d in _three_ways(data))
    assert type(general) is Voucher and isinstance(block, Voucher)
    assert block == general and general == block and hash(block) == hash(general)
    assert repr(block) == repr(general)
    assert {block, general} == {general}
    changed = replace(block, text="Ny text")
    assert type(changed) is Voucher and changed == replace(general, text="Ny text")
    for copied in (copy.copy(block), copy.deepcopy(block), pickle.loads(pickle.dumps(block))):
        assert type(copied) is Voucher and copied == general
    assert block.trans_rows == general.trans_rows and block.is_balanced
    assert (block.date, block.reg_date, block.sign, block.line) == (
        dt.date(2025, 1, 1),
        dt.date(2025, 1, 2),
        "Anna",
        6,
    )


def test_the_block_path_reads_vouchers_of_any_row_count_as_the_line_by_line_way() -> None:
    """The block pattern captures the amounts of a voucher's first rows and the rest are found
    apart: a voucher of one row, just under, at and past that number of rows, and one past the
    floating-point check's limit, balanced and not, read the same all three ways."""
    from engine.sie.reader import _CAPTURED_ROWS, _FLOAT_ROWS, _BlockVoucher

    blocks = []
    number = 0
    for count in (
        1,
        2,
        _CAPTURED_ROWS - 1,
        _CAPTURED_ROWS,
        _CAPTURED_ROWS + 1,
        40,
        _FLOAT_ROWS + 5,
    ):
        for off in ("0", "0.01", "-12345678.99"):
            number += 1
            amounts = [f"{(k * 7919) % 10_000}.{k % 100:02d}" for k in range(count - 1)]
            total = -sum(Decimal(a) for a in amounts) + Decimal(off)
            rows = [f'   #TRANS {1910 + k} {{}} {a} 20250101 "r{k}"' for k, a in enumerate(amounts)]
            rows.append(f"   #TRANS 3001 {{}} {total}")
            blocks.append(f'#VER A {number} 20250101 "n{count}"\r\n{{\r\n' + "\r\n".join(rows))
            blocks[-1] += "\r\n}\r\n"
    data = HEAD + "".join(blocks).encode("cp437")
    documents = _three_ways(data)
    assert _assert_same_reading(documents, "rows.se") == number
    assert all(isinstance(v, _BlockVoucher) for v in documents[0].vouchers)  # the block path
    unbalanced = [w for w in documents[0].warnings if "does not balance" in w.message]
    assert len(unbalanced) == 2 * 7
    assert all(
        v.balance in (0, Decimal("0.01"), Decimal("-12345678.99")) for v in documents[0].vouchers
    )
