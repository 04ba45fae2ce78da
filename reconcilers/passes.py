"""Full passes over a Fortnox resource, and which records a pass proves missing.

A pass publishes every record Fortnox has (each with ``observed.sync_pass``) and then
``fortnox.sync.completed``. An entity counts as present in the pass if any observation of it
(a pass record, a poll, the feed, or Kassasync's own write) was applied while the pass was under
way, or showed it present after the pass began; only the others are missing. So a poll that
lands between a pass's records, or a customer Kassasync creates during a pass, is never taken
for missing, and a redelivered or unknown completion proves nothing.

"After the pass began" is decided by the tenant's one sequence of Fortnox observations, never by
the order messages arrive in: a pass takes a number as it starts (``started_seq``), and every
observation carries the number it was given once Fortnox had answered. On Kafka the create's
outcome and the pass's records travel on different topics and may be applied in either order: a
customer created after the pass read its page would otherwise be taken for missing and created
again under a new number.

State ``sync`` per resource: the pass under way (``current``) and the last passes completed.
A record carries ``seen`` (the pass it was last observed in). Its newest applied Fortnox record
is ``fx_seq`` (:meth:`Ctx.stamp` on the ``fx`` channel); what showed it present without being
applied as its content (the answer to Kassasync's own create, an unreadable record) is kept as
``present_seq``, only where it is newer.
"""

from __future__ import annotations

from typing import Any

from reconcilers.context import Ctx
from topics.fortnox import SyncCompletedData

KIND = "sync"
KEEP_DONE = 8


#: The newest applied Fortnox record's number, as :meth:`Ctx.stamp` keeps it (channel "fx").
APPLIED_SEQ = "fx_seq"


def _shown(record: dict[str, Any]) -> int | None:
    """The newest observation number that showed ``record`` present."""
    numbers = [int(record[k]) for k in (APPLIED_SEQ, "present_seq") if record.get(k) is not None]
    return max(numbers) if numbers else None


def present(record: dict[str, Any], seq: int | None) -> None:
    """``record`` was shown present in Fortnox by observation number ``seq`` (not an applied
    record of it, which ``fx_seq`` already counts)."""
    shown = _shown(record)
    if seq is not None and (shown is None or seq > shown):
        record["present_seq"] = seq


def missing(record: dict[str, Any], data: SyncCompletedData) -> bool:
    """Whether the completed pass ``data`` proves ``record`` missing in Fortnox: not deleted
    already, not observed in the pass, and not shown present since the pass began (an entity
    created after the pass read its page is absent from it only because it is newer)."""
    if record.get("deleted") or record.get("seen") == data.sync_pass:
        return False
    shown = _shown(record)
    return data.started_seq is None or shown is None or shown < data.started_seq


def observed(ctx: Ctx, resource: str, sync_pass: str | None) -> str | None:
    """A fresh observation of one record; returns the pass to stamp on the record as ``seen``:
    its own (a new pass becomes the one under way), else the pass under way."""
    record = ctx.txn.get(KIND, resource) or {}
    current = record.get("current")
    if sync_pass is not None and sync_pass != current and sync_pass not in record.get("done", []):
        ctx.txn.put(
            KIND, resource, {**record, "current": sync_pass, "started": ctx.now.isoformat()}
        )
        return sync_pass
    return None if current is None else str(current)


def listed(
    ctx: Ctx, kind: str, resource: str, key: str, sync_pass: str | None, seq: int | None
) -> None:
    """A record Fortnox showed present whose content is not applied: it could not be read, or
    it is older than what was applied (a poll read after the pass's page got to the log first).
    The entity is still present in Fortnox, so the pass must not take it for missing, and its
    completion still counts. A record of a pass completed already (redelivered) changes
    nothing."""
    if sync_pass is not None and sync_pass in (ctx.txn.get(KIND, resource) or {}).get("done", []):
        return
    seen = observed(ctx, resource, sync_pass)
    record = ctx.txn.get(kind, key)
    if record is None:
        return
    updated = {**record, "seen": seen}
    present(updated, seq)
    if updated != record:
        ctx.txn.put(kind, key, updated)


def current(ctx: Ctx, resource: str) -> str | None:
    value = (ctx.txn.get(KIND, resource) or {}).get("current")
    return None if value is None else str(value)


def completed_any(ctx: Ctx, resource: str) -> bool:
    """Whether a full pass over ``resource`` has completed (the records show what Fortnox has)."""
    return bool((ctx.txn.get(KIND, resource) or {}).get("done"))


def complete(ctx: Ctx, resource: str, sync_pass: str, count: int) -> bool:
    """Close a pass; False when the completion proves nothing (redelivered, or a pass whose
    records were not seen)."""
    record = ctx.txn.get(KIND, resource) or {}
    done = list(record.get("done", []))
    if sync_pass in done:
        ctx.note("sync.completed_again", resource=resource, sync_pass=sync_pass)
        return False
    if record.get("current") != sync_pass and count != 0:
        ctx.note("sync.completed_unknown", resource=resource, sync_pass=sync_pass, count=count)
        return False
    done.append(sync_pass)
    ctx.txn.put(
        KIND,
        resource,
        {"current": None, "done": done[-KEEP_DONE:], "pass": sync_pass, "at": ctx.now.isoformat()},
    )
    return True
