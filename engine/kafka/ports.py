"""``ExecutorPorts`` on Kafka: what the Fortnox sessions and the till delivery read and write
when they run in a worker, for the tenants of the partitions the worker owns.

Commands wait in the ``~cmd`` records of the state table (created by the reconciling agent in
the same journaled batch that emitted them, so they move with the tenant). The executors write
only their own ``~exec`` marks: *inflight* (an attempt started: written and acknowledged before a
Fortnox call leaves), *intent* (what a stock write is about to write) and *settled* (the attempt's
outcome, its facts and when to retry). A worker that takes a tenant over reads these marks: a
settled attempt whose outcome the agent has not seen yet is published again (same ids, so it is
applied once); an inflight attempt with no settlement is an unknown outcome, executed again with
``attempts >= 1`` so the writers look before they create (guarantee 2).
"""

from __future__ import annotations

import bisect
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from kafka import KafkaProducer

from engine.clock import utcnow
from engine.executors.pauses import Pauses
from engine.executors.ports import CursorUpdate
from engine.executors.settle import log_settled, settle_command
from engine.kafka.config import KafkaConfig
from engine.kafka.store import (
    CMD,
    CURSOR,
    EXEC,
    FINGERPRINT,
    SEQ,
    Mirror,
    TenantData,
    encode_key,
    encode_value,
)
from engine.kafka.topics import partition_for
from engine.store.lanes import lane_of
from engine.store.outbox import Pending
from reconcilers.state import Record
from topics import registry
from topics.envelope import Envelope
from topics.errors import ErrorKind, ShopError, shop_error
from topics.names import Topic, message_key
from topics.outcomes import (
    OutcomeStatus,
)
from topics.registry import Packed, pack

log = structlog.get_logger("kassasync.kafka.ports")

#: fx sequence numbers are reserved in blocks, so a new owner never reuses one.
SEQ_BLOCK = 1000


