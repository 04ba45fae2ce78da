"""The front door of the Fortnox routes (``/3``, ``/api``, ``/oauth-v1``), as ASGI middleware.

Per request, in this order:

1. a running 429 storm answers 429 (no body, no ``Retry-After``);
2. the bearer token is checked: expired, invalid, revoked, or missing gives 401
   ``{"message":"unauthorized"}``;
3. the sliding-window rate limit per (client id, tenant) answers 429 when over;
4. an unknown route or method answers 404 ``2000762 No such route``;
5. the token's scopes and the company's licences are checked (403 ``2000663`` / ``2001101``);
6. injected latency, then an injected 5xx;
7. the handler runs; if a drop-after-commit fault is armed and the write succeeded, the
   response headers go out and the connection is cut (the client sees a transport error).

Every answer is counted per tenant by method, path template and status.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import httpx
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.fortnox import errors as E
from sandbox.fortnox.auth import (
    AUTH_KEY,
    TENANT_KEY,
    bearer_token,
    check_access_token,
    context_for,
)

if TYPE_CHECKING:
    from sandbox.fortnox.state import SandboxState

#: Which token scopes open which routes (any one suffices). Rows marked ⚠ are not documented by
#: Fortnox; the sandbox accepts every plausible scope there (see docs/sandbox.md).
ROUTE_SCOPES: list[tuple[str, frozenset[str]]] = [
    ("/3/customers", frozenset({"customer"})),
    ("/3/articles", frozenset({"article"})),
    ("/3/units", frozenset({"article", "settings"})),  # ⚠
    ("/3/pricelists", frozenset({"price"})),
    ("/3/prices", frozenset({"price"})),
    ("/3/invoicepayments", frozenset({"payment"})),
    ("/3/invoices", frozenset({"invoice"})),
    ("/3/orders", frozenset({"order"})),
    ("/3/accounts", frozenset({"bookkeeping"})),
    ("/3/voucherseries", frozenset({"bookkeeping"})),
    ("/3/vouchers", frozenset({"bookkeeping"})),
    ("/3/financialyears", frozenset({"bookkeeping"})),
    ("/3/sie", frozenset({"bookkeeping"})),
    ("/3/costcenters", frozenset({"costcenter"})),
    ("/3/projects", frozenset({"project", "bookkeeping"})),  # ⚠ bookkeeping
    ("/3/settings/lockedperiod", frozenset({"bookkeeping", "settings"})),  # ⚠
    ("/3/settings/company", frozenset({"settings"})),
    ("/3/companyinformation", frozenset({"companyinformation"})),
    ("/3/termsofpayments", frozenset({"settings"})),  # ⚠
    ("/3/voucherfileconnections", frozenset({"connectfile", "bookkeeping"})),  # ⚠
    ("/3/archive", frozenset({"archive"})),
    ("/3/inbox", frozenset({"inbox"})),
    ("/api/warehouse", frozenset({"warehouse", "article"})),  # ⚠
]


def scopes_for(template: str) -> frozenset[str] | None:
    for prefix, scopes in ROUTE_SCOPES:
        if template == prefix or template.startswith(prefix + "/"):
            return scopes
    return None


class SimulatedConnectionDrop(httpx.RemoteProtocolError):
    """Raised after a committed write to cut the connection (``drop-after-commit`` fault).

    Over real HTTP the server closes the socket after the headers, so the client's HTTP stack
    raises its own transport error. In-process (``httpx.ASGITransport``) this exception reaches
    the client as is; it is an ``httpx.TransportError``, so client code sees the same class of
    failure either way.
    """


class FortnoxGateway:
    def __init__(self, app: ASGIApp, state: SandboxState, routes: list[BaseRoute]) -> None:
        self.app = app
        self.state = state
        self.routes = routes

    def _match(self, scope: Scope) -> tuple[str | None, bool]:
        """(path template, method allowed) of the Fortnox route ``scope`` hits."""
        partial: str | None = None
        for route in self.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return getattr(route, "path", None), True
            if match == Match.PARTIAL and partial is None:
                partial = getattr(route, "path", None)
        return partial, False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith("/oauth-v1/"):
            await self._counted(scope, receive, send, path)
            return
        if not (path == "/3" or path.startswith(("/3/", "/api/"))):
            await self.app(scope, receive, send)
            return
        await self._api(scope, receive, send, path)

    async def _counted(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        status = 0

        async def counting(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting)
        finally:
            self.state.counters.add(scope.get(TENANT_KEY), scope["method"], path, status)

    async def _api(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        state = self.state
        method: str = scope["method"]
        template, allowed = self._match(scope)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        token = bearer_token(headers)
        grant = check_access_token(state, token) if token else None
        tenant_id = grant.consent.tenant_id if grant else None
        status = 0

        async def counting(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        async def answer(response: Any) -> None:
            await response(scope, receive, counting)

        try:
            if state.faults.in_storm(tenant_id, method, path):
                await answer(_too_many())
                return
            if grant is None:
                await answer(E.unauthorized())
                return
            if not state.rate_limiter.allow(grant.client_id, grant.consent.tenant_id):
                await answer(_too_many())
                return
            if template is None or not allowed:
                await answer(E.NO_SUCH_ROUTE().response())
                return
            needed = scopes_for(template)
            if needed is not None:
                tenant = state.tenants[grant.consent.tenant_id]
                usable = needed & grant.consent.scopes
                if not usable:
                    await answer(E.NO_SCOPE().response())
                    return
                if not usable & tenant.licences:
                    await answer(E.NO_LICENCE().response())
                    return
            delay = state.faults.delay_seconds(tenant_id, method, path)
            if delay:
                await asyncio.sleep(delay)
            failure = state.faults.take_error(tenant_id, method, path)
            if failure is not None:
                err = E.FortnoxError(failure, 1000003, "System exception")
                await answer(err.response())
                return
            scope[AUTH_KEY] = context_for(state, grant)
            if state.faults.drop_armed(tenant_id, method, path):
                status = await self._drop_after_commit(scope, receive, send, counting)
            else:
                await self.app(scope, receive, counting)
        finally:
            state.counters.add(tenant_id, method, template or "(no route)", status)

    async def _drop_after_commit(
        self, scope: Scope, receive: Receive, send: Send, counting: Send
    ) -> int:
        messages: list[Message] = []

        async def capture(message: Message) -> None:
            messages.append(message)

        await self.app(scope, receive, capture)
        start = next((m for m in messages if m["type"] == "http.response.start"), None)
        status = int(start["status"]) if start else 500
        if start is None or not 200 <= status < 300:
            for message in messages:
                await counting(message)
            return status
        self.state.faults.consume_drop()
        await send(start)
        raise SimulatedConnectionDrop("connection dropped after the write was committed")


def _too_many() -> Response:
    return Response(b"", status_code=429)
