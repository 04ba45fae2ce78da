"""Shared helpers for resource classes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from engine.fortnox.errors import UnexpectedResponse
from engine.fortnox.models import FortnoxModel
from engine.fortnox.paging import parse_item

if TYPE_CHECKING:
    from engine.fortnox.client import FortnoxClient

M = TypeVar("M", bound=FortnoxModel)


def seg(value: object) -> str:
    """One URL path segment, escaped (Fortnox numbers may contain ``/`` and ``+``)."""
    return quote(str(value), safe="")


class Resource:
    def __init__(self, client: FortnoxClient) -> None:
        self.client = client

    def _one(self, data: dict[str, Any], key: str, model: type[M], path: str) -> M:
        item = data.get(key)
        if not isinstance(item, dict):
            raise UnexpectedResponse(
                f"{path}: the answer has no {key!r} object", tenant=self.client.tenant, path=path
            )
        return parse_item(model, item, self.client.tenant, path)
