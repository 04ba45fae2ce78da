"""Replay throughput: the embedded processor over a pre-filled SQLite log, into an empty store,
against a decode-only baseline over the same messages in the same run.

Setup (not timed): ``bench.gen`` writes ``--tenants`` × ``--per-tenant`` messages straight into
the log tables of a fresh database (the same rows ``Log.append`` writes, one global sequence).

Measured, interleaved slice by slice so that noise from other processes hits both alike:

* decode: ``registry.parse`` (parse and validate) of each payload of the slice, nothing else;
  the payloads are read from the log before the clock starts;
* in memory (``InMemory``): the same reconcilers (``engine.core.process``) over the same
  payloads, each tenant's state a dict of records indexed by kind and by due time, nothing
  written anywhere: what the reconcilers alone cost;
* replay: ``Processor.step`` until the slice has been consumed (read the log, parse, reconcile,
  write state, commands, outbox, wake-ups and offsets in one transaction per batch).

``replay_vs_decode_ratio`` = decode time / replay time (1.0 would mean that replaying costs no
more than decoding); ``replay_vs_inmemory_ratio`` = in-memory time / replay time (1.0: the
engine's store costs nothing over the reconcilers). Both wall and CPU time are reported; the
headlines use wall time. Each pass counts the messages it really handled, and the run fails
unless every pass handled every message on the log and both made the same number of commands.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Stopwatch, quiet_logs
from bench.gen import generate
from bench.record import copy_reconciled_log, record
from engine.core.process import Inbound, Outcome, process
from engine.embedded.processor import Processor
from engine.store.compact import payload_of
from engine.store.db import Database, log_table
from engine.store.log import stored_row
from reconcilers.state import MemoryState, Record
from topics import registry
from topics.names import RECONCILED_TOPICS, Topic

DECODE_REPEAT = 3

#: Where recorded logs are kept between runs (git-ignored).
CACHE = Path(__file__).resolve().parent.parent / "var" / "bench"


def append(db: Database, messages: Iterable[tuple[str, str, bytes]]) -> int:
    """Append ``messages`` (topic, tenant, payload) to the log tables as ``Log.append_raw``
    would, continuing the database's sequence, in one transaction; returns how many."""
    conn = db.conn
    rows: dict[str, list[tuple[Any, ...]]] = {}
    count = 0
    with db.transaction():
        row = conn.execute("SELECT value FROM meta WHERE name = 'seq'").fetchone()
        seq = int(row[0]) if row else 0
        for topic, tenant, payload in messages:
            seq += 1
            count += 1
            kind, msg_id, at = _meta(payload)
            rows.setdefault(topic, []).append(stored_row(seq, tenant, kind, msg_id, at, payload))
        for topic, batch in rows.items():
            conn.executemany(
                f"INSERT INTO {log_table(Topic(topic))} "
                "(seq, tenant, type, msg_id, at, payload) VALUES (?, ?, ?, ?, ?, ?)",
                batch,
            )
        conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('seq', ?)", (str(seq),))
    return count


def fill(db: Database, messages: Iterable[tuple[str, str, bytes]], chunk: int = 20_000) -> int:
    """Write ``messages`` to the log tables in chunks; returns how many."""
    total = 0
    batch: list[tuple[str, str, bytes]] = []
    for item in messages:
        batch.append(item)
        if len(batch) >= chunk:
            total += append(db, batch)
            batch = []
    if batch:
        total += append(db, batch)
    return total


