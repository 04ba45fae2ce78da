"""Customers (scope ``customer``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from engine.fortnox.errors import AlreadyExists, NotFound
from engine.fortnox.models import Customer
from engine.fortnox.observability import log
from engine.fortnox.paging import paginate
from engine.fortnox.resources.base import Resource, seg


class Customers(Resource):
    PATH = "/3/customers"

    def iterate(
        self,
        *,
        filter: str | None = None,
        lastmodified: str | None = None,
        **search: str,
    ) -> AsyncIterator[Customer]:
        """All customers (``filter`` is ``active``/``inactive``; search fields are substrings)."""
        params = {"filter": filter, "lastmodified": lastmodified, **search}
        return paginate(self.client, self.PATH, "Customers", Customer, params)

    async def get(self, number: str) -> Customer:
        path = f"{self.PATH}/{seg(number)}"
        return self._one(await self.client.get_json(path), "Customer", Customer, path)

    async def find(self, number: str) -> Customer | None:
        try:
            return await self.get(number)
        except NotFound:
            return None

    async def create(self, customer: Customer) -> Customer:
        """Create a customer.

        With a ``customer_number`` the create is safe to repeat: Fortnox answers 2000637
        ("number already used") and the existing customer is returned. Without one, Fortnox
        picks the number, and a lost answer raises UnknownOutcome (never retried).
        """
        number = customer.customer_number
        body = {"Customer": customer.to_payload()}
        try:
            data = await self.client.send_json(
                "POST", self.PATH, body, idempotent=number is not None
            )
        except AlreadyExists:
            if number is None:
                raise
            existing = await self.find(number)
            if existing is None:
                raise  # used before and deleted: the number stays reserved forever
            log.info("fortnox.customer.exists", tenant=self.client.tenant, action="reuse")
            return existing
        return self._one(data, "Customer", Customer, self.PATH)

    async def update(self, number: str, customer: Customer) -> Customer:
        path = f"{self.PATH}/{seg(number)}"
        data = await self.client.send_json("PUT", path, {"Customer": customer.to_payload()})
        return self._one(data, "Customer", Customer, path)

    async def delete(self, number: str) -> None:
        await self.client.delete(f"{self.PATH}/{seg(number)}")
