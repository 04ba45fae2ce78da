"""Ledger, Fortnox -> back office: each voucher (with its attachment ids) handed over once."""

from __future__ import annotations

import hashlib
import json

from reconcilers.context import Ctx
from topics.commands import LedgerVoucherData, SendTillLedgerVoucher
from topics.fortnox import FortnoxVoucher

FLOW = "ledger"
KIND = "ledger"


def on_voucher(ctx: Ctx, voucher: FortnoxVoucher) -> None:
    if not ctx.settings.ledger.enabled:
        return
    key = f"{voucher.year}:{voucher.series}:{voucher.number}"
    raw = json.dumps(voucher.model_dump(mode="json"), sort_keys=True).encode()
    fingerprint = hashlib.blake2b(raw, digest_size=8).hexdigest()
    if (ctx.txn.get(KIND, key) or {}).get("fingerprint") == fingerprint:
        return
    cmd = ctx.command(
        SendTillLedgerVoucher, f"ledger:{key}:{fingerprint}", LedgerVoucherData(voucher=voucher)
    )
    ctx.txn.put("cmd", cmd.id, {"flow": FLOW, "key": key, "type": cmd.type})
    ctx.txn.put(KIND, key, {"fingerprint": fingerprint, "sent": cmd.id})
