"""Internal events: what one flow tells the others, routed by the dispatcher after the handler
that raised them (``Ctx.raise_event``), so flows do not import each other in a circle."""

from __future__ import annotations

from dataclasses import dataclass

from topics.outcomes import OutcomeData


@dataclass(frozen=True, slots=True)
class CustomerReady:
    """A till customer now exists in Fortnox under ``number`` (invoices waiting on it go on)."""

    till_customer_id: str
    number: str


@dataclass(frozen=True, slots=True)
class CustomerFailed:
    """Creating a till customer in Fortnox failed for good (invoices waiting on it say why)."""

    till_customer_id: str
    outcome: OutcomeData


@dataclass(frozen=True, slots=True)
class SubmittedVoucherDue:
    """A Z-report record holds a voucher the till booked itself (SIE 4I): it is to be posted."""

    key: str


InternalEvent = CustomerReady | CustomerFailed | SubmittedVoucherDue
