"""The engine's operations surface on its HTTP port: dashboard pages, the ops JSON API and
``/metrics``. :func:`mount` adds them to the engine's FastAPI app (either runtime's), behind
the door (:mod:`engine.web.door`: body caps and the body read timeout on every route of the
app); serve the app with :func:`engine.web.door.server_config` for the header timeout."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from engine.fortnox.onboarding import Onboarding
from engine.metrics import EngineMetrics
from engine.ops import Ops
from engine.supervision import Health
from engine.tenants import TenantDirectory
from engine.web import api, connect, pages, settings_page
from engine.web.auth import AdminAuth, Forbidden, NeedLogin, Throttled
from engine.web.door import Door, DoorSettings
from engine.web.settings_page import OpenFortnox
from engine.web.templating import DashboardSettings, Frame, static_router


def mount(
    app: FastAPI,
    *,
    ops: Ops,
    auth: AdminAuth,
    metrics: EngineMetrics,
    door: DoorSettings | None = None,
    onboarding: Callable[[], Onboarding | None] | None = None,
    tenants: TenantDirectory | None = None,
    health: Callable[[], Health] | None = None,
    dashboard: DashboardSettings | None = None,
    open_fortnox: OpenFortnox | None = None,
) -> Frame:
    """Dashboard and ops API (admin token) and ``/metrics`` (no token) on ``app``, and the
    door in front of every route of ``app`` (``door``: its limits, by default 16 KB bodies);
    with ``tenants``, adding shops and connecting them to Fortnox (its callback needs no
    token); with ``health``, every dashboard page shows the engine's health problems in red.
    ``dashboard``: the operator's time zone and the pages' reload interval (by default from
    ``KASSASYNC_DASHBOARD_TZ`` / ``KASSASYNC_DASHBOARD_REFRESH``). With ``tenants`` and
    ``open_fortnox`` (a tenant's Fortnox API with its stored tokens), the tenants' settings
    pages (:mod:`engine.web.settings_page`). Returns the pages'
    :class:`~engine.web.templating.Frame`, for more page routers on the same layout."""
    frame = Frame(dashboard or DashboardSettings.from_env(), health=health, clock=ops.clock)
    app.add_middleware(Door, settings=door or DoorSettings())
    app.include_router(static_router())
    if tenants is not None:
        # Before the pages: /tenants/new is not a tenant called "new".
        app.include_router(connect.router(ops, auth, onboarding or (lambda: None), tenants))
        if open_fortnox is not None:
            app.include_router(settings_page.router(auth, frame, tenants, open_fortnox, ops.store))
    app.include_router(pages.router(ops, auth, frame))
    app.include_router(api.router(ops, auth))

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def need_login(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, NeedLogin)
        if exc.api:
            return JSONResponse(
                {"error": "send the admin token as 'Authorization: Bearer <token>'"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="kassasync"'},
            )
        return frame.respond(
            None,
            "message.html",
            csrf=None,
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="kassasync"'},
            heading="Log in first",
            text="This page needs the Kassasync admin token.",
            link=f"/login?next={quote(exc.path, safe='/')}",
            link_text="Log in",
        )

    async def forbidden(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/ops/api/"):
            return JSONResponse({"error": str(exc)}, status_code=403)
        return frame.respond(
            None, "message.html", csrf=None, status=403, heading="Refused", text=str(exc), link=""
        )

    async def throttled(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Throttled)
        wait = {"Retry-After": str(exc.retry_after)}
        text = f"Too many wrong admin tokens from your address: try again in {exc.retry_after} s."
        if exc.api:
            return JSONResponse({"error": text}, status_code=429, headers=wait)
        return frame.respond(
            None,
            "message.html",
            csrf=None,
            status=429,
            headers=wait,
            heading="Wait a moment",
            text=text,
            link="/login",
            link_text="Log in",
        )

    app.add_exception_handler(NeedLogin, need_login)
    app.add_exception_handler(Forbidden, forbidden)
    app.add_exception_handler(Throttled, throttled)
    return frame
