"""Pure queries over the reconcilers' records, for the operator surface: it asks here what a
record means instead of reading the flows' private keys itself."""

from __future__ import annotations

from decimal import InvalidOperation

from reconcilers.state import Record
from reconcilers.stock import Level


def stock_drifts(stock: Record, want: Record | None) -> bool:
    """Whether an article's stock still waits to be made equal on both sides.

    An article the till does not hold (``#E#``-excluded, or its barcode held by another article)
    owes the till nothing while it is held out: its level is kept for when it comes in, and it
    is not drift. A record that cannot be read counts as drift (someone should look).
    """
    if want is not None and want.get("in_till") is False:
        return False
    try:
        return not Level.load(stock).settled
    except (TypeError, ValueError, InvalidOperation):
        return True


def article_drifts(want: Record, till: Record | None) -> bool:
    """Whether an article the till should hold has not reached it as Fortnox has it now."""
    if not want.get("in_till") or want.get("keep"):
        return False
    if till is None or till.get("stale"):
        return True
    return bool(till.get("sent") != want.get("article"))
