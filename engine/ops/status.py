"""Status lights: how the facts of a flow become green, amber or red, with the reasons;
and the views built from them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum

from pydantic import ValidationError

from engine.ops.flows import (
    AMBER_PENDING_SECONDS,
    FLOW_TITLES,
    RED_PENDING_SECONDS,
    STALE_POLL_SECONDS,
)
from engine.ops.records import (
    Budget,
    Cursor,
    DeadLetterRow,
    Drift,
    PendingCommand,
    TopicLag,
    WorkerAssignment,
)
from reconcilers.state import Record
from topics.errors import ShopError


class Light(StrEnum):
    GREEN = "green"
    AMBER = "amber"
    RED = "red"
    #: The flow is turned off in the tenant's settings (and nothing is wrong with it).
    OFF = "off"

    @property
    def rank(self) -> int:
        return {Light.OFF: 0, Light.GREEN: 1, Light.AMBER: 2, Light.RED: 3}[self]


def worst(lights: Sequence[Light]) -> Light:
    return max(lights, key=lambda light: light.rank, default=Light.OFF)


@dataclass(frozen=True, slots=True)
class FlowFacts:
    """Everything a flow's light is judged on."""

    flow: str
    enabled: bool
    paused: ShopError | None = None
    record: Record | None = None
    dead_letters: int = 0
    pending: int = 0
    oldest_pending: float | None = None
    #: Items waiting on an error the shop must fix (Z-reports, invoices).
    blocked: int = 0
    blocked_error: str | None = None
    #: Items waiting for something that comes by itself (master data, a customer).
    waiting: int = 0
    #: Articles held back by a barcode conflict.
    conflicts: int = 0
    #: Articles Fortnox has with values the till cannot take (a barcode with a space...).
    refused: int = 0
    poll_last_ok: float | None = None


@dataclass(frozen=True, slots=True)
class FlowStatus:
    flow: str
    light: Light
    reasons: tuple[str, ...]
    last_ok: str | None = None
    done: int = 0
    rejected: int = 0
    retrying: int = 0
    error: ShopError | None = None

    @property
    def title(self) -> str:
        return FLOW_TITLES.get(self.flow, self.flow)


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def age_text(seconds: float | None) -> str:
    return "—" if seconds is None else _age(seconds)


