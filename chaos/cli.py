"""``python -m chaos``: one JSON line per runtime; exit status 1 if any figure is not zero."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chaos.run import note, report, run_once
from chaos.targets import EmbeddedTarget, KafkaTarget, OwnBroker
from chaos.workload import generate
from engine.secrets import generate_key

DEFAULT_SEED = 20261121
FIGURES = ("duplicates", "lost_movements", "lost_events", "drift")


async def measure(
    runtime: str,
    *,
    kills: int,
    seed: int = DEFAULT_SEED,
    tenants: int = 3,
    scale: int = 1,
    work: Path,
    kafka_port: int = 19592,
    settle_timeout: float = 240.0,
    overlap: bool = True,
    rate_window: float = 5.0,
    stock_mode: str = "warehouse_documents",
) -> tuple[dict[str, Any], list[str]]:
    """Run the workload of ``seed`` uninterrupted, then with ``kills`` kills; compare."""
    workload = generate(seed, tenants, scale, overlap=overlap, stock_mode=stock_mode)
    work.mkdir(parents=True, exist_ok=True)
    key = generate_key()
    broker = OwnBroker(kafka_port, work / "broker.log") if runtime == "kafka" else None
    if broker is not None:
        await asyncio.to_thread(broker.start)
    try:

        def target(name: str) -> EmbeddedTarget | KafkaTarget:
            if broker is None:
                return EmbeddedTarget(work / name, key)
            return KafkaTarget(work / name, key, broker)

        note(f"{runtime}: {workload.events} events, {tenants} tenants; uninterrupted run")
        reference = await run_once(
            target("uninterrupted"),
            workload,
            kills=0,
            seed=seed,
            settle_timeout=settle_timeout,
            rate_window=rate_window,
        )
        note(f"{runtime}: uninterrupted run took {reference.seconds:.0f}s; run with {kills} kills")
        chaos_run = await run_once(
            target("killed"),
            workload,
            kills=kills,
            seed=seed,
            disturb=broker is not None,
            settle_timeout=settle_timeout,
            rate_window=rate_window,
        )
    finally:
        if broker is not None:
            await asyncio.to_thread(broker.stop)
    line, details = report(runtime, workload, chaos_run, reference, work)
    (work / f"{runtime}-details.txt").write_text("\n".join(details) + "\n", encoding="utf-8")
    return line, details


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--kills", type=int, default=50, help="kills per runtime (default 50)")
    parser.add_argument("--runtime", choices=["embedded", "kafka", "both"], default="both")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--tenants", type=int, default=3)
    parser.add_argument("--scale", type=int, default=1, help="workload size multiplier")
    parser.add_argument("--work", type=Path, default=None, help="logs and data (default: temp)")
    parser.add_argument(
        "--kafka-port",
        type=int,
        default=int(os.environ.get("KASSASYNC_CHAOS_KAFKA_PORT", "19592")),
        help="port of the harness's own broker (it is restarted during the run)",
    )
    parser.add_argument("--settle-timeout", type=float, default=240.0)
    parser.add_argument(
        "--rate-window",
        type=float,
        default=5.0,
        help="window of the sandbox's (and the engine's) 25 requests; Fortnox's is 5 s",
    )
    parser.add_argument(
        "--overlap",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the webshop also sells the till's articles (default; --no-overlap: other articles)",
    )
    parser.add_argument(
        "--stock-mode",
        choices=["warehouse_documents", "quantity"],
        default="warehouse_documents",
        help="Fortnox Lager with warehouse documents (default, the recommended setting), or "
        "absolute QuantityInStock writes (a webshop sale inside a write's window can be lost)",
    )
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="kassasync-chaos-"))
    runtimes = ["embedded", "kafka"] if args.runtime == "both" else [args.runtime]
    clean = True
    for runtime in runtimes:
        line, details = asyncio.run(
            measure(
                runtime,
                kills=args.kills,
                seed=args.seed,
                tenants=args.tenants,
                scale=args.scale,
                work=work / runtime,
                kafka_port=args.kafka_port,
                settle_timeout=args.settle_timeout,
                overlap=args.overlap,
                rate_window=args.rate_window,
                stock_mode=args.stock_mode,
            )
        )
        print(json.dumps(line), flush=True)
        for item in details[:30]:
            note(item)
        clean = clean and not any(line[f] for f in FIGURES) and line["uninterrupted_clean"]
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
