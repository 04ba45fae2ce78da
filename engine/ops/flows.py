"""The flows the operator sees, their titles, and which flow a message belongs to."""

from __future__ import annotations

from reconcilers import dispatch
from topics import registry
from topics.names import Topic

FLOWS: tuple[str, ...] = dispatch.FLOWS

FLOW_TITLES: dict[str, str] = {
    "customers": "Customers",
    "articles": "Articles",
    "stock": "Stock",
    "zreports": "Z-reports",
    "invoices": "Invoices",
    "payments": "Payments",
    "ledger": "Ledger",
}

#: Flows the reconcilers retry themselves when an operator retries one of their dead letters
#: (a new command is made from the current state); the others get their old command requeued.
RETRY_FLOWS: frozenset[str] = frozenset(dispatch.RETRY)

#: The Fortnox poll stream (``fx_cursor.resource``) each flow depends on.
POLLED_BY: dict[str, str] = {
    "articles": "articles",
    "customers": "customers",
    "payments": "payments",
}

#: A command pending longer than this turns its flow amber, and red after RED_PENDING_SECONDS.
AMBER_PENDING_SECONDS = 300.0

RED_PENDING_SECONDS = 3600.0

#: A Fortnox poll stream whose last successful poll is older than this turns its flow amber.
STALE_POLL_SECONDS = 900.0

COMMAND_TOPICS = frozenset({Topic.FORTNOX_COMMANDS.value, Topic.TILL_COMMANDS.value})

_FLOW_OF_TYPE: tuple[tuple[str, str], ...] = (
    ("fortnox.customer.", "customers"),
    ("till.customer.", "customers"),
    ("fortnox.article.", "articles"),
    ("till.article.", "articles"),
    ("fortnox.stock.", "stock"),
    ("till.stock.", "stock"),
    ("fortnox.voucher.create", "zreports"),
    ("fortnox.masterdata.", "zreports"),
    ("till.zreport.", "zreports"),
    ("fortnox.order.", "invoices"),
    ("till.invoice.", "invoices"),
    ("fortnox.payment.", "payments"),
    ("till.payment.", "payments"),
    ("fortnox.voucher.changed", "ledger"),
    ("till.ledger.", "ledger"),
)


def flow_of(message_type: str) -> str | None:
    """The flow a message or command type belongs to (None for control and master data)."""
    for prefix, flow in _FLOW_OF_TYPE:
        if message_type.startswith(prefix):
            return flow
    return None


def topic_of(message_type: str) -> str:
    """The topic a message type travels on ('unknown' for a type the contract does not know)."""
    model = registry.BY_TYPE.get(message_type)
    return "unknown" if model is None else str(model.TOPIC)


#: Counts shown on the tenant page: record kind -> label.
COUNTED_KINDS: dict[str, str] = {
    "art.fx": "Fortnox articles known",
    "art.till": "articles sent to the till",
    "cust.till": "till customers",
    "cust.fx": "Fortnox customers known",
    "stock": "stock articles",
    "zr": "Z-reports",
    "inv": "invoices",
    "pay": "payments",
    "ledger": "ledger vouchers",
    "cmd": "commands awaiting an outcome",
}
