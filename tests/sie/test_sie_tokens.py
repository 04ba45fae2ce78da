"""Tokenizer edge cases from the spec notes (§1.4) and the wild."""

from __future__ import annotations

import time

import pytest

from engine.sie.tokens import Field, field_content, tokenize


@pytest.mark.parametrize(
    ("line", "fields"),
    [
        ("#KONTO 1910 Kassa", ["#KONTO", "1910", "Kassa"]),
        ("#KONTO\t1910\t\t Kassa  ", ["#KONTO", "1910", "Kassa"]),
        ('#KONTO 1910 "Bank, PlusGiro"', ["#KONTO", "1910", "Bank, PlusGiro"]),
        ('#VER "" "" 20080101 "Porto"', ["#VER", "", "", "20080101", "Porto"]),
        ("#TRANS 1910 {} 100.00", ["#TRANS", "1910", (), "100.00"]),
        ("#TRANS 1910 { } 100.00", ["#TRANS", "1910", (), "100.00"]),
        ("#TRANS 1910 {\t} 100.00", ["#TRANS", "1910", (), "100.00"]),
        (
            '#TRANS 7010 {"1" "456" "7" "47"} 13200.00',
            ["#TRANS", "7010", ("1", "456", "7", "47"), "13200.00"],
        ),
        (
            '#TRANS 3001 {1 "100" 6 "P1"} -6400.00',
            ["#TRANS", "3001", ("1", "100", "6", "P1"), "-6400.00"],
        ),
        ('#TRANS 3010  { "1" "1"} -500', ["#TRANS", "3010", ("1", "1"), "-500"]),
        ("#TRANS 3010 {1 1}-500", ["#TRANS", "3010", ("1", "1"), "-500"]),
        ('#OBJEKT 1 "Avd {med} klammer"', ["#OBJEKT", "1", "Avd {med} klammer"]),
        ('#OBJEKT 1 "}"', ["#OBJEKT", "1", "}"]),
        ('#TRANS 1 {1 "a}b"} 1', ["#TRANS", "1", ("1", "a}b"), "1"]),
        ('#KONTO 1915 "Kassa \\"special\\""', ["#KONTO", "1915", 'Kassa "special"']),
        ('#FNR "C:\\temp\\sie"', ["#FNR", "C:\\temp\\sie"]),
        ('#FNR "C:\\\\Documents"', ["#FNR", "C:\\\\Documents"]),
        ('#PROSA "a\\\\"b"', ["#PROSA", 'a\\"b']),
        ("#FNR C:\\temp\\", ["#FNR", "C:\\temp\\"]),
        ('#PROSA ""', ["#PROSA", ""]),
        ('#PROSA "a""b"', ["#PROSA", "a", "b"]),
        ('#PROSA 12" pizza', ["#PROSA", '12"', "pizza"]),
        ("#VER # 1 20090831", ["#VER", "#", "1", "20090831"]),
        ("#PROSA Avd{med}", ["#PROSA", "Avd{med}"]),
        ("#TAB\u00a0NBSP x", ["#TAB\u00a0NBSP", "x"]),
    ],
)
def test_tokenize(line: str, fields: list[Field]) -> None:
    result = tokenize(line)
    assert result.fields == fields
    assert result.errors == []
    assert result.warnings == []


def test_unclosed_quote_runs_to_the_end_of_the_line_with_a_warning() -> None:
    result = tokenize('#TRANS 3010 {} -900.00 20140127 "260    aaaa')
    assert result.fields[-1] == "260    aaaa"
    assert result.errors == []
    assert result.warnings == ["quoted field is not closed; read to the end of the line"]


def test_a_closing_quote_after_a_backslash_ends_the_field_at_end_of_line() -> None:
    result = tokenize('#FNR "C:\\temp\\"')
    assert result.fields == ["#FNR", "C:\\temp\\"]
    assert result.errors == []
    assert "backslash" in result.warnings[0]


def test_unclosed_object_list_is_an_error() -> None:
    result = tokenize('#TRANS 1910 {1 "100" 100.00')
    assert result.fields == ["#TRANS", "1910", ("1", "100", "100.00")]
    assert result.errors == ["object list is missing its closing '}'"]


def test_nested_brace_in_object_list_is_an_error() -> None:
    result = tokenize("#TRANS 1910 {1 {2} 100.00")
    assert result.errors == ["'{' inside an object list"]


def test_field_content_drops_quotes_and_braces() -> None:
    fields = tokenize('#TRANS 1910 {1 "1 00"} "Kassa \\"x\\""').fields
    assert [field_content(value) for value in fields] == ["#TRANS", "1910", "11 00", 'Kassa "x"']


@pytest.mark.parametrize(
    "line",
    [
        '#X "' + "\\" * 200_000,
        '#X "' + '\\"' * 200_000,
        "#X " + "{" * 200_000,
        "#X {" + '"\\' * 200_000,
        "#X " + '"a" ' * 100_000,
        "#X " + "a" * 400_000 + '"',
        "#X {" + " " * 400_000,
    ],
)
def test_pathological_lines_take_linear_time(line: str) -> None:
    start = time.perf_counter()
    tokenize(line)
    assert time.perf_counter() - start < 2.0
