"""The one entry point: ``reconcile(state, message) -> Decision``. Pure and deterministic."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from reconcilers import (
    articles,
    customers,
    invoices,
    ledger,
    passes,
    payments,
    stock,
    submitted,
    zreports,
)
from reconcilers.context import DIRTY, TENANT, Ctx
from reconcilers.events import CustomerFailed, CustomerReady, InternalEvent, SubmittedVoucherDue
from reconcilers.state import Decision, StateView, Txn, instant
from topics import fortnox as fx
from topics import outcomes as oc
from topics import till
from topics.envelope import Envelope
from topics.errors import ShopError
from topics.outcomes import OutcomeData, OutcomeStatus
from topics.settings import TenantSettings

#: The order flows are flushed in: customers before invoices need them; articles before stock,
#: because a till adjustment needs the article in the till.
FLUSH_ORDER = ("customers", "articles", "stock")

FLOWS = ("customers", "articles", "stock", "zreports", "invoices", "payments", "ledger")


def reconcile(view: StateView, message: Envelope) -> Decision:
    txn = Txn(view)
    ctx = Ctx(txn, message)
    handler = _HANDLERS.get(message.type)  # type: ignore[attr-defined]
    if handler is None:
        ctx.note("message.not_reconciled", type=message.type)  # type: ignore[attr-defined]
    else:
        handler(ctx, message)
    _route(ctx)
    return txn.decision


#: More internal events than this from one message is a loop between flows: a dead letter.
MAX_INTERNAL_EVENTS = 100_000


def _route(ctx: Ctx) -> None:
    """Hand each internal event a handler raised to the flows that react to it, in order."""
    routed = 0
    while ctx.raised:
        event = ctx.raised.pop(0)
        routed += 1
        if routed > MAX_INTERNAL_EVENTS:
            raise RuntimeError(f"internal events loop between flows (last: {event!r})")
        for react in _REACTIONS[type(event)]:
            react(ctx, event)


_REACTIONS: dict[type[InternalEvent], tuple[Callable[[Ctx, Any], None], ...]] = {
    CustomerReady: (invoices.on_customer_ready,),
    CustomerFailed: (invoices.on_customer_failed,),
    SubmittedVoucherDue: (submitted.on_due,),
}


# --- till events ---------------------------------------------------------------------------------


def _customer_upserted(ctx: Ctx, msg: Any) -> None:
    customers.on_till_upsert(ctx, msg.data)


def _customer_deleted(ctx: Ctx, msg: Any) -> None:
    customers.on_till_delete(ctx, msg.data)


def _article_edited(ctx: Ctx, msg: Any) -> None:
    articles.on_till_edit(ctx, msg.data)


def _movement(ctx: Ctx, msg: Any) -> None:
    stock.on_movement(ctx, msg.data)


def _counted(ctx: Ctx, msg: Any) -> None:
    stock.on_count(ctx, msg.data)


def _invoice(ctx: Ctx, msg: Any) -> None:
    invoices.on_invoice(ctx, msg.data)


def _submitted(ctx: Ctx, msg: Any) -> None:
    submitted.on_submitted(ctx, msg.data)


def _zreport(ctx: Ctx, msg: Any) -> None:
    zreports.on_zreport(ctx, msg.data)


# --- Fortnox changes ---------------------------------------------------------------------------


def _fx_customer(ctx: Ctx, msg: Any) -> None:
    customers.on_fortnox_customer(ctx, msg.data)


def _fx_customer_deleted(ctx: Ctx, msg: Any) -> None:
    customers.on_fortnox_deleted(ctx, msg.data.customer_number)


def _fx_article(ctx: Ctx, msg: Any) -> None:
    articles.on_fortnox_article(ctx, msg.data.article, msg.data.observed)


def _fx_article_deleted(ctx: Ctx, msg: Any) -> None:
    articles.on_fortnox_deleted(ctx, msg.data.article_number)


def _fx_sync_completed(ctx: Ctx, msg: Any) -> None:
    data: fx.SyncCompletedData = msg.data
    if data.resource is fx.SyncedResource.ARTICLES:
        articles.on_sync_completed(ctx, data)
    else:
        customers.on_sync_completed(ctx, data)


def _fx_unreadable(ctx: Ctx, msg: Any) -> None:
    """A Fortnox record that could not be read: reported for that record, present in a pass."""
    data: fx.UnreadableData = msg.data
    if data.resource is fx.PolledResource.ARTICLES:
        articles.on_unreadable(ctx, data)
        return
    if data.resource is fx.PolledResource.CUSTOMERS:
        if not ctx.settings.customers.enabled:
            return
        passes.listed(
            ctx,
            customers.FX,
            customers.RESOURCE,
            data.key,
            data.observed.sync_pass,
            data.observed.seq,
        )
        about = f"customer:fortnox-{data.key}"
    else:
        about = f"payment:{data.key}"
    ctx.report(about, {"kind": "fortnox_record_unreadable", "problem": data.problem})
    ctx.note("fortnox.record_unreadable", resource=data.resource.value, key=data.key)


def _fx_stock_written(ctx: Ctx, msg: Any) -> None:
    stock.on_written(ctx, msg.data)


def _fx_stock_overlap(ctx: Ctx, msg: Any) -> None:
    stock.on_overlap(ctx, msg.data)


def _fx_stock_checked(ctx: Ctx, msg: Any) -> None:
    stock.on_checked(ctx, msg.data)


def _fx_stock_watch_started(ctx: Ctx, msg: Any) -> None:
    stock.on_watch_started(ctx, msg.data)


def _fx_payment(ctx: Ctx, msg: Any) -> None:
    payments.on_payment(ctx, msg.data.payment, msg.data.observed)


def _fx_payment_deleted(ctx: Ctx, msg: Any) -> None:
    payments.on_deleted(ctx, msg.data.number)


def _fx_masterdata(ctx: Ctx, msg: Any) -> None:
    seen = ctx.txn.get(zreports.MASTER, "seen") or {}
    if ctx.is_repeat(seen, "msg"):
        ctx.note("masterdata.stale", at=ctx.now.isoformat())
        return
    ctx.stamp(seen, "msg")
    ctx.txn.put(zreports.MASTER, "seen", seen)
    ctx.txn.put(zreports.MASTER, "current", msg.data.model_dump(mode="json"))
    zreports.retry_waiting(ctx)
    invoices.retry_waiting(ctx)


def _fx_voucher(ctx: Ctx, msg: Any) -> None:
    ledger.on_voucher(ctx, msg.data.voucher, msg.data.observed)


# --- control -------------------------------------------------------------------------------------


def _tick(ctx: Ctx, msg: Any) -> None:
    flush_due(ctx)


def flush_due(ctx: Ctx) -> None:
    """Write out every dirty entity due by the message's time: marked at or before it (no flush
    window, the default: the tick after a change's batch writes it), or longer ago than the
    tenant's window. The entries come from the store's dirty index (only the due ones are
    read), in key order."""
    window = dt.timedelta(seconds=float(ctx.settings.flush_window_seconds))
    due = ctx.txn.due(instant(ctx.now - window))
    by_flow: dict[str, list[str]] = {flow: [] for flow in FLUSH_ORDER}
    for dirty_key, _ in due.entries:
        flow, _, key = dirty_key.partition(":")
        by_flow.setdefault(flow, []).append(key)
        ctx.txn.delete(DIRTY, dirty_key)
    for key in by_flow["customers"]:
        customers.flush(ctx, key)
    if by_flow["articles"]:
        articles.flush(ctx, by_flow["articles"])
    for key in by_flow["stock"]:
        stock.flush(
            ctx,
            key,
            in_till=articles.in_till(ctx, key),
            fortnox_stock_goods=articles.fortnox_stock_goods(ctx, key),
        )
    if due.first_waiting is not None:
        _, record = due.first_waiting
        ctx.txn.wake(dt.datetime.fromisoformat(record["since"]) + window)


def _settings_changed(ctx: Ctx, msg: Any) -> None:
    seen = ctx.txn.get(TENANT, "settings.seen") or {}
    if ctx.is_repeat(seen, "msg"):
        # A redelivered (or older) settings message must not undo newer settings.
        ctx.note("settings.stale", at=ctx.now.isoformat())
        return
    ctx.stamp(seen, "msg")
    ctx.txn.put(TENANT, "settings.seen", seen)
    old = ctx.settings
    new: TenantSettings = msg.data.settings
    ctx.set_settings(new)
    for warning in new.warnings():
        ctx.note("settings.warning", warning=warning)
    ctx.txn.put(TENANT, "warnings", {"warnings": new.warnings()})
    customers.on_settings_changed(ctx, old, new)
    articles.on_settings_changed(ctx, old, new)
    payments.on_settings_changed(ctx, old, new)
    zreports.retry_waiting(ctx)
    invoices.retry_waiting(ctx)


def _paused(ctx: Ctx, msg: Any) -> None:
    _pause(ctx, msg.data.error)


def _pause(ctx: Ctx, error: ShopError) -> None:
    status = ctx.txn.get(TENANT, "status") or {}
    if ctx.is_repeat(status, "status"):
        return
    ctx.stamp(status, "status")
    status.update(paused=True, error=error.model_dump(mode="json"), at=ctx.now.isoformat())
    ctx.txn.put(TENANT, "status", status)
    ctx.note("tenant.paused", kind=error.kind.value)


def _resumed(ctx: Ctx, msg: Any) -> None:
    status = ctx.txn.get(TENANT, "status") or {}
    if ctx.is_repeat(status, "status"):
        return
    ctx.stamp(status, "status")
    status.pop("error", None)
    status.update(paused=False, at=ctx.now.isoformat())
    ctx.txn.put(TENANT, "status", status)
    ctx.note("tenant.resumed", reason=msg.data.reason)
    # Commands skipped while the tenant was paused (or refused for the reason it was paused)
    # are done again now.
    for command_id, cmd in ctx.txn.scan("cmd"):
        if not cmd.get("retry_on_resume"):
            continue
        ctx.txn.delete("cmd", command_id)
        retry = RETRY.get(cmd["flow"])
        if retry is not None:
            retry(ctx, cmd["key"])


def _export(ctx: Ctx, msg: Any) -> None:
    zreports.export_range(ctx, msg.data.from_date, msg.data.to_date)


def _deadletter_action(ctx: Ctx, msg: Any) -> None:
    data: oc.DeadLetterActionData = msg.data
    cmd = ctx.txn.get("cmd", data.dead_letter_id)
    if cmd is None:
        ctx.note("deadletter.unknown", dead_letter_id=data.dead_letter_id)
        return
    flow, key, ctype = cmd["flow"], cmd["key"], cmd["type"]
    ctx.note("deadletter.action", action=data.action, flow=flow, key=key, command_type=ctype)
    retry = RETRY.get(flow)
    if data.action == "retry" and retry is None:
        # The engine sends the same command again: keep its record so that its outcome still
        # settles the flow (and clears the flow's light).
        return
    ctx.txn.delete("cmd", data.dead_letter_id)
    if data.action == "discard":
        if flow == stock.FLOW:
            stock.drop_owed(ctx, key, ctype)
        return
    if retry is not None:
        retry(ctx, key)


#: Flows that retry a dead letter themselves (a fresh command); for the others the engine
#: requeues the command that failed.
RETRY: dict[str, Callable[[Ctx, str], None]] = {
    articles.FLOW: articles.retry,
    stock.FLOW: stock.unblock,
    customers.FLOW: customers.retry,
    zreports.FLOW: zreports.retry,
    invoices.FLOW: invoices.retry,
}


def requeues_dead_command(view: StateView, command_id: str) -> bool:
    """Whether retrying this dead command means sending the same command again (the runtime's
    job), rather than the flow making a fresh one from its current state."""
    cmd = view.get("cmd", command_id)
    return cmd is None or cmd.get("flow") not in RETRY


# --- outcomes ------------------------------------------------------------------------------------


def _outcome(ctx: Ctx, msg: Any) -> None:
    outcome: OutcomeData = msg.data
    cmd = ctx.txn.get("cmd", outcome.command_id)
    mark = f"{outcome.status.value}:{outcome.attempt}"
    if cmd is not None and mark in cmd.get("outcomes", []):
        ctx.note("outcome.repeated", command_id=outcome.command_id, status=outcome.status.value)
        return
    if outcome.error is not None and outcome.error.pauses_tenant:
        _pause(ctx, outcome.error)
    if cmd is None:
        # Already settled (a redelivered outcome), or a command with no state to settle.
        ctx.note("outcome.settled_before", command_id=outcome.command_id)
        return
    flow = cmd["flow"]
    _flow_status(ctx, flow, outcome)
    key = cmd["key"]
    if flow == articles.FLOW:
        articles.on_outcome(ctx, key, outcome)
    elif flow == stock.FLOW:
        stock.on_outcome(ctx, key, outcome.command_type, outcome)
    elif flow == customers.FLOW:
        customers.on_outcome(ctx, key, outcome.command_type, outcome)
    elif flow == zreports.FLOW:
        zreports.on_outcome(ctx, key, outcome)
    elif flow == invoices.FLOW:
        invoices.on_outcome(ctx, key, outcome)
    if outcome.status is OutcomeStatus.DONE:
        ctx.txn.delete("cmd", outcome.command_id)
        return
    current = ctx.txn.get("cmd", outcome.command_id)
    if current is not None:
        current["outcomes"] = [*current.get("outcomes", []), mark][-8:]
        current["retry_on_resume"] = outcome.status is OutcomeStatus.SKIPPED or (
            outcome.status is OutcomeStatus.REJECTED
            and outcome.error is not None
            and outcome.error.pauses_tenant
        )
        ctx.txn.put("cmd", outcome.command_id, current)


def _flow_status(ctx: Ctx, flow: str, outcome: OutcomeData) -> None:
    record = ctx.txn.get("flow", flow) or {}
    if outcome.status is OutcomeStatus.DONE:
        record["last_ok"] = ctx.now.isoformat()
        record.pop("error", None)
        record["done"] = int(record.get("done", 0)) + 1
    elif outcome.status is OutcomeStatus.REJECTED:
        record["error"] = outcome.error.model_dump(mode="json") if outcome.error else None
        record["rejected"] = int(record.get("rejected", 0)) + 1
        record["last_error"] = ctx.now.isoformat()
    elif outcome.status is OutcomeStatus.RETRYING:
        record["retrying"] = int(record.get("retrying", 0)) + 1
        record["last_error"] = ctx.now.isoformat()
    ctx.txn.put("flow", flow, record)


_HANDLERS: dict[str, Callable[[Ctx, Any], None]] = {
    till.CustomerUpserted.model_fields["type"].default: _customer_upserted,
    till.CustomerDeleted.model_fields["type"].default: _customer_deleted,
    till.ArticleEdited.model_fields["type"].default: _article_edited,
    till.StockMovement.model_fields["type"].default: _movement,
    till.StockCounted.model_fields["type"].default: _counted,
    till.InvoiceCreated.model_fields["type"].default: _invoice,
    till.ZReportClosed.model_fields["type"].default: _zreport,
    till.VoucherSubmitted.model_fields["type"].default: _submitted,
    fx.FortnoxCustomerChanged.model_fields["type"].default: _fx_customer,
    fx.FortnoxCustomerDeleted.model_fields["type"].default: _fx_customer_deleted,
    fx.FortnoxArticleChanged.model_fields["type"].default: _fx_article,
    fx.FortnoxArticleDeleted.model_fields["type"].default: _fx_article_deleted,
    fx.FortnoxSyncCompleted.model_fields["type"].default: _fx_sync_completed,
    fx.FortnoxStockWritten.model_fields["type"].default: _fx_stock_written,
    fx.FortnoxStockOverlapFound.model_fields["type"].default: _fx_stock_overlap,
    fx.FortnoxStockChecked.model_fields["type"].default: _fx_stock_checked,
    fx.FortnoxStockWatchStarted.model_fields["type"].default: _fx_stock_watch_started,
    fx.FortnoxPaymentChanged.model_fields["type"].default: _fx_payment,
    fx.FortnoxPaymentDeleted.model_fields["type"].default: _fx_payment_deleted,
    fx.FortnoxMasterDataRefreshed.model_fields["type"].default: _fx_masterdata,
    fx.FortnoxVoucherChanged.model_fields["type"].default: _fx_voucher,
    fx.FortnoxRecordUnreadable.model_fields["type"].default: _fx_unreadable,
    oc.Tick.model_fields["type"].default: _tick,
    oc.SettingsChanged.model_fields["type"].default: _settings_changed,
    oc.TenantPaused.model_fields["type"].default: _paused,
    oc.TenantResumed.model_fields["type"].default: _resumed,
    oc.ExportRequested.model_fields["type"].default: _export,
    oc.DeadLetterAction.model_fields["type"].default: _deadletter_action,
    oc.SyncOutcome.model_fields["type"].default: _outcome,
}