def _fingerprint(tenants: int, per_tenant: int) -> str:
    """What the recorded log depends on: the generator, the recorder, the reconcilers, the
    contract and the store (a change to any of them records the log again)."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.blake2b(f"{tenants}x{per_tenant}".encode(), digest_size=12)
    for pattern in (
        "bench/gen.py",
        "bench/record.py",
        "reconcilers/*.py",
        "topics/*.py",
        "engine/store/*.py",
        "engine/embedded/processor.py",
    ):
        for path in sorted(root.glob(pattern)):
            digest.update(path.read_bytes())
    return digest.hexdigest()


def recorded_log(tenants: int, per_tenant: int, cache: Path) -> tuple[Path, dict[str, Any]]:
    """A database whose log holds the generated inputs and their outcomes (``bench.record``),
    recorded once and kept in ``cache`` (var/bench by default) while its inputs are the same."""
    cache.mkdir(parents=True, exist_ok=True)
    key = _fingerprint(tenants, per_tenant)
    path = cache / f"recorded-{key}.db"
    meta = cache / f"recorded-{key}.json"
    if path.exists() and meta.exists():
        return path, {**json.loads(meta.read_text()), "cached": True}
    for old in cache.glob("recorded-*"):
        old.unlink()
    t0 = time.perf_counter()
    db = Database(path)
    counts = record(db, append, generate(tenants, per_tenant))
    db.close()
    info = {**counts, "record_seconds": round(time.perf_counter() - t0, 1)}
    meta.write_text(json.dumps(info))
    return path, {**info, "cached": False}


def _meta(payload: bytes) -> tuple[str, str, str]:
    """(type, id, occurred_at as isoformat) of a generated payload."""
    obj = json.loads(payload)
    at = str(obj["occurred_at"])
    iso = at[:-1] + "+00:00" if at.endswith("Z") else at
    return str(obj["type"]), str(obj["id"]), iso


class Floor:
    """What any engine that keeps per-entity state in SQLite pays at the least, per message:
    parse and validate it, read one record, write it back, one transaction per batch. Measured
    beside the decode baseline: the replay can come no closer to decoding than this floor does.
    (One record per tenant and message type: a table that stays in SQLite's cache, so the floor
    is an optimistic one.)"""

    def __init__(self, path: Path, batch: int) -> None:
        self.db = Database(path)
        self.db.conn.execute(
            "CREATE TABLE IF NOT EXISTS floor (k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID"
        )
        self.batch = batch

    def run(self, payloads: list[Logged]) -> None:
        conn = self.db.conn
        for start in range(0, len(payloads), self.batch):
            with self.db.transaction():
                for item in payloads[start : start + self.batch]:
                    payload = item.payload
                    message = registry.parse(payload)
                    key = f"{message.tenant}:{message.type}"  # type: ignore[attr-defined]
                    conn.execute("SELECT v FROM floor WHERE k = ?", (key,)).fetchone()
                    conn.execute(
                        "INSERT OR REPLACE INTO floor (k, v) VALUES (?, ?)", (key, payload)
                    )


class IndexedState(MemoryState):
    """A tenant's records in a dict, as ``MemoryState`` keeps them, with an index by kind so a
    scan reads one kind's keys instead of sorting the whole tenant (the in-memory baseline)."""

    def __init__(self) -> None:
        super().__init__()
        self.by_kind: dict[str, set[str]] = {}

    def scan(self, kind: str) -> Iterator[tuple[str, Record]]:
        records = self.records
        for key in sorted(self.by_kind.get(kind, ())):
            yield key, records[(kind, key)]

    def apply_puts(self, puts: Mapping[tuple[str, str], Record | None]) -> None:
        super().apply_puts(puts)
        for kind, key in puts:
            keys = self.by_kind.setdefault(kind, set())
            if (kind, key) in self.records:
                keys.add(key)
            else:
                keys.discard(key)


class InMemory:
    """The reconcilers alone: ``engine.core.process`` over each message with its tenant's
    :class:`IndexedState`, the step's puts applied, nothing written. Counts what it handled."""

    def __init__(self) -> None:
        self.states: dict[str, IndexedState] = {}
        self.applied = 0
        self.dead = 0
        self.commands = 0

    def run(self, payloads: list[Logged]) -> None:
        states = self.states
        for item in payloads:
            state = states.get(item.tenant)
            if state is None:
                state = states[item.tenant] = IndexedState()
            inbound = Inbound(
                item.topic, item.tenant, f"{item.topic.value}:{item.seq}", item.payload
            )
            step = process(state, inbound, report=False)
            if step.outcome is Outcome.APPLIED:
                state.apply_puts(step.puts)
                self.applied += 1
                self.commands += len(step.commands)
            else:
                self.dead += 1

    @property
    def handled(self) -> int:
        return self.applied + self.dead


