"""Writer output format."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from engine.sie import (
    Account,
    Address,
    Balance,
    BalanceKind,
    Company,
    Dimension,
    FinancialYear,
    Header,
    ObjectRef,
    RowKind,
    SieDocument,
    SieObject,
    SieType,
    SieWriteError,
    Voucher,
    VoucherRow,
    read_sie,
    read_sie_file,
    write_sie,
    write_sie_file,
)
from engine.sie.writer import format_amount, format_quantity, format_sie, sanitize_text

DAY = dt.date(2025, 3, 14)


def _voucher(*rows: VoucherRow, text: str = "Z 1") -> Voucher:
    return Voucher(DAY, "", "", text, rows=rows)


def _document(**changes: Any) -> SieDocument:
    base = SieDocument(
        header=Header(program="Kassasync", program_version="0.1.0", gen_date=DAY),
        company=Company(name="Butiken AB", orgnr="556000-0000"),
        accounts=(Account("1910", "Kassa"), Account("3001", "Försäljning")),
        vouchers=(
            _voucher(
                VoucherRow("1910", Decimal("100")),
                VoucherRow("3001", Decimal("-100"), objects=(ObjectRef(1, "100"),)),
            ),
        ),
    )
    return replace(base, **changes)


def _text(document: SieDocument, **options: Any) -> list[str]:
    return format_sie(document, **options).split("\r\n")


def test_4i_layout() -> None:
    lines = _text(_document(), sie_type="4I")
    assert lines == [
        "#FLAGGA 0",
        '#PROGRAM "Kassasync" 0.1.0',
        "#FORMAT PC8",
        "#GEN 20250314",
        "#SIETYP 4",
        '#FNAMN "Butiken AB"',
        "#ORGNR 556000-0000",
        '#KONTO 1910 "Kassa"',
        '#KONTO 3001 "Försäljning"',
        '#VER "" "" 20250314 "Z 1"',
        "{",
        "#TRANS 1910 {} 100.00",
        '#TRANS 3001 {1 "100"} -100.00',
        "}",
        "",
    ]


def test_bytes_are_cp437_with_crlf() -> None:
    document = _document(company=Company(name="Åkeri € AB"))
    data = write_sie(document)
    assert b'#FNAMN "\x8fkeri ? AB"\r\n' in data
    assert data.endswith(b"}\r\n")
    assert b"\n" not in data.replace(b"\r\n", b"")


def test_4e_layout_includes_years_and_balances() -> None:
    document = _document(
        header=Header(program="P", gen_date=DAY, gen_sign="Eva Ek", tax_year=2026),
        company=Company(
            name="B",
            orgnr="556000-0000",
            acquisition_number=None,
            activity_number="2",
            company_id="C:\\x y",
            address=Address("Eva", "Box 1", "123 45 ORT", ""),
        ),
        financial_years=(FinancialYear(0, dt.date(2025, 1, 1), dt.date(2025, 12, 31)),),
        accounts=(Account("1910", "Kassa", "T", "st", ("7281",)),),
        dimensions=(Dimension(1, "KS"), Dimension(2, "KB", 1)),
        objects=(SieObject(1, "100", "Butik"),),
        balances=(
            Balance(BalanceKind.IB, 0, "1910", Decimal("5"), Decimal("2")),
            Balance(BalanceKind.PSALDO, 0, "1910", Decimal("-1.5"), None, "202503"),
            Balance(BalanceKind.OUB, 0, "1910", Decimal(0), objects=(ObjectRef(1, "100"),)),
        ),
    )
    lines = _text(document, sie_type="4E")
    assert lines[:24] == [
        "#FLAGGA 0",
        '#PROGRAM "P"',
        "#FORMAT PC8",
        '#GEN 20250314 "Eva Ek"',
        "#SIETYP 4",
        '#FNR "C:\\x y"',
        '#FNAMN "B"',
        '#ORGNR 556000-0000 "" 2',
        '#ADRESS "Eva" "Box 1" "123 45 ORT" ""',
        "#RAR 0 20250101 20251231",
        "#TAXAR 2026",
        '#KONTO 1910 "Kassa"',
        "#KTYP 1910 T",
        '#ENHET 1910 "st"',
        "#SRU 1910 7281",
        '#DIM 1 "KS"',
        '#UNDERDIM 2 "KB" 1',
        '#OBJEKT 1 "100" "Butik"',
        "#IB 0 1910 5.00 2",
        "#PSALDO 0 202503 1910 {} -1.50",
        '#OUB 0 1910 {1 "100"} 0.00',
        '#VER "" "" 20250314 "Z 1"',
        "{",
        "#TRANS 1910 {} 100.00",
    ]
    assert read_sie(write_sie(document, sie_type="4E")).sie_type is SieType.TYPE_4E


def test_4i_leaves_balances_out() -> None:
    document = _document(balances=(Balance(BalanceKind.IB, 0, "1910", Decimal(1)),))
    assert not any(line.startswith("#IB") for line in _text(document, sie_type="4I"))
    assert read_sie(write_sie(document, sie_type="4I")).sie_type is SieType.TYPE_4I


def test_default_type() -> None:
    assert read_sie(write_sie(_document())).sie_type is SieType.TYPE_4I
    with_balance = _document(balances=(Balance(BalanceKind.UB, 0, "1910", Decimal(1)),))
    assert read_sie(write_sie(with_balance)).sie_type is SieType.TYPE_4E
    with pytest.raises(SieWriteError, match="types 4E and 4I"):
        write_sie(_document(), sie_type="2")
    with pytest.raises(SieWriteError, match="unknown SIE type"):
        write_sie(_document(), sie_type="9")


def test_row_optional_fields() -> None:
    voucher = Voucher(
        DAY,
        "A",
        "12",
        "",
        DAY,
        "",
        rows=(
            VoucherRow("1910", Decimal(1), text="Rad"),
            VoucherRow("1910", Decimal(1), quantity=Decimal("1.500")),
            VoucherRow("1910", Decimal(1), kind=RowKind.BTRANS, sign="Eva"),
            VoucherRow("1910", Decimal(-2), trans_date=DAY),
        ),
    )
    lines = _text(_document(vouchers=(voucher,)))
    start = lines.index("{")
    assert lines[start - 1] == '#VER A 12 20250314 "" 20250314'
    assert lines[start + 1 : start + 5] == [
        '#TRANS 1910 {} 1.00 "" "Rad"',
        '#TRANS 1910 {} 1.00 "" "" 1.5',
        '#BTRANS 1910 {} 1.00 "" "" "" "Eva"',
        "#TRANS 1910 {} -2.00 20250314",
    ]


def test_texts_are_sanitised_and_escaped() -> None:
    voucher = _voucher(
        VoucherRow("1910", Decimal(1), text='Sa "hej"\tnu\r\n'),
        VoucherRow("3001", Decimal(-1), text="C:\\temp\\"),
        text="Avd {med} klammer",
    )
    lines = _text(_document(vouchers=(voucher,)))
    assert '#VER "" "" 20250314 "Avd {med} klammer"' in lines
    assert '#TRANS 1910 {} 1.00 "" "Sa \\"hej\\" nu  "' in lines
    assert '#TRANS 3001 {} -1.00 "" "C:\\temp/"' in lines
    again = read_sie(write_sie(_document(vouchers=(voucher,))))
    assert again.errors == ()
    assert [row.text for row in again.vouchers[0].rows] == ['Sa "hej" nu  ', "C:\\temp/"]


def test_sanitize_text() -> None:
    assert sanitize_text("a\x00b\x1fc\x7fd") == "a b c d"
    assert sanitize_text("€ and ✓") == "? and ?"
    assert sanitize_text("ends\\") == "ends/"
    assert sanitize_text("åäö ÅÄÖ é ½ ░") == "åäö ÅÄÖ é ½ ░"


def test_plain_fields_are_quoted_only_when_needed() -> None:
    voucher = Voucher(DAY, "LEV 1", "", "", rows=())
    lines = _text(_document(vouchers=(voucher,), company=Company(name="", orgnr="556000-0000")))
    assert '#VER "LEV 1" "" 20250314' in lines
    assert '#FNAMN ""' in lines
    assert "#ORGNR 556000-0000" in lines


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (Decimal("0"), "0.00"),
        (Decimal("-0.00"), "0.00"),
        (Decimal("1"), "1.00"),
        (Decimal("-1.5"), "-1.50"),
        (Decimal("1E+3"), "1000.00"),
        (Decimal("123456789012.34"), "123456789012.34"),
        (Decimal("2.500"), "2.50"),
    ],
)
def test_format_amount(amount: Decimal, text: str) -> None:
    assert format_amount(amount) == text


@pytest.mark.parametrize("amount", [Decimal("0.001"), Decimal("NaN"), Decimal("Infinity")])
def test_format_amount_refuses_what_sie_cannot_hold(amount: Decimal) -> None:
    with pytest.raises(SieWriteError):
        format_amount(amount)


def test_format_quantity() -> None:
    assert format_quantity(Decimal("100")) == "100"
    assert format_quantity(Decimal("1E+2")) == "100"
    assert format_quantity(Decimal("-0.250")) == "-0.25"
    assert format_quantity(Decimal("0E-7")) == "0"
    with pytest.raises(SieWriteError):
        format_quantity(Decimal("NaN"))


def test_unbalanced_voucher_is_refused_unless_allowed() -> None:
    voucher = _voucher(VoucherRow("1910", Decimal(1)))
    document = _document(vouchers=(voucher,))
    with pytest.raises(SieWriteError, match="does not balance"):
        write_sie(document)
    again = read_sie(write_sie(document, allow_unbalanced=True))
    assert len(again.unbalanced_vouchers) == 1


def test_rtrans_and_btrans_do_not_unbalance() -> None:
    voucher = _voucher(
        VoucherRow("1910", Decimal(-800)),
        VoucherRow("6110", Decimal(800), kind=RowKind.BTRANS),
        VoucherRow("6250", Decimal(800), kind=RowKind.RTRANS),
        VoucherRow("6250", Decimal(800)),
    )
    again = read_sie(write_sie(_document(vouchers=(voucher,))))
    assert again.errors == () and again.warnings == ()
    assert again.vouchers == (voucher,)


def test_period_balance_needs_a_period_and_year_balance_no_objects() -> None:
    with pytest.raises(SieWriteError, match="no period"):
        write_sie(
            _document(balances=(Balance(BalanceKind.PSALDO, 0, "1910", Decimal(1)),)),
            sie_type="4E",
        )
    with pytest.raises(SieWriteError, match="cannot carry objects"):
        write_sie(
            _document(
                balances=(
                    Balance(BalanceKind.IB, 0, "1910", Decimal(1), objects=(ObjectRef(1, "1"),)),
                )
            ),
            sie_type="4E",
        )


def test_default_program_and_gen_date() -> None:
    document = SieDocument(company=Company(name="X"))
    lines = _text(document)
    assert lines[1] == '#PROGRAM "Kassasync" 0.1.0'
    assert lines[3] == f"#GEN {dt.date.today():%Y%m%d}"


def test_file_helpers(tmp_path: Path) -> None:
    path = tmp_path / "Z1234.SI"
    write_sie_file(path, _document(), checksum=True)
    document = read_sie_file(path)
    assert document.errors == ()
    assert document.vouchers == _document().vouchers
