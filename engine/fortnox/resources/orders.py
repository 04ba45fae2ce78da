"""Orders (scope ``order``): a till invoice becomes a Fortnox order, never twice.

Fortnox's search parameters match substrings (``ILIKE '%value%'``), so a lookup by reference
always compares the returned ``ExternalInvoiceReference1`` / ``YourOrderNumber`` exactly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from engine.fortnox.errors import UnknownOutcome, ValidationFailed
from engine.fortnox.models import Order
from engine.fortnox.observability import log
from engine.fortnox.paging import paginate
from engine.fortnox.resources.base import Resource, seg


@dataclass(frozen=True)
class EnsuredOrder:
    order: Order
    created: bool


class Orders(Resource):
    PATH = "/3/orders"

    def iterate(self, *, filter: str | None = None, **search: str) -> AsyncIterator[Order]:
        params = {"filter": filter, **search}
        return paginate(self.client, self.PATH, "Orders", Order, params)

    async def get(self, document_number: str) -> Order:
        path = f"{self.PATH}/{seg(document_number)}"
        return self._one(await self.client.get_json(path), "Order", Order, path)

    async def create(self, order: Order) -> Order:
        """POST an order. Never retried once it may have arrived (raises UnknownOutcome)."""
        context = {"code": order.terms_of_payment}
        data = await self.client.send_json(
            "POST", self.PATH, {"Order": order.to_payload()}, idempotent=False, context=context
        )
        return self._one(data, "Order", Order, self.PATH)

    async def find_by_reference(
        self, reference: str, *, include_cancelled: bool = False
    ) -> list[Order]:
        """Orders whose ExternalInvoiceReference1 or YourOrderNumber equals ``reference``."""
        found: dict[str, Order] = {}
        async for order in self.iterate(externalinvoicereference1=reference):
            if order.external_invoice_reference1 == reference and order.document_number:
                found[order.document_number] = order
        try:
            async for order in self.iterate(yourordernumber=reference):
                if order.your_order_number == reference and order.document_number:
                    found[order.document_number] = order
        except ValidationFailed as exc:
            # Not every Fortnox version accepts this search on orders (2000588).
            log.info(
                "fortnox.order.lookup_skipped",
                tenant=self.client.tenant,
                field="yourordernumber",
                code=exc.code,
            )
        orders = sorted(found.values(), key=lambda o: o.document_number or "")
        if not include_cancelled:
            orders = [o for o in orders if not o.cancelled]
        return orders

    async def ensure(
        self, order: Order, reference: str, *, settle_seconds: float = 5.0
    ) -> EnsuredOrder:
        """Create ``order`` unless one with ``reference`` exists; never creates two.

        ``reference`` must be in the order as ExternalInvoiceReference1 (set here if missing).
        After an UnknownOutcome the lookup is repeated once after ``settle_seconds``; if the
        order is still not visible the UnknownOutcome is raised again, and the caller's next
        attempt (which looks first) decides.
        """
        existing = await self.find_by_reference(reference)
        if existing:
            return EnsuredOrder(existing[0], created=False)
        if order.external_invoice_reference1 != reference:
            order = order.model_copy(update={"external_invoice_reference1": reference})
            order.model_fields_set.add("external_invoice_reference1")
        try:
            return EnsuredOrder(await self.create(order), created=True)
        except UnknownOutcome:
            await asyncio.sleep(settle_seconds)
            existing = await self.find_by_reference(reference)
            if existing:
                log.info("fortnox.order.found_after_unknown_outcome", tenant=self.client.tenant)
                return EnsuredOrder(existing[0], created=True)
            raise
