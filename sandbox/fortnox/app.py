"""The sandbox as an ASGI app: Fortnox's REST API, OAuth, topics feed, and ``/_sandbox`` admin."""

from __future__ import annotations

import logging
from email.utils import formatdate

from fastapi import FastAPI, Request, WebSocket
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.fortnox import admin, auth
from sandbox.fortnox import errors as E
from sandbox.fortnox.gateway import FortnoxGateway
from sandbox.fortnox.resources import (
    articles,
    bookkeeping,
    company,
    customers,
    files,
    invoices,
    orders,
    prices,
    projects,
    registers,
    sie,
    vouchers,
    warehouse,
)
from sandbox.fortnox.state import SandboxState
from sandbox.fortnox.topics_feed import serve_topics

log = logging.getLogger("sandbox.fortnox")

API_ROUTERS = (
    customers.router,
    articles.router,
    registers.router,
    projects.router,
    prices.router,
    invoices.router,
    orders.router,
    bookkeeping.router,
    vouchers.router,
    company.router,
    files.router,
    sie.router,
    warehouse.router,
)


class BusinessDate:
    """Every HTTP answer carries the sandbox's business clock as its ``Date`` header, as
    Fortnox's carry Fortnox's clock: a client that takes its polling cursor from the server's
    time sees the sandbox's time, however far it has been moved. (Serve the app with the
    server's own ``Date`` header off, e.g. uvicorn's ``date_header=False``; if both are sent,
    this one comes last.)"""

    def __init__(self, app: ASGIApp, state: SandboxState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def dated(message: Message) -> None:
            if message["type"] == "http.response.start":
                stamp = formatdate(self.state.clock.time(), usegmt=True).encode("latin-1")
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"date"]
                message = {**message, "headers": [*headers, (b"date", stamp)]}
            await send(message)

        await self.app(scope, receive, dated)


def create_app(state: SandboxState | None = None) -> FastAPI:
    """A Fortnox sandbox over ``state`` (a new, empty state when None; seed it via
    :mod:`sandbox.fortnox.seed` or ``POST /_sandbox/tenants``)."""
    state = state or SandboxState()
    app = FastAPI(
        title="Kassasync Fortnox sandbox",
        docs_url="/_sandbox/docs",
        openapi_url="/_sandbox/openapi.json",
        redoc_url=None,
    )
    app.state.sandbox = state
    app.include_router(auth.router)
    for router in API_ROUTERS:
        app.include_router(router, include_in_schema=False)
    app.include_router(admin.router)

    @app.websocket("/topics-v1")
    async def topics(websocket: WebSocket) -> None:
        await serve_topics(websocket, state.feed, state.faults, auth.feed_token_check(state))

    @app.exception_handler(E.FortnoxError)
    async def fortnox_error(_request: Request, exc: E.FortnoxError) -> Response:
        return exc.response()

    @app.exception_handler(E.WarehouseError)
    async def warehouse_error(_request: Request, exc: E.WarehouseError) -> Response:
        return exc.response()

    @app.exception_handler(E.OAuthError)
    async def oauth_error(_request: Request, exc: E.OAuthError) -> Response:
        return exc.response()

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("sandbox bug on %s %s", request.method, request.url.path, exc_info=exc)
        return E.SYSTEM_EXCEPTION().response()

    routes = [route for router in API_ROUTERS for route in router.routes]
    app.add_middleware(FortnoxGateway, state=state, routes=routes)
    app.add_middleware(BusinessDate, state=state)
    return app
