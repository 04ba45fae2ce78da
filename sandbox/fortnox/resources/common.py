"""What every Fortnox resource handler needs: the caller, the tenant, params, bodies, dates."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, TypeVar
from urllib.parse import quote

from fastapi import Request
from starlette.responses import Response

from sandbox.fortnox import errors as E
from sandbox.fortnox.auth import AUTH_KEY, AuthContext
from sandbox.fortnox.collection import Collection, Record
from sandbox.fortnox.listing import (
    ListQuery,
    dumps,
    json_response,
    list_response,
    lowered_params,
    numbers_as_text,
    paginate,
)
from sandbox.fortnox.payloads import Payload, parse_payload
from sandbox.fortnox.state import SandboxState, Tenant

M = TypeVar("M", bound=Payload)


def sandbox_state(request: Request) -> SandboxState:
    state: SandboxState = request.app.state.sandbox
    return state


def caller(request: Request) -> tuple[Tenant, AuthContext]:
    """The tenant and caller the gateway authenticated."""
    ctx: AuthContext = request.scope[AUTH_KEY]
    return sandbox_state(request).tenants[ctx.tenant_id], ctx


def tenant_of(request: Request) -> Tenant:
    return caller(request)[0]


def params(request: Request) -> dict[str, str]:
    return lowered_params(request.query_params.multi_items())


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def url(request: Request, path: str, *keys: str) -> str:
    return base_url(request) + path + "".join("/" + quote(str(k), safe="") for k in keys)


async def read_payload(request: Request, wrapper: str, model: type[M]) -> M:
    return parse_payload(await request.body(), request.headers.get("content-type"), wrapper, model)


def require(given: dict[str, Any], *names: str) -> None:
    for name in names:
        value = given.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise E.REQUIRED_FIELD(field=name)


def parse_date(value: Any, field: str) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise E.INVALID_VALUE(field=field, value=str(value)) from None


def money(value: float | Decimal | int) -> float:
    return float(Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def text_numbers(tenant: Tenant, register: str) -> bool:
    flags = tenant.quirks.numbers_as_strings
    return "*" in flags or register in flags


def single(
    wrapper: str, data: dict[str, Any], *, status: int = 200, as_text: bool = False
) -> Response:
    body = numbers_as_text(data) if as_text else data
    return json_response({wrapper: body}, status)


def not_found_if_none(rec: Record | None, err: E.ErrorSpec) -> Record:
    if rec is None:
        raise err()
    return rec


def render_page(
    request: Request,
    tenant: Tenant,
    collection: Collection,
    wrapper: str,
    keys: list[str],
    query: ListQuery,
    view: Callable[[Record, str], dict[str, Any]],
) -> Response:
    """One page of list items, each item's JSON cached on its record."""
    page = paginate(keys, query)
    base = base_url(request)
    as_text = text_numbers(tenant, collection.name.split("/")[0])
    variant: Hashable = ("list", base, as_text)
    items: list[bytes] = []
    get = collection.get
    for key in page.keys:
        rec = get(key)
        if rec is None:
            continue
        cached = rec.cache.get(variant)
        if cached is None:
            item = view(rec, base)
            cached = dumps(numbers_as_text(item) if as_text else item)
            rec.cache[variant] = cached
        items.append(cached)
    return list_response(wrapper, page, items)


def financial_year_param(
    tenant: Tenant, query: dict[str, str], *, required_for: date | None = None
) -> int:
    """The financial year a bookkeeping request addresses.

    ``financialyear=<Id>`` or ``financialyeardate=<date>`` select one; without either, the
    preselected year (the one containing today, else the latest).
    """
    if "financialyear" in query:
        try:
            fy_id = int(query["financialyear"])
        except ValueError:
            raise E.INVALID_PARAMETER() from None
        if fy_id not in tenant.financial_years:
            raise E.FINANCIAL_YEAR_NOT_FOUND()
        return fy_id
    if "financialyeardate" in query:
        when = parse_date(query["financialyeardate"], "financialyeardate")
        found = tenant.fy_for_date(when)
        if found is None:
            raise E.FINANCIAL_YEAR_MISSING(date=when.isoformat())
        return found
    pre = tenant.preselected_fy()
    if pre is None:
        raise E.FINANCIAL_YEAR_MISSING(date=(required_for or tenant.today()).isoformat())
    return pre
