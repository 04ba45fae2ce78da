"""The operator surface over any runtime: the read model (overview, tenant, system) and
the operator's actions (resume, pause, retry, discard)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import structlog
from pydantic import ValidationError

from engine.clock import utcnow
from engine.ops.errors import Conflict, NotFound
from engine.ops.flows import COUNTED_KINDS, FLOWS, POLLED_BY, RETRY_FLOWS, flow_of
from engine.ops.ports import OpsStore, RuntimeProbe
from engine.ops.records import ActionResult, DeadLetterRow, PendingCommand, PendingGroup, TenantRef
from engine.ops.status import (
    FlowFacts,
    FlowStatus,
    SystemView,
    TenantDetail,
    TenantSummary,
    judge_flow,
)
from topics.envelope import Source
from topics.errors import ErrorKind, ShopError, shop_error
from topics.outcomes import (
    DeadLetterAction,
    DeadLetterActionData,
    TenantPaused,
    TenantPausedData,
    TenantResumed,
    TenantResumedData,
)
from topics.settings import TenantSettings

log = structlog.get_logger("kassasync.ops")


def _shop_error(value: object) -> ShopError | None:
    if not isinstance(value, dict):
        return None
    try:
        return ShopError.model_validate(value)
    except ValidationError:
        return None


class Ops:
    """The read model and the operator's actions, over any runtime."""

    def __init__(
        self,
        store: OpsStore,
        probe: RuntimeProbe,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.probe = probe
        self.clock = clock

    # -- reads -----------------------------------------------------------------------------

    def settings(self, tenant: str) -> TenantSettings:
        record = self.store.record(tenant, "tenant", "settings")
        if record is None:
            return TenantSettings()
        try:
            return TenantSettings.model_validate(record["settings"])
        except (ValidationError, KeyError):
            return TenantSettings()

    def overview(self) -> list[TenantSummary]:
        dead = self.store.open_dead_letters()
        pending: dict[str, list[PendingGroup]] = {}
        for group in self.store.pending():
            pending.setdefault(group.tenant, []).append(group)
        return [
            self._summary(ref, dead.get(ref.id, {}), pending.get(ref.id, []))
            for ref in self.store.tenants()
        ]

    def summary(self, tenant: str) -> TenantSummary | None:
        ref = next((t for t in self.store.tenants() if t.id == tenant), None)
        if ref is None:
            return None
        dead = self.store.open_dead_letters().get(tenant, {})
        return self._summary(ref, dead, self.store.pending(tenant))

    def _summary(
        self, ref: TenantRef, dead: Mapping[str, int], pending: Sequence[PendingGroup]
    ) -> TenantSummary:
        tenant = ref.id
        now = self.clock()
        status = self.store.record(tenant, "tenant", "status") or {}
        paused = _shop_error(status.get("error")) if status.get("paused") else None
        if status.get("paused") and paused is None:
            paused = shop_error(ErrorKind.PAUSED_BY_OPERATOR, detail="no reason was recorded")
        settings = self.settings(tenant)
        records = dict(self.store.records(tenant, "flow"))
        cursors = {c.resource: c for c in self.store.cursors(tenant)}
        waiting = {
            "zreports": self.store.records(tenant, "zr", where={"status": ["waiting"]}),
            "invoices": self.store.records(tenant, "inv", where={"status": ["waiting"]}),
        }
        conflicts = self.store.count_by(tenant, "art.want", "reason").get("barcode_conflict", 0)
        flows: list[FlowStatus] = []
        for flow in FLOWS:
            dead_n = sum(n for t, n in dead.items() if flow_of(t) == flow)
            groups = [g for g in pending if flow_of(g.type) == flow]
            blocked = [r for _, r in waiting.get(flow, []) if _shop_error(r.get("error"))]
            first_error = _shop_error(blocked[0].get("error")) if blocked else None
            cursor = cursors.get(POLLED_BY.get(flow, ""))
            facts = FlowFacts(
                flow=flow,
                enabled=bool(getattr(settings, flow).enabled),
                paused=paused,
                record=records.get(flow),
                dead_letters=dead_n,
                pending=sum(g.count for g in groups),
                oldest_pending=min((g.oldest for g in groups), default=None),
                blocked=len(blocked),
                blocked_error=None if first_error is None else first_error.message,
                waiting=len(waiting.get(flow, [])) - len(blocked),
                conflicts=conflicts if flow == "articles" else 0,
                poll_last_ok=None if cursor is None else cursor.last_ok,
            )
            flows.append(judge_flow(facts, now))
        return TenantSummary(
            tenant=tenant,
            name=ref.name,
            paused=paused,
            paused_at=status.get("at") if paused else None,
            flows=tuple(flows),
            dead_letters=sum(dead.values()),
            pending=sum(g.count for g in pending),
            oldest_pending=min((g.oldest for g in pending), default=None),
        )

    def tenant(self, tenant: str, *, limit: int = 25) -> TenantDetail | None:
        summary = self.summary(tenant)
        if summary is None:
            return None
        store = self.store
        kinds = store.kind_counts(tenant)
        counts = {label: kinds.get(kind, 0) for kind, label in COUNTED_KINDS.items()}
        depth: dict[str, int] = {}
        for group in store.pending(tenant):
            depth[group.target] = depth.get(group.target, 0) + group.count
        merges = sorted(
            store.records(tenant, "stock.merge"), key=lambda kv: str(kv[1].get("at")), reverse=True
        )[:limit]
        reports = sorted(
            store.records(tenant, "report"), key=lambda kv: str(kv[1].get("at")), reverse=True
        )[:limit]
        overlaps = sorted(
            store.records(tenant, "stock.overlap"),
            key=lambda kv: str(kv[1].get("at")),
            reverse=True,
        )[:limit]
        warnings = (store.record(tenant, "tenant", "warnings") or {}).get("warnings") or []
        return TenantDetail(
            summary=summary,
            cursors=tuple(store.cursors(tenant)),
            counts=counts,
            drift=store.drift(tenant),
            depth=depth,
            oldest=store.oldest_pending(tenant),
            dead_letters=tuple(store.dead_letters(tenant=tenant, limit=200)),
            merges=tuple(merges),
            conflicts=tuple(
                store.records(tenant, "art.want", where={"reason": ["barcode_conflict"]})[:limit]
            ),
            queues=tuple(store.records(tenant, "barcode.wait", limit=limit)),
            exclusions=tuple(
                k for k, _ in store.records(tenant, "art.want", where={"reason": ["excluded"]})
            ),
            zreports_waiting=tuple(
                store.records(tenant, "zr", where={"status": ["waiting"]}, limit=limit)
            ),
            invoices_waiting=tuple(
                store.records(tenant, "inv", where={"status": ["waiting"]}, limit=limit)
            ),
            reports=tuple(reports),
            warnings=tuple(str(w) for w in warnings),
            possible_lost_sales=tuple(overlaps),
            stock_mode=self._stock_mode(tenant),
        )

    def _stock_mode(self, tenant: str) -> str:
        stock = self.settings(tenant).stock
        return stock.mode.value if stock.enabled else "off"

    def system(self) -> SystemView:
        pending: dict[str, int] = {}
        oldest: dict[str, float] = {}
        for group in self.store.pending():
            pending[group.target] = pending.get(group.target, 0) + group.count
            oldest[group.target] = min(oldest.get(group.target, group.oldest), group.oldest)
        dead = self.store.open_dead_letters()
        tenants = self.store.tenants()
        paused = sum(
            1 for t in tenants if (self.store.record(t.id, "tenant", "status") or {}).get("paused")
        )
        return SystemView(
            runtime=self.probe.name,
            lag=tuple(self.probe.lag()),
            throughput=self.probe.throughput(),
            budgets=tuple(self.probe.budgets()),
            workers=tuple(self.probe.workers()),
            pending=pending,
            oldest_pending=oldest,
            dead_letters=sum(sum(v.values()) for v in dead.values()),
            tenants=len(tenants),
            paused=paused,
        )

    def dead_letters(
        self, *, tenant: str | None = None, status: str = "open", limit: int | None = None
    ) -> list[DeadLetterRow]:
        return self.store.dead_letters(tenant=tenant, status=status, limit=limit)

    # -- actions ---------------------------------------------------------------------------

    def _known(self, tenant: str) -> None:
        if not any(t.id == tenant for t in self.store.tenants()):
            raise NotFound(f"no tenant {tenant!r}")

    def resume(self, tenant: str, reason: str = "resumed by operator") -> ActionResult:
        self._known(tenant)
        message = TenantResumed(
            id=f"ops-resume-{uuid.uuid4().hex}",
            tenant=tenant,
            occurred_at=utcnow(),
            source=Source.OPERATOR,
            data=TenantResumedData(reason=reason[:200] or "resumed by operator"),
        )
        self.store.append(message)
        log.info("ops.tenant.resumed", tenant=tenant, message_id=message.id, reason=reason)
        return ActionResult("resume", tenant, None, message.id)

    def pause(self, tenant: str, reason: str) -> ActionResult:
        """Pause a tenant's Fortnox session by hand (the shop sees ``reason``)."""
        self._known(tenant)
        text = reason.strip()[:300] or "maintenance"
        error = shop_error(ErrorKind.PAUSED_BY_OPERATOR, detail=text, paused_by="operator")
        message = TenantPaused(
            id=f"ops-pause-{uuid.uuid4().hex}",
            tenant=tenant,
            occurred_at=utcnow(),
            source=Source.OPERATOR,
            data=TenantPausedData(error=error),
        )
        self.store.append(message)
        log.info("ops.tenant.paused", tenant=tenant, message_id=message.id, reason=text)
        return ActionResult("pause", tenant, None, message.id)

    def _open_letter(self, dead_letter_id: str) -> DeadLetterRow:
        row = self.store.dead_letter(dead_letter_id)
        if row is None:
            raise NotFound(f"no dead letter {dead_letter_id!r}")
        if row.status != "open":
            raise Conflict(f"dead letter {dead_letter_id!r} is already {row.status}")
        return row

    def _action(self, row: DeadLetterRow, action: Literal["retry", "discard"]) -> DeadLetterAction:
        return DeadLetterAction(
            id=f"ops-{action}-{uuid.uuid4().hex}",
            tenant=row.tenant,
            occurred_at=utcnow(),
            data=DeadLetterActionData(dead_letter_id=row.id, action=action),
        )

    def retry(self, dead_letter_id: str) -> ActionResult:
        """Retry a dead letter.

        A ``sync.deadletter.action`` (retry) goes on the control topic: a flow with its own retry
        makes a new command from its current state. When there is none (no ``cmd`` record for
        the command, or a flow without retry), the dead command itself is requeued. A parked
        message (not a command) is appended to its topic again.
        """
        row = self._open_letter(dead_letter_id)
        message = self._action(row, "retry")
        requeued = replayed = False
        with self.store.atomic():
            self.store.append(message)
            if row.is_command:
                cmd = self.store.record(row.tenant, "cmd", row.id)
                if cmd is None or cmd.get("flow") not in RETRY_FLOWS:
                    requeued = self.store.requeue(row.id)
            else:
                replayed = self.store.replay(row)
            self.store.resolve_dead_letter(row.id, "retried")
        log.info(
            "ops.deadletter.retried",
            tenant=row.tenant,
            message_id=message.id,
            dead_letter_id=row.id,
            command_type=row.type,
            requeued=requeued,
            replayed=replayed,
        )
        return ActionResult("retry", row.tenant, row.id, message.id, requeued, replayed)

    # -- commands still being retried ---------------------------------------------------------

    def retrying(self, tenant: str | None = None, limit: int | None = None) -> list[PendingCommand]:
        """Commands that failed and wait for their next attempt (head-of-line: each holds back
        only the later commands of its lane)."""
        return self.store.retrying(tenant, limit)

    def _pending_command(self, command_id: str) -> PendingCommand:
        found = self.store.command(command_id)
        if found is None:
            raise NotFound(f"no command {command_id!r}")
        command, status = found
        if status != "pending":
            raise Conflict(f"command {command_id!r} is {status}, not waiting to be retried")
        return command

    def retry_command(self, command_id: str) -> ActionResult:
        """Attempt a pending command at once instead of at the end of its backoff."""
        command = self._pending_command(command_id)
        if not self.store.retry_command_now(command_id):
            raise Conflict(f"command {command_id!r} is no longer pending")
        log.info(
            "ops.command.retry_now",
            tenant=command.tenant,
            command_id=command_id,
            command_type=command.type,
            attempts=command.attempts,
        )
        return ActionResult("retry_now", command.tenant, None, command_id)

    def cancel_command(
        self, command_id: str, reason: str = "cancelled by operator"
    ) -> ActionResult:
        """Stop retrying a command: it is settled as refused and becomes a dead letter (retry
        or discard it there), and the commands behind it in its lane go on."""
        command = self._pending_command(command_id)
        if command.attempts == 0:
            raise Conflict(f"command {command_id!r} has not failed yet; it is not being retried")
        if not self.store.cancel_command(command_id, reason):
            raise Conflict(
                f"command {command_id!r} is being attempted right now; cancel it once the "
                "attempt is over"
            )
        log.info(
            "ops.command.cancelled", tenant=command.tenant, command_id=command_id, reason=reason
        )
        return ActionResult("cancel", command.tenant, command_id, command_id)

    def discard(self, dead_letter_id: str) -> ActionResult:
        row = self._open_letter(dead_letter_id)
        message = self._action(row, "discard")
        with self.store.atomic():
            self.store.append(message)
            if row.is_command:
                self.store.discard(row.id)
            self.store.resolve_dead_letter(row.id, "discarded")
        log.info(
            "ops.deadletter.discarded",
            tenant=row.tenant,
            message_id=message.id,
            dead_letter_id=row.id,
            command_type=row.type,
        )
        return ActionResult("discard", row.tenant, row.id, message.id)
