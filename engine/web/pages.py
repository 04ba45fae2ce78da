"""The dashboard: overview, tenant and system pages, login, and the operator's buttons.

Pages are Jinja2 templates (``engine/web/templates``) rendered through a
:class:`~engine.web.templating.Frame`."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from engine.ops import FLOW_TITLES, FLOWS, Light, Ops, OpsError, TenantDetail
from engine.web.auth import (
    AdminAuth,
    NeedLogin,
    Session,
    Throttled,
    check_same_origin,
    client_address,
)
from engine.web.html import url
from engine.web.templating import Flash, Frame
from topics.errors import ShopError

log = structlog.get_logger("kassasync.web")

_FLASH = {
    "retried": "Dead letter {id} retried.",
    "discarded": "Dead letter {id} discarded.",
    "resumed": "Tenant {id} resumed: its Fortnox session starts again.",
    "requeued": "Dead letter {id} retried: its command was queued again.",
    "replayed": "Dead letter {id} retried: the message was appended to its topic again.",
    "retry_now": "Command {id} will be attempted at once.",
    "cancelled": "Command {id} cancelled: it is now a dead letter (retry or discard it there).",
}


def safe_next(value: str | None, default: str = "/") -> str:
    """A local path to go back to (never another site)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    return value


async def read_form(request: Request) -> dict[str, str]:
    """The posted form. Its size is capped while it is read by the door
    (:class:`engine.web.door.Door`, 16 KB on the dashboard's routes): a larger body is 413."""
    body = await request.body()
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def flash_of(request: Request) -> Flash | None:
    """The note an action left in the URL it redirected to (``done=…&id=…`` or ``failed=…``)."""
    done = request.query_params.get("done")
    template = _FLASH.get(done or "")
    if template is None:
        failed = request.query_params.get("failed")
        return Flash(failed[:300], error=True) if failed else None
    return Flash(template.format(id=request.query_params.get("id", "")))


def _with_query(path: str, **params: str) -> str:
    base, _, _ = path.partition("?")
    return f"{base}?{urlencode(params)}"


def waiting_rows(
    records: tuple[tuple[str, dict[str, object]], ...], reason_keys: tuple[str, ...]
) -> list[tuple[str, str, ShopError | None, str]]:
    """(key, business date, the shop's error or None, what it waits on) per waiting item."""
    rows = []
    for key, record in records:
        error = record.get("error")
        problem = ShopError.model_validate(error) if isinstance(error, dict) else None
        reason = next((str(record[k]) for k in reason_keys if record.get(k)), "waiting")
        report = record.get("report")
        date = str(report.get("business_date", "")) if isinstance(report, dict) else ""
        rows.append((key, date, problem, reason))
    return rows


