"""#KSUMMA: algorithm, scope, verification and its failure modes."""

from __future__ import annotations

import zlib

import pytest

from engine.sie import ChecksumStatus, SieDocument, read_sie, write_sie
from engine.sie.checksum import checksum, parse_checksum_value, record_bytes
from engine.sie.tokens import tokenize

from .support import z_report_example_bytes


def _spec_table_crc(data: bytes) -> int:
    """The table-driven CRC-32 printed in spec §10 (generator EDB88320, preset FFFFFFFF)."""
    table = []
    for index in range(256):
        value = index
        for _ in range(8):
            value = (value >> 1) ^ 0xEDB88320 if value & 1 else value >> 1
        table.append(value)
    crc = 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def test_spec_algorithm_is_zlib_crc32() -> None:
    for data in (b"", b"#KONTO1915Kassa", bytes(range(256)), "åäö".encode("cp437")):
        assert _spec_table_crc(data) == zlib.crc32(data)


def test_record_bytes_follow_the_spec_example() -> None:
    fields = tokenize('#KONTO 1915 "Kassa \\"special\\""').fields
    label, *rest = fields
    assert isinstance(label, str)
    assert record_bytes(label, rest) == b'#KONTO1915Kassa "special"'
    assert record_bytes(label, rest, with_hash=False) == b'KONTO1915Kassa "special"'
    trans = tokenize('#TRANS 3001 {1 "100"} -6400.00 20250314 "Försäljning 25%"').fields
    label, *rest = trans
    assert isinstance(label, str)
    assert record_bytes(label, rest) == "#TRANS30011100-6400.0020250314Försäljning 25%".encode(
        "cp437"
    )
    assert checksum([(label, rest)]) == zlib.crc32(record_bytes(label, rest))


def test_checksum_values_signed_and_unsigned() -> None:
    assert parse_checksum_value("4294967295") == 0xFFFFFFFF
    assert parse_checksum_value("-1") == 0xFFFFFFFF
    assert parse_checksum_value("-2147483648") == 0x80000000
    assert parse_checksum_value("+5") == 5
    for bad in ("4294967296", "-2147483649", "12a", "", "-", "١٢"):
        assert parse_checksum_value(bad) is None


def _with_checksum() -> bytes:
    document = read_sie(z_report_example_bytes())
    return write_sie(document, sie_type="4I", checksum=True)


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\r\n")


def test_writer_checksum_verifies() -> None:
    data = _with_checksum()
    lines = _lines(data)
    assert lines[0] == b"#FLAGGA 0"
    assert lines[1] == b"#KSUMMA"
    assert lines[-2].startswith(b"#KSUMMA ")
    document = read_sie(data)
    assert document.errors == ()
    assert document.checksum is not None
    assert document.checksum.status is ChecksumStatus.VALID
    assert document.checksum.variant == "spec"
    assert document.checksum.expected == int(lines[-2].split()[1])


def test_whitespace_between_fields_does_not_count() -> None:
    data = _with_checksum().replace(b"#TRANS 1910 {} ", b"#TRANS\t1910   { }\t")
    document = read_sie(data)
    assert document.checksum is not None
    assert document.checksum.status is ChecksumStatus.VALID


def _covered_positions(data: bytes) -> list[int]:
    """Offsets of letters and digits in the records between the two #KSUMMA lines."""
    lines = _lines(data)
    positions: list[int] = []
    offset = 0
    for number, line in enumerate(lines):
        if 2 <= number < len(lines) - 2:
            positions += [offset + i for i, byte in enumerate(line) if chr(byte).isalnum()]
        offset += len(line) + 2
    return positions


def test_every_flipped_content_byte_is_detected() -> None:
    data = _with_checksum()
    positions = _covered_positions(data)
    assert len(positions) > 500
    for position in positions:
        original = data[position]
        replacement = ord("7") if chr(original).isalpha() else ord("X")
        if original == ord("7"):
            replacement = ord("8")
        mutated = data[:position] + bytes((replacement,)) + data[position + 1 :]
        document = read_sie(mutated)
        assert document.checksum is not None
        assert document.checksum.status is ChecksumStatus.INVALID, position
        assert any("checksum mismatch" in error.message for error in document.errors)


