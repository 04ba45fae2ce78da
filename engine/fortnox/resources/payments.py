"""Invoice payments (scope ``payment``): listed by ``lastmodified`` or invoice number."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from engine.fortnox.models import InvoicePayment
from engine.fortnox.paging import paginate
from engine.fortnox.polling import DEFAULT_OVERLAP, LastModifiedPoller
from engine.fortnox.resources.base import Resource, seg


def payment_key(raw: dict[str, Any]) -> str:
    return str(raw.get("Number") or raw.get("number") or "")


class InvoicePayments(Resource):
    PATH = "/3/invoicepayments"

    def iterate(self, *, lastmodified: str | None = None) -> AsyncIterator[InvoicePayment]:
        params = {"lastmodified": lastmodified}
        return paginate(self.client, self.PATH, "InvoicePayments", InvoicePayment, params)

    async def for_invoice(self, invoice_number: int | str) -> list[InvoicePayment]:
        """Payments of exactly this invoice (the search matches substrings, so filter)."""
        wanted = str(invoice_number)
        params = {"invoicenumber": wanted}
        return [
            p
            async for p in paginate(
                self.client, self.PATH, "InvoicePayments", InvoicePayment, params
            )
            if str(p.invoice_number) == wanted
        ]

    async def get(self, number: str | int) -> InvoicePayment:
        path = f"{self.PATH}/{seg(number)}"
        data = await self.client.get_json(path)
        return self._one(data, "InvoicePayment", InvoicePayment, path)

    def poller(
        self,
        *,
        overlap: timedelta = DEFAULT_OVERLAP,
        initial_since: datetime | None = None,
    ) -> LastModifiedPoller[InvoicePayment]:
        return LastModifiedPoller(
            self.client,
            self.PATH,
            "InvoicePayments",
            InvoicePayment,
            payment_key,
            overlap=overlap,
            initial_since=initial_since,
        )
