"""Scale: the processor's cost per message with 1,000 tenants of 10,000 articles in the store,
against the same with 10 tenants, and its peak memory.

Setup (not timed), once per tenant count:

1. a template tenant is built the normal way: its settings and a first full Fortnox pass over
   10,000 articles (80 % stock goods) through the processor, every command settled as an
   executor would (``bench.record``), then a tick that flushes everything: a tenant in sync;
2. the template's state is copied to ``tenants - 1`` more tenants (SQL ``INSERT ... SELECT``):
   1,000 tenants hold some 66 million records, a 2.5 GB database.

Measured, in a fresh process per run (so ``ru_maxrss`` is that run's peak): the processor over
``messages`` new messages on the log (:func:`stream`), the same number for every tenant, each
about a different one of its stock articles: 80 % till stock movements, 20 % Fortnox article
changes (a price change read by a poll), and a tick for a tenant after every 10th message to it
(so the work per message does not depend on how many tenants share the stream). Before the
clock starts, the processor handles a warm-up (:func:`warm_up`) that brings each tenant's own
records into memory as in a running engine, and writes its state. Each run
reports the messages it appended and processed and the commands they made, and :func:`run`
fails unless both tenant counts processed as many messages and made as many commands (within
2 %). Runs alternate 10 and 1,000 tenants, each on a copy of the store as built.

``per_event_cost_ratio_1000_vs_10`` = (time per message with 1,000 tenants) / (with 10).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import Stopwatch, current_rss_mb, peak_rss_mb, quiet_logs
from bench.gen import SETTINGS, START, _article, envelope, tenant_id
from bench.record import record
from bench.replay import append
from engine.embedded.processor import BatchResult, Processor
from engine.store.db import Database
from engine.store.packing import StateTable

ARTICLES = 10_000
TEMPLATE = tenant_id(0)
#: The article the warm-up's messages are about (a stock good: bench.gen makes every fifth a
#: service); the measured stream leaves it out.
WARM_ARTICLE = "A000001"


def _payload(msg: dict[str, Any]) -> bytes:
    return json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode()


def _envelope(
    i: int, tenant: str, at: dt.datetime, source: str, type_: str, data: dict[str, Any]
) -> dict[str, Any]:
    msg_id = f"{type_.rsplit('.', 1)[-1]}-{tenant}-{i}"
    return envelope(msg_id, tenant, at, source, type_, data)


def _template_messages(articles: int) -> Iterator[tuple[str, str, bytes]]:
    rng = random.Random(3)
    at = START
    step = dt.timedelta(milliseconds=5)
    yield (
        "sync.control",
        TEMPLATE,
        _payload(
            _envelope(
                0,
                TEMPLATE,
                at,
                "operator",
                "sync.settings.changed",
                {"settings": SETTINGS},
            )
        ),
    )
    for n in range(1, articles + 1):
        at += step
        data = {
            "article": _article(0, n, rng, rng.randint(1000, 99900)),
            "observed": {"via": "full_sync", "seq": n, "sync_pass": "articles-template"},
        }
        yield (
            "fortnox.changes",
            TEMPLATE,
            _payload(_envelope(n, TEMPLATE, at, "fortnox", "fortnox.article.changed", data)),
        )
    at += step
    done = {"resource": "articles", "sync_pass": "articles-template", "count": articles}
    yield (
        "fortnox.changes",
        TEMPLATE,
        _payload(_envelope(0, TEMPLATE, at, "fortnox", "fortnox.sync.completed", done)),
    )
    # after the flush window: everything dirty is written out
    yield (
        "sync.control",
        TEMPLATE,
        _payload(
            _envelope(1, TEMPLATE, at + dt.timedelta(minutes=1), "kassasync", "sync.tick", {})
        ),
    )


def build(path: Path, tenants: int, articles: int = ARTICLES) -> dict[str, Any]:
    """A database whose state holds ``tenants`` copies of the template tenant."""
    t0 = time.perf_counter()
    db = Database(path)
    record(db, append, _template_messages(articles))
    rows = sum(StateTable(db.conn).counts(TEMPLATE).values())
    db.close()
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA cache_size=-262144")
    conn.execute("CREATE TEMP TABLE clones (id TEXT PRIMARY KEY)")
    conn.executemany("INSERT INTO clones VALUES (?)", [(tenant_id(i),) for i in range(1, tenants)])
    conn.execute("BEGIN")
    conn.execute(
        "INSERT INTO state (tenant, family, key, kinds, value) "
        "SELECT c.id, s.family, s.key, s.kinds, s.value "
        "FROM clones c CROSS JOIN state s WHERE s.tenant = ? ORDER BY c.id, s.family, s.key",
        (TEMPLATE,),
    )
    conn.execute("COMMIT")
    conn.execute("PRAGMA journal_mode=WAL")
    size = path.stat().st_size
    conn.close()
    return {
        "tenants": tenants,
        "records_per_tenant": rows,
        "records": rows * tenants,
        "db_gb": round(size / 1e9, 2),
        "build_seconds": round(time.perf_counter() - t0, 1),
    }


def stream(
    tenants: int, messages: int, articles: int, round_: int = 1
) -> Iterator[tuple[str, str, bytes]]:
    """The measured messages of run ``round_`` (each round continues the last one's history).

    Every tenant gets the same number of messages (``messages / tenants``, a multiple of 10, so
    each tenant's last message is followed by its tick and nothing is left unflushed), each
    about a different one of its stock articles (drawn without replacement), in one shuffled
    order. So both tenant counts do the same work per message: with articles drawn with
    replacement, 10 tenants met the same article again for a quarter of their messages (held
    in memory, and coalesced with a stock write still in flight, since no executor settles it)
    and 1,000 tenants almost never."""
    per_tenant, rest = divmod(messages, tenants)
    # bench.gen's stock goods but the warm-up's
    stock_goods = [n for n in range(2, articles + 1) if n % 5 != 0]
    if rest or per_tenant % 10 or per_tenant > len(stock_goods):
        raise ValueError(
            f"{messages} messages do not split into {tenants} tenants x a multiple of 10 "
            f"messages of at most {len(stock_goods)} different articles"
        )
    rng = random.Random(5 + round_)
    # The j-th message's kind, delta and price do not depend on the tenant count.
    kinds = random.Random(7 + round_)
    drawn = {t: rng.sample(stock_goods, per_tenant) for t in range(tenants)}
    order = [t for t in range(tenants) for _ in range(per_tenant)]
    rng.shuffle(order)
    at = START + dt.timedelta(hours=2 * round_)
    step = dt.timedelta(milliseconds=20)
    counts: dict[str, int] = {}
    seq = 10 * articles * round_
    for j, t in enumerate(order):
        i = round_ * 10_000_000 + j
        at += step
        tenant = tenant_id(t)
        n = drawn[t].pop()
        if kinds.random() < 0.8:
            data: dict[str, Any] = {
                "article_number": f"A{n:06d}",
                "movement_id": f"mv-{i}",
                "delta": (delta := kinds.choice(("-1", "-2", "3"))),
                "reason": "sale" if delta.startswith("-") else "delivery",
            }
            msg = _envelope(i, tenant, at, "till", "till.stock.movement", data)
            yield "till.events", tenant, _payload(msg)
        else:
            seq += 1
            data = {
                "article": _article(0, n, kinds, kinds.randint(1000, 99900)),
                "observed": {"via": "poll", "seq": seq, "sync_pass": None},
            }
            msg = _envelope(i, tenant, at, "fortnox", "fortnox.article.changed", data)
            yield "fortnox.changes", tenant, _payload(msg)
        count = counts.get(tenant, 0) + 1
        counts[tenant] = count
        if count % 10 == 0:
            tick = _envelope(i, tenant, at + dt.timedelta(seconds=3), "kassasync", "sync.tick", {})
            yield "sync.control", tenant, _payload(tick)


def warm_up(tenants: int, articles: int, round_: int = 1) -> Iterator[tuple[str, str, bytes]]:
    """What the processor handles before run ``round_``'s clock starts: per tenant a stock
    movement and a Fortnox change of :data:`WARM_ARTICLE` (which :func:`stream` never uses),
    then a tick. A running engine holds each tenant's own records (its settings, sync state,
    dirty set, movement ids) in memory; a fresh process reads them at the tenant's first
    messages. Without this, 10 tenants paid that once per 6,600 measured messages and 1,000
    tenants once per 66 (12,019 reads of absent dirty records alone against 117)."""
    rng = random.Random(round_)
    at = START + dt.timedelta(hours=2 * round_) - dt.timedelta(minutes=1)
    n = int(WARM_ARTICLE[1:])
    for t in range(tenants):
        tenant = tenant_id(t)
        i = round_ * 10_000_000 - 1 - t
        movement = {
            "article_number": WARM_ARTICLE,
            "movement_id": f"mv-{i}",
            "delta": "-1",
            "reason": "sale",
        }
        msg = _envelope(i, tenant, at, "till", "till.stock.movement", movement)
        yield "till.events", tenant, _payload(msg)
        change = {
            "article": _article(0, n, rng, rng.randint(1000, 99900)),
            "observed": {"via": "poll", "seq": 10 * articles * round_, "sync_pass": None},
        }
        msg = _envelope(i, tenant, at, "fortnox", "fortnox.article.changed", change)
        yield "fortnox.changes", tenant, _payload(msg)
        tick = _envelope(i, tenant, at + dt.timedelta(seconds=3), "kassasync", "sync.tick", {})
        yield "sync.control", tenant, _payload(tick)


def measure(path: Path, tenants: int, messages: int, articles: int, round_: int) -> dict[str, Any]:
    """Append the warm-up and the stream to the database's log, let the processor handle the
    warm-up, then time it over the stream."""
    quiet_logs()
    db = Database(path)
    warm = append(db, warm_up(tenants, articles, round_))
    total = append(db, stream(tenants, messages, articles, round_))
    commands = 0

    def count(result: BatchResult) -> None:
        nonlocal commands
        commands += result.commands

    processor = Processor(db)
    warmed = 0
    while warmed < warm:
        result = processor.step(limit=min(1000, warm - warmed))
        if not result.processed:
            raise RuntimeError(f"the warm-up stopped after {warmed} of {warm} messages")
        warmed += result.processed
    # Its state written too (a backlog's write is due every few seconds: that of the warm-up
    # would otherwise fall in the measured span, 3,000 messages' worth with 1,000 tenants).
    processor.write_state()
    processor.on_batch = count
    rss_before = current_rss_mb()
    watch = Stopwatch()
    processed = 0
    with watch:
        while processed < total:
            result = processor.step(limit=1000)
            if not result.processed and not result.dead_letters:
                break
            processed += result.processed + result.dead_letters
    rss_after = current_rss_mb()
    db.close()
    return {
        "tenants": tenants,
        "appended": total,
        "messages": processed,
        "commands": commands,
        "seconds": round(watch.wall, 3),
        "cpu_seconds": round(watch.cpu, 3),
        "us_per_message": round(watch.wall / processed * 1e6, 1),
        "cpu_us_per_message": round(watch.cpu / processed * 1e6, 1),
        "rss_before_mb": round(rss_before, 1),
        "rss_after_mb": round(rss_after, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def _child(args: argparse.Namespace) -> None:
    print(
        json.dumps(measure(Path(args.db), args.tenants, args.messages, args.articles, args.round))
    )


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _same_work(runs: list[dict[str, Any]]) -> None:
    """Fail unless the runs of a round processed as many messages and made about as many
    commands (the 80/20 draws differ a little between tenant counts)."""
    messages = {x["tenants"]: x["messages"] for x in runs}
    commands = {x["tenants"]: x["commands"] for x in runs}
    if len(set(messages.values())) != 1:
        raise RuntimeError(f"the runs processed unequal messages: {messages}")
    if max(commands.values()) > 1.02 * min(commands.values()):
        raise RuntimeError(f"the runs made unequal commands: {commands}")


def run(
    tenants: tuple[int, int] = (10, 1000),
    messages: int = 60_000,
    articles: int = ARTICLES,
    rounds: int = 2,
    data_dir: Path | None = None,
) -> dict[str, Any]:
    quiet_logs()
    small, big = tenants
    with tempfile.TemporaryDirectory(dir=data_dir) as tmp:
        builds: dict[int, dict[str, Any]] = {}
        runs: list[dict[str, Any]] = []
        for count in (small, big):
            base = Path(tmp) / f"scale-{count}.db"
            builds[count] = build(base, count, articles)
        for r in range(rounds):
            for count in (small, big):
                # Each round starts from a copy of the store as built (tenants in sync): on the
                # store a round left, the commands it left in flight (no executor settles them)
                # held back the next round's writes to the same articles, which 10 tenants meet
                # again and 1,000 do not (41,277 commands against 71,598 in a second round).
                path = Path(tmp) / f"scale-{count}-round.db"
                shutil.copyfile(Path(tmp) / f"scale-{count}.db", path)
                _sync(path)  # the copy's write-back is not left to the measured span
                out = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "bench.scale",
                        "--child",
                        "--db",
                        str(path),
                        "--tenants",
                        str(count),
                        "--messages",
                        str(messages),
                        "--articles",
                        str(articles),
                        "--round",
                        str(r + 1),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
                result = json.loads(out.strip().splitlines()[-1])
                result["round"] = r + 1
                runs.append(result)
            _same_work([x for x in runs if x["round"] == r + 1])
    cost = {
        count: sum(x["seconds"] for x in runs if x["tenants"] == count)
        / sum(x["messages"] for x in runs if x["tenants"] == count)
        for count in (small, big)
    }
    cpu = {
        count: sum(x["cpu_seconds"] for x in runs if x["tenants"] == count)
        / sum(x["messages"] for x in runs if x["tenants"] == count)
        for count in (small, big)
    }
    return {
        "rss_mb_1000_tenants": max(x["peak_rss_mb"] for x in runs if x["tenants"] == big),
        "per_event_cost_ratio_1000_vs_10": round(cost[big] / cost[small], 4),
        "per_event_cpu_ratio_1000_vs_10": round(cpu[big] / cpu[small], 4),
        "builds": list(builds.values()),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--db", default="")
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--small", type=int, default=10)
    parser.add_argument("--messages", type=int, default=60_000)
    parser.add_argument("--articles", type=int, default=ARTICLES)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--round", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    result = run((args.small, args.tenants), args.messages, args.articles, args.rounds)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
