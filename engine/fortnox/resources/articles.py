"""Articles (scope ``article``). Prices live in :mod:`.prices`, stock in :mod:`..stock`."""

from __future__ import annotations

from collections.abc import AsyncIterator

from engine.fortnox.errors import AlreadyExists, NotFound
from engine.fortnox.models import Article
from engine.fortnox.observability import log
from engine.fortnox.paging import paginate
from engine.fortnox.resources.base import Resource, seg


class Articles(Resource):
    PATH = "/3/articles"

    def iterate(
        self,
        *,
        filter: str | None = None,
        lastmodified: str | None = None,
        **search: str,
    ) -> AsyncIterator[Article]:
        params = {"filter": filter, "lastmodified": lastmodified, **search}
        return paginate(self.client, self.PATH, "Articles", Article, params)

    async def get(self, number: str) -> Article:
        path = f"{self.PATH}/{seg(number)}"
        return self._one(await self.client.get_json(path), "Article", Article, path)

    async def find(self, number: str) -> Article | None:
        try:
            return await self.get(number)
        except NotFound:
            return None

    async def create(self, article: Article) -> Article:
        """Create an article; given an ``article_number``, an existing one is returned."""
        number = article.article_number
        try:
            data = await self.client.send_json(
                "POST", self.PATH, {"Article": article.to_payload()}, idempotent=number is not None
            )
        except AlreadyExists:
            existing = await self.find(number) if number is not None else None
            if existing is None:
                raise
            log.info("fortnox.article.exists", tenant=self.client.tenant, action="reuse")
            return existing
        return self._one(data, "Article", Article, self.PATH)

    async def update(self, number: str, article: Article) -> Article:
        path = f"{self.PATH}/{seg(number)}"
        data = await self.client.send_json("PUT", path, {"Article": article.to_payload()})
        return self._one(data, "Article", Article, path)

    async def delete(self, number: str) -> None:
        await self.client.delete(f"{self.PATH}/{seg(number)}")
