"""The operator surface over any runtime: the read model (overview, tenant, system) and
the operator's actions (resume, pause, retry, discard)."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace as dataclasses_replace
from typing import Literal

import structlog
from pydantic import ValidationError

from engine.clock import utcnow
from engine.ops import documents as docs
from engine.ops.documents import KIND_OF_FLOW, DocKind, DocumentStatus
from engine.ops.errors import Conflict, NotFound
from engine.ops.flows import COUNTED_KINDS, FLOWS, POLLED_BY, RETRY_FLOWS, flow_of
from engine.ops.history import History, Sample, TenantSample
from engine.ops.ports import OpsStore, RuntimeProbe
from engine.ops.records import ActionResult, DeadLetterRow, PendingCommand, PendingGroup, TenantRef
from engine.ops.status import (
    LIGHT_FILTERS,
    BulkResult,
    DeadLetterPage,
    DeadLetterView,
    FlowFacts,
    FlowStatus,
    Light,
    OverviewPage,
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
    ExportRequested,
    ExportRequestedData,
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
        #: Samples for the dashboard's charts (:meth:`sample`).
        self.history = History()
        #: Called after an operator's "retry now" (the runtime lets the command's target be
        #: probed at once: engine/executors/probe.py); None where no executor runs here.
        self.on_retry_now: Callable[[PendingCommand], None] | None = None
        self._acquired: dict[str, int] = {}

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

    def overview_page(
        self,
        *,
        query: str = "",
        light: str = "",
        page: int = 1,
        per_page: int = 50,
        sort: str = "tenant",
    ) -> OverviewPage:
        """One page of the overview: tenants whose id or name holds ``query`` (any case) and
        whose light passes ``light`` (one of :data:`LIGHT_FILTERS`), by id or, with
        ``sort="light"``, red first."""
        if light not in LIGHT_FILTERS:
            raise ValueError(f"unknown light filter {light!r}")
        summaries = self.overview()
        by_light: dict[str, int] = {value.value: 0 for value in Light}
        for s in summaries:
            by_light[s.light.value] += 1
        needle = query.strip().casefold()
        wanted = {
            "": set(Light),
            "problems": {Light.AMBER, Light.RED},
        }.get(light) or {Light(light)}
        matched = [
            s
            for s in summaries
            if s.light in wanted
            and (not needle or needle in s.tenant.casefold() or needle in s.name.casefold())
        ]
        if sort == "light":
            matched.sort(key=lambda s: (-s.light.rank, s.tenant))
        per_page = max(1, min(per_page, 500))
        last = max(1, -(-len(matched) // per_page))
        page = max(1, min(page, last))
        rows = matched[(page - 1) * per_page : page * per_page]
        log.debug(
            "dashboard.overview.page", query=query, light=light, matched=len(matched), page=page
        )
        return OverviewPage(
            rows=tuple(rows),
            total=len(summaries),
            by_light=by_light,
            paused=sum(1 for s in summaries if s.paused is not None),
            dead_letters=sum(s.dead_letters for s in summaries),
            matched=len(matched),
            page=page,
            per_page=per_page,
            query=query,
            light=light,
            sort="light" if sort == "light" else "tenant",
        )

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
        held_out = self.store.records(
            tenant, "art.want", where={"reason": ["barcode_conflict", "till_refuses"]}
        )
        conflicts = sum(1 for _, want in held_out if want.get("reason") == "barcode_conflict")
        refused = len(held_out) - conflicts
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
                refused=refused if flow == "articles" else 0,
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

    def dead_letter_page(
        self,
        *,
        tenant: str = "",
        flow: str = "",
        status: str = "open",
        page: int = 1,
        per_page: int = 50,
    ) -> DeadLetterPage:
        """Dead letters across tenants with one ``status``, filtered by tenant and flow,
        oldest first; each with what became of its document since (stale when it is done)."""
        every = self.store.dead_letters(status=status)
        by_tenant: dict[str, int] = {}
        by_flow: dict[str, int] = {}
        for row in every:
            by_tenant[row.tenant] = by_tenant.get(row.tenant, 0) + 1
            key = row.flow or "other"
            by_flow[key] = by_flow.get(key, 0) + 1
        chosen = [
            row
            for row in every
            if (not tenant or row.tenant == tenant) and (not flow or (row.flow or "other") == flow)
        ]
        per_page = max(1, min(per_page, 500))
        last = max(1, -(-len(chosen) // per_page))
        page = max(1, min(page, last))
        shown = chosen[(page - 1) * per_page : page * per_page]
        views = tuple(
            DeadLetterView(row, self.fixed_since(row) if status == "open" else None)
            for row in shown
        )
        return DeadLetterPage(
            rows=views,
            matched=len(chosen),
            page=page,
            per_page=per_page,
            status=status,
            tenant=tenant,
            flow=flow,
            by_tenant=dict(sorted(by_tenant.items())),
            by_flow=dict(sorted(by_flow.items())),
        )

    def matching_dead_letters(self, *, tenant: str = "", flow: str = "") -> list[DeadLetterRow]:
        """Open dead letters of a tenant and/or flow ("" for any; flow "other" for those of no
        flow), oldest first."""
        return [
            row
            for row in self.store.dead_letters(tenant=tenant or None)
            if not flow or (row.flow or "other") == flow
        ]

    def bulk(
        self, action: Literal["retry", "discard"], *, tenant: str = "", flow: str = ""
    ) -> BulkResult:
        """Retry or discard every open dead letter of a tenant and/or flow, one by one (each as
        :meth:`retry` / :meth:`discard` does it)."""
        done = noop = skipped = 0
        for row in self.matching_dead_letters(tenant=tenant, flow=flow):
            try:
                result = self.retry(row.id) if action == "retry" else self.discard(row.id)
            except (Conflict, NotFound):
                skipped += 1
                continue
            if result.noop:
                noop += 1
            else:
                done += 1
        outcome = BulkResult(action, done, noop, skipped)
        log.info(
            "ops.deadletter.bulk",
            action=action,
            tenant=tenant,
            flow=flow,
            done=done,
            noop=noop,
            skipped=skipped,
        )
        return outcome

    # -- documents ---------------------------------------------------------------------------

    def _open_commands(self, tenant: str) -> dict[str, str]:
        """Open dead letters of the tenant's commands: command id -> dead letter id."""
        return {row.id: row.id for row in self.store.dead_letters(tenant=tenant) if row.is_command}

    def _command_status(self, command_id: object) -> str | None:
        if not command_id:
            return None
        found = self.store.command(str(command_id))
        return None if found is None else found[1]

    def _document(
        self, kind: DocKind, key: str, record: dict[str, object], dead: dict[str, str]
    ) -> DocumentStatus:
        if kind is DocKind.ZREPORT:
            return docs.zreport(key, record, dead)
        if kind is DocKind.INVOICE:
            return docs.invoice(key, record, dead)
        return docs.payment(key, record, dead, self._command_status(record.get("delivered")))

    def documents(
        self,
        tenant: str,
        *,
        kind: DocKind | None = None,
        phase: str = "",
        query: str = "",
        limit: int = 25,
    ) -> tuple[DocumentStatus, ...]:
        """The tenant's Z-reports, invoices and payments (newest date first, ``limit`` of each
        kind), optionally of one kind, one phase (done, failed, waiting, working, skipped) and
        whose key or Fortnox number holds ``query``. Records are read newest first and judged
        only until ``limit`` are found (a payment's state costs a look at its command)."""
        dead = self._open_commands(tenant)
        needle = query.strip().casefold()
        out: list[DocumentStatus] = []
        for each in DocKind if kind is None else (kind,):
            rows = self.store.records(tenant, each.record_kind)
            rows.sort(key=lambda kv: (docs.date_of(each, kv[1]), kv[0]), reverse=True)
            found = 0
            for key, record in rows:
                doc = self._document(each, key, record, dead)
                if phase and doc.phase.value != phase:
                    continue
                if needle and needle not in key.casefold() and needle not in doc.fortnox.casefold():
                    continue
                out.append(doc)
                found += 1
                if found >= limit:
                    break
        return tuple(out)

    def document(self, tenant: str, kind: DocKind, key: str) -> DocumentStatus | None:
        record = self.store.record(tenant, kind.record_kind, key)
        if record is None:
            return None
        return self._document(kind, key, record, self._open_commands(tenant))

    def fixed_since(self, row: DeadLetterRow) -> str | None:
        """Why an open dead letter is stale (its document is done by now), or None."""
        if not row.is_command or row.flow not in KIND_OF_FLOW:
            return None
        cmd = self.store.record(row.tenant, "cmd", row.id)
        if cmd is None:
            return None
        kind = KIND_OF_FLOW.get(str(cmd.get("flow")))
        if kind is None:
            return None
        key = str(cmd.get("key"))
        record = self.store.record(row.tenant, kind.record_kind, key)
        current = None if record is None else self._command_status(record.get("delivered"))
        return docs.fixed_since(kind, key, record, row.id, current)

    def _resolve_fixed(self, row: DeadLetterRow, why: str) -> DeadLetterAction:
        """Close a stale dead letter: its command is dropped (a discard for the flow) and the
        dead letter is marked ``resolved``."""
        message = self._action(row, "discard")
        with self.store.atomic():
            self.store.append(message)
            self.store.discard(row.id)
            self.store.resolve_dead_letter(row.id, "resolved")
        log.info(
            "ops.deadletter.resolved",
            tenant=row.tenant,
            dead_letter_id=row.id,
            message_id=message.id,
            why=why,
        )
        return message

    def resolve_fixed(self, tenant: str | None = None) -> list[str]:
        """Mark resolved every open dead letter whose problem is fixed (its document is done by
        now). Returns their ids."""
        resolved: list[str] = []
        for row in self.store.dead_letters(tenant=tenant):
            why = self.fixed_since(row)
            if why is not None:
                self._resolve_fixed(row, why)
                resolved.append(row.id)
        return resolved

    def rerun(self, tenant: str, kind: DocKind, key: str) -> ActionResult:
        """Run a failed document again: its dead letter is retried; a Z-report without one is
        exported again (its day); anything else says why there is nothing to run."""
        self._known(tenant)
        doc = self.document(tenant, kind, key)
        if doc is None:
            raise NotFound(f"no {kind.label.lower()} {key!r} for tenant {tenant!r}")
        title = f"{kind.label} {key}"
        if doc.dead_letter is not None:
            result = self.retry(doc.dead_letter)
            return dataclasses_replace(
                result,
                action="rerun",
                note=result.note or (f"{title}: its dead letter was retried."),
            )
        if not doc.can_rerun:
            note = (
                f"Nothing to re-run: {title} is {doc.phase.value}"
                + (f" ({doc.fortnox})" if doc.fortnox else "")
                + (f": {doc.detail}" if doc.detail else "")
                + "."
            )
            log.info("ops.document.rerun_noop", tenant=tenant, kind=kind.value, key=key)
            return ActionResult("rerun", tenant, None, "", noop=True, note=note)
        if kind is DocKind.ZREPORT and doc.date:
            day = dt.date.fromisoformat(doc.date)
            message = ExportRequested(
                id=f"ops-rerun-{uuid.uuid4().hex}",
                tenant=tenant,
                occurred_at=utcnow(),
                data=ExportRequestedData(from_date=day, to_date=day),
            )
            self.store.append(message)
            log.info("ops.document.rerun", tenant=tenant, kind=kind.value, key=key, day=doc.date)
            return ActionResult(
                "rerun",
                tenant,
                None,
                message.id,
                note=f"{title}: posting again (every Z-report of {doc.date} not posted yet).",
            )
        raise Conflict(
            f"{title} waits on: {doc.detail}. It is tried again by itself once that is fixed "
            "(a settings change or Fortnox's lists)."
        )

    # -- history -----------------------------------------------------------------------------

    def sample(self) -> Sample:
        """Take a sample of lag, throughput, Fortnox budget and errors, overall and per tenant,
        and keep it in :attr:`history`."""
        now = self.clock()
        last = self.history.last()
        since = now - self.history.every if last is None else last.at
        pending: dict[str, int] = {}
        oldest: dict[str, float] = {}
        for group in self.store.pending():
            pending[group.tenant] = pending.get(group.tenant, 0) + group.count
            oldest[group.tenant] = min(oldest.get(group.tenant, group.oldest), group.oldest)
        dead = {t: sum(by_type.values()) for t, by_type in self.store.open_dead_letters().items()}
        retrying: dict[str, int] = {}
        for command in self.store.retrying():
            retrying[command.tenant] = retrying.get(command.tenant, 0) + 1
        settled = self.store.settled_since(since)
        used: dict[str, float] = {}
        requests: dict[str, int] = {}
        for budget in self.probe.budgets():
            used[budget.tenant] = max(used.get(budget.tenant, 0.0), budget.used)
            before = self._acquired.get(budget.tenant, budget.acquired if last is None else 0)
            requests[budget.tenant] = max(0, budget.acquired - before)
            self._acquired[budget.tenant] = budget.acquired
        tenants: dict[str, TenantSample] = {}
        for tenant in set(pending) | set(dead) | set(retrying) | set(settled) | set(used):
            one = TenantSample(
                pending=pending.get(tenant, 0),
                oldest_age=max(0.0, now - oldest[tenant]) if tenant in oldest else 0.0,
                settled=settled.get(tenant, 0),
                dead_letters=dead.get(tenant, 0),
                retrying=retrying.get(tenant, 0),
                budget_used=used.get(tenant, 0.0),
                requests=requests.get(tenant, 0),
            )
            if not one.quiet:
                tenants[tenant] = one
        sample = Sample(
            at=now,
            lag=sum(item.lag for item in self.probe.lag()),
            throughput=sum(self.probe.throughput().values()),
            pending=sum(pending.values()),
            settled=sum(settled.values()),
            dead_letters=sum(dead.values()),
            retrying=sum(retrying.values()),
            budget_used=max(used.values(), default=0.0),
            requests=sum(requests.values()),
            tenants=tenants,
        )
        self.history.add(sample)
        log.debug("dashboard.history.sampled", tenants=len(tenants), lag=sample.lag)
        return sample

    def sampled(self) -> History:
        """The history, with a fresh sample first when the last is older than its interval (a
        runtime that runs no sampling loop still gets history while the dashboard is open)."""
        if self.history.due(self.clock()):
            self.sample()
        return self.history

    def housekeeping(self) -> None:
        """What the engine does every :data:`~engine.ops.history.SAMPLE_SECONDS`: a sample for
        the charts, and dead letters whose problem is fixed are marked resolved."""
        self.sample()
        self.resolve_fixed()

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
        fixed = self.fixed_since(row)
        if fixed is not None:
            message = self._resolve_fixed(row, fixed)
            return ActionResult(
                "retry",
                row.tenant,
                row.id,
                message.id,
                noop=True,
                note=f"Nothing to retry: {fixed}. The dead letter is marked resolved.",
            )
        unreadable = None if row.is_command else row.unreadable()
        if unreadable is not None:
            # Appending it again would only park it again: say so, and leave it open.
            return ActionResult(
                "retry",
                row.tenant,
                row.id,
                "",
                noop=True,
                note=(
                    f"Nothing was sent again: the parked message cannot be read ({unreadable}). "
                    "Have its source send a corrected one, then discard this dead letter."
                ),
            )
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
        if self.on_retry_now is not None:
            self.on_retry_now(command)
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
