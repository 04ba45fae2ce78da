"""Reading a large SIE file: speed against a plain stdlib parse, and memory against the file.

    python -m bench.sie_read [--mb 50]

Generates a SIE 4 file of about ``--mb`` megabytes (vouchers with quoted texts and object lists,
as tills and ledgers write them), then, each in a fresh child process:

* **baseline**: a plain line-by-line stdlib parse of the same file: decode CP437, split each
  line into fields at whitespace, every ``#TRANS`` amount as ``Decimal``, vouchers counted;
* **baseline_kept**: a simple stdlib reader that keeps what it reads (the ``csv`` module splits
  fields honouring quotes; vouchers and rows kept, amounts as ``Decimal``);
* **stream**: ``engine.sie.read_sie_file(path, on_voucher=...)``, as ``kassasync sie check``
  reads (every record tokenised and checked, each voucher built and handed over, not kept);
* **stream_rows**: the same, the callback using every voucher's rows (summing their amounts),
  as ``import-sie`` does: vouchers read whole as a block build their rows on first use, so this
  shows what using them costs;
* **document**: ``read_sie_file(path)`` keeping every voucher, as a small import does.

Prints one JSON object: ``sie_read_vs_stdlib_ratio`` (baseline seconds / stream seconds: >= 1
means at least as fast; the best of ``--rounds`` wall-clock runs each, the modes' rounds
interleaved so that a busy machine weighs on both alike), ``sie_read_vs_stdlib_cpu_ratio`` (the
same in CPU seconds of the process, less moved by other programs),
``sie_rows_vs_stdlib_ratio`` (baseline / stream_rows), ``sie_read_memory_ratio`` (the
stream's peak traced memory / file size),
and the document read against the reader that keeps its data
(``sie_document_vs_stdlib_kept_ratio``, memory ratios of both).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
from decimal import Decimal
from pathlib import Path
from typing import Any

HEAD = (
    '#FLAGGA 0\r\n#PROGRAM "Kassan" 2.1\r\n#FORMAT PC8\r\n#GEN 20250101\r\n#SIETYP 4\r\n'
    '#FNAMN "Exempelbutiken AB"\r\n#ORGNR 556000-0001\r\n#RAR 0 20250101 20251231\r\n'
)
TEXTS = ("Kontant", "Kort inkl. dricks", "Försäljning 25%", "Utg moms 25%", "Öresavrundning")


def generate(path: Path, size: int, seed: int = 14) -> int:
    """A SIE 4I file of about ``size`` bytes; returns the number of vouchers."""
    rng = random.Random(seed)
    written = 0
    vouchers = 0
    with path.open("wb") as out:
        out.write(HEAD.encode("cp437"))
        while written < size:
            vouchers += 1
            day = f"2025{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
            amounts = [Decimal(rng.randint(100, 999_999)) / 100 for _ in range(rng.randint(2, 6))]
            lines = [f'#VER A {vouchers} {day} "Z-dagrapport {vouchers}, kassa K1" {day}', "{"]
            for amount in amounts:
                center = f'{{1 "{rng.randint(100, 120)}"}}' if rng.random() < 0.4 else "{}"
                text = rng.choice(TEXTS)
                lines.append(
                    f'   #TRANS {rng.randint(1000, 8999)} {center} {amount} {day} "{text}"'
                )
            lines.append(f'   #TRANS 1910 {{}} {-sum(amounts)} {day} "Motkonto"')
            lines.append("}")
            block = ("\r\n".join(lines) + "\r\n").encode("cp437")
            out.write(block)
            written += len(block)
    return vouchers


def baseline(path: Path) -> int:
    """The plain stdlib parse: fields by whitespace (quotes not honoured), amounts as Decimal."""
    vouchers = 0
    total = Decimal(0)
    with path.open(encoding="cp437") as handle:
        for line in handle:
            fields = line.split()
            if not fields:
                continue
            label = fields[0]
            if label == "#TRANS":
                # The amount follows the object list ({} or {1 "100"}: one or more fields).
                index = 2
                while not fields[index].endswith("}"):
                    index += 1
                total += Decimal(fields[index + 1])
            elif label == "#VER":
                vouchers += 1
    assert total == 0
    return vouchers


def baseline_kept(path: Path) -> int:
    """A simple stdlib reader that keeps what it reads: fields by the csv module (quotes and
    escapes honoured), every voucher kept as its head and rows, amounts as Decimal."""
    vouchers: list[tuple[str, str, str, str, list[tuple[str, Decimal, str]]]] = []
    rows: list[tuple[str, Decimal, str]] = []
    with path.open(encoding="cp437", newline="") as handle:
        reader = csv.reader(
            handle,
            delimiter=" ",
            quotechar='"',
            escapechar="\\",
            doublequote=False,
            skipinitialspace=True,
        )
        for fields in reader:
            if not fields:
                continue
            label = fields[0]
            if label == "#TRANS":
                index = 2
                while not fields[index].endswith("}"):
                    index += 1
                text = fields[index + 3] if len(fields) > index + 3 else ""
                rows.append((fields[1], Decimal(fields[index + 1]), text))
            elif label == "#VER":
                rows = []
                vouchers.append((fields[1], fields[2], fields[3], fields[4], rows))
    assert sum(amount for v in vouchers for _a, amount, _t in v[4]) == 0
    return len(vouchers)


def stream(path: Path) -> int:
    from engine.sie import read_sie_file

    count = 0

    def seen(_voucher: object) -> None:
        nonlocal count
        count += 1

    document = read_sie_file(path, on_voucher=seen)
    assert not document.errors, document.errors[:3]
    return count


def stream_rows(path: Path) -> int:
    from engine.sie import read_sie_file

    count = 0
    total = Decimal(0)

    def used(voucher: Any) -> None:
        nonlocal count, total
        count += 1
        for row in voucher.rows:
            total += row.amount

    document = read_sie_file(path, on_voucher=used)
    assert not document.errors and total == 0, document.errors[:3]
    return count


def whole(path: Path) -> int:
    from engine.sie import read_sie_file

    document = read_sie_file(path)
    assert not document.errors, document.errors[:3]
    return len(document.vouchers)


MODES = {
    "baseline": baseline,
    "baseline_kept": baseline_kept,
    "stream": stream,
    "stream_rows": stream_rows,
    "document": whole,
}


def child(mode: str, path: Path, traced: bool) -> dict[str, Any]:
    import engine.sie  # noqa: F401  (imports are not part of the measurement)

    if traced:
        tracemalloc.start()
    start, cpu = time.perf_counter(), time.process_time()
    vouchers = MODES[mode](path)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = tracemalloc.get_traced_memory()[1] if traced else None
    return {
        "mode": mode,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "vouchers": vouchers,
        "peak_bytes": peak,
    }


def _spawn(mode: str, path: Path, traced: bool) -> dict[str, Any]:
    args = [sys.executable, "-m", "bench.sie_read", "--child", mode, "--path", str(path)]
    if traced:
        args.append("--traced")
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def run(megabytes: float = 50.0, rounds: int = 3) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sie-bench-") as folder:
        path = Path(folder) / "big.se"
        vouchers = generate(path, int(megabytes * 1_000_000))
        size = path.stat().st_size
        times: dict[str, float] = {}
        cpu: dict[str, float] = {}
        for _ in range(rounds):  # the best of a few rounds, interleaved: the machine is shared
            for mode in MODES:
                run = _spawn(mode, path, traced=False)
                assert run["vouchers"] == vouchers, (mode, run, vouchers)
                times[mode] = min(times.get(mode, float("inf")), float(run["seconds"]))
                cpu[mode] = min(cpu.get(mode, float("inf")), float(run["cpu_seconds"]))
        peaks = {mode: int(_spawn(mode, path, traced=True)["peak_bytes"]) for mode in MODES}
    return {
        "sie_read_vs_stdlib_ratio": round(times["baseline"] / times["stream"], 3),
        "sie_read_vs_stdlib_cpu_ratio": round(cpu["baseline"] / cpu["stream"], 3),
        "sie_rows_vs_stdlib_ratio": round(times["baseline"] / times["stream_rows"], 3),
        "sie_read_memory_ratio": round(peaks["stream"] / size, 4),
        "sie_document_vs_stdlib_kept_ratio": round(times["baseline_kept"] / times["document"], 3),
        "sie_document_memory_ratio": round(peaks["document"] / size, 3),
        "sie_stdlib_kept_memory_ratio": round(peaks["baseline_kept"] / size, 3),
        "sie_file_bytes": size,
        "sie_vouchers": vouchers,
        "sie_seconds": {k: round(v, 3) for k, v in times.items()},
        "sie_cpu_seconds": {k: round(v, 3) for k, v in cpu.items()},
        "sie_peak_bytes": peaks,
        "sie_mb_per_s_stream": round(size / 1e6 / times["stream"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=50.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", choices=sorted(MODES))
    parser.add_argument("--path", type=Path)
    parser.add_argument("--traced", action="store_true")
    args = parser.parse_args()
    if args.child:
        assert args.path is not None
        print(json.dumps(child(args.child, args.path, args.traced)))
        return
    print(json.dumps(run(args.mb, args.rounds), indent=2))


if __name__ == "__main__":
    os.environ.setdefault("KASSASYNC_LOG_LEVEL", "WARNING")
    main()
