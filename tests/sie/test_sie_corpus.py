"""Conformance: every file of the real-world corpus reads without errors."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from engine.sie import (
    ChecksumStatus,
    RowKind,
    SieDocument,
    SieType,
    read_sie,
    read_sie_file,
    write_sie,
)

from .support import CORPUS_DIR, corpus_files

# file: (type, encoding, accounts, vouchers, unbalanced vouchers)
# Voucher and account counts were checked against grep counts of #VER and of
# distinct #KONTO numbers; the balances against an independent line-based sum.
EXPECTED: dict[str, tuple[str, str, int, int, int]] = {
    "BL0001_typ1.SE": ("1", "cp437", 117, 0, 0),
    "BL0001_typ2.SE": ("2", "cp437", 117, 0, 0),
    "BL0001_typ3.SE": ("3", "cp437", 117, 0, 0),
    "BL0001_typ4.SE": ("4E", "cp437", 117, 84, 0),
    "BL0001_typ4I.SI": ("4I", "cp437", 0, 1, 0),
    "BokOrder.si": ("4I", "cp437", 594, 1, 0),
    "BokslutSIE1.se": ("1", "cp437", 594, 0, 0),
    "Bokslut_Norstedts_SIE_4E.se": ("4E", "cp437", 351, 177, 0),
    "Exempelbolaget_SIE_110322_B_33.si": ("4I", "cp437", 10, 13, 0),
    "FAKT.SI": ("4I", "cp437", 3, 1, 0),
    "LON_Lonekorning.SI": ("4I", "cp437", 0, 1, 0),
    "Lon.si": ("4I", "cp437", 8, 1, 0),
    "MAMUT_SIE1_EXPORT.SE": ("1", "cp437", 412, 0, 0),
    "MAMUT_SIE2_EXPORT.SE": ("2", "cp437", 412, 0, 0),
    "MAMUT_SIE3_EXPORT.SE": ("3", "cp437", 412, 0, 0),
    "MAMUT_SIE4_EXPORT.SE": ("4E", "cp437", 412, 168, 0),
    "SIE-fil_fran_Visma_Eget_Aktiebolag_2010.se": ("1", "cp437", 161, 0, 0),
    "SIE-fil_fran_Visma_Enskild_Firma_2010.se": ("1", "cp437", 103, 0, 0),
    "SIE4_Exempelfil_med_underdim.SE": ("4E", "utf-8", 530, 295, 0),
    "SIE4_Visma_Anlaggningsregister.si": ("4I", "cp437", 0, 1, 0),
    "SIE_exempelfil.se": ("4E", "cp437", 540, 26, 0),
    "Sie1.se": ("1", "cp437", 301, 0, 0),
    "Sie2.se": ("2", "cp437", 290, 0, 0),
    "Sie3.se": ("3", "cp437", 290, 0, 0),
    "Sie4.se": ("4E", "cp437", 291, 70, 0),
    # Named .si, but it holds #IB/#UB balances: an export (4E) by content.
    "Sie4.si": ("4E", "cp437", 133, 165, 0),
    "Sie_1.SE": ("1", "cp437", 553, 0, 0),
    "Sie_1plus2.se": ("2", "cp437", 868, 0, 0),
    "Sie_2.SE": ("2", "cp437", 553, 0, 0),
    "Sie_3_plus_4.se": ("4E", "cp437", 868, 2, 0),
    "Test1.SE": ("1", "cp437", 81, 0, 0),
    "Test2.SE": ("2", "cp437", 81, 0, 0),
    "Test3.SE": ("3", "cp437", 117, 0, 0),
    "Test4.SE": ("4E", "cp437", 81, 167, 0),
    "arsaldo_ovnbolag.se": ("1", "cp437", 567, 0, 0),
    "live2011.se": ("4E", "cp437", 85, 3, 0),
    "objektsaldo_ovnbolag.se": ("3", "cp437", 567, 0, 0),
    "periodsaldo_ovnbolag.se": ("2", "cp437", 567, 0, 0),
    "si.SI": ("4I", "cp437", 15, 47, 0),
    "sie_3.SE": ("3", "cp437", 565, 0, 0),
    "sie_4.SE": ("4E", "cp437", 565, 20, 0),
    "testWrite.se": ("4E", "cp437", 373, 65, 1),
    "testWrite1.se": ("4E", "cp437", 373, 65, 1),
    "transaktioner_ovnbolag.se": ("4E", "cp437", 567, 163, 0),
    "typ1.se": ("1", "cp437", 299, 0, 0),
    "typ2.se": ("2", "cp437", 299, 0, 0),
    "typ3.se": ("3", "cp437", 299, 0, 0),
    "typ4.se": ("4E", "cp437", 299, 81, 0),
    "typ4si.si": ("4I", "cp437", 299, 81, 0),
    "urval_ovnbolag.si": ("4I", "cp437", 567, 16, 0),
}

# The only genuinely unbalanced vouchers in the corpus.  testWrite1.se is a
# byte-for-byte copy of testWrite.se; in both, voucher 1/1 (line 1368) books
# 12.00 on 1010 against -10.00 on 3520.
UNBALANCED: dict[str, list[tuple[int, str, str, Decimal]]] = {
    "testWrite.se": [(1368, "1", "1", Decimal("2.00"))],
    "testWrite1.se": [(1368, "1", "1", Decimal("2.00"))],
}

# Vouchers written as an empty "{" "}" block (line of the #VER).
EMPTY_VOUCHERS: dict[str, list[int]] = {"Bokslut_Norstedts_SIE_4E.se": [1149, 1476, 1479]}

FILES = corpus_files()
_CACHE: dict[str, SieDocument] = {}


def _read(path: Path) -> SieDocument:
    if path.name not in _CACHE:
        _CACHE[path.name] = read_sie_file(path)
    return _CACHE[path.name]


def test_the_corpus_has_fifty_files_and_all_are_expected() -> None:
    assert len(FILES) == 50
    assert {path.name for path in FILES} == set(EXPECTED)


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.name)
def test_corpus_file_reads_without_errors(path: Path) -> None:
    document = _read(path)
    assert document.errors == ()
    assert not any("internal error" in w.message for w in document.warnings)
    sie_type, encoding, accounts, vouchers, unbalanced = EXPECTED[path.name]
    assert document.sie_type == sie_type
    assert document.encoding == encoding
    assert len(document.accounts) == accounts
    assert len(document.vouchers) == vouchers
    assert len(document.unbalanced_vouchers) == unbalanced


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.name)
def test_corpus_file_is_plausible(path: Path) -> None:
    document = _read(path)
    header = document.header
    assert header.program
    assert header.gen_date is not None
    assert document.company.name
    if document.sie_type.number < 4:
        assert document.vouchers == ()
        assert document.balances
    if document.sie_type is SieType.TYPE_4I:
        assert document.balances == ()
        assert document.vouchers
    if document.sie_type is SieType.TYPE_4E:
        assert document.balances
        assert document.financial_years
    empty = [voucher.line for voucher in document.vouchers if not voucher.rows]
    assert empty == EMPTY_VOUCHERS.get(path.name, [])
    for voucher in document.vouchers:
        for row in voucher.rows:
            assert row.line > voucher.line
            # SIE amounts have at most two decimals
            assert row.amount == row.amount.quantize(Decimal("0.01"))
    years = {year.index for year in document.financial_years}
    assert all(balance.year in years for balance in document.balances) or not years


def test_corpus_totals_and_unbalanced_vouchers() -> None:
    total_vouchers = 0
    found: dict[str, list[tuple[int, str, str, Decimal]]] = {}
    for path in FILES:
        document = _read(path)
        total_vouchers += len(document.vouchers)
        for voucher in document.unbalanced_vouchers:
            entry = (voucher.line, voucher.series, voucher.number, voucher.balance)
            found.setdefault(path.name, []).append(entry)
    assert total_vouchers == 1714
    assert found == UNBALANCED
    assert sum(len(entries) for entries in found.values()) == 2


def test_unbalanced_vouchers_are_reported_as_warnings_with_their_line() -> None:
    document = _read(CORPUS_DIR / "testWrite.se")
    messages = [w for w in document.warnings if "does not balance" in w.message]
    assert [w.line for w in messages] == [1368]
    assert "sum to 2.00" in messages[0].message


def test_rtrans_and_btrans_rows_do_not_count_towards_the_balance() -> None:
    naive_unbalanced: dict[str, list[int]] = {}
    for name in ("BL0001_typ4.SE", "sie_4.SE"):
        document = _read(CORPUS_DIR / name)
        kinds = {row.kind for voucher in document.vouchers for row in voucher.rows}
        assert {RowKind.RTRANS, RowKind.BTRANS} <= kinds
        naive_unbalanced[name] = [
            voucher.line
            for voucher in document.vouchers
            if sum((row.amount for row in voucher.rows), Decimal(0)) != 0
        ]
        assert document.unbalanced_vouchers == ()
    # Summing every row kind (the classic parser bug) would flag this voucher of
    # sie_4.SE: #BTRANS 1910 -157.00 and #RTRANS 1920 -157.00 both counted.
    assert naive_unbalanced == {"BL0001_typ4.SE": [], "sie_4.SE": [2201]}


@pytest.mark.parametrize("name", ["Bokslut_Norstedts_SIE_4E.se", "Sie1.se"])
def test_corpus_checksums_verify(name: str) -> None:
    document = _read(CORPUS_DIR / name)
    assert document.checksum is not None
    assert document.checksum.status is ChecksumStatus.VALID
    assert document.checksum.variant == "spec"


def test_other_corpus_files_have_no_checksum() -> None:
    for path in FILES:
        if path.name in ("Bokslut_Norstedts_SIE_4E.se", "Sie1.se"):
            continue
        checksum = _read(path).checksum
        assert checksum is not None
        assert checksum.status is ChecksumStatus.ABSENT


def test_known_quirks_are_warnings() -> None:
    bl = _read(CORPUS_DIR / "BL0001_typ4I.SI")
    assert [(w.line, w.message) for w in bl.warnings] == [(7, "#RAR 0 has no dates; ignored")]
    sie4 = _read(CORPUS_DIR / "Sie4.se")
    assert any(w.line == 1041 and "not closed" in w.message for w in sie4.warnings)
    assert any("'FEL' is not numeric" in w.message for w in sie4.warnings)
    utf8 = _read(CORPUS_DIR / "SIE4_Exempelfil_med_underdim.SE")
    assert any("encoded as utf-8" in w.message for w in utf8.warnings)


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.name)
def test_corpus_file_survives_a_write_and_read(path: Path) -> None:
    document = _read(path)
    sie_type = "4I" if document.sie_type is SieType.TYPE_4I else "4E"
    data = write_sie(document, sie_type=sie_type, checksum=True, allow_unbalanced=True)
    again = read_sie(data, encoding="cp437")
    assert again.errors == ()
    assert again.checksum is not None and again.checksum.status is ChecksumStatus.VALID
    if path.name == "SIE4_Exempelfil_med_underdim.SE":
        # Its texts hold U+FFFD, which CP437 cannot carry: written as '?'.
        assert len(again.vouchers) == len(document.vouchers)
        assert again.balances == document.balances
        return
    assert again.company == document.company
    assert again.financial_years == document.financial_years
    assert again.accounts == document.accounts
    assert again.dimensions == document.dimensions
    assert again.objects == document.objects
    assert again.balances == document.balances
    assert again.vouchers == document.vouchers
