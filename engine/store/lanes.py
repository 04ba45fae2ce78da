"""Lanes: which of a tenant's commands must wait for which (head-of-line blocking, issue 12).

Commands of one tenant and target are delivered in order *within a lane*: the commands about
one entity (an article, a customer, a payment) or, where the order of a whole flow matters to
the books, of that flow (vouchers, ledger vouchers). A command that keeps failing (the till
answers 5xx for a day, a Fortnox outcome stays unknown) holds back only the later commands of
its own lane; the tenant's other lanes go on.

Cross-entity dependencies share a lane: a Fortnox order waits behind the creation of its
customer (both ``customer:<number>``), a till stock adjustment behind the article's upsert.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from topics.envelope import Envelope

#: A command type -> (lane prefix, the data field(s) naming its entity; empty: the whole flow).
_ENTITY: dict[str, tuple[str, tuple[str, ...]]] = {
    "fortnox.customer.create": ("customer", ("customer_number",)),
    "fortnox.customer.update": ("customer", ("customer_number",)),
    "fortnox.customer.deactivate": ("customer", ("customer_number",)),
    "fortnox.order.create": ("customer", ("customer_number",)),
    "fortnox.stock.apply": ("article", ("article_number",)),
    "fortnox.voucher.create": ("vouchers", ()),
    "till.customer.upsert": ("customer", ("till_customer_id",)),
    "till.customer.delete": ("customer", ("till_customer_id",)),
    "till.article.upsert": ("article", ("article", "article_number")),
    "till.article.remove": ("article", ("article_number",)),
    "till.stock.adjust": ("article", ("article_number",)),
    "till.payment.register": ("payment", ("payment", "number")),
    "till.payment.removed": ("payment", ("number",)),
    "till.ledger.voucher": ("ledger", ()),
}


def lane_of(command_type: str, payload: bytes | str | dict[str, Any] | Envelope) -> str:
    """The lane of a command, from its type and its JSON or the command itself (the processor
    passes the command it made: its fields are the JSON's, without parsing the JSON again).
    A type this module does not know gets a lane of its own type: in order with its kind,
    never blocking another kind."""
    spec = _ENTITY.get(command_type)
    if spec is None:
        return f"type:{command_type}"
    prefix, path = spec
    if not path:
        return prefix
    value: Any
    if isinstance(payload, Envelope):
        value = getattr(payload, "data", None)
        for key in path:
            value = getattr(value, key, None) if isinstance(value, BaseModel) else None
    else:
        data: Any = payload if isinstance(payload, dict) else json.loads(payload)
        value = data.get("data", {})
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
    if value is None:
        return f"type:{command_type}"
    return f"{prefix}:{value}"
