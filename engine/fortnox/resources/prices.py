"""Price lists and prices (scope ``price``). ``Article.SalesPrice`` is read-only: write here."""

from __future__ import annotations

from decimal import Decimal

from engine.fortnox.errors import AlreadyExists, NotFound, ValidationFailed
from engine.fortnox.models import Price, PriceList
from engine.fortnox.paging import paginate
from engine.fortnox.resources.base import Resource, seg


def _qty(value: Decimal | int) -> str:
    number = Decimal(value)
    return str(int(number)) if number == number.to_integral_value() else str(number)


class Prices(Resource):
    async def price_lists(self) -> list[PriceList]:
        return [p async for p in paginate(self.client, "/3/pricelists", "PriceLists", PriceList)]

    async def get_price_list(self, code: str) -> PriceList:
        path = f"/3/pricelists/{seg(code)}"
        return self._one(await self.client.get_json(path), "PriceList", PriceList, path)

    async def get_price(
        self, price_list: str, article_number: str, from_quantity: Decimal | int = 0
    ) -> Price | None:
        """The article's price in ``price_list`` at ``from_quantity``; None if it has none."""
        path = f"/3/prices/{seg(price_list)}/{seg(article_number)}/{_qty(from_quantity)}"
        try:
            return self._one(await self.client.get_json(path), "Price", Price, path)
        except NotFound:
            return None

    async def article_prices(self, price_list: str, article_number: str) -> list[Price]:
        path = f"/3/prices/sublist/{seg(price_list)}/{seg(article_number)}"
        return [p async for p in paginate(self.client, path, "Prices", Price)]

    async def set_price(
        self,
        price_list: str,
        article_number: str,
        price: Decimal,
        from_quantity: Decimal | int = 0,
    ) -> Price:
        """Set an absolute price (PUT, or POST if the article has no price in that list yet).

        Both are safe to repeat: the key (list, article, quantity) is natural.
        """
        path = f"/3/prices/{seg(price_list)}/{seg(article_number)}/{_qty(from_quantity)}"
        body = {"Price": Price(price=price).to_payload()}
        try:
            data = await self.client.send_json("PUT", path, body)
            return self._one(data, "Price", Price, path)
        except NotFound:
            pass
        new = Price(
            price_list=price_list,
            article_number=article_number,
            from_quantity=Decimal(from_quantity),
            price=price,
        )
        try:
            data = await self.client.send_json(
                "POST", "/3/prices", {"Price": new.to_payload()}, idempotent=True
            )
            return self._one(data, "Price", Price, "/3/prices")
        except (AlreadyExists, ValidationFailed):
            # Created meanwhile (or by our own earlier attempt): set it absolutely.
            data = await self.client.send_json("PUT", path, body)
            return self._one(data, "Price", Price, path)
