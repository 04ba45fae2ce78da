"""Encoding detection and decoding."""

from __future__ import annotations

import pytest

from engine.sie import detect_encoding, read_sie
from engine.sie.encoding import decode, encode_cp437

SWEDISH = '#FLAGGA 0\n#FNAMN "Övningsbolaget Åre AB"\n#KONTO 3001 "Försäljning, ränta och växel"\n'


@pytest.mark.parametrize(
    ("codec", "expected"),
    [
        ("cp437", "cp437"),
        ("latin-1", "latin-1"),
        ("utf-8", "utf-8"),
        ("utf-8-sig", "utf-8-sig"),
        ("utf-16", "utf-16"),
    ],
)
def test_swedish_text_is_detected_in_each_encoding(codec: str, expected: str) -> None:
    data = SWEDISH.encode(codec)
    assert detect_encoding(data) == expected
    assert decode(data, expected) == SWEDISH


def test_pure_ascii_is_cp437() -> None:
    assert detect_encoding(b'#FLAGGA 0\r\n#FNAMN "Kassa AB"\r\n') == "cp437"
    assert detect_encoding(b"") == "cp437"


def test_windows_1252_punctuation_makes_cp1252() -> None:
    text = SWEDISH + '#PROSA "Pris 10 € – „rea“"\n'
    data = text.encode("cp1252")
    assert detect_encoding(data) == "cp1252"
    assert decode(data, "cp1252") == text


def test_cp1252_holes_fall_back_to_latin1_code_points() -> None:
    data = "Åsa ".encode("cp1252") + b"\x8d\x9d" + "ö".encode("cp1252")
    assert detect_encoding(data) == "cp1252"
    assert decode(data, "cp1252") == "Åsa \x8d\x9dö"
    assert decode(b"\x81\x8f\x90", "cp1252") == "\x81\x8f\x90"


def test_majority_of_letters_decides_a_mixed_file() -> None:
    # Mostly CP437 with one stray Latin-1 'ö' (as in Sie_1.SE of the corpus).
    data = SWEDISH.encode("cp437") + '#FNR "Företag"\n'.encode("latin-1")
    assert detect_encoding(data) == "cp437"
    data = SWEDISH.encode("latin-1") + '#FNR "Företag"\n'.encode("cp437")
    # Latin-1 wins; the stray CP437 'ö' (0x94) lies in 80-9F, so Windows-1252.
    assert detect_encoding(data) == "cp1252"


def test_a_tie_goes_to_cp437() -> None:
    # Neither Swedish letters nor valid UTF-8: box drawing in CP437.
    assert detect_encoding(b'#PROSA "\xb3\xba"\n') == "cp437"


def test_invalid_utf8_is_not_utf8() -> None:
    data = "Ö".encode() + b"\x86\x84\x94"  # valid Ö, then CP437 letters
    assert detect_encoding(data) == "cp437"


@pytest.mark.parametrize("codec", ["cp437", "latin-1", "cp1252", "utf-8", "utf-8-sig"])
def test_reader_reports_the_encoding_and_reads_the_letters(codec: str) -> None:
    text = (
        "#FLAGGA 0\r\n#PROGRAM Test 1\r\n#FORMAT PC8\r\n#GEN 20250101\r\n#SIETYP 4\r\n"
        '#FNAMN "Åkeriet Öst AB"\r\n#KONTO 3740 "Öres- och kronutjämning"\r\n'
    )
    document = read_sie(text.encode(codec))
    expected = "latin-1" if codec == "cp1252" else codec
    assert document.encoding == expected
    assert document.company.name == "Åkeriet Öst AB"
    assert document.accounts[0].name == "Öres- och kronutjämning"
    assert document.errors == ()
    non_standard = [w for w in document.warnings if "not CP437" in w.message]
    assert bool(non_standard) == (codec != "cp437")


def test_forced_encoding_overrides_detection() -> None:
    data = '#FNAMN "├ä"\n'.encode("cp437")  # also valid UTF-8 for "Ä"
    assert read_sie(data).company.name == "Ä"
    assert read_sie(data, encoding="cp437").company.name == "├ä"


def test_encode_cp437_replaces_unmappable_characters() -> None:
    assert encode_cp437("Pris 10 € åäö") == b"Pris 10 ? \x86\x84\x94"


def test_decoding_never_fails_on_arbitrary_bytes() -> None:
    data = bytes(range(256)) * 3
    for codec in ("cp437", "latin-1", "cp1252", "utf-8", "utf-8-sig", "utf-16"):
        assert isinstance(decode(data, codec), str)
    assert isinstance(decode(b"\xff\xfe\x41", detect_encoding(b"\xff\xfe\x41")), str)
