"""Invoices: a till invoice becomes a Fortnox order, once, after its customer is in Fortnox.

State ``inv`` per invoice id: the invoice and its status (``before_start``, ``waiting`` with the
reason, ``posting``, ``done`` with the order number); ``inv.wait`` per till customer: invoices that
wait for the customer to be created in Fortnox.
"""

from __future__ import annotations

import hashlib
from typing import Any

from reconcilers.context import Ctx
from topics.commands import CreateFortnoxOrder, CreateOrderData
from topics.errors import ErrorKind, shop_error
from topics.fortnox import MasterData
from topics.outcomes import OutcomeData, OutcomeStatus
from topics.till import InvoiceCreatedData

FLOW = "invoices"
KIND = "inv"
WAIT = "inv.wait"


def external_reference(invoice_id: str) -> str:
    """The order's ExternalInvoiceReference1: unique per invoice, compared exactly on lookup."""
    ref = f"KS-{invoice_id}"
    if len(ref) <= 80:
        return ref
    return "KS-" + hashlib.blake2b(invoice_id.encode(), digest_size=16).hexdigest()


def on_invoice(ctx: Ctx, data: InvoiceCreatedData) -> None:
    settings = ctx.settings.invoices
    existing = ctx.txn.get(KIND, data.invoice_id)
    if existing is not None:
        ctx.note("invoice.duplicate", invoice_id=data.invoice_id, status=existing["status"])
        return
    record: dict[str, Any] = {"invoice": data.model_dump(mode="json"), "status": "new"}
    ctx.txn.put(KIND, data.invoice_id, record)
    if not settings.enabled:
        _set(ctx, data.invoice_id, "disabled")
        return
    if settings.start_date is not None and data.invoice_date < settings.start_date:
        _set(ctx, data.invoice_id, "before_start")
        return
    _try(ctx, data.invoice_id)


def _set(ctx: Ctx, invoice_id: str, status: str, **extra: Any) -> None:
    record = ctx.txn.get(KIND, invoice_id)
    assert record is not None
    ctx.txn.put(KIND, invoice_id, {"invoice": record["invoice"], "status": status, **extra})


def _try(ctx: Ctx, invoice_id: str) -> None:
    from reconcilers import customers  # customers also calls back into this module

    record = ctx.txn.get(KIND, invoice_id)
    if record is None or record["status"] in ("posting", "done"):
        return
    data = InvoiceCreatedData.model_validate(record["invoice"])
    number = customers.mapping(ctx, data.till_customer_id)
    if number is None:
        known = customers.ensure_in_fortnox(ctx, data.till_customer_id)
        waiting = list((ctx.txn.get(WAIT, data.till_customer_id) or {}).get("invoices", []))
        if invoice_id not in waiting:
            waiting.append(invoice_id)
        ctx.txn.put(WAIT, data.till_customer_id, {"invoices": waiting})
        reason = (
            "the customer is being created in Fortnox"
            if known
            else f"customer {data.till_customer_id} has not been sent by the till yet"
        )
        _set(ctx, invoice_id, "waiting", waiting_for=reason)
        return
    terms = data.terms_of_payment or ctx.settings.invoices.terms_of_payment
    md_record = ctx.txn.get("md", "current")
    if terms is not None and md_record is not None:
        master = MasterData.model_validate(md_record)
        if master.terms_of_payment and terms not in master.terms_of_payment:
            error = shop_error(ErrorKind.TERMS_OF_PAYMENT_MISSING, code=terms)
            _set(ctx, invoice_id, "waiting", error=error.model_dump(mode="json"))
            return
    cmd = ctx.command(
        CreateFortnoxOrder,
        f"invoice:{invoice_id}",
        CreateOrderData(
            invoice_id=invoice_id,
            external_reference=external_reference(invoice_id),
            customer_number=number,
            order_date=data.invoice_date,
            delivery_date=data.due_date,
            currency=data.currency,
            terms_of_payment=terms,
            your_reference=data.your_reference,
            remarks=data.remarks,
            rows=CreateOrderData.rows_from_invoice(data.rows),
        ),
    )
    ctx.txn.put("cmd", cmd.id, {"flow": FLOW, "key": invoice_id, "type": cmd.type})
    _set(ctx, invoice_id, "posting", command_id=cmd.id)


def on_customer_ready(ctx: Ctx, till_customer_id: str, number: str) -> None:
    waiting = (ctx.txn.get(WAIT, till_customer_id) or {}).get("invoices", [])
    ctx.txn.delete(WAIT, till_customer_id)
    for invoice_id in waiting:
        _try(ctx, invoice_id)


def on_customer_failed(ctx: Ctx, till_customer_id: str, outcome: OutcomeData) -> None:
    waiting = (ctx.txn.get(WAIT, till_customer_id) or {}).get("invoices", [])
    for invoice_id in waiting:
        error = outcome.error.model_dump(mode="json") if outcome.error else None
        _set(
            ctx, invoice_id, "waiting", waiting_for="the customer could not be created", error=error
        )


def retry_waiting(ctx: Ctx) -> None:
    for invoice_id, record in ctx.txn.scan(KIND):
        if record["status"] == "waiting" and record.get("error"):
            _try(ctx, invoice_id)


def on_outcome(ctx: Ctx, invoice_id: str, outcome: OutcomeData) -> None:
    record = ctx.txn.get(KIND, invoice_id)
    if record is None or record.get("command_id") != outcome.command_id:
        return
    if outcome.status is OutcomeStatus.DONE:
        order = outcome.result.get("document_number")
        ctx.note("invoice.order_created", invoice_id=invoice_id, order=order)
        _set(ctx, invoice_id, "done", order=order)
    elif outcome.status in (OutcomeStatus.REJECTED, OutcomeStatus.SKIPPED):
        error = outcome.error.model_dump(mode="json") if outcome.error else None
        _set(ctx, invoice_id, "waiting", error=error)


def retry(ctx: Ctx, invoice_id: str) -> None:
    _try(ctx, invoice_id)