@dataclass(frozen=True, slots=True)
class Logged:
    """One reconciled message of the log: its global sequence, topic, tenant and payload."""

    seq: int
    topic: Topic
    tenant: str
    payload: bytes


def _payloads(conn: sqlite3.Connection, after_seq: int, count: int) -> list[Logged]:
    """The next ``count`` reconciled messages after ``after_seq``, in arrival order: every topic
    the processor reads (outcomes included), so the baselines handle what is replayed."""
    parts = [
        f"SELECT seq, '{t.value}', tenant, payload FROM {log_table(t)} WHERE seq > ?"
        for t in RECONCILED_TOPICS
    ]
    sql = " UNION ALL ".join(parts) + " ORDER BY seq LIMIT ?"
    rows = conn.execute(sql, (*[after_seq] * len(parts), count)).fetchall()
    return [Logged(int(r[0]), Topic(r[1]), str(r[2]), payload_of(bytes(r[3]))) for r in rows]


#: The topics a replay writes its commands to: compared byte for byte with the recording's.
COMMAND_TOPICS = (Topic.FORTNOX_COMMANDS, Topic.TILL_COMMANDS)


def commands_digest(
    db: Database, limits: dict[Topic, int] | None = None
) -> tuple[str, dict[Topic, int]]:
    """A digest of the commands on ``db``'s log (topic, tenant and payload bytes, per topic in
    log order; the first ``limits[topic]`` of each topic only, if given) and how many per topic:
    two runs that made the same commands byte for byte agree."""
    digest = hashlib.blake2b(digest_size=16)
    counts: dict[Topic, int] = {}
    for topic in COMMAND_TOPICS:
        sql = f'SELECT tenant, payload FROM {log_table(topic)} ORDER BY "offset"'
        params: tuple[int, ...] = ()
        if limits is not None:
            sql += " LIMIT ?"
            params = (limits.get(topic, 0),)
        counts[topic] = 0
        for tenant, payload in db.conn.execute(sql, params):
            digest.update(f"{topic.value}\x1f{tenant}\x1f".encode())
            digest.update(payload_of(bytes(payload)))
            digest.update(b"\x1e")
            counts[topic] += 1
    return digest.hexdigest(), counts


