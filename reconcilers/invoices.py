"""Invoices: a till invoice becomes a Fortnox order, once, after its customer is in Fortnox.

* The order names the customer's Fortnox number, so it waits until the customer is in Fortnox:
  a new till customer is created first (in Fortnox-as-master too: the one exception), then the
  order. In till-as-master, customer changes still waiting in the flush window are written
  before the order, so the order carries the customer's current details.
* Terms of payment (the invoice's own, else the tenant's) must be in Fortnox's list from the
  master data; otherwise the invoice waits with ``terms_of_payment_missing`` naming the code, and
  goes as soon as the master data or the settings have it.
* Never two orders for one invoice: one record per invoice id, so a redelivered invoice or
  outcome changes nothing, and every order carries the external reference that the writer looks
  up before it creates.
* Invoices dated before the start date, or received while the flow is off, are kept and sent if
  the settings later include them.

State ``inv`` per invoice id: the invoice and its status (``disabled``, ``before_start``,
``waiting`` with the reason or error, ``posting``, ``done`` with the order number, ``rejected``
until an operator retries); ``inv.wait`` per till customer: invoices waiting for the customer.
"""

from __future__ import annotations

import hashlib
from typing import Any

from reconcilers import customers
from reconcilers.context import Ctx
from reconcilers.events import CustomerFailed, CustomerReady
from topics.commands import CreateFortnoxOrder, CreateOrderData
from topics.errors import ErrorKind, shop_error
from topics.fortnox import MasterData
from topics.outcomes import OutcomeData, OutcomeStatus
from topics.settings import CustomerMaster
from topics.till import InvoiceCreatedData

FLOW = "invoices"
KIND = "inv"
WAIT = "inv.wait"

_WAITING_FOR = {
    "creating": "the customer is being created in Fortnox",
    "unknown": "the till has not sent customer {customer} (or deleted it)",
    "deleted": "customer {customer} was deleted in Fortnox, which is master for customers",
    "failed": "customer {customer} could not be created in Fortnox",
}


def external_reference(invoice_id: str) -> str:
    """The order's ExternalInvoiceReference1: unique per invoice, compared exactly on lookup."""
    ref = f"KS-{invoice_id}"
    if len(ref) <= 80:
        return ref
    return "KS-" + hashlib.blake2b(invoice_id.encode(), digest_size=16).hexdigest()


def on_invoice(ctx: Ctx, data: InvoiceCreatedData) -> None:
    existing = ctx.txn.get(KIND, data.invoice_id)
    if existing is not None:
        ctx.note("invoice.duplicate", invoice_id=data.invoice_id, status=existing["status"])
        return
    record: dict[str, Any] = {"invoice": data.model_dump(mode="json"), "status": "new"}
    ctx.txn.put(KIND, data.invoice_id, record)
    _try(ctx, data.invoice_id)


def _set(ctx: Ctx, invoice_id: str, status: str, **extra: Any) -> None:
    record = ctx.txn.get(KIND, invoice_id)
    assert record is not None
    new = {"invoice": record["invoice"], "status": status, **extra}
    if new != record:
        ctx.txn.put(KIND, invoice_id, new)


def _try(ctx: Ctx, invoice_id: str) -> None:
    record = ctx.txn.get(KIND, invoice_id)
    if record is None or record["status"] in ("posting", "done"):
        return
    settings = ctx.settings.invoices
    data = InvoiceCreatedData.model_validate(record["invoice"])
    if not settings.enabled:
        _set(ctx, invoice_id, "disabled")
        return
    if settings.start_date is not None and data.invoice_date < settings.start_date:
        _set(ctx, invoice_id, "before_start")
        return
    customer = data.till_customer_id
    state = customers.ensure_in_fortnox(ctx, customer)
    if state != "ready":
        waiting = list((ctx.txn.get(WAIT, customer) or {}).get("invoices", []))
        if invoice_id not in waiting:
            waiting.append(invoice_id)
            ctx.txn.put(WAIT, customer, {"invoices": waiting})
        _set(ctx, invoice_id, "waiting", waiting_for=_WAITING_FOR[state].format(customer=customer))
        return
    terms = data.terms_of_payment or settings.terms_of_payment
    if terms is not None:
        md_record = ctx.txn.get("md", "current")
        if md_record is None:
            _set(ctx, invoice_id, "waiting", waiting_for="Fortnox master data")
            return
        if terms not in MasterData.model_validate(md_record).terms_of_payment:
            error = shop_error(ErrorKind.TERMS_OF_PAYMENT_MISSING, code=terms)
            ctx.note("invoice.terms_missing", invoice_id=invoice_id, code=terms)
            _set(ctx, invoice_id, "waiting", error=error.model_dump(mode="json"))
            return
    if ctx.settings.customers.master is CustomerMaster.TILL:
        customers.flush_pending(ctx, customer)
    number = customers.mapping(ctx, customer)
    assert number is not None
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
    ctx.note("invoice.order_sent", invoice_id=invoice_id, customer_number=number)
    _set(ctx, invoice_id, "posting", command_id=cmd.id)


def on_customer_ready(ctx: Ctx, event: CustomerReady) -> None:
    till_customer_id = event.till_customer_id
    waiting = (ctx.txn.get(WAIT, till_customer_id) or {}).get("invoices", [])
    ctx.txn.delete(WAIT, till_customer_id)
    for invoice_id in waiting:
        _try(ctx, invoice_id)


def on_customer_failed(ctx: Ctx, event: CustomerFailed) -> None:
    till_customer_id, outcome = event.till_customer_id, event.outcome
    waiting = (ctx.txn.get(WAIT, till_customer_id) or {}).get("invoices", [])
    error = outcome.error.model_dump(mode="json") if outcome.error else None
    for invoice_id in waiting:
        reason = _WAITING_FOR["failed"].format(customer=till_customer_id)
        _set(ctx, invoice_id, "waiting", waiting_for=reason, error=error)


def retry_waiting(ctx: Ctx) -> None:
    """Master data or settings changed: try every invoice that waits for them."""
    for invoice_id, record in ctx.txn.scan(KIND):
        if record["status"] in ("disabled", "before_start") or (
            record["status"] == "waiting"
            and (record.get("error") or record.get("waiting_for") == "Fortnox master data")
        ):
            _try(ctx, invoice_id)


def on_outcome(ctx: Ctx, invoice_id: str, outcome: OutcomeData) -> None:
    record = ctx.txn.get(KIND, invoice_id)
    if record is None or record.get("command_id") != outcome.command_id:
        return
    if outcome.status is OutcomeStatus.DONE:
        order = outcome.result.get("document_number")
        ctx.note("invoice.order_created", invoice_id=invoice_id, order=order)
        _set(ctx, invoice_id, "done", order=order)
    elif outcome.status is OutcomeStatus.SKIPPED:
        error = outcome.error.model_dump(mode="json") if outcome.error else None
        _set(ctx, invoice_id, "waiting", waiting_for="the tenant was paused", error=error)
    elif outcome.status is OutcomeStatus.REJECTED:
        error = outcome.error.model_dump(mode="json") if outcome.error else None
        _set(ctx, invoice_id, "rejected", error=error)


def retry(ctx: Ctx, invoice_id: str) -> None:
    record = ctx.txn.get(KIND, invoice_id)
    if record is not None and record["status"] in ("rejected", "waiting"):
        _set(ctx, invoice_id, "waiting", waiting_for="retried")
        _try(ctx, invoice_id)
