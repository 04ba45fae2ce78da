"""``kassasync sie check FILE...``: read SIE files and report one JSON line per file.

Each line is the dictionary :func:`check_file` returns, with exactly the keys
``file``, ``sie_type``, ``program``, ``encoding``, ``accounts``, ``vouchers``,
``unbalanced``, ``unbalanced_vouchers`` (each with its line, series, number, date and
difference; at most 100 listed) and ``errors`` (a list of ``{"line": int, "message": str}``).
The file is streamed: vouchers are counted and checked as they are read, not kept.
A file that cannot be opened is reported with ``sie_type``, ``program`` and
``encoding`` set to ``null``, zero counts and one error on line 0.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TextIO, TypedDict

from engine.sie.model import Voucher
from engine.sie.reader import read_sie_file


class ErrorEntry(TypedDict):
    """One error: the 1-based line (0 for the file as a whole) and its message."""

    line: int
    message: str


class UnbalancedEntry(TypedDict):
    """A voucher whose #TRANS rows do not sum to zero, and by how much."""

    line: int
    series: str
    number: str
    date: str
    difference: str


MAX_LISTED = 100


class CheckResult(TypedDict):
    """What ``sie check`` reports for one file."""

    file: str
    sie_type: str | None
    program: str | None
    encoding: str | None
    accounts: int
    vouchers: int
    unbalanced: int
    unbalanced_vouchers: list[UnbalancedEntry]
    errors: list[ErrorEntry]


def check_file(path: str | os.PathLike[str]) -> CheckResult:
    """Read the SIE file at ``path`` and summarise it.  Never raises."""
    name = os.fspath(path)
    counts = {"vouchers": 0, "unbalanced": 0}
    listed: list[UnbalancedEntry] = []

    def seen(voucher: Voucher) -> None:
        counts["vouchers"] += 1
        if voucher.is_balanced:
            return
        counts["unbalanced"] += 1
        if len(listed) < MAX_LISTED:
            listed.append(
                UnbalancedEntry(
                    line=voucher.line,
                    series=voucher.series,
                    number=voucher.number,
                    date=voucher.date.isoformat(),
                    difference=str(voucher.balance),
                )
            )

    try:
        document = read_sie_file(path, on_voucher=seen)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return CheckResult(
            file=name,
            sie_type=None,
            program=None,
            encoding=None,
            accounts=0,
            vouchers=0,
            unbalanced=0,
            unbalanced_vouchers=[],
            errors=[ErrorEntry(line=0, message=f"cannot read the file: {reason}")],
        )
    return CheckResult(
        file=name,
        sie_type=document.sie_type.value,
        program=document.header.program,
        encoding=document.encoding,
        accounts=len(document.accounts),
        vouchers=counts["vouchers"],
        unbalanced=counts["unbalanced"],
        unbalanced_vouchers=listed,
        errors=[ErrorEntry(line=error.line, message=error.message) for error in document.errors],
    )


def main_check(paths: list[str], out: TextIO | None = None) -> int:
    """Print one JSON line per file to ``out`` (standard output by default).

    Returns the exit code: 0 when every file was read without errors and every voucher
    balances, 1 when any file had errors, an unbalanced voucher or could not be read, 2 when
    no file was given.
    """
    stream = sys.stdout if out is None else out
    if not paths:
        print("usage: kassasync sie check FILE...", file=sys.stderr)
        return 2
    status = 0
    for path in paths:
        result = check_file(path)
        if result["errors"] or result["unbalanced"]:
            status = 1
        stream.write(json.dumps(result, ensure_ascii=False) + "\n")
    stream.flush()
    return status
