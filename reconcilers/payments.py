"""Payments, Fortnox -> back office: each payment handed over once, with its filters applied.

State ``pay`` per Fortnox payment number: what was delivered (a fingerprint of the payment),
or why it was skipped.
"""

from __future__ import annotations

import hashlib
import json

from reconcilers.context import Ctx
from topics.commands import (
    RegisterTillPayment,
    RegisterTillPaymentData,
    RemoveTillPayment,
    RemoveTillPaymentData,
)
from topics.fortnox import FortnoxPayment

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


def on_payment(ctx: Ctx, payment: FortnoxPayment) -> None:
    if not ctx.settings.payments.enabled:
        return
    record = ctx.txn.get(KIND, payment.number) or {}
    fingerprint = _fingerprint(payment)
    if record.get("fingerprint") == fingerprint:
        return
    reason = skip_reason(ctx, payment)
    if reason is not None:
        ctx.note("payment.skipped", number=payment.number, reason=reason)
        ctx.txn.put(KIND, payment.number, {"fingerprint": fingerprint, "skipped": reason})
        return
    cmd = ctx.command(
        RegisterTillPayment,
        f"payment:{payment.number}:{fingerprint}",
        RegisterTillPaymentData(payment=payment),
    )
    ctx.txn.put("cmd", cmd.id, {"flow": FLOW, "key": payment.number, "type": cmd.type})
    ctx.txn.put(
        KIND,
        payment.number,
        {
            "fingerprint": fingerprint,
            "delivered": cmd.id,
            "invoice_number": payment.invoice_number,
            "amount": str(payment.amount),
        },
    )


def on_deleted(ctx: Ctx, number: str) -> None:
    record = ctx.txn.get(KIND, number)
    if record is None or record.get("deleted"):
        return
    ctx.txn.put(KIND, number, {**record, "deleted": True})
    if record.get("delivered"):
        ctx.note("payment.deleted_in_fortnox", number=number)
        ctx.report(f"payment:{number}", {"kind": "deleted_in_fortnox"})
        cmd = ctx.command(
            RemoveTillPayment,
            f"payment.removed:{number}",
            RemoveTillPaymentData(number=number, invoice_number=int(record["invoice_number"])),
        )
        ctx.txn.put("cmd", cmd.id, {"flow": FLOW, "key": number, "type": cmd.type})