def test_a_flipped_bit_in_a_text_is_detected() -> None:
    data = _with_checksum()
    position = data.index(b"Kontant") + 2
    mutated = data[:position] + bytes((data[position] ^ 0x01,)) + data[position + 1 :]
    document = read_sie(mutated)
    assert document.checksum is not None
    assert document.checksum.status is ChecksumStatus.INVALID
    (error,) = document.errors
    assert error.line == len(_lines(data)) - 1
    assert error.message.startswith("#KSUMMA: checksum mismatch: the file says ")


def test_truncated_file_is_an_error() -> None:
    data = _with_checksum()
    truncated = b"\r\n".join(_lines(data)[:-2]) + b"\r\n"
    document = read_sie(truncated)
    assert document.checksum is not None
    assert document.checksum.status is ChecksumStatus.TRUNCATED
    assert [(e.line, e.message) for e in document.errors] == [
        (2, "the file is truncated: the #KSUMMA on line 2 has no closing #KSUMMA")
    ]


def _replace_value(data: bytes, value: str) -> bytes:
    lines = _lines(data)
    lines[-2] = b"#KSUMMA " + value.encode()
    return b"\r\n".join(lines)


def _status(document: SieDocument) -> ChecksumStatus:
    assert document.checksum is not None
    return document.checksum.status


def test_signed_value_is_accepted() -> None:
    data = _with_checksum()
    value = int(_lines(data)[-2].split()[1])
    signed = value - 2**32 if value >= 2**31 else value
    document = read_sie(_replace_value(data, str(signed)))
    assert _status(document) is ChecksumStatus.VALID


def test_variant_without_hash_is_tolerated_with_a_warning() -> None:
    data = _with_checksum()
    lines = _lines(data)
    records = []
    for line in lines[2:-2]:
        if line in (b"{", b"}"):
            continue
        label, *rest = tokenize(line.decode("cp437")).fields
        assert isinstance(label, str)
        records.append((label, rest))
    value = checksum(records, with_hash=False)
    document = read_sie(_replace_value(data, str(value)))
    assert _status(document) is ChecksumStatus.VALID
    assert document.checksum is not None and document.checksum.variant == "no-hash"
    assert any("non-standard variant" in w.message for w in document.warnings)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "#KSUMMA: checksum 'abc' is not a 32-bit integer"),
        ("99999999999", "#KSUMMA: checksum '99999999999' is not a 32-bit integer"),
    ],
)
def test_bad_values_are_errors(value: str, message: str) -> None:
    document = read_sie(_replace_value(_with_checksum(), value))
    assert _status(document) is ChecksumStatus.INVALID
    assert [e.message for e in document.errors] == [message]


def test_closing_checksum_without_opening_is_an_error() -> None:
    lines = _lines(_with_checksum())
    del lines[1]
    document = read_sie(b"\r\n".join(lines))
    assert _status(document) is ChecksumStatus.INVALID
    assert [e.message for e in document.errors] == [
        "#KSUMMA: checksum without an opening #KSUMMA; it cannot be verified"
    ]


def test_records_after_the_closing_checksum_are_a_warning() -> None:
    document = read_sie(_with_checksum() + b"#KONTO 9999 Sist\r\n")
    assert _status(document) is ChecksumStatus.VALID
    assert any("not covered by the checksum" in w.message for w in document.warnings)


def test_latin1_file_checksum_over_its_own_bytes_is_tolerated() -> None:
    body = '#KONTO 1910 "Kassa å"\n'
    crc = zlib.crc32("#KONTO1910Kassa å".encode("latin-1"))
    data = f"#FLAGGA 0\n#KSUMMA\n{body}#KSUMMA {crc}\n".encode("latin-1")
    document = read_sie(data)
    assert document.encoding == "latin-1"
    assert _status(document) is ChecksumStatus.VALID
    assert document.checksum is not None and document.checksum.variant == "spec/latin-1"


def test_file_without_checksum_is_absent() -> None:
    document = read_sie(z_report_example_bytes())
    assert _status(document) is ChecksumStatus.ABSENT
