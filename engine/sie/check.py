"""``kassasync sie check FILE...``: read SIE files and report one JSON line per file.

Each line is the dictionary :func:`check_file` returns, with exactly the keys
``file``, ``sie_type``, ``program``, ``encoding``, ``accounts``, ``vouchers``,
``unbalanced`` and ``errors`` (a list of ``{"line": int, "message": str}``).
A file that cannot be opened is reported with ``sie_type``, ``program`` and
``encoding`` set to ``null``, zero counts and one error on line 0.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TextIO, TypedDict

from engine.sie.reader import read_sie


class ErrorEntry(TypedDict):
    """One error: the 1-based line (0 for the file as a whole) and its message."""

    line: int
    message: str


class CheckResult(TypedDict):
    """What ``sie check`` reports for one file."""

    file: str
    sie_type: str | None
    program: str | None
    encoding: str | None
    accounts: int
    vouchers: int
    unbalanced: int
    errors: list[ErrorEntry]


def check_file(path: str | os.PathLike[str]) -> CheckResult:
    """Read the SIE file at ``path`` and summarise it.  Never raises."""
    name = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
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
            errors=[ErrorEntry(line=0, message=f"cannot read the file: {reason}")],
        )
    document = read_sie(data)
    return CheckResult(
        file=name,
        sie_type=document.sie_type.value,
        program=document.header.program,
        encoding=document.encoding,
        accounts=len(document.accounts),
        vouchers=len(document.vouchers),
        unbalanced=len(document.unbalanced_vouchers),
        errors=[ErrorEntry(line=error.line, message=error.message) for error in document.errors],
    )


def main_check(paths: list[str], out: TextIO | None = None) -> int:
    """Print one JSON line per file to ``out`` (standard output by default).

    Returns the exit code: 0 when every file was read without errors, 1 when any
    file had errors or could not be read, 2 when no file was given.
    """
    stream = sys.stdout if out is None else out
    if not paths:
        print("usage: kassasync sie check FILE...", file=sys.stderr)
        return 2
    status = 0
    for path in paths:
        result = check_file(path)
        if result["errors"]:
            status = 1
        stream.write(json.dumps(result, ensure_ascii=False) + "\n")
    stream.flush()
    return status
