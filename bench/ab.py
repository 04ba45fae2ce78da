"""A/B runs for commit messages: the replay benchmark with some engine modules swapped for other
versions of their source (say, the committed one), alternating A and B in fresh processes.

    git show HEAD:engine/store/state.py > /tmp/state_before.py
    python -m bench.ab --swap engine.store.state=/tmp/state_before.py --rounds 2

Each process runs ``bench.replay`` on the same generated log; the output lists every run's
replay figures, labelled ``A`` (swapped: before) and ``B`` (the working tree: after).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def _swap(specs: list[str]) -> None:
    for spec in specs:
        name, _, path = spec.partition("=")
        module_spec = importlib.util.spec_from_file_location(name, Path(path))
        if module_spec is None or module_spec.loader is None:
            raise SystemExit(f"cannot load {path}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)


def child(args: argparse.Namespace) -> None:
    _swap(args.swap or [])
    from bench import replay

    result = replay.run(args.tenants, args.per_tenant, batch=args.batch)
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--swap", action="append", help="module=path of the A version")
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--per-tenant", type=int, default=2500)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    base = [
        sys.executable,
        "-m",
        "bench.ab",
        "--child",
        "--tenants",
        str(args.tenants),
        "--per-tenant",
        str(args.per_tenant),
        "--batch",
        str(args.batch),
    ]
    runs: list[dict[str, Any]] = []
    for _ in range(args.rounds):
        for label in ("A", "B"):
            cmd = list(base)
            if label == "A":
                for spec in args.swap or []:
                    cmd += ["--swap", spec]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            keep = (
                "replay_events_per_s",
                "replay_vs_decode_ratio",
                "replay_vs_decode_ratio_cpu",
                "replay_cpu_seconds",
                "commands",
                "commands_digest",
                "state_rows",
            )
            row = {"variant": label, **{k: result[k] for k in keep}}
            runs.append(row)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
