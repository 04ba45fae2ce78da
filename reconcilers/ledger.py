"""Ledger, Fortnox -> back office: each voucher (with its attachment ids) handed over once.

A voucher is sent once per content: the same voucher seen again (polls, redeliveries) is not
sent again, an older record (by ``seq``) is ignored, and a voucher whose attachments changed is
sent again. Fortnox vouchers are never edited, so any other change is the same voucher.
"""

from __future__ import annotations

import hashlib
import json

from reconcilers.context import Ctx
from topics.commands import LedgerVoucherData, SendTillLedgerVoucher
from topics.fortnox import FortnoxVoucher, Observation

FLOW = "ledger"
KIND = "ledger"


def on_voucher(ctx: Ctx, voucher: FortnoxVoucher, observed: Observation | None = None) -> None:
    if not ctx.settings.ledger.enabled:
        return
    seq = None if observed is None else observed.seq
    key = f"{voucher.year}:{voucher.series}:{voucher.number}"
    record = ctx.txn.get(KIND, key) or {}
    if ctx.is_repeat(record, "fx", seq):
        ctx.note("ledger.stale_record", key=key, seq=seq)
        return
    ctx.stamp(record, "fx", seq)
    raw = json.dumps(voucher.model_dump(mode="json"), sort_keys=True).encode()
    fingerprint = hashlib.blake2b(raw, digest_size=8).hexdigest()
    if record.get("fingerprint") == fingerprint:
        ctx.txn.put(KIND, key, record)
        return
    cmd = ctx.command(
        SendTillLedgerVoucher, f"ledger:{key}:{fingerprint}", LedgerVoucherData(voucher=voucher)
    )
    ctx.txn.put("cmd", cmd.id, {"flow": FLOW, "key": key, "type": cmd.type})
    ctx.txn.put(KIND, key, {**record, "fingerprint": fingerprint, "sent": cmd.id})
