"""``kassasync import-sie FILE --tenant T``: a till's daily SIE 4I file as vouchers for Fortnox.

Each ``#VER`` becomes a ``till.voucher.submitted`` event, stored like any ingested event (same
validation, de-duplicated by id), and is then posted through the Z-report checks and ledger. The
voucher's key is a fingerprint of its content (date, text, rows) plus its position among
identical vouchers in the file, so the same file — or the same vouchers in a file generated again
with another header — is posted once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

from engine.clock import utcnow
from engine.embedded.edge import Edge
from engine.gateway.ingest import store, validate_batch
from engine.sie import read_sie_file
from engine.sie.model import SieDocument, Voucher

COST_CENTER_DIMENSION = "1"


def voucher_events(tenant: str, document: SieDocument) -> list[dict[str, Any]]:
    seen: Counter[str] = Counter()
    events: list[dict[str, Any]] = []
    for voucher in document.vouchers:
        rows = [_row(r.account, r.amount, r.objects, r.text) for r in voucher.trans_rows]
        fingerprint = _fingerprint(voucher, rows)
        seen[fingerprint] += 1
        key = f"{fingerprint}:{seen[fingerprint]}"
        events.append(
            {
                "id": f"sie-{key}",
                "tenant": tenant,
                "type": "till.voucher.submitted",
                "occurred_at": _occurred_at(voucher).isoformat(),
                "source": "till",
                "data": {
                    "key": key,
                    "source": "sie4i",
                    "transaction_date": voucher.date.isoformat(),
                    "description": (voucher.text or f"SIE {voucher.date.isoformat()}")[:200],
                    "rows": rows,
                },
            }
        )
    return events


def _occurred_at(voucher: Voucher) -> dt.datetime:
    """The start of the voucher's day (UTC), or now if that is still ahead: the same voucher
    imported again is the same event (its id is its content's fingerprint, and an id with other
    content is refused as a conflict)."""
    return min(dt.datetime.combine(voucher.date, dt.time(), tzinfo=dt.UTC), utcnow())


def _row(account: str, amount: Any, objects: Any, text: str) -> dict[str, Any]:
    row: dict[str, Any] = {
        "account": int(account) if account.isdigit() else account,
        "amount": str(amount),
    }
    for ref in objects:
        if str(ref.dimension) == COST_CENTER_DIMENSION:
            row["cost_center"] = ref.number
    if text:
        row["text"] = text[:200]
    return row


def _fingerprint(voucher: Voucher, rows: list[dict[str, Any]]) -> str:
    raw = json.dumps([voucher.date.isoformat(), voucher.text, rows], sort_keys=True)
    return hashlib.blake2b(raw.encode(), digest_size=10).hexdigest()


def import_file(edge: Edge, tenant: str, path: Path) -> dict[str, Any]:
    """Read, validate and store; nothing is stored when the file or any voucher is invalid."""
    document = read_sie_file(path)
    result: dict[str, Any] = {"file": str(path), "tenant": tenant, "encoding": document.encoding}
    if document.errors:
        result["errors"] = [e.to_dict() for e in document.errors]
        return result
    unbalanced = [v.line for v in document.unbalanced_vouchers]
    if unbalanced:
        result["errors"] = [
            {"line": line, "message": "voucher does not balance over its #TRANS rows"}
            for line in unbalanced
        ]
        return result
    events, problems = validate_batch(tenant, voucher_events(tenant, document))
    if problems:
        result["errors"] = problems
        return result
    stored = store(edge, tenant, events)
    if stored.conflicts:
        result["errors"] = [c.problem() for c in stored.conflicts]
        return result
    result.update(vouchers=len(events), accepted=stored.accepted, duplicates=stored.duplicates)
    return result