def run(
    tenants: int,
    per_tenant: int,
    *,
    batch: int = 1000,
    slice_size: int = 50_000,
    data_dir: Path | None = None,
    profile: Path | None = None,
    cache: Path | None = CACHE,
) -> dict[str, Any]:
    quiet_logs()
    with tempfile.TemporaryDirectory(dir=data_dir) as tmp:
        t0 = time.perf_counter()
        source, recorded = recorded_log(tenants, per_tenant, cache or Path(tmp))
        db = Database(Path(tmp) / "replay.db")
        src = Database(source)
        total = copy_reconciled_log(src, db)
        recorded_digest, recorded_commands = commands_digest(src)
        src.close()
        fill_s = time.perf_counter() - t0
        processor = Processor(db)
        decode = Stopwatch()
        floor_clock = Stopwatch()
        floor = Floor(Path(tmp) / "floor.db", batch)
        memory_clock = Stopwatch()
        memory = InMemory()
        replay = Stopwatch()
        done = 0
        handled = 0
        seq_done = 0
        commands = dead = 0
        profiler: Any = None
        if profile is not None:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.002)
        while done < total:
            payloads = _payloads(db.conn, seq_done, slice_size)
            if not payloads:
                break
            # The baseline: parse and validate each payload, nothing else; three times, and the
            # mean taken, so that a hiccup of the machine does not decide the ratio.
            once = Stopwatch()
            for _ in range(DECODE_REPEAT):
                with once:
                    for item in payloads:
                        registry.parse(item.payload)
            decode.wall += once.wall / DECODE_REPEAT
            decode.cpu += once.cpu / DECODE_REPEAT
            with floor_clock:
                floor.run(payloads)
            with memory_clock:
                memory.run(payloads)
            target = done + len(payloads)
            if profiler is not None:
                profiler.start()
            with replay:
                while done < target:
                    result = processor.step(limit=min(batch, target - done))
                    if not result.processed and not result.dead_letters:
                        raise RuntimeError("the processor stopped before the end of the log")
                    done += result.processed + result.dead_letters
                    commands += result.commands
                    dead += result.dead_letters
            if profiler is not None:
                profiler.stop()
            seq_done = payloads[-1].seq
            handled += len(payloads)
        # Every figure below divides by ``total``: a pass that handled less is no result.
        if done != total:
            raise RuntimeError(f"replayed {done} of the {total} messages on the log")
        if handled != total or memory.handled != total:
            raise RuntimeError(
                f"the baselines handled {handled} (decode, floor) and {memory.handled} (in "
                f"memory) of the {total} messages on the log"
            )
        if memory.commands != commands or memory.dead != dead:
            raise RuntimeError(
                f"in memory: {memory.commands} commands and {memory.dead} dead letters, the "
                f"replay {commands} and {dead}: the baseline did not do the same work"
            )
        rows = db.conn.execute("SELECT COUNT(*) FROM state").fetchone()[0]
        replay_digest, _ = commands_digest(db)
        # The recording stops once its last ticks are on the log, before it handles them (the
        # replay does: a few more commands), so its commands are compared with the replay's first.
        prefix_digest, _ = commands_digest(db, recorded_commands)
        db.close()
        floor.db.close()
    if profiler is not None and profile is not None:
        profile.write_text(profiler.output_text(unicode=False, color=False, show_all=False))
    return {
        "messages": total,
        "replayed": done,
        "tenants": tenants,
        "batch": batch,
        "setup_seconds": round(fill_s, 2),
        "recorded": recorded,
        "decode_seconds": round(decode.wall, 3),
        "decode_cpu_seconds": round(decode.cpu, 3),
        "replay_seconds": round(replay.wall, 3),
        "replay_cpu_seconds": round(replay.cpu, 3),
        "decode_events_per_s": round(total / decode.wall),
        "replay_events_per_s": round(total / replay.wall),
        "replay_vs_decode_ratio": round(decode.wall / replay.wall, 4),
        "replay_vs_decode_ratio_cpu": round(decode.cpu / replay.cpu, 4),
        "floor_seconds": round(floor_clock.wall, 3),
        "floor_vs_decode_ratio": round(decode.wall / floor_clock.wall, 4),
        "replay_vs_floor_ratio": round(floor_clock.wall / replay.wall, 4),
        "inmemory_seconds": round(memory_clock.wall, 3),
        "inmemory_cpu_seconds": round(memory_clock.cpu, 3),
        "inmemory_events_per_s": round(total / memory_clock.wall),
        "inmemory_messages": memory.handled,
        "inmemory_commands": memory.commands,
        "replay_vs_inmemory_ratio": round(memory_clock.wall / replay.wall, 4),
        "replay_vs_inmemory_ratio_cpu": round(memory_clock.cpu / replay.cpu, 4),
        "commands": commands,
        # The replay's commands, byte for byte, against the recording's (the same reconcilers
        # made both; a state layer that changed what a tick flushes would show here), and the
        # digest to compare between runs of different versions of the code.
        "commands_digest": replay_digest,
        "commands_match_recording": prefix_digest == recorded_digest,
        "commands_beyond_recording": commands - sum(recorded_commands.values()),
        "dead_letters": dead,
        "state_rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--per-tenant", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--profile", type=Path, default=None)
    args = parser.parse_args()
    print(json.dumps(run(args.tenants, args.per_tenant, batch=args.batch, profile=args.profile)))


if __name__ == "__main__":
    main()