def _iso_ts(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def judge_flow(facts: FlowFacts, now: float) -> FlowStatus:
    """A flow's light and the reasons for it.

    red: a person must act — the tenant is paused, dead letters are open, items wait on an error
    the shop must fix, or a command has been pending for an hour.
    amber: degraded but self-healing or informational — commands are being retried, a command
    has been pending for 5 minutes, items wait for master data or a customer, articles are held
    back by a barcode conflict, the last command failed with no success since, or the Fortnox
    poll stream has not succeeded for 15 minutes.
    green: none of that. off: the flow is turned off and nothing above applies.
    """
    red: list[str] = []
    amber: list[str] = []
    record = facts.record or {}
    if facts.paused is not None and facts.enabled:
        red.append(f"tenant paused: {facts.paused.message}")
    if facts.dead_letters:
        red.append(f"{facts.dead_letters} dead letter(s) waiting for an operator")
    if facts.blocked:
        detail = f": {facts.blocked_error}" if facts.blocked_error else ""
        red.append(f"{facts.blocked} item(s) waiting on an error the shop must fix{detail}")
    if facts.oldest_pending is not None:
        age = now - facts.oldest_pending
        if age >= RED_PENDING_SECONDS:
            red.append(f"oldest pending command waits for {_age(age)}")
        elif age >= AMBER_PENDING_SECONDS:
            amber.append(f"oldest pending command waits for {_age(age)}")
    last_ok = _iso_ts(record.get("last_ok"))
    last_error = _iso_ts(record.get("last_error"))
    failing_since_ok = last_error is not None and (last_ok is None or last_error > last_ok)
    if failing_since_ok and record.get("error") and not facts.dead_letters:
        amber.append("the last command failed and nothing succeeded since")
    elif failing_since_ok and int(record.get("retrying", 0)):
        amber.append("commands are being retried")
    if facts.waiting:
        amber.append(f"{facts.waiting} item(s) waiting for Fortnox data or a customer")
    if facts.conflicts:
        amber.append(f"{facts.conflicts} article(s) held back by a barcode conflict")
    if facts.refused:
        amber.append(
            f"{facts.refused} article(s) with values the till cannot take: fix them in Fortnox"
        )
    if facts.enabled and facts.paused is None and facts.poll_last_ok is not None:
        since_poll = now - facts.poll_last_ok
        if since_poll >= STALE_POLL_SECONDS:
            amber.append(f"no successful Fortnox poll for {_age(since_poll)}")
    error = None
    if isinstance(record.get("error"), dict):
        try:
            error = ShopError.model_validate(record["error"])
        except ValidationError:
            error = None
    if red:
        light, reasons = Light.RED, red + amber
    elif amber:
        light, reasons = Light.AMBER, amber
    elif not facts.enabled:
        light, reasons = Light.OFF, ["turned off in the tenant's settings"]
    else:
        light = Light.GREEN
        ok = record.get("last_ok")
        reasons = [f"last success {ok}" if ok else "nothing to do yet"]
        if facts.pending:
            reasons.append(f"{facts.pending} command(s) on their way")
    return FlowStatus(
        flow=facts.flow,
        light=light,
        reasons=tuple(reasons),
        last_ok=record.get("last_ok"),
        done=int(record.get("done", 0)),
        rejected=int(record.get("rejected", 0)),
        retrying=int(record.get("retrying", 0)),
        error=error,
    )


@dataclass(frozen=True, slots=True)
class TenantSummary:
    tenant: str
    name: str
    paused: ShopError | None
    paused_at: str | None
    flows: tuple[FlowStatus, ...]
    dead_letters: int
    pending: int
    oldest_pending: float | None

    @property
    def light(self) -> Light:
        return worst([f.light for f in self.flows])


@dataclass(frozen=True, slots=True)
class TenantDetail:
    summary: TenantSummary
    cursors: tuple[Cursor, ...]
    counts: dict[str, int]
    drift: Drift
    depth: dict[str, int]
    oldest: PendingCommand | None
    dead_letters: tuple[DeadLetterRow, ...]
    merges: tuple[tuple[str, Record], ...]
    conflicts: tuple[tuple[str, Record], ...]
    queues: tuple[tuple[str, Record], ...]
    exclusions: tuple[str, ...]
    zreports_waiting: tuple[tuple[str, Record], ...]
    invoices_waiting: tuple[tuple[str, Record], ...]
    reports: tuple[tuple[str, Record], ...]
    warnings: tuple[str, ...]
    #: Absolute stock writes a foreign change overlapped (possible lost sales), newest first.
    possible_lost_sales: tuple[tuple[str, Record], ...] = ()
    #: The tenant's ``stock.mode`` ("off" when stock sync is off).
    stock_mode: str = "off"


@dataclass(frozen=True, slots=True)
class SystemView:
    runtime: str
    lag: tuple[TopicLag, ...]
    throughput: dict[str, float]
    budgets: tuple[Budget, ...]
    workers: tuple[WorkerAssignment, ...]
    pending: dict[str, int]
    oldest_pending: dict[str, float]
    dead_letters: int
    tenants: int
    paused: int


def money(value: object) -> str:
    """A decimal from a record, shown as the reconcilers keep it."""
    try:
        return format(Decimal(str(value)).normalize(), "f")
    except (InvalidOperation, ValueError):
        return str(value)


#: The overview's light filters: "" (all), "problems" (amber and red), or one light.
LIGHT_FILTERS: tuple[str, ...] = ("", "problems", "red", "amber", "green", "off")


def pages_for(matched: int, per_page: int) -> int:
    return max(1, -(-matched // per_page))


@dataclass(frozen=True, slots=True)
class OverviewPage:
    """One page of the tenants overview, after the search and the light filter."""

    rows: tuple[TenantSummary, ...]
    #: Every tenant, and how many of them show each light (before the filters).
    total: int
    by_light: dict[str, int]
    paused: int
    dead_letters: int
    #: Tenants that pass the search and the filter.
    matched: int
    page: int
    per_page: int
    query: str = ""
    light: str = ""
    sort: str = "tenant"

    @property
    def pages(self) -> int:
        return pages_for(self.matched, self.per_page)


@dataclass(frozen=True, slots=True)
class DeadLetterView:
    """A dead letter as the operator sees it: with what became of its document since."""

    row: DeadLetterRow
    #: Set when the problem is gone: the document it was about is done by now (the text says
    #: how), so the dead letter is stale.
    fixed: str | None = None


@dataclass(frozen=True, slots=True)
class DeadLetterPage:
    """One page of the dead letters across tenants, after the filters."""

    rows: tuple[DeadLetterView, ...]
    matched: int
    page: int
    per_page: int
    status: str
    tenant: str = ""
    flow: str = ""
    #: Dead letters of this status per tenant and per flow (before the tenant/flow filters).
    by_tenant: dict[str, int] | None = None
    by_flow: dict[str, int] | None = None

    @property
    def pages(self) -> int:
        return pages_for(self.matched, self.per_page)


@dataclass(frozen=True, slots=True)
class BulkResult:
    """What a bulk retry or discard of dead letters did."""

    action: str
    #: Retried or discarded.
    done: int = 0
    #: Retries that had nothing left to do (fixed since: marked resolved).
    noop: int = 0
    #: Dealt with meanwhile by someone else (no longer open).
    skipped: int = 0

    @property
    def text(self) -> str:
        verb = "retried" if self.action == "retry" else "discarded"
        parts = [f"{self.done} dead letter(s) {verb}"]
        if self.noop:
            parts.append(f"{self.noop} fixed already (marked resolved, nothing sent)")
        if self.skipped:
            parts.append(f"{self.skipped} dealt with meanwhile")
        return "; ".join(parts) + "."
