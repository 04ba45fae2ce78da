"""Merge the JUnit XML files of make test's passes (the parallel one, then the tests marked
``serial``) into one report with one ``<testsuite>``, so that tools reading
test-artifacts/junit.xml see every test with totals that add up.

    python scripts/merge_junit.py OUT IN [IN ...]

An input that does not exist (a pass that selected no test writes none) is skipped."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

COUNTS = ("tests", "errors", "failures", "skipped")


def suites(path: Path) -> list[ET.Element]:
    root = ET.parse(path).getroot()
    return [root] if root.tag == "testsuite" else list(root.iter("testsuite"))


def merge(out: Path, inputs: list[Path]) -> ET.Element:
    merged = ET.Element("testsuite", {"name": "pytest"})
    totals = dict.fromkeys(COUNTS, 0)
    seconds = 0.0
    for path in inputs:
        if not path.exists():
            continue
        for suite in suites(path):
            for name in COUNTS:
                totals[name] += int(suite.get(name, "0"))
            seconds += float(suite.get("time", "0"))
            for key in ("timestamp", "hostname"):
                if key in suite.attrib and key not in merged.attrib:
                    merged.set(key, suite.attrib[key])
            merged.extend(suite.iter("testcase"))
    for name, value in totals.items():
        merged.set(name, str(value))
    merged.set("time", f"{seconds:.3f}")
    root = ET.Element("testsuites", {"name": "pytest tests"})
    root.append(merged)
    ET.ElementTree(root).write(out, encoding="utf-8", xml_declaration=True)
    return merged


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    merged = merge(Path(argv[0]), [Path(p) for p in argv[1:]])
    print(
        f"{argv[0]}: {merged.get('tests')} tests, {merged.get('failures')} failed, "
        f"{merged.get('errors')} errors, {merged.get('skipped')} skipped"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
