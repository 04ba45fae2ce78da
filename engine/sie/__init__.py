"""SIE 4 (types 1-4, 4E and 4I) reader and writer for the Fortnox sync.

See ``docs/sie.md`` for what the reader accepts and how the writer formats files.
"""

from engine.sie.check import CheckResult, check_file, main_check
from engine.sie.checksum import ChecksumResult, ChecksumStatus
from engine.sie.encoding import detect_encoding
from engine.sie.model import (
    Account,
    Address,
    Balance,
    BalanceKind,
    Company,
    Dimension,
    FinancialYear,
    Header,
    ObjectRef,
    RawRecord,
    RowKind,
    SieDocument,
    SieError,
    SieObject,
    SieType,
    Voucher,
    VoucherRow,
)
from engine.sie.reader import read_sie, read_sie_file, read_sie_text
from engine.sie.writer import SieWriteError, format_sie, write_sie, write_sie_file

__all__ = [
    "Account",
    "Address",
    "Balance",
    "BalanceKind",
    "CheckResult",
    "ChecksumResult",
    "ChecksumStatus",
    "Company",
    "Dimension",
    "FinancialYear",
    "Header",
    "ObjectRef",
    "RawRecord",
    "RowKind",
    "SieDocument",
    "SieError",
    "SieObject",
    "SieType",
    "SieWriteError",
    "Voucher",
    "VoucherRow",
    "check_file",
    "detect_encoding",
    "format_sie",
    "main_check",
    "read_sie",
    "read_sie_file",
    "read_sie_text",
    "write_sie",
    "write_sie_file",
]
