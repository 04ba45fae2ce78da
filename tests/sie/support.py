"""Shared helpers for the SIE tests: corpus location and the worked Z-report example."""

from __future__ import annotations

from pathlib import Path
from typing import Final

REFERENCE_DIR: Final = Path("/work/shared/reference")
CORPUS_DIR: Final = REFERENCE_DIR / "sie-corpus"
NOTES: Final = REFERENCE_DIR / "sie-and-pos.md"


def corpus_files() -> list[Path]:
    """Every SIE file of the corpus (the README is not one)."""
    return sorted(path for path in CORPUS_DIR.iterdir() if path.name != "README.md")


def z_report_example_text() -> str:
    """The type 4I Z-report file printed in section 1.9 of the notes, LF line ends."""
    notes = NOTES.read_text(encoding="utf-8")
    section = notes[notes.index("### 1.9") :]
    start = section.index("```\n") + len("```\n")
    end = section.index("```", start)
    return section[start:end]


def z_report_example_bytes() -> bytes:
    """The §1.9 example as the notes say it is written: CP437 with CR LF line ends."""
    return z_report_example_text().replace("\n", "\r\n").encode("cp437")
