"""One object per tenant with every resource Kassasync uses: ``FortnoxApi(client).customers``."""

from __future__ import annotations

from typing import Self

from engine.fortnox.client import FortnoxClient
from engine.fortnox.resources import (
    Articles,
    Bookkeeping,
    Customers,
    Files,
    InvoicePayments,
    Orders,
    Prices,
    Settings,
)
from engine.fortnox.stock import Stock


class FortnoxApi:
    def __init__(self, client: FortnoxClient, *, stock_documents_enabled: bool = False) -> None:
        self.client = client
        self.customers = Customers(client)
        self.articles = Articles(client)
        self.prices = Prices(client)
        self.payments = InvoicePayments(client)
        self.bookkeeping = Bookkeeping(client)
        self.orders = Orders(client)
        self.settings = Settings(client)
        self.files = Files(client)
        self.stock = Stock(client, documents_enabled=stock_documents_enabled)

    @property
    def tenant(self) -> str:
        return self.client.tenant

    def __repr__(self) -> str:
        return f"FortnoxApi(tenant={self.tenant!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()
