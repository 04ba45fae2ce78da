"""Reader behaviour: records, vouchers, balance rule, types and error reporting."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from engine.sie import (
    Account,
    BalanceKind,
    Dimension,
    FinancialYear,
    ObjectRef,
    RowKind,
    SieDocument,
    SieObject,
    SieType,
    read_sie,
    read_sie_text,
    write_sie,
)

from .support import z_report_example_bytes

HEAD = '#FLAGGA 0\n#PROGRAM Test 1.0\n#FORMAT PC8\n#GEN 20250314\n#SIETYP 4\n#FNAMN "Test AB"\n'
HEAD_LINES = HEAD.count("\n")


def read(body: str, head: str = HEAD) -> SieDocument:
    return read_sie_text(head + body)


def lines_of(document: SieDocument, *, warnings: bool = False) -> list[tuple[int, str]]:
    problems = document.warnings if warnings else document.errors
    return [(problem.line, problem.message) for problem in problems]


# ---------------------------------------------------------------- Z-report example


def test_z_report_example_parses_balances_and_has_fourteen_rows() -> None:
    document = read_sie(z_report_example_bytes())
    assert document.errors == ()
    assert document.warnings == ()
    assert document.encoding == "cp437"
    assert document.sie_type is SieType.TYPE_4I
    assert document.header.program == "KassaSync"
    assert document.header.program_version == "0.1"
    assert document.header.gen_date == dt.date(2025, 3, 14)
    assert document.header.gen_sign == "kassasync"
    assert document.company.name == "Exempelbutiken AB"
    assert document.company.orgnr == "556000-0000"
    assert len(document.accounts) == 12
    assert document.account("2611") == Account(
        "2611", "Utgående moms på försäljning inom Sverige, 25 %"
    )
    assert document.dimensions == (Dimension(1, "Kostnadsställe"),)
    assert document.objects == (SieObject(1, "100", "Butik City"),)
    (voucher,) = document.vouchers
    assert (voucher.series, voucher.number) == ("", "")
    assert voucher.date == dt.date(2025, 3, 14)
    assert voucher.reg_date == dt.date(2025, 3, 14)
    assert voucher.text == "Z-dagrapport 1234, kassa K1"
    assert len(voucher.rows) == 14
    assert voucher.is_balanced
    debit = sum((row.amount for row in voucher.rows if row.amount > 0), Decimal(0))
    assert debit == Decimal("13160.40")  # §2.3
    sales_25 = voucher.rows[5]
    assert sales_25.account == "3001"
    assert sales_25.objects == (ObjectRef(1, "100"),)
    assert sales_25.amount == Decimal("-6400.00")
    assert sales_25.text == "Försäljning 25%"
    assert voucher.rows[4].amount == Decimal("0.40")


def test_z_report_example_round_trips_byte_for_byte() -> None:
    original = z_report_example_bytes()
    document = read_sie(original)
    assert write_sie(document, sie_type="4I") == original
    assert read_sie(write_sie(document)) == document


# ---------------------------------------------------------------- records


def test_identification_and_chart_records() -> None:
    document = read(
        '#PROSA "Hej"\n#FTYP AB\n#FNR "C:\\data"\n#ORGNR 556677-8899 1 2\n#BKOD 47111\n'
        '#ADRESS "Eva" "Box 1" "123 45 ORT" "08-123"\n#RAR 0 20250101 20251231\n'
        "#RAR -1 20240101 20241231\n#TAXAR 2026\n#OMFATTN 20251231\n#KPTYP BAS2024\n"
        "#VALUTA SEK\n#KONTO 1910 Kassa\n#KTYP 1910 t\n#ENHET 1910 st\n#SRU 1910 7281\n"
        '#SRU 1910 7282\n#DIM 1 "Kostnadsställe"\n#UNDERDIM 2 "Kostnadsbärare" 1\n'
        '#OBJEKT 1 "0123" "Serviceavdelningen"\n#IB 0 1910 100.50 3\n'
    )
    assert document.errors == ()
    assert document.header.comment == "Hej"
    assert document.header.tax_year == 2026
    assert document.header.balances_until == dt.date(2025, 12, 31)
    assert document.header.chart_type == "BAS2024"
    assert document.header.currency == "SEK"
    company = document.company
    assert (company.orgnr, company.acquisition_number, company.activity_number) == (
        "556677-8899",
        "1",
        "2",
    )
    assert company.company_type == "AB"
    assert company.company_id == "C:\\data"
    assert company.sni_code == "47111"
    assert company.address is not None and company.address.postal == "123 45 ORT"
    assert document.financial_years == (
        FinancialYear(0, dt.date(2025, 1, 1), dt.date(2025, 12, 31)),
        FinancialYear(-1, dt.date(2024, 1, 1), dt.date(2024, 12, 31)),
    )
    assert document.accounts == (Account("1910", "Kassa", "T", "st", ("7281", "7282")),)
    assert document.dimensions == (
        Dimension(1, "Kostnadsställe"),
        Dimension(2, "Kostnadsbärare", 1),
    )
    assert document.objects == (SieObject(1, "0123", "Serviceavdelningen"),)
    (balance,) = document.balances
    assert balance.kind is BalanceKind.IB
    assert (balance.year, balance.account, balance.amount) == (0, "1910", Decimal("100.50"))
    assert balance.quantity == Decimal(3)
    assert document.sie_type is SieType.TYPE_4E


def test_balance_records() -> None:
    document = read(
        "#RAR 0 20250101 20251231\n#UB 0 1910 -5\n#RES 0 3001 -100.25\n"
        '#OIB 0 1910 {1 "100"} 10\n#OUB 0 1910 {} 11 2.5\n'
        '#PSALDO 0 202503 3001 {1 "100" 6 "P1"} -50 -1\n#PBUDGET 0 202503 3001 {} -60\n'
    )
    assert document.errors == ()
    kinds = [balance.kind for balance in document.balances]
    assert kinds == [
        BalanceKind.UB,
        BalanceKind.RES,
        BalanceKind.OIB,
        BalanceKind.OUB,
        BalanceKind.PSALDO,
        BalanceKind.PBUDGET,
    ]
    psaldo = document.balances[4]
    assert psaldo.period == "202503"
    assert psaldo.objects == (ObjectRef(1, "100"), ObjectRef(6, "P1"))
    assert psaldo.quantity == Decimal(-1)
    assert document.balances[3].quantity == Decimal("2.5")


def test_unknown_labels_are_kept_and_extra_fields_ignored() -> None:
    document = read(
        '#KONTO 1910 Kassa extra "fields" {1 2}\n#NYPOST 1 "två"\n'
        '#VER A 1 20250101\n{\n#TRANS 1910 {} 1 20250101 "" 1 sign more\n'
        "#RADINFO x\n#TRANS 3001 {} -1\n}\n"
    )
    assert document.errors == ()
    assert document.accounts == (Account("1910", "Kassa"),)
    assert [(raw.label, raw.fields, raw.line) for raw in document.unknown] == [
        ("#NYPOST", ("1", "två"), HEAD_LINES + 2),
        ("#RADINFO", ("x",), HEAD_LINES + 6),
    ]
    assert len(document.vouchers[0].rows) == 2


def test_crlf_cr_and_empty_lines() -> None:
    text = HEAD + "\n\n#KONTO 1910 Kassa\n   \n\t\n#KONTO 1930 Bank\n"
    for variant in (text, text.replace("\n", "\r\n"), text.replace("\n", "\r")):
        document = read_sie_text(variant)
        assert document.errors == ()
        assert [account.number for account in document.accounts] == ["1910", "1930"]
    document = read_sie_text(text.replace("\n", "\r\n"))
    assert document.line_count == text.count("\n")


def test_comma_decimals_are_accepted_with_a_warning() -> None:
    document = read("#VER A 1 20250101\n{\n#TRANS 1910 {} 100,50\n#TRANS 3001 {} -100.50\n}\n")
    assert document.errors == ()
    assert document.vouchers[0].rows[0].amount == Decimal("100.50")
    assert lines_of(document, warnings=True) == [
        (HEAD_LINES + 3, "#TRANS: comma used as decimal separator in amount '100,50'")
    ]


def test_amount_forms() -> None:
    document = read(
        "#VER A 1 20250101\n{\n#TRANS 1910 {} 100\n#TRANS 1910 {} -.5\n#TRANS 1910 {} 1.\n"
        "#TRANS 3001 {} -100.50\n#TRANS 3001 {} +0\n}\n"
    )
    assert document.errors == ()
    assert [row.amount for row in document.vouchers[0].rows] == [
        Decimal(100),
        Decimal("-0.5"),
        Decimal(1),
        Decimal("-100.50"),
        Decimal(0),
    ]
    assert any("'+' sign" in w.message for w in document.warnings)


def test_vendion_style_text_in_the_date_field_is_read_as_text() -> None:
    document = read(
        '#VER "" "" 20250314 "Z"\n{\n#TRANS 1580 {} 10000 "Card receivables"\n'
        "#TRANS 3001 {} -10000\n}\n"
    )
    assert document.errors == ()
    row = document.vouchers[0].rows[0]
    assert (row.trans_date, row.text) == (None, "Card receivables")
    assert "read as the row text" in document.warnings[0].message


def test_row_fields() -> None:
    document = read(
        '#VER LEV1 17 20250101 "Text" 20250102 "Eva"\n{\n'
        '#TRANS 4010 {6 "P1"} 250.00 20250103 "Rad" 2.5 "Per"\n#TRANS 2440 {} -250.00\n}\n'
    )
    voucher = document.vouchers[0]
    assert (voucher.series, voucher.number, voucher.sign) == ("LEV1", "17", "Eva")
    assert voucher.reg_date == dt.date(2025, 1, 2)
    assert voucher.line == HEAD_LINES + 1
    row = voucher.rows[0]
    assert row.objects == (ObjectRef(6, "P1"),)
    assert (row.trans_date, row.text, row.quantity, row.sign) == (
        dt.date(2025, 1, 3),
        "Rad",
        Decimal("2.5"),
        "Per",
    )
    assert row.line == HEAD_LINES + 3
    assert voucher.rows[1].trans_date is None


# ---------------------------------------------------------------- balance rule


SPEC_PORTO = """#VER A 1 20080101 "Porto"
{
#TRANS 1910 {} -800.00
#BTRANS 6110 {} 800.00
#RTRANS 6250 {} 800.00
#TRANS 6250 {} 800.00
}
"""


def test_balance_counts_trans_rows_only() -> None:
    document = read(SPEC_PORTO)
    assert document.errors == ()
    assert document.warnings == ()
    (voucher,) = document.vouchers
    assert [row.kind for row in voucher.rows] == [
        RowKind.TRANS,
        RowKind.BTRANS,
        RowKind.RTRANS,
        RowKind.TRANS,
    ]
    assert [row.account for row in voucher.trans_rows] == ["1910", "6250"]
    assert voucher.balance == 0
    assert voucher.is_balanced
    assert document.unbalanced_vouchers == ()


def test_unbalanced_voucher_is_a_warning_with_the_ver_line() -> None:
    document = read("#VER A 7 20250101\n{\n#TRANS 1910 {} 10\n#RTRANS 3001 {} -10\n}\n")
    assert document.errors == ()
    assert len(document.unbalanced_vouchers) == 1
    assert (
        HEAD_LINES + 1,
        "voucher A 7 dated 2025-01-01 does not balance: its #TRANS rows sum to 10",
    ) in lines_of(document, warnings=True)


def test_rtrans_without_its_trans_is_a_warning() -> None:
    document = read(
        "#VER A 1 20250101\n{\n#RTRANS 1910 {} 5\n#TRANS 1930 {} 5\n"
        "#TRANS 3001 {} -5\n#TRANS 2611 {} -5\n}\n"
    )
    assert any("differs from the #RTRANS" in w.message for w in document.warnings)
    document = read("#VER A 1 20250101\n{\n#RTRANS 1910 {} 5\n}\n")
    assert (
        HEAD_LINES + 3,
        f"#RTRANS on line {HEAD_LINES + 3} is not followed by its #TRANS",
    ) in lines_of(document, warnings=True)


# ---------------------------------------------------------------- types


def test_sie_type_rules() -> None:
    assert read_sie_text("#FLAGGA 0\n#KONTO 1910 Kassa\n").sie_type is SieType.TYPE_1
    assert read("", HEAD.replace("#SIETYP 4", "#SIETYP 2")).sie_type is SieType.TYPE_2
    assert read("", HEAD.replace("#SIETYP 4", "#SIETYP 3")).sie_type is SieType.TYPE_3
    vouchers = "#VER A 1 20250101\n{\n#TRANS 1910 {} 0\n}\n"
    assert read(vouchers).sie_type is SieType.TYPE_4I
    # #RAR is optional in 4I, so it does not make a file 4E ...
    assert read("#RAR 0 20250101 20251231\n" + vouchers).sie_type is SieType.TYPE_4I
    # ... but any balance record does.
    for record in ("#IB 0 1910 1", "#UB 0 1910 1", "#RES 0 3001 1", "#PSALDO 0 202501 1 {} 1"):
        assert read(record + "\n" + vouchers).sie_type is SieType.TYPE_4E, record


def test_mandatory_records_are_warnings() -> None:
    document = read_sie_text("#KONTO 1910 Kassa\n#VER A 1 20250101\n{\n}\n")
    assert document.errors == ()
    messages = [w.message for w in document.warnings]
    assert "the first record is not #FLAGGA" in messages
    for label in ("#PROGRAM", "#FORMAT", "#GEN", "#FNAMN"):
        assert f"mandatory record {label} is missing" in messages
    assert "mandatory record #RAR is missing (required in type 1)" in messages
    assert "#VER is not allowed in type 1 files" in messages


# ---------------------------------------------------------------- errors


def test_malformed_records_are_errors_and_reading_continues() -> None:
    body = (
        "#KONTO\n"  # +1
        "#SIETYP 7\n"  # +2
        "#RAR 0 20251301 20251231\n"  # +3
        "#IB 0 1910 12x\n"  # +4
        "#DIM x Namn\n"  # +5
        "#PSALDO 0 202513 3001 {} 1\n"  # +6
        "#OIB 0 1910 {1} 5\n"  # +7
        "#GEN 2025-03-14\n"  # +8
        "#KONTO 1930 Bank\n"  # +9
    )
    document = read(body)
    base = HEAD_LINES
    assert lines_of(document) == [
        (base + 1, "#KONTO: missing account number"),
        (base + 2, "#SIETYP: type 7 is not 1, 2, 3 or 4"),
        (base + 3, "#RAR: start date '20251301' is not a valid date"),
        (base + 4, "#IB: amount '12x' is not a number"),
        (base + 5, "#DIM: dimension number 'x' is not an integer"),
        (base + 6, "#PSALDO: period '202513' is not a month (YYYYMM)"),
        (base + 7, "#OIB: object list ('1',) has an odd number of members"),
        (base + 8, "#GEN: date '2025-03-14' is not a date (YYYYMMDD)"),
    ]
    assert [account.number for account in document.accounts] == ["1930"]


def test_voucher_structure_errors() -> None:
    body = (
        "#TRANS 1910 {} 1\n"  # +1 outside a block
        "}\n"  # +2 stray
        "#VER A 1 20250101\n"  # +3 not followed by {
        "#KONTO 1910 Kassa\n"  # +4
        "#VER A 2 20250101\n"  # +5
        "{\n"  # +6
        "#TRANS 1910 {} 1\n"  # +7
        "#TRANS 3001 {} -1\n"  # +8
        "#VER A 3 20250101\n"  # +9 the block of A 2 was never closed
        "{\n"  # +10
        "{\n"  # +11 nested
        "#TRANS 1910 {} 0\n"  # +12
        "}\n"  # +13
        "{\n"  # +14 without #VER
        "#TRANS 1910 {} 5\n"  # +15 skipped with its block
        "}\n"  # +16
        "#VER A 4 2025\n"  # +17 bad date: its block is skipped
        "{\n"  # +18
        "#TRANS 1910 {} 7\n"  # +19
        "}\n"  # +20
        "#VER A 5 20250101\n"  # +21
        "{\n"  # +22
        "#TRANS 1910 {} 1\n"  # +23 the file ends inside the block
    )
    document = read(body)
    b = HEAD_LINES
    assert lines_of(document) == [
        (b + 1, "#TRANS: voucher row outside a #VER block; ignored"),
        (b + 2, "'}' without an open #VER block; ignored"),
        (b + 4, f"#VER on line {b + 3} is not followed by a '{{' block"),
        (b + 9, f"the #VER block opened on line {b + 5} has no closing '}}' before this #VER"),
        (b + 11, "'{' inside a #VER block; ignored"),
        (b + 14, "'{' without a #VER before it; the block is skipped"),
        (b + 17, "#VER: voucher date '2025' is not a date (YYYYMMDD)"),
        (b + 23, f"the #VER block opened on line {b + 21} has no closing '}}'"),
    ]
    assert [(v.number, len(v.rows)) for v in document.vouchers] == [
        ("1", 0),
        ("2", 2),
        ("3", 1),
        ("5", 1),
    ]


def test_rows_without_braces_are_read_with_one_error() -> None:
    document = read(
        "#VER A 1 20250101\n#TRANS 1910 {} 5\n#TRANS 3001 {} -5\n#VER A 2 20250101\n"
        "#TRANS 1910 {} 1\n#TRANS 3001 {} -1\n}\n#KONTO 1910 Kassa\n"
    )
    b = HEAD_LINES
    message = "is not followed by a '{' block; its rows are read up to the next other record"
    assert lines_of(document) == [
        (b + 2, f"#VER on line {b + 1} {message}"),
        (b + 5, f"#VER on line {b + 4} {message}"),
    ]
    assert [len(voucher.rows) for voucher in document.vouchers] == [2, 2]
    assert document.unbalanced_vouchers == ()
    assert document.accounts == (Account("1910", "Kassa"),)


def test_ver_at_end_of_file_without_block() -> None:
    document = read("#VER A 1 20250101\n")
    assert lines_of(document) == [
        (HEAD_LINES + 1, f"#VER on line {HEAD_LINES + 1} is not followed by a '{{' block")
    ]


def test_lines_without_label_are_errors() -> None:
    document = read("KONTO 1910 Kassa\n#KONTO 1930 Bank\n")
    assert lines_of(document) == [
        (HEAD_LINES + 1, "line does not start with a '#' label, '{' or '}'; ignored")
    ]


@pytest.mark.parametrize("data", [b"", b"\n\n", b"hello world\n", bytes(range(256))])
def test_unreadable_input_gives_one_error_and_no_exception(data: bytes) -> None:
    document = read_sie(data)
    assert lines_of(document) == [(1, "no SIE records found: this is not a SIE file")]
    assert document.warnings == ()
    assert document.line_count >= 1


def test_error_count_is_capped() -> None:
    document = read_sie_text("#FLAGGA 0\n" + "junk\n" * 5000)
    assert len(document.errors) == 1001
    assert document.errors[-1].message == "too many problems; the rest are not reported"
