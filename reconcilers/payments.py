"""Payments, Fortnox -> back office: each payment handed over once, with its filters applied.

* Filters (as Opter's payment import): a payment registered before ``ignore_before`` and a
  payment of an invoice numbered below ``ignore_invoice_below`` is not handed over. The filters
  decide whether a payment enters the back office: when it is seen, and again for skipped
  payments when the filters (or the flow) are changed. A payment already handed over is kept in
  step with Fortnox whatever the filters say later: a change is sent again, a deletion removes it.
* Idempotent by payment number: the same payment seen again (a poll, a redelivery) is not sent
  again; an older record (by ``seq``) is ignored; a changed payment is sent again (the command id
  includes the payment's fingerprint); a payment deleted in Fortnox is reported and removed from
  the back office, and Fortnox never reuses the number, so later records for it are ignored.

State ``pay`` per Fortnox payment number: the payment, its status (``disabled``, ``skipped`` with
the reason, ``delivered``, ``deleted``) and the fingerprint delivered.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from reconcilers.context import Ctx
from topics.commands import (
    RegisterTillPayment,
    RegisterTillPaymentData,
    RemoveTillPayment,
    RemoveTillPaymentData,
)
from topics.fortnox import FortnoxPayment, Observation
from topics.settings import TenantSettings

FLOW = "payments"
KIND = "pay"


def _fingerprint(payment: FortnoxPayment) -> str:
    raw = json.dumps(payment.model_dump(mode="json"), sort_keys=True).encode()
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


def skip_reason(ctx: Ctx, payment: FortnoxPayment) -> str | None:
    settings = ctx.settings.payments
    if settings.ignore_before is not None and payment.payment_date < settings.ignore_before:
        return f"registered before {settings.ignore_before.isoformat()}"
    if payment.invoice_number < settings.ignore_invoice_below:
        return f"invoice number below {settings.ignore_invoice_below}"
    return None


def on_payment(ctx: Ctx, payment: FortnoxPayment, observed: Observation | None = None) -> None:
    seq = None if observed is None else observed.seq
    record = ctx.txn.get(KIND, payment.number) or {}
    if record.get("status") == "deleted":
        ctx.note("payment.after_deletion_ignored", number=payment.number)
        return
    if ctx.is_repeat(record, "fx", seq):
        ctx.note("payment.stale_record", number=payment.number, seq=seq)
        return
    ctx.stamp(record, "fx", seq)
    record["payment"] = payment.model_dump(mode="json")
    _decide(ctx, payment.number, record)


def _decide(ctx: Ctx, number: str, record: dict[str, Any]) -> None:
    payment = FortnoxPayment.model_validate(record["payment"])
    fingerprint = _fingerprint(payment)
    if record.get("delivered_fingerprint") == fingerprint:
        ctx.txn.put(KIND, number, record)
        return
    if record.get("delivered") is None:
        if not ctx.settings.payments.enabled:
            ctx.txn.put(KIND, number, {**record, "status": "disabled"})
            return
        reason = skip_reason(ctx, payment)
        if reason is not None:
            if record.get("skipped") != reason:
                ctx.note("payment.skipped", number=number, reason=reason)
            ctx.txn.put(KIND, number, {**record, "status": "skipped", "skipped": reason})
            return
    cmd = ctx.command(
        RegisterTillPayment,
        f"payment:{number}:{fingerprint}",
        RegisterTillPaymentData(payment=payment),
    )
    ctx.txn.put("cmd", cmd.id, {"flow": FLOW, "key": number, "type": cmd.type})
    record.pop("skipped", None)
    record.update(
        status="delivered",
        delivered=cmd.id,
        delivered_fingerprint=fingerprint,
        invoice_number=payment.invoice_number,
    )
    ctx.txn.put(KIND, number, record)


def on_deleted(ctx: Ctx, number: str) -> None:
    record = ctx.txn.get(KIND, number)
    if record is not None and record.get("status") == "deleted":
        return
    record = record or {}
    ctx.txn.put(KIND, number, {**record, "status": "deleted"})
    if record.get("delivered"):
        ctx.note("payment.deleted_in_fortnox", number=number)
        ctx.report(f"payment:{number}", {"kind": "deleted_in_fortnox"})
        cmd = ctx.command(
            RemoveTillPayment,
            f"payment.removed:{number}",
            RemoveTillPaymentData(number=number, invoice_number=int(record["invoice_number"])),
        )
        ctx.txn.put("cmd", cmd.id, {"flow": FLOW, "key": number, "type": cmd.type})


def on_settings_changed(ctx: Ctx, old: TenantSettings, new: TenantSettings) -> None:
    """Changed filters, or the flow turned on: payments not handed over are looked at again."""
    if old.payments == new.payments or not new.payments.enabled:
        return
    for number, record in ctx.txn.scan(KIND):
        if record.get("status") in ("disabled", "skipped"):
            _decide(ctx, number, record)
