"""Full passes over a Fortnox resource, and which records a pass proves missing.

A pass publishes every record Fortnox has (each with ``observed.sync_pass``) and then
``fortnox.sync.completed``. An entity counts as present in the pass if any observation of it
(a pass record, a poll, the feed, or Kassasync's own write) was applied while the pass was under
way; only the others are missing. So a poll that lands between a pass's records, or a customer
Kassasync creates during a pass, is never taken for missing, and a redelivered or unknown
completion proves nothing.

State ``sync`` per resource: the pass under way (``current``) and the last passes completed.
"""

from __future__ import annotations

from reconcilers.context import Ctx

KIND = "sync"
KEEP_DONE = 8


def observed(ctx: Ctx, resource: str, sync_pass: str | None) -> str | None:
    """A fresh observation of one record; returns the pass to stamp on the record as ``seen``."""
    record = ctx.txn.get(KIND, resource) or {}
    current = record.get("current")
    if sync_pass is not None and sync_pass != current and sync_pass not in record.get("done", []):
        ctx.txn.put(
            KIND, resource, {**record, "current": sync_pass, "started": ctx.now.isoformat()}
        )
        return sync_pass
    return None if current is None else str(current)


def observed_unreadable(
    ctx: Ctx, kind: str, resource: str, key: str, sync_pass: str | None
) -> None:
    """A record Fortnox has but Kassasync could not read: the entity is still present in
    Fortnox, so a pass under way must not take it for missing."""
    seen = observed(ctx, resource, sync_pass)
    record = ctx.txn.get(kind, key)
    if record is not None and record.get("seen") != seen:
        ctx.txn.put(kind, key, {**record, "seen": seen})


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
