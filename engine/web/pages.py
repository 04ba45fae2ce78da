"""The dashboard: overview, tenant and system pages, login, and the operator's buttons.

Pages are Jinja2 templates (``engine/web/templates``) rendered through a
:class:`~engine.web.templating.Frame`."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from engine.ops import (
    FLOW_TITLES,
    FLOWS,
    LIGHT_FILTERS,
    ActionResult,
    DocKind,
    NotFound,
    Ops,
    OpsError,
    TenantDetail,
)
from engine.web.auth import (
    AdminAuth,
    NeedLogin,
    Session,
    Throttled,
    check_same_origin,
    client_address,
)
from engine.web.charts import charts
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
    "resolved": "{n} dead letter(s) marked resolved: their documents are done by now.",
}
#: Flash keys whose text is the action's own note (``note=…``).
_NOTED = frozenset({"note"})


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
    params = request.query_params
    done = params.get("done")
    if done in _NOTED:
        return Flash(params.get("note", "")[:400])
    template = _FLASH.get(done or "")
    if template is None:
        failed = request.query_params.get("failed")
        return Flash(failed[:300], error=True) if failed else None
    return Flash(template.format(id=params.get("id", ""), n=params.get("n", "0")))


#: Query parameters an action's redirect sets (the page's own filters are kept).
_ACTION_PARAMS = ("done", "id", "failed", "note", "n")


def _with_query(path: str, **params: str) -> str:
    """``path`` (it may carry its page's filters and a #fragment) with the action's note."""
    base, _, fragment = path.partition("#")
    parts = urlsplit(base)
    kept = [(k, v) for k, v in parse_qsl(parts.query) if k not in _ACTION_PARAMS]
    query = urlencode(kept + list(params.items()))
    return f"{parts.path}?{query}" + (f"#{fragment}" if fragment else "")


def _done(result: ActionResult, back: str, key: str, default: str) -> str:
    """Where an action's redirect goes: ``back`` with what happened."""
    if result.note:
        return _with_query(back, done="note", note=result.note)
    return _with_query(back, done=default, id=key)


def _int(value: str | None, default: int, low: int = 1, high: int = 1_000_000) -> int:
    try:
        return max(low, min(high, int(value or default)))
    except ValueError:
        return default


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


DEAD_LETTER_STATUSES = ("open", "retried", "discarded", "resolved")
DOC_PHASES = ("failed", "waiting", "working", "done", "skipped")
#: Documents of each kind the tenant page lists.
DOC_LIMIT = 25


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
        request: Request, who: Session, run: Callable[[str | None], str], default_next: str
    ) -> Response:
        """Run an action posted from a page; ``run`` gets the page to go back to (the form's
        ``next``, None without one) and answers where to redirect."""
        form = await read_form(request)
        auth.check_post(request, who, form)
        given = form.get("next")
        back = safe_next(given, default_next)
        try:
            done = run(back if given else None)
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
        given = request.query_params
        # ?only=problems: the older link for "amber and red".
        light = "problems" if given.get("only") == "problems" else given.get("light", "")
        light = light if light in LIGHT_FILTERS else ""
        view = ops.overview_page(
            query=given.get("q", "")[:200],
            light=light,
            page=_int(given.get("page"), 1),
            per_page=_int(given.get("per"), 50, 1, 500),
            sort=given.get("sort", "tenant"),
        )
        params: dict[str, object] = {"q": view.query, "light": view.light}
        if view.sort != "tenant":
            params["sort"] = view.sort
        if view.per_page != 50:
            params["per"] = view.per_page
        return frame.respond(
            request,
            "overview.html",
            csrf=csrf_of(who),
            flash=flash_of(request),
            refresh=True,
            view=view,
            params={k: v for k, v in params.items() if v},
            flow_titles=[FLOW_TITLES[f] for f in FLOWS],
        )

    @pages.get("/deadletters")
    async def dead_letters(request: Request, who: Session = Depends(session)) -> HTMLResponse:
        given = request.query_params
        status = given.get("status", "open")
        status = status if status in DEAD_LETTER_STATUSES else "open"
        view = ops.dead_letter_page(
            tenant=given.get("tenant", "")[:200],
            flow=given.get("flow", "")[:50],
            status=status,
            page=_int(given.get("page"), 1),
            per_page=_int(given.get("per"), 50, 1, 500),
        )
        params = {"tenant": view.tenant, "flow": view.flow, "status": view.status}
        params = {k: v for k, v in params.items() if v}
        here = "/deadletters?" + urlencode({**params, "page": view.page})
        fixed = sum(1 for item in view.rows if item.fixed)
        return frame.respond(
            request,
            "deadletters.html",
            csrf=csrf_of(who),
            flash=flash_of(request),
            refresh=True,
            view=view,
            params=params,
            here=here,
            fixed=fixed,
            flow_titles={**FLOW_TITLES, "other": "Other (master data, control)"},
        )

    def tenant_view(request: Request, who: Session, detail: TenantDetail) -> HTMLResponse:
        tenant = detail.summary.tenant
        given = request.query_params
        kind = given.get("doc", "")
        chosen = DocKind(kind) if kind in {k.value for k in DocKind} else None
        phase = given.get("phase", "")
        phase = phase if phase in DOC_PHASES else ""
        fixed = {row.id: ops.fixed_since(row) for row in detail.dead_letters}
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
            documents=ops.documents(tenant, kind=chosen, phase=phase, limit=DOC_LIMIT),
            doc_kind="" if chosen is None else chosen.value,
            doc_phase=phase,
            doc_limit=DOC_LIMIT,
            fixed={k: v for k, v in fixed.items() if v},
            charts=charts(ops.sampled(), tenant),
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
            charts=charts(ops.sampled()),
            every=ops.history.every,
            size=ops.history.size,
        )

    # -- actions -------------------------------------------------------------------------------

    @pages.post("/tenants/{tenant}/resume")
    async def resume(request: Request, tenant: str, who: Session = Depends(session)) -> Response:
        back = f"/tenants/{url(tenant)}"

        def run(_next: str | None) -> str:
            ops.resume(tenant, "resumed from the dashboard")
            return _with_query(back, done="resumed", id=tenant)

        return await action(request, who, run, back)

    @pages.post("/deadletters/{dead_letter_id:path}/retry")
    async def retry(
        request: Request, dead_letter_id: str, who: Session = Depends(session)
    ) -> Response:
        def run(given: str | None) -> str:
            result = ops.retry(dead_letter_id)
            back = given or f"/tenants/{url(result.tenant)}"
            done = "requeued" if result.requeued else "replayed" if result.replayed else "retried"
            return _done(result, back, dead_letter_id, done)

        return await action(request, who, run, "/")

    @pages.post("/commands/{command_id:path}/retry")
    async def retry_command(
        request: Request, command_id: str, who: Session = Depends(session)
    ) -> Response:
        def run(_next: str | None) -> str:
            result = ops.retry_command(command_id)
            back = f"/tenants/{url(result.tenant)}"
            return _with_query(back, done="retry_now", id=command_id)

        return await action(request, who, run, "/")

    @pages.post("/commands/{command_id:path}/cancel")
    async def cancel_command(
        request: Request, command_id: str, who: Session = Depends(session)
    ) -> Response:
        def run(_next: str | None) -> str:
            result = ops.cancel_command(command_id, "cancelled from the dashboard")
            back = f"/tenants/{url(result.tenant)}"
            return _with_query(back, done="cancelled", id=command_id)

        return await action(request, who, run, "/")

    @pages.post("/deadletters/{dead_letter_id:path}/discard")
    async def discard(
        request: Request, dead_letter_id: str, who: Session = Depends(session)
    ) -> Response:
        def run(given: str | None) -> str:
            result = ops.discard(dead_letter_id)
            back = given or f"/tenants/{url(result.tenant)}"
            return _done(result, back, dead_letter_id, "discarded")

        return await action(request, who, run, "/")

    @pages.post("/deadletters/resolve-fixed")
    async def resolve_fixed(request: Request, who: Session = Depends(session)) -> Response:
        def run(given: str | None) -> str:
            resolved = ops.resolve_fixed()
            return _with_query(given or "/deadletters", done="resolved", n=str(len(resolved)))

        return await action(request, who, run, "/deadletters")

    @pages.post("/tenants/{tenant}/documents/{kind}/{key:path}/rerun")
    async def rerun(
        request: Request, tenant: str, kind: str, key: str, who: Session = Depends(session)
    ) -> Response:
        back = f"/tenants/{url(tenant)}#documents"

        def run(given: str | None) -> str:
            if kind not in {k.value for k in DocKind}:
                raise NotFound(f"no document kind {kind!r}")
            result = ops.rerun(tenant, DocKind(kind), key)
            return _done(result, given or back, key, "retried")

        return await action(request, who, run, back)

    return pages
