"""Replay (guarantee 3): rebuild one tenant's state from the log into a fresh store, and show
what differs from the live state and which commands the replay would issue.

The whole history is replayed (state needs it) — on the embedded runtime, from the state the kept
log starts with once retention has trimmed it (``engine/store/retention.py``); ``--from`` (an
offset or an ISO time) marks where the listed commands start. A command is *new* when no command
with its id is on the log: an unchanged history replays to zero differences and zero new
commands.

* embedded: the log tables of ``<data>/kassasync.db``, in the order the processor read them;
* Kafka: the tenant's partition of the reconciled topics, read with kafka-python in the order
  the worker applied them (``kassasync.order``, one record per batch), and the live state from
  the state changelog.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.core.process import Inbound, Outcome, process
from reconcilers.state import MemoryState, Record
from topics.envelope import Envelope
from topics.names import RECONCILED_TOPICS, Topic


@dataclass(frozen=True)
class Logged:
    """One reconciled message as the log holds it."""

    topic: str
    offset: int
    at: dt.datetime | None
    payload: bytes


@dataclass
class ReplayResult:
    tenant: str
    messages: int = 0
    skipped: int = 0
    differences: list[dict[str, Any]] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)
    new_commands: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "messages": self.messages,
            "skipped": self.skipped,
            "differences": self.differences,
            "commands": len(self.commands),
            "new_commands": self.new_commands,
        }


def parse_start(text: str) -> int | dt.datetime:
    try:
        return int(text)
    except ValueError:
        when = dt.datetime.fromisoformat(text)
        return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _listed(item: Logged, message: Envelope, start: int | dt.datetime) -> bool:
    if isinstance(start, int):
        return item.offset >= start
    return message.occurred_at >= start


def replay(
    tenant: str,
    history: Iterable[Logged],
    live: dict[tuple[str, str], Record],
    logged_commands: set[str],
    start: int | dt.datetime = 0,
    base: dict[tuple[str, str], Record] | None = None,
) -> ReplayResult:
    """``base``: the tenant's state where ``history`` starts (the log may be trimmed below it)."""
    result = ReplayResult(tenant)
    state = MemoryState(base)
    for item in history:
        where = f"{item.topic}:{item.offset}"
        step = process(state, Inbound(Topic(item.topic), tenant, where, item.payload), report=False)
        if step.outcome is not Outcome.APPLIED or step.message is None:
            result.skipped += 1  # dead-lettered when it was processed
            continue
        state.apply_puts(step.puts)
        message = step.message
        result.messages += 1
        if not _listed(item, message, start):
            continue
        for emitted in step.commands:
            entry = {"id": emitted.id, "type": emitted.type, "topic": emitted.topic.value}
            result.commands.append(entry)
            if emitted.id not in logged_commands:
                result.new_commands.append(entry)
    result.differences = diff(state.records, live)
    return result


def diff(
    replayed: dict[tuple[str, str], Record], live: dict[tuple[str, str], Record]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for kind, key in sorted(set(replayed) | set(live)):
        a, b = replayed.get((kind, key)), live.get((kind, key))
        if a != b:
            out.append({"kind": kind, "key": key, "replayed": a, "live": b})
    return out


# -- embedded ---------------------------------------------------------------------------------


def embedded_replay(data: Path, tenant: str, start: int | dt.datetime = 0) -> ReplayResult:
    from engine.store.db import Database
    from engine.store.log import Log
    from engine.store.retention import base_state
    from engine.store.state import StateStore

    db = Database(data / "kassasync.db")
    try:
        log = Log(db)
        # Where retention trimmed the log: the reconcilers' state at its start, and its offsets.
        start_after, base = base_state(db, tenant)

        def history() -> Iterator[Logged]:
            after: dict[Topic, int] = dict(start_after)
            while True:
                records = log.read(RECONCILED_TOPICS, after, 1000, tenant=tenant)
                if not records:
                    return
                for record in records:
                    after[record.topic] = record.offset
                    yield Logged(record.topic.value, record.offset, None, record.payload)

        commands: set[str] = set()
        for topic in (Topic.FORTNOX_COMMANDS, Topic.TILL_COMMANDS):
            for rec in log.read([topic], {}, 10**9, tenant=tenant):
                commands.add(rec.msg_id)
        live = StateStore(db).all_records(tenant)
        return replay(tenant, history(), live, commands, start, base)
    finally:
        db.close()


# -- Kafka ------------------------------------------------------------------------------------


def kafka_replay(config: Any, tenant: str, start: int | dt.datetime = 0) -> ReplayResult:
    from engine.kafka.inspect import read_partition, tenant_state
    from engine.kafka.topics import partition_for

    partition = partition_for(tenant, config.partitions)
    key = tenant.encode()
    messages: dict[tuple[str, int], bytes] = {}
    for topic in RECONCILED_TOPICS:
        for record in read_partition(config, config.topic(topic), partition):
            if record.key == key and record.value is not None:
                messages[(topic.value, record.offset)] = record.value
    order: list[tuple[str, int]] = []
    for record in read_partition(config, config.order_topic, partition):
        if record.value is not None:
            order.extend((str(t), int(o)) for t, o in json.loads(record.value))

    def history() -> Iterator[Logged]:
        seen: set[tuple[str, int]] = set()
        for topic, offset in order:
            payload = messages.get((topic, offset))
            if payload is None or (topic, offset) in seen:
                continue
            seen.add((topic, offset))
            yield Logged(topic, offset, None, payload)

    commands: set[str] = set()
    for topic in (Topic.FORTNOX_COMMANDS, Topic.TILL_COMMANDS):
        for record in read_partition(config, config.topic(topic), partition):
            if record.key == key and record.value is not None:
                commands.add(str(json.loads(record.value)["id"]))
    live = tenant_state(config, tenant)
    return replay(tenant, history(), live, commands, start)


# -- CLI --------------------------------------------------------------------------------------


def main_replay(args: argparse.Namespace) -> int:
    start = parse_start(args.start)
    from engine.bootstrap import kafka_config
    from engine.cli.util import settings_of

    settings = settings_of(args)
    if args.runtime == "kafka":
        result = kafka_replay(kafka_config(settings), args.tenant, start)
    else:
        result = embedded_replay(settings.data, args.tenant, start)
    if args.json:
        print(json.dumps(result.as_json(), default=str))
    else:
        print(
            f"tenant {result.tenant}: {result.messages} messages replayed "
            f"({result.skipped} skipped), {len(result.differences)} differences, "
            f"{len(result.commands)} commands from --from, {len(result.new_commands)} new"
        )
        for item in result.differences:
            where = f"{item['kind']}/{item['key']}"
            print(f"- {where}: live {json.dumps(item['live'], default=str)}")
            print(f"+ {where}: replay {json.dumps(item['replayed'], default=str)}")
        for command in result.new_commands:
            print(f"! would issue {command['type']} {command['id']}")
    if not args.dry_run and (result.differences or result.new_commands):
        print("(nothing was changed: replay only shows; use --dry-run to say so explicitly)")
    return 0 if not result.differences and not result.new_commands else 1