def router(ops: Ops, auth: AdminAuth, frame: Frame) -> APIRouter:
    pages = APIRouter(include_in_schema=False)

    def session(request: Request) -> Session:
        found = auth.authenticate(request, api=False)
        if found is None:
            target = request.url.path
            if request.url.query:
                target += "?" + request.url.query
            raise NeedLogin(api=False, path=target)
        return found

    def csrf_of(who: Session) -> str:
        return auth.csrf_token(who) if who.via == "cookie" else ""

    async def action(
        request: Request, who: Session, run: Callable[[], str], default_next: str
    ) -> Response:
        form = await read_form(request)
        auth.check_post(request, who, form)
        back = safe_next(form.get("next"), default_next)
        try:
            done = run()
        except OpsError as failed:
            return RedirectResponse(_with_query(back, failed=str(failed)), status_code=303)
        return RedirectResponse(done if done.startswith("/") else back, status_code=303)

    # -- login ---------------------------------------------------------------------------------

    def login_page(
        request: Request, next_path: str, message: str = "", status: int = 200
    ) -> HTMLResponse:
        return frame.respond(
            request, "login.html", csrf=None, status=status, next_path=next_path, message=message
        )

    @pages.get("/login")
    async def login_form(request: Request) -> Response:
        next_path = safe_next(request.query_params.get("next"))
        if auth.authenticate(request, api=False) is not None:
            return RedirectResponse(next_path, status_code=303)
        return login_page(request, next_path)

    @pages.post("/login")
    async def login(request: Request) -> Response:
        check_same_origin(request)
        # A locked-out address is refused before its form is read.
        wait = auth.throttle.retry_after(client_address(request))
        if wait > 0:
            log.warning("web.login.throttled", client=client_address(request))
            raise Throttled(api=False, retry_after=wait)
        form = await read_form(request)
        next_path = safe_next(form.get("next"))
        if not auth.login(request, form.get("token", "")):
            return login_page(request, next_path, "That is not the admin token.", 401)
        _, cookie = auth.new_session()
        response = RedirectResponse(next_path, status_code=303)
        response.headers["Set-Cookie"] = auth.cookie_header(cookie, request)
        return response

    @pages.post("/logout")
    async def logout(request: Request, who: Session = Depends(session)) -> Response:
        form = await read_form(request)
        auth.check_post(request, who, form)
        response = RedirectResponse("/login", status_code=303)
        response.headers["Set-Cookie"] = auth.clear_cookie_header(request)
        return response

    # -- pages ---------------------------------------------------------------------------------

    @pages.get("/")
    async def overview(request: Request, who: Session = Depends(session)) -> HTMLResponse:
        only = request.query_params.get("only") == "problems"
        summaries = ops.overview()
        shown = [s for s in summaries if not only or s.light in (Light.AMBER, Light.RED)]
        return frame.respond(
            request,
            "overview.html",
            csrf=csrf_of(who),
            flash=flash_of(request),
            refresh=True,
            only=only,
            summaries=summaries,
            shown=shown,
            paused=sum(1 for s in summaries if s.paused is not None),
            dead_letters=sum(s.dead_letters for s in summaries),
            flow_titles=[FLOW_TITLES[f] for f in FLOWS],
        )

    def tenant_view(request: Request, who: Session, detail: TenantDetail) -> HTMLResponse:
        tenant = detail.summary.tenant
        return frame.respond(
            request,
            "tenant.html",
            csrf=csrf_of(who),
            flash=flash_of(request),
            refresh=True,
            detail=detail,
            retrying=ops.retrying(tenant),
            waiting_zreports=waiting_rows(detail.zreports_waiting, ("waiting_for",)),
            waiting_invoices=waiting_rows(detail.invoices_waiting, ("reason", "waiting_for")),
        )

    @pages.get("/tenants/{tenant}")
    async def tenant_page(
        request: Request, tenant: str, who: Session = Depends(session)
    ) -> HTMLResponse:
        detail = ops.tenant(tenant)
        if detail is None:
            return frame.respond(
                request,
                "message.html",
                csrf=auth.csrf_token(who),
                status=404,
                heading=f"No tenant {tenant}",
                text="There is no tenant with this id.",
                link="/",
                link_text="Back to the overview",
            )
        return tenant_view(request, who, detail)

    @pages.get("/system")
    async def system_page(request: Request, who: Session = Depends(session)) -> HTMLResponse:
        return frame.respond(
            request,
            "system.html",
            csrf=csrf_of(who),
            flash=flash_of(request),
            refresh=True,
            view=ops.system(),
        )

    # -- actions -------------------------------------------------------------------------------

    @pages.post("/tenants/{tenant}/resume")
    async def resume(request: Request, tenant: str, who: Session = Depends(session)) -> Response:
        back = f"/tenants/{url(tenant)}"

        def run() -> str:
            ops.resume(tenant, "resumed from the dashboard")
            return _with_query(back, done="resumed", id=tenant)

        return await action(request, who, run, back)

    @pages.post("/deadletters/{dead_letter_id:path}/retry")
    async def retry(
        request: Request, dead_letter_id: str, who: Session = Depends(session)
    ) -> Response:
        def run() -> str:
            result = ops.retry(dead_letter_id)
            back = f"/tenants/{url(result.tenant)}"
            done = "requeued" if result.requeued else "replayed" if result.replayed else "retried"
            return _with_query(back, done=done, id=dead_letter_id)

        return await action(request, who, run, "/")

    @pages.post("/commands/{command_id:path}/retry")
    async def retry_command(
        request: Request, command_id: str, who: Session = Depends(session)
    ) -> Response:
        def run() -> str:
            result = ops.retry_command(command_id)
            back = f"/tenants/{url(result.tenant)}"
            return _with_query(back, done="retry_now", id=command_id)

        return await action(request, who, run, "/")

    @pages.post("/commands/{command_id:path}/cancel")
    async def cancel_command(
        request: Request, command_id: str, who: Session = Depends(session)
    ) -> Response:
        def run() -> str:
            result = ops.cancel_command(command_id, "cancelled from the dashboard")
            back = f"/tenants/{url(result.tenant)}"
            return _with_query(back, done="cancelled", id=command_id)

        return await action(request, who, run, "/")

    @pages.post("/deadletters/{dead_letter_id:path}/discard")
    async def discard(
        request: Request, dead_letter_id: str, who: Session = Depends(session)
    ) -> Response:
        def run() -> str:
            result = ops.discard(dead_letter_id)
            return _with_query(
                f"/tenants/{url(result.tenant)}", done="discarded", id=dead_letter_id
            )

        return await action(request, who, run, "/")

    return pages