class KafkaPorts:
    def __init__(
        self,
        config: KafkaConfig,
        mirror: Mirror,
        owned: Callable[[str], bool],
        store_local: Callable[[bytes, bytes | None], None],
        producer: KafkaProducer,
    ) -> None:
        self.config = config
        self.mirror = mirror
        self.owned = owned
        self.store_local = store_local
        self.producer = producer
        self.queues: dict[tuple[str, str], list[tuple[int, str]]] = {}
        self._republished: set[str] = set()
        #: command id -> its lane (engine/store/lanes.py), computed once per command.
        self._lanes: dict[str, str] = {}
        self._pauses = Pauses(
            lambda tenant: self._data(tenant).get("tenant", "status"),
            lambda message: self.produce(message, durable=True),
        )
        self._seq: dict[str, tuple[int, int]] = {}
        self.executed = 0

    # -- plumbing -------------------------------------------------------------------------------

    def _partition(self, tenant: str) -> int:
        return partition_for(tenant, self.config.partitions)

    def _data(self, tenant: str) -> TenantData:
        return self.mirror.tenant(tenant, self._partition(tenant))

    def write(
        self, tenant: str, kind: str, key: str, value: Record | None, *, durable: bool
    ) -> None:
        """An executor-owned record: in memory now, in the changelog (acknowledged if durable)."""
        self._data(tenant).set(kind, key, value)
        raw_key = encode_key(tenant, kind, key)
        raw_value = encode_value(value)
        self.store_local(raw_key, raw_value)
        future = self.producer.send(
            self.config.state_changelog,
            key=raw_key,
            value=raw_value,
            partition=self._partition(tenant),
        )
        if durable:
            future.get(timeout=30)

    def produce(self, message: Envelope | Packed, *, durable: bool = False) -> None:
        packed = pack(message)
        future = self.producer.send(
            self.config.topic(packed.topic),
            key=message_key(packed.tenant),
            value=packed.payload,
            partition=self._partition(packed.tenant),
        )
        if durable:
            future.get(timeout=30)

    # -- the queue of commands ------------------------------------------------------------------

    def rebuild(self) -> None:
        """After a recovery: queue every pending command of the owned tenants."""
        self.queues.clear()
        self._lanes.clear()
        self._republished.clear()
        self._seq.clear()
        for tenant, data in self.mirror.tenants.items():
            for command_id, cmd in data.scan(CMD):
                if cmd.get("status") == "pending":
                    self.enqueue(tenant, cmd["target"], command_id, int(cmd["seq"]))
            stale = [cid for cid, _ in data.scan(EXEC) if data.get(CMD, cid) is None]
            for command_id in stale:
                self.write(tenant, EXEC, command_id, None, durable=False)

    def enqueue(self, tenant: str, target: str, command_id: str, seq: int) -> None:
        """Queue a pending command (once: an operator's action on a queued one queues nothing)."""
        queue = self.queues.setdefault((tenant, target), [])
        entry = (seq, command_id)
        at = bisect.bisect_left(queue, entry)
        if at == len(queue) or queue[at] != entry:
            queue.insert(at, entry)

    def depth(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def head(self, target: str, tenant: str) -> Pending | None:
        """As the embedded outbox's: the oldest due command that is first in its lane, else
        the lane head due soonest; a command waiting to be retried holds back its lane only."""
        if not self.owned(tenant):
            return None
        queue = self.queues.get((tenant, target))
        if not queue:
            return None
        data = self._data(tenant)
        now = time.time()
        blocked: set[str] = set()
        soonest: tuple[float, int, str, Record, dict[str, Any], int] | None = None
        index = 0
        while index < len(queue):
            seq, command_id = queue[index]
            cmd = data.get(CMD, command_id)
            if cmd is None or cmd.get("status") != "pending":
                del queue[index]
                self._lanes.pop(command_id, None)
                if cmd is None and data.get(EXEC, command_id) is not None:
                    self.write(tenant, EXEC, command_id, None, durable=False)
                continue
            lane = self._lane(command_id, cmd)
            if lane in blocked:
                index += 1
                continue
            marks = data.get(EXEC, command_id) or {}
            attempts = int(cmd.get("attempts", 0))
            next_at = 0.0
            settled = marks.get("settled")
            if _finished(cmd, marks):
                assert settled is not None
                self._republish(command_id, settled)
                index += 1  # settled; waiting for the agent to see the outcome
                continue
            if cmd.get("cancel") is not None and self._cancel(tenant, command_id, cmd, marks):
                index += 1  # settled as refused now; the agent sees the outcome next
                continue
            if (
                settled is not None
                and settled["status"] == OutcomeStatus.RETRYING.value
                and int(settled["attempt"]) >= attempts
            ):
                # The latest failed attempt (its outcome is published on some attempts only,
                # so the agent's count may be behind): wait for its retry time, unless an
                # operator asked for the retry now.
                attempts = int(settled["attempt"])
                next_at = float(settled.get("retry_at", 0.0))
                if attempts <= int(cmd.get("retry_now", -1)):
                    next_at = 0.0
            attempts = max(attempts, int(marks.get("inflight", 0)))
            blocked.add(lane)
            if next_at <= now:
                return self._pending(tenant, target, seq, command_id, cmd, marks, attempts, 0.0)
            if soonest is None or next_at < soonest[0]:
                soonest = (next_at, seq, command_id, cmd, marks, attempts)
            index += 1
        if soonest is None:
            return None
        next_at, seq, command_id, cmd, marks, attempts = soonest
        return self._pending(tenant, target, seq, command_id, cmd, marks, attempts, next_at)

    def _lane(self, command_id: str, cmd: Record) -> str:
        lane = self._lanes.get(command_id)
        if lane is None:
            lane = self._lanes[command_id] = lane_of(cmd["type"], cmd["payload"])
        return lane

    def _pending(
        self,
        tenant: str,
        target: str,
        seq: int,
        command_id: str,
        cmd: Record,
        marks: dict[str, Any],
        attempts: int,
        next_at: float,
    ) -> Pending:
        if next_at <= time.time() and int(marks.get("inflight", 0)) <= attempts:
            # About to be executed: an attempt that leaves must be known to the next owner.
            marks = {**marks, "inflight": attempts + 1}
            self.write(tenant, EXEC, command_id, marks, durable=target == "fortnox")
        intent = marks.get("intent")
        return Pending(
            seq=seq,
            command_id=command_id,
            tenant=tenant,
            target=target,
            type=cmd["type"],
            payload=cmd["payload"].encode(),
            attempts=attempts,
            next_at=next_at,
            last_error=json.dumps({"intent": intent}) if intent else None,
        )

    def _republish(self, command_id: str, settled: Record) -> None:
        """A settled attempt of a previous owner: publish its facts and outcome again."""
        if command_id in self._republished:
            return
        self._republished.add(command_id)
        for raw in settled.get("facts", []):
            self.produce(registry.parse(raw))
        if settled.get("facts"):
            self.producer.flush(timeout=30)
        self.produce(registry.parse(settled["outcome"]))
        log.info("command.outcome_republished", command_id=command_id)

    # -- an operator's actions on a command being retried ------------------------------------

    def cancel_now(self, tenant: str, command_id: str) -> bool:
        """Apply an operator's cancel the agent recorded in the ``~cmd`` record, unless an
        attempt is under way (then the executor's next look at the queue does, once it ended).
        True if the command was settled as refused now."""
        if not self.owned(tenant):
            return False
        data = self._data(tenant)
        cmd = data.get(CMD, command_id)
        if cmd is None or cmd.get("status") != "pending" or cmd.get("cancel") is None:
            return False
        marks = data.get(EXEC, command_id) or {}
        if _finished(cmd, marks):
            return False  # its last attempt ended it: the outcome is on its way to the agent
        return self._cancel(tenant, command_id, cmd, marks)

    def _cancel(self, tenant: str, command_id: str, cmd: Record, marks: dict[str, Any]) -> bool:
        """Settle a command as refused by the operator (it becomes a dead letter): through the
        one settle, as any refusal. Not while an attempt is under way or its outcome unknown."""
        made = attempts_made(cmd, marks)
        if int(marks.get("inflight", 0)) > made:
            log.info(
                "command.cancel_deferred",
                tenant=tenant,
                command_id=command_id,
                reason="an attempt is under way; cancelled once it has ended",
            )
            return False
        pending = Pending(
            seq=int(cmd["seq"]),
            command_id=command_id,
            tenant=tenant,
            target=str(cmd["target"]),
            type=str(cmd["type"]),
            payload=str(cmd["payload"]).encode(),
            attempts=made,
            next_at=0.0,
            last_error=None,
        )
        reason = str(cmd["cancel"])
        error = shop_error(ErrorKind.CANCELLED_BY_OPERATOR, detail=reason)
        self.settle(pending, OutcomeStatus.REJECTED, error=error)
        log.warning(
            "command.cancelled",
            tenant=tenant,
            command_id=command_id,
            command_type=pending.type,
            attempts=made,
            reason=reason,
        )
        return True

    def tenants_with_work(self, target: str) -> list[str]:
        return sorted(
            t for (t, tg), q in self.queues.items() if tg == target and q and self.owned(t)
        )

    # -- settling -------------------------------------------------------------------------------

    def settle(
        self,
        pending: Pending,
        status: OutcomeStatus,
        *,
        result: dict[str, str] | None = None,
        error: ShopError | None = None,
        facts: list[Envelope] | None = None,
        retry_in: float = 0.0,
    ) -> None:
        """Record an attempt (:func:`settle_command` decides what it comes to) in the command's
        ``~exec`` marks, then put its facts, dead letter and outcome on their topics."""
        settled = settle_command(
            pending, status, at=utcnow(), result=result, error=error, facts=facts or ()
        )
        data = self._data(pending.tenant)
        marks = dict(data.get(EXEC, pending.command_id) or {})
        marks["inflight"] = max(int(marks.get("inflight", 0)), settled.attempt)
        marks["settled"] = {
            "attempt": settled.attempt,
            "status": status.value,
            "retry_at": time.time() + retry_in,
            "outcome": registry.dump(settled.outcome).decode(),
            "facts": [registry.dump(f).decode() for f in settled.facts],
        }
        # The mark first (acknowledged for Fortnox: a lost outcome is then republished, never
        # re-executed), then the facts and the outcome.
        self.write(
            pending.tenant, EXEC, pending.command_id, marks, durable=pending.target == "fortnox"
        )
        self._republished.add(pending.command_id)
        self.executed += 1
        for fact in settled.facts:
            self.produce(fact)
        if settled.facts:
            # The facts are on the log before the outcome: an outcome without its facts would
            # leave the reconciler waiting for them (a stock write's result, say).
            self.producer.flush(timeout=30)
        if settled.dead_letter is not None:
            self.produce(settled.dead_letter)
        if settled.logged:
            self.produce(settled.outcome)
        log_settled(log, settled)

    def remember_intent(self, command_id: str, intent: dict[str, Any]) -> None:
        tenant = self._tenant_of(command_id)
        marks = dict(self._data(tenant).get(EXEC, command_id) or {})
        marks["intent"] = intent
        self.write(tenant, EXEC, command_id, marks, durable=True)

    def _tenant_of(self, command_id: str) -> str:
        for (tenant, _), queue in self.queues.items():
            if any(cid == command_id for _, cid in queue):
                return tenant
        raise KeyError(f"command {command_id} is not queued on this worker")

    def intent(self, pending: Pending) -> dict[str, Any] | None:
        marks = self._data(pending.tenant).get(EXEC, pending.command_id) or {}
        intent = marks.get("intent")
        return intent if isinstance(intent, dict) else None

    # -- Fortnox facts --------------------------------------------------------------------------

    def next_fx_seq(self, tenant: str, count: int = 1) -> int:
        current, reserved = self._seq.get(tenant, (0, 0))
        if reserved == 0:
            record = self._data(tenant).get(SEQ, "") or {}
            current = reserved = int(record.get("reserved", 0))
        if current + count > reserved:
            reserved = current + max(count, SEQ_BLOCK)
            self.write(tenant, SEQ, "", {"reserved": reserved}, durable=True)
        first = current + 1
        self._seq[tenant] = (current + count, reserved)
        return first

    def publish(
        self,
        messages: Sequence[Envelope | Packed],
        *,
        cursor: CursorUpdate | None = None,
        fingerprint: tuple[str, str, str, str] | None = None,
    ) -> None:
        for message in messages:
            self.produce(message)
        if cursor is None and fingerprint is None:
            return
        # The changes are on the log before the cursor moves past them.
        self.producer.flush(timeout=30)
        if cursor is not None:
            old = self._data(cursor.tenant).get(CURSOR, cursor.resource) or {}
            now = utcnow().timestamp()
            self.write(
                cursor.tenant,
                CURSOR,
                cursor.resource,
                {
                    "cursor": cursor.cursor,
                    "last_ok": now,
                    "full_sync_at": now if cursor.full_sync else old.get("full_sync_at"),
                },
                durable=False,
            )
        if fingerprint is not None:
            tenant, resource, key, digest = fingerprint
            self.write(tenant, FINGERPRINT, f"{resource}\x1e{key}", {"fp": digest}, durable=False)

    def cursor(self, tenant: str, resource: str) -> tuple[str | None, float | None]:
        record = self._data(tenant).get(CURSOR, resource)
        if record is None:
            return None, None
        return record.get("cursor"), record.get("full_sync_at")

    def fingerprint(self, tenant: str, resource: str, key: str) -> str | None:
        record = self._data(tenant).get(FINGERPRINT, f"{resource}\x1e{key}")
        return None if record is None else str(record["fp"])

    # -- tenants --------------------------------------------------------------------------------

    def paused(self, tenant: str) -> ShopError | None:
        return self._pauses.paused(tenant)

    def pause(self, tenant: str, error: ShopError) -> None:
        self._pauses.pause(tenant, error)


def attempts_made(cmd: Record, marks: Record | None) -> int:
    """The attempts a command has had that ended: the agent's count (from the outcomes it
    applied) or, ahead of it, the executor's last settlement (``~exec``)."""
    settled = (marks or {}).get("settled")
    made = int(cmd.get("attempts", 0))
    return made if settled is None else max(made, int(settled["attempt"]))


def _finished(cmd: Record, marks: Record) -> bool:
    """The command's last attempt ended it (done or refused) and the agent has not applied that
    outcome yet."""
    settled = marks.get("settled")
    return (
        settled is not None
        and int(settled["attempt"]) > int(cmd.get("attempts", 0))
        and settled["status"] in (OutcomeStatus.DONE.value, OutcomeStatus.REJECTED.value)
    )


def topic_of(message: Envelope) -> Topic:
    return Topic(message.TOPIC)
