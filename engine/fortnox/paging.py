"""Fortnox list pagination: ``limit=500`` pages followed through ``MetaInformation``.

List responses look like ``{"MetaInformation": {"@TotalPages": 3, "@CurrentPage": 1, ...},
"Customers": [...]}``. A response without ``MetaInformation`` is a single page.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError

from engine.fortnox.errors import UnexpectedResponse
from engine.fortnox.models import FortnoxModel, MetaInformation

if TYPE_CHECKING:
    from engine.fortnox.client import FortnoxClient, Params

PAGE_LIMIT = 500
M = TypeVar("M", bound=FortnoxModel)


async def iterate_raw(
    client: FortnoxClient,
    path: str,
    key: str,
    params: Params | None = None,
    *,
    limit: int = PAGE_LIMIT,
    max_pages: int | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """Yield every item (as Fortnox sent it) of every page of a list endpoint."""
    page = 1
    while True:
        query: dict[str, Any] = dict(params or {})
        query.update({"limit": limit, "page": page})
        data = await client.get_json(path, query)
        items = data.get(key)
        if items is None:
            items = []
        if not isinstance(items, list):
            raise UnexpectedResponse(f"{path}: {key!r} is not a list", tenant=client.tenant)
        for item in items:
            if isinstance(item, dict):
                yield item
        meta = MetaInformation.model_validate(data.get("MetaInformation") or {})
        total_pages = meta.total_pages or 1
        current = meta.current_page or page
        if current >= total_pages or not items:
            return
        if max_pages is not None and page >= max_pages:
            return
        page = current + 1


async def paginate(
    client: FortnoxClient,
    path: str,
    key: str,
    model: type[M],
    params: Params | None = None,
    *,
    limit: int = PAGE_LIMIT,
) -> AsyncIterator[M]:
    """Yield every item of a list endpoint parsed as ``model``."""
    async for item in iterate_raw(client, path, key, params, limit=limit):
        yield parse_item(model, item, client.tenant, path)


def parse_item(model: type[M], item: Any, tenant: str | None, path: str) -> M:
    try:
        return model.model_validate(item)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
        raise UnexpectedResponse(
            f"{path}: could not read {model.__name__} (fields: {fields})", tenant=tenant
        ) from None
