"""``python -m bench`` (``make bench``): every benchmark, results in bench/results/latest.json
and a short table on stdout.

    python -m bench                 # everything, full size (about an hour on 2 cores)
    python -m bench --quick         # everything, small sizes (a smoke run, a few minutes)
    python -m bench --only replay,limiter

Each benchmark compares against a baseline measured in the same run, counts calls (which do not
depend on speed), or divides a time by a physical bound; docs/performance.md says how.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import RESULTS, machine, quiet_logs

Bench = Callable[[argparse.Namespace], dict[str, Any]]


def _replay(args: argparse.Namespace) -> dict[str, Any]:
    from bench import replay

    tenants, per_tenant = (20, 1000) if args.quick else (200, 5000)
    result = replay.run(tenants, per_tenant)
    # A smaller profiled run: pyinstrument's summary of the hot paths.
    replay.run(20, 1000 if args.quick else 2500, profile=RESULTS / "replay_profile.txt", cache=None)
    return result


def _fortnox_day(args: argparse.Namespace) -> dict[str, Any]:
    from bench import fortnox_day

    plan = fortnox_day.DayPlan(hours=1.0 if args.quick else 10.0)
    return fortnox_day.run(plan)


def _limiter(args: argparse.Namespace) -> dict[str, Any]:
    seconds = "15" if args.quick else "60"
    out = subprocess.run(
        [sys.executable, "-m", "bench.limiter", "--seconds", seconds],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def _latency(args: argparse.Namespace) -> dict[str, Any]:
    from bench import kafka_latency, latency

    result = latency.run(samples=40 if args.quick else 150)
    try:
        kafka = kafka_latency.run(samples=30 if args.quick else 100)
    except Exception as failed:  # the broker or the worker could not be started here
        result["latency_ms_p99_kafka"] = None
        result["latency_kafka_reason"] = f"{KAFKA_REASON}: {type(failed).__name__}: {failed}"
        return result
    for key in ("latency_ms_p99_kafka", "latency_ms_p99_kafka_2s_window", "kafka"):
        result[key] = kafka[key]
    result["kafka_2s_window"] = kafka["kafka_2s_window"]
    return result


def _scale(args: argparse.Namespace) -> dict[str, Any]:
    from bench import scale

    if args.quick:
        return scale.run((2, 20), messages=10_000, rounds=1)
    return scale.run((10, 1000), messages=60_000, rounds=2)


def _initial_sync(args: argparse.Namespace) -> dict[str, Any]:
    from bench import initial_sync

    return initial_sync.run(
        20_000 if args.quick else 100_000, profile=RESULTS / "initial_sync_profile.txt"
    )


def _sie_read(args: argparse.Namespace) -> dict[str, Any]:
    from bench import sie_read

    return sie_read.run(5.0 if args.quick else 50.0, rounds=1 if args.quick else 3)


def _stock_contention(args: argparse.Namespace) -> dict[str, Any]:
    from bench import stock_contention

    return stock_contention.run(seconds=20.0 if args.quick else 60.0)


def _retention(args: argparse.Namespace) -> dict[str, Any]:
    from bench import retention

    return retention.run(tenants=1 if args.quick else 2, days=7)


def _state_size(args: argparse.Namespace) -> dict[str, Any]:
    from bench import state_size

    return state_size.run(1_000 if args.quick else 10_000)


def _kafka_throughput(args: argparse.Namespace) -> dict[str, Any]:
    from bench import kafka_throughput

    tenants = 20 if args.quick else 200
    try:
        return kafka_throughput.run(tenants, 20, 80)
    except Exception as failed:  # the broker or the worker could not be started here
        return {
            "kafka_vs_embedded_throughput": None,
            "kafka_throughput_reason": f"{KAFKA_REASON}: {type(failed).__name__}: {failed}",
        }


KAFKA_REASON = "not measured: the Kafka broker or worker did not start on this machine"

BENCHES: dict[str, Bench] = {
    "replay": _replay,
    "fortnox_day": _fortnox_day,
    "limiter": _limiter,
    "latency": _latency,
    "scale": _scale,
    "initial_sync": _initial_sync,
    "sie_read": _sie_read,
    "stock_contention": _stock_contention,
    "retention": _retention,
    "state_size": _state_size,
    "kafka_throughput": _kafka_throughput,
}

#: (key, target text, check) for the table and the ``targets`` section: issue 15's table (its
#: targets as the issue states them), then the targets of issue 16 and the SIE reader.
TARGETS: list[tuple[str, str, Callable[[dict[str, Any]], bool | None]]] = [
    ("latency_ms_p99_embedded", "< 300", lambda r: _lt(r.get("latency_ms_p99_embedded"), 300)),
    ("latency_ms_p99_kafka", "< 1000", lambda r: _lt(r.get("latency_ms_p99_kafka"), 1000)),
    (
        "replay_vs_inmemory_ratio",
        ">= 0.8",
        lambda r: _ge(r.get("replay_vs_inmemory_ratio"), 0.8),
    ),
    ("replay_vs_decode_ratio", ">= 0.15", lambda r: _ge(r.get("replay_vs_decode_ratio"), 0.15)),
    (
        "store_growth_day7_vs_day1",
        "<= 1.2",
        lambda r: _le(r.get("store_growth_day7_vs_day1"), 1.2),
    ),
    (
        "store_bytes_per_retained_input_event",
        "<= 800",
        lambda r: _le(r.get("store_bytes_per_retained_input_event"), 800),
    ),
    ("state_bytes_per_article", "<= 400", lambda r: _le(r.get("state_bytes_per_article"), 400)),
    (
        "per_event_cost_ratio_1000_vs_10",
        "<= 1.5",
        lambda r: _le(r.get("per_event_cost_ratio_1000_vs_10"), 1.5),
    ),
    (
        "kafka_vs_embedded_throughput",
        ">= 0.5",
        lambda r: _ge(r.get("kafka_vs_embedded_throughput"), 0.5),
    ),
    (
        "fortnox_calls",
        "<= 1.1 x lower bound",
        lambda r: _le(r.get("fortnox_calls"), _mul(r.get("fortnox_calls_lower_bound"), 1.1)),
    ),
    (
        "naive_vs_kassasync_at_equal_freshness",
        ">= 40",
        lambda r: _ge(r.get("naive_vs_kassasync_at_equal_freshness"), 40),
    ),
    ("limiter_utilisation", ">= 0.95", lambda r: _ge(r.get("limiter_utilisation"), 0.95)),
    (
        "limiter_429s",
        "== 0",
        lambda r: None if r.get("limiter_429s") is None else r["limiter_429s"] == 0,
    ),
    ("initial_sync_vs_bound", "<= 1.1", lambda r: _le(r.get("initial_sync_vs_bound"), 1.1)),
    ("sie_read_vs_stdlib_ratio", ">= 1.0", lambda r: _ge(r.get("sie_read_vs_stdlib_ratio"), 1.0)),
    ("sie_read_memory_ratio", "<= 4.0", lambda r: _le(r.get("sie_read_memory_ratio"), 4.0)),
    (
        "stock_lost_units_per_1000_webshop_sales",
        "<= 4.6 (10 x below issue 16's 46)",
        lambda r: _le(r.get("stock_lost_units_per_1000_webshop_sales"), 4.6),
    ),
    (
        "stock_lost_units_per_1000_webshop_sales_warehouse",
        "== 0",
        lambda r: _le(r.get("stock_lost_units_per_1000_webshop_sales_warehouse"), 0.0),
    ),
    (
        "stock_overwrites_detected_ratio",
        "== 1.0",
        lambda r: _ge(r.get("stock_overwrites_detected_ratio"), 1.0),
    ),
]

HEADLINE = [
    "replay_events_per_s",
    "replay_vs_decode_ratio",
    "replay_vs_inmemory_ratio",
    "fortnox_calls",
    "fortnox_calls_lower_bound",
    "fortnox_calls_vs_lower_bound",
    "fortnox_calls_naive",
    "naive_vs_kassasync_at_equal_freshness",
    "limiter_utilisation",
    "limiter_429s",
    "latency_ms_p50_embedded",
    "latency_ms_p99_embedded",
    "latency_ms_p99_kafka",
    "latency_ms_p99_embedded_2s_window",
    "latency_ms_p99_kafka_2s_window",
    "rss_mb_1000_tenants",
    "per_event_cost_ratio_1000_vs_10",
    "initial_sync_vs_bound",
    "sie_read_vs_stdlib_ratio",
    "sie_read_memory_ratio",
    "sie_document_vs_stdlib_kept_ratio",
    "stock_lost_units_per_1000_webshop_sales",
    "stock_lost_units_per_1000_webshop_sales_warehouse",
    "stock_lost_units_per_1000_webshop_sales_baseline",
    "stock_overwrites_detected_ratio",
    "store_growth_day7_vs_day1",
    "store_growth_day7_vs_day1_baseline",
    "store_bytes_per_retained_input_event",
    "store_bytes_per_retained_input_event_baseline",
    "state_bytes_per_article",
    "kafka_vs_embedded_throughput",
]


def _mul(value: Any, factor: float) -> float | None:
    return None if value is None else float(value) * factor


def _ge(value: Any, bound: float | None) -> bool | None:
    return None if value is None or bound is None else float(value) >= bound


def _lt(value: Any, bound: float) -> bool | None:
    return None if value is None else float(value) < bound


def _le(value: Any, bound: float | None) -> bool | None:
    return None if value is None or bound is None else float(value) <= bound


def table(result: dict[str, Any]) -> str:
    targets = {key: (text, check(result)) for key, text, check in TARGETS}
    lines = [f"{'metric':50} {'value':>14}  target"]
    for key in HEADLINE:
        value = result.get(key)
        shown = "null" if value is None else f"{value:,}" if isinstance(value, int) else str(value)
        text, ok = targets.get(key, ("", None))
        mark = "" if ok is None else ("  ok" if ok else "  MISSED")
        lines.append(f"{key:50} {shown:>14}  {text}{mark}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--only", default="", help="comma-separated: " + ",".join(BENCHES))
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the other benchmarks' results already in --out (with --only)",
    )
    args = parser.parse_args()
    quiet_logs()
    chosen = [b for b in args.only.split(",") if b] or list(BENCHES)
    unknown = [b for b in chosen if b not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    started = time.monotonic()
    result: dict[str, Any] = {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine(),
        "git": _git(),
    }
    details: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    earlier: dict[str, Any] = {}
    if args.merge and args.out.exists():
        # The other benchmarks' figures stay as they were measured (with their own machine
        # and git records, under ``merged_from``).
        earlier = json.loads(args.out.read_text())
        details = {k: v for k, v in earlier.get("details", {}).items() if k not in chosen}
        seconds = {k: v for k, v in earlier.get("seconds", {}).items() if k not in chosen}
        seconds.pop("total", None)
        for name, out in details.items():
            _headline(result, name, out)
        result["merged_from"] = {
            "generated_at": earlier.get("generated_at"),
            "git": earlier.get("git"),
            "benchmarks": sorted(details),
        }
    for name in chosen:
        t0 = time.monotonic()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        try:
            out = BENCHES[name](args)
        except Exception as failed:  # one broken benchmark must not lose the others' figures
            out = {"error": f"{type(failed).__name__}: {failed}"}
        seconds[name] = round(time.monotonic() - t0, 1)
        print(f"[bench] {name} done in {seconds[name]} s", file=sys.stderr, flush=True)
        details[name] = out
        _headline(result, name, out)
    _derived(result, details)
    # Records no benchmark writes (notes on figures merged by hand, with their provenance) stay.
    for key, value in earlier.items():
        if key not in result and key not in HEADLINE and key not in ("targets", "seconds"):
            result[key] = value
    result["targets"] = {
        key: {"target": text, "met": check(result)} for key, text, check in TARGETS
    }
    result["seconds"] = {**seconds, "total": round(time.monotonic() - started, 1)}
    result["details"] = details
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(table(result))
    print(f"total {result['seconds']['total']} s -> {args.out}")


def _headline(result: dict[str, Any], name: str, out: dict[str, Any]) -> None:
    """Copy one benchmark's headline keys to the top of the results."""
    for key in HEADLINE:
        if key in out:
            result[key] = out[key]
    if name == "latency" and out.get("latency_kafka_reason"):
        result["latency_kafka_reason"] = out["latency_kafka_reason"]
    if name == "kafka_throughput" and out.get("kafka_throughput_reason"):
        result["kafka_throughput_reason"] = out["kafka_throughput_reason"]


def _derived(result: dict[str, Any], details: dict[str, Any]) -> None:
    """Figures made of two benchmarks' results: the day's calls over their lower bound, and the
    calls-versus-freshness curve (the day's calls, Kassasync's freshness from the latency
    benchmark's p99)."""
    calls, bound = result.get("fortnox_calls"), result.get("fortnox_calls_lower_bound")
    if calls is not None and bound:
        result["fortnox_calls_vs_lower_bound"] = round(calls / bound, 4)
    day = details.get("fortnox_day") or {}
    p99 = result.get("latency_ms_p99_embedded")
    if "naive" not in day or p99 is None:
        return
    from bench.fortnox_day import freshness_curve

    curve = freshness_curve(day, float(p99) / 1000)
    result["calls_vs_freshness"] = curve
    result["naive_vs_kassasync_at_equal_freshness"] = curve["naive_vs_kassasync_at_equal_freshness"]


def _git() -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return {}
    return {"head": head, "working_tree_changes": len(dirty.splitlines()), "pid": os.getpid()}


if __name__ == "__main__":
    main()
