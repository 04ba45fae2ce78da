"""The dashboard: overview, tenant and system pages, login, and the operator's buttons."""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import parse_qsl, quote, urlencode

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from engine.ops import (
    FLOW_TITLES,
    FLOWS,
    Light,
    Ops,
    OpsError,
    PendingCommand,
    SystemView,
    TenantDetail,
    TenantSummary,
    age_text,
    money,
)
from engine.supervision import Health
from engine.web.auth import (
    AdminAuth,
    NeedLogin,
    Session,
    Throttled,
    check_same_origin,
    client_address,
)
from engine.web.html import (
    button_form,
    esc,
    hidden,
    html_response,
    iso,
    layout,
    light,
    pretty_json,
    shop_error,
    table,
    url,
    when,
)
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


#: The tenant page's advice while a shop's stock is written as absolute quantities (issue 16).
RECOMMEND_WAREHOUSE = (
    "<strong>Recommended:</strong> activate Fortnox Lager (the warehouse module; a system "
    "administrator does it in Fortnox) and set this shop's stock mode to "
    "<code>warehouse_documents</code>. Stock then moves only as warehouse documents (deltas), "
    "which a web shop sale cannot race, and nothing on the list above can happen. Kassasync's "
    "Fortnox app needs the scopes <code>article</code> and <code>warehouse</code> (Fortnox "
    "lists no scope for its warehouse services; a missing one shows as "
    "licence_or_scope_missing)."
)


def _flash(request: Request) -> str:
    done = request.query_params.get("done")
    template = _FLASH.get(done or "")
    if template is None:
        failed = request.query_params.get("failed")
        if failed:
            return f'<div class="flash error">{esc(failed[:300])}</div>'
        return ""
    return f'<div class="flash">{esc(template.format(id=request.query_params.get("id", "")))}</div>'


def _with_query(path: str, **params: str) -> str:
    base, _, _ = path.partition("?")
    return f"{base}?{urlencode(params)}"


def router(
    ops: Ops,
    auth: AdminAuth,
    *,
    health: Callable[[], Health] | None = None,
) -> APIRouter:
    pages = APIRouter(include_in_schema=False)

    def session(request: Request) -> Session:
        found = auth.authenticate(request, api=False)
        if found is None:
            target = request.url.path
            if request.url.query:
                target += "?" + request.url.query
            raise NeedLogin(api=False, path=target)
        return found

    def page(request: Request, who: Session, title: str, body: str) -> HTMLResponse:
        csrf = auth.csrf_token(who) if who.via == "cookie" else ""
        banner = "" if health is None else render_health(health(), time.monotonic())
        return html_response(layout(title, banner + body, csrf=csrf, flash=_flash(request)))

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

    def login_page(next_path: str, message: str = "", status: int = 200) -> HTMLResponse:
        note = f'<div class="flash error">{esc(message)}</div>' if message else ""
        body = (
            '<div class="login card"><h1>Log in</h1>'
            '<p class="muted">Enter the admin token (<code>KASSASYNC_ADMIN_TOKEN</code>, or the '
            "one the engine printed when it started).</p>"
            f'{note}<form method="post" action="/login">{hidden("next", next_path)}'
            '<label for="token">Admin token</label>'
            '<input id="token" name="token" type="password" autocomplete="current-password" '
            'required autofocus><button class="primary" type="submit">Log in</button></form></div>'
        )
        return html_response(layout("Log in", body), status=status)

    @pages.get("/login")
    async def login_form(request: Request) -> Response:
        next_path = safe_next(request.query_params.get("next"))
        if auth.authenticate(request, api=False) is not None:
            return RedirectResponse(next_path, status_code=303)
        return login_page(next_path)

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
            return login_page(next_path, "That is not the admin token.", 401)
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
        body = render_overview(summaries, shown, only, ops.clock())
        return page(request, who, "Overview", body)

    @pages.get("/tenants/{tenant}")
    async def tenant_page(
        request: Request, tenant: str, who: Session = Depends(session)
    ) -> HTMLResponse:
        detail = ops.tenant(tenant)
        if detail is None:
            body = f"<h1>No tenant {esc(tenant)}</h1><p><a href='/'>Back to the overview</a></p>"
            return html_response(layout("Not found", body, csrf=auth.csrf_token(who)), 404)
        csrf = auth.csrf_token(who)
        now = ops.clock()
        body = render_tenant(detail, csrf, now) + render_retrying(ops.retrying(tenant), csrf, now)
        return page(request, who, tenant, body)

    @pages.get("/system")
    async def system_page(request: Request, who: Session = Depends(session)) -> HTMLResponse:
        return page(request, who, "System", render_system(ops.system(), ops.clock()))

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


# --- rendering ----------------------------------------------------------------------------------

LEGEND = (
    '<p class="legend muted">'
    f"<span>{light(Light.GREEN)} working</span>"
    f"<span>{light(Light.AMBER)} degraded, heals by itself or needs a look</span>"
    f"<span>{light(Light.RED)} a person must act</span>"
    f"<span>{light(Light.OFF)} turned off</span>"
    " Hover a light for its reasons.</p>"
)


def render_overview(
    summaries: list[TenantSummary], shown: list[TenantSummary], only: bool, now: float
) -> str:
    paused = sum(1 for s in summaries if s.paused is not None)
    dead = sum(s.dead_letters for s in summaries)
    rows = []
    for s in shown:
        name = f'<div class="muted">{esc(s.name)}</div>' if s.name else ""
        badge = (
            f" {light(Light.RED, [s.paused.message])} <strong>paused</strong>" if s.paused else ""
        )
        cells = [f'<a href="/tenants/{url(s.tenant)}">{esc(s.tenant)}</a>{badge}{name}']
        cells += [light(f.light, f.reasons) for f in s.flows]
        cells.append(f'<span class="num">{s.dead_letters}</span>')
        oldest = "" if s.oldest_pending is None else f" (oldest {age_text(now - s.oldest_pending)})"
        cells.append(f"{s.pending}{esc(oldest)}")
        rows.append(cells)
    headers = ["Tenant", *(FLOW_TITLES[f] for f in FLOWS), "Dead letters", "Outbox"]
    toggle = (
        '<a href="/">show all tenants</a>'
        if only
        else '<a href="/?only=problems">show only amber and red</a>'
    )
    return (
        "<h1>Tenants</h1>"
        f'<p class="muted">{len(summaries)} tenants · {paused} paused · {dead} dead letters open'
        f" · {toggle}</p>" + table(headers, rows, empty="No tenants to show.") + LEGEND
    )


def _paused_section(s: TenantSummary, error: ShopError, csrf: str) -> str:
    resume = button_form(
        f"/tenants/{url(s.tenant)}/resume",
        "Resume",
        csrf,
        css="primary",
        title="Append sync.tenant.resumed: the tenant's Fortnox session starts again",
    )
    return (
        '<section class="alert" id="paused"><h2>Paused</h2>'
        f'<p class="muted">Since {iso(s.paused_at)}. Nothing is lost: changes wait until the '
        "tenant is resumed.</p>"
        f"{shop_error(error, link_text='Open the Fortnox settings page')}"
        f'<p style="margin-top:1rem">{resume} <span class="muted">once the shop has fixed it.'
        "</span></p></section>"
    )


def _dead_letters(detail: TenantDetail, csrf: str, now: float) -> str:
    rows = []
    back = f"/tenants/{url(detail.summary.tenant)}"
    for row in detail.dead_letters:
        buttons = button_form(
            f"/deadletters/{url(row.id)}/retry",
            "Retry",
            csrf,
            fields={"next": back},
            css="primary",
            title="Append sync.deadletter.action (retry); requeue the command if its flow "
            "has no retry of its own",
        ) + button_form(
            f"/deadletters/{url(row.id)}/discard",
            "Discard",
            csrf,
            fields={"next": back},
            css="danger",
            title="Append sync.deadletter.action (discard) and drop the command",
        )
        message = f"<details><summary>message</summary>{pretty_json(row.message())}</details>"
        rows.append(
            [
                f"<code>{esc(row.id)}</code>",
                f"{esc(row.type)}<div class='muted'>{esc(row.topic)}</div>",
                when(row.created_at, now),
                shop_error(row.error) + message,
                buttons,
            ]
        )
    return table(
        ["Id", "Type", "Since", "Error", ""], rows, empty="No dead letters: nothing is parked."
    )


def render_retrying(commands: list[PendingCommand], csrf: str, now: float) -> str:
    """Commands that failed and wait for their next attempt; each holds back only its lane."""
    rows = []
    for c in commands:
        back = f"/tenants/{url(c.tenant)}"
        buttons = button_form(
            f"/commands/{url(c.command_id)}/retry",
            "Retry now",
            csrf,
            fields={"next": back},
            css="primary",
            title="Attempt it at once instead of at the end of its backoff",
        ) + button_form(
            f"/commands/{url(c.command_id)}/cancel",
            "Cancel",
            csrf,
            fields={"next": back},
            css="danger",
            title="Stop retrying: it becomes a dead letter, and its lane goes on",
        )
        rows.append(
            [
                f"<code>{esc(c.command_id)}</code>",
                f"{esc(c.type)}<div class='muted'>{esc(c.target)} · lane {esc(c.lane)}</div>",
                f'<span class="num">{c.attempts}</span>',
                esc(c.last_error or ""),
                esc("now" if c.next_at <= now else f"in {age_text(c.next_at - now)}"),
                buttons,
            ]
        )
    return "<h2>Commands being retried</h2>" + table(
        ["Id", "Type", "Attempts", "Last error", "Next attempt", ""],
        rows,
        empty="No command is waiting for a retry.",
    )


def render_tenant(detail: TenantDetail, csrf: str, now: float) -> str:
    s = detail.summary
    parts: list[str] = [
        f"<h1>{esc(s.tenant)} {light(s.light)}</h1>",
        f'<p class="muted">{esc(s.name)}</p>' if s.name else "",
        f'<p><a href="/tenants/{quote(s.tenant, safe="")}/connection">Fortnox connection</a>: '
        "consent link, state, scopes, deactivate</p>",
    ]
    if s.paused is not None:
        parts.append(_paused_section(s, s.paused, csrf))
    for warning in detail.warnings:
        parts.append(f'<div class="flash error">{esc(warning)}</div>')
    flow_rows = [
        [
            esc(f.title),
            light(f.light, f.reasons),
            "<br>".join(esc(r) for r in f.reasons),
            iso(f.last_ok),
            f"{f.done} / {f.rejected} / {f.retrying}",
        ]
        for f in s.flows
    ]
    parts.append("<h2>Flows</h2>")
    parts.append(
        table(["Flow", "Status", "Why", "Last success", "Done / rejected / retried"], flow_rows)
    )
    parts.append(f'<h2 id="deadletters">Dead letters ({len(detail.dead_letters)})</h2>')
    parts.append(_dead_letters(detail, csrf, now))

    cursor_rows = [
        [
            esc(c.resource),
            when(c.last_ok, now),
            iso(c.since),
            f"{c.seen}",
            when(c.full_sync_at, now),
        ]
        for c in detail.cursors
    ]
    parts.append("<h2>Fortnox polls (last successful sync and cursor per resource)</h2>")
    parts.append(
        table(
            ["Resource", "Last successful poll", "Cursor (changes since)", "Seen", "Full sync"],
            cursor_rows,
            empty="Fortnox has not been polled for this tenant yet.",
        )
    )

    oldest = detail.oldest
    oldest_html = '<span class="muted">none pending</span>'
    if oldest is not None:
        oldest_html = (
            f"<code>{esc(oldest.command_id)}</code> {esc(oldest.type)} → {esc(oldest.target)}, "
            f"queued {esc(age_text(now - oldest.created_at))} ago, {oldest.attempts} attempt(s)"
            + (
                f'<div class="muted">last: {esc(oldest.last_error[:300])}</div>'
                if oldest.last_error
                else ""
            )
        )
    depth = ", ".join(f"{esc(t)}: {n}" for t, n in sorted(detail.depth.items())) or "0"
    drift = detail.drift
    samples = ""
    if drift.stock_samples:
        samples += f'<div class="muted">stock: {esc(", ".join(drift.stock_samples))}</div>'
    if drift.article_samples:
        samples += f'<div class="muted">articles: {esc(", ".join(drift.article_samples))}</div>'
    counts = "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in detail.counts.items())
    parts.append(
        '<div class="grid" style="margin-top:1.5rem">'
        f'<div class="card"><h2 style="margin-top:0">Outbox</h2><dl class="kv">'
        f"<dt>pending</dt><dd>{depth}</dd><dt>oldest</dt><dd>{oldest_html}</dd></dl></div>"
        f'<div class="card"><h2 style="margin-top:0">Pending drift (proxy)</h2><dl class="kv">'
        f"<dt>stock not settled</dt><dd>{drift.unsettled_stock}</dd>"
        f"<dt>articles wanted, not sent</dt><dd>{drift.unsent_articles}</dd></dl>{samples}"
        '<p class="muted">Work Kassasync still owes one side; 0 at quiescence.</p></div>'
        f'<div class="card"><h2 style="margin-top:0">Counts</h2><dl class="kv">{counts}</dl>'
        "</div></div>"
    )

    merge_rows = [
        [
            f"<code>{esc(article)}</code>",
            iso(r.get("at")),
            esc(money(r.get("base"))),
            esc(money(r.get("till"))),
            esc(money(r.get("fortnox"))),
            f"<strong>{esc(money(r.get('new')))}</strong>",
        ]
        for article, r in detail.merges
    ]
    parts.append("<h2>Recent stock merges</h2>")
    parts.append(
        table(["Article", "At", "Base", "Till", "Fortnox", "New"], merge_rows, empty="None yet.")
    )

    def quantity(value: object) -> str:
        return "" if value is None else esc(money(value))

    lost_rows = [
        [
            f"<code>{esc(str(r.get('article') or ''))}</code>",
            iso(r.get("at")),
            quantity(r.get("read")),
            quantity(r.get("written")),
            quantity(r.get("level")),
            quantity(r.get("foreign")),
            esc(str(r.get("reason") or "")),
            "arrived" if r.get("assumed_landed") else "written again",
        ]
        for _command, r in detail.possible_lost_sales
    ]
    parts.append("<h2>Possible lost sales</h2>")
    parts.append(
        '<p class="muted">A change made in Fortnox (a web shop sale, say) overlapped one of '
        "Kassasync's stock writes, or a write's answer was lost, so a sale may have been "
        "overwritten or a till movement counted twice: count the article and correct it.</p>"
    )
    if detail.stock_mode == "quantity":
        parts.append(f'<div class="flash">{RECOMMEND_WAREHOUSE}</div>')
    parts.append(
        table(
            [
                "Article",
                "At",
                "Read",
                "Written",
                "Read after",
                "Foreign change",
                "Why",
                "Our write",
            ],
            lost_rows,
            empty="None.",
        )
    )

    conflict_rows = [
        [
            f"<code>{esc(article)}</code>",
            esc(r.get("ean_waiting") or ""),
            f"<code>{esc(r.get('holder') or '')}</code>",
        ]
        for article, r in detail.conflicts
    ]
    queue_rows = [
        [f"<code>{esc(ean)}</code>", esc(", ".join(str(a) for a in r.get("queue", [])))]
        for ean, r in detail.queues
    ]
    parts.append("<h2>Barcode conflicts</h2>")
    parts.append(
        table(
            ["Article held back", "Barcode (EAN)", "Held by"],
            conflict_rows,
            empty="No barcode conflicts.",
        )
    )
    if queue_rows:
        parts.append(table(["Barcode", "Waiting articles (admitted in this order)"], queue_rows))
    excluded = ", ".join(f"<code>{esc(a)}</code>" for a in detail.exclusions)
    parts.append("<h2>#E# exclusions</h2>")
    parts.append(
        f"<p>{excluded}</p>"
        if excluded
        else '<p class="muted">No article is excluded with #E#.</p>'
    )

    z_rows = []
    for key, r in detail.zreports_waiting:
        error = r.get("error")
        why = (
            shop_error(ShopError.model_validate(error))
            if isinstance(error, dict)
            else esc(r.get("waiting_for") or "waiting")
        )
        date = (r.get("report") or {}).get("business_date", "")
        z_rows.append([f"<code>{esc(key)}</code>", esc(date), why])
    parts.append("<h2>Z-reports waiting</h2>")
    parts.append(table(["Z-report", "Business date", "Waiting on"], z_rows, empty="None waiting."))

    inv_rows = []
    for key, r in detail.invoices_waiting:
        error = r.get("error")
        why = (
            shop_error(ShopError.model_validate(error))
            if isinstance(error, dict)
            else esc(r.get("reason") or r.get("waiting_for") or "waiting")
        )
        inv_rows.append([f"<code>{esc(key)}</code>", why])
    if inv_rows:
        parts.append("<h2>Invoices waiting</h2>")
        parts.append(table(["Invoice", "Waiting on"], inv_rows))

    report_rows = [
        [iso(r.get("at")), f"<code>{esc(key)}</code>", esc(r.get("kind", "")), pretty_json(r)]
        for key, r in detail.reports
    ]
    parts.append("<h2>Recent reports</h2>")
    parts.append(table(["At", "About", "Kind", "Detail"], report_rows, empty="No reports."))
    return "".join(parts)


def render_health(health: Health, now_monotonic: float) -> str:
    """The engine's own health, on top of every page: red with each problem while /healthz is
    not 200 (nothing when all is well)."""
    if health.ok:
        return ""
    rows = [
        [
            f"<code>{esc(p.loop)}</code>",
            esc(p.cause),
            esc(age_text(max(0.0, now_monotonic - p.since))),
            f'<span class="num">{p.restarts}</span>',
        ]
        for p in health.problems
    ]
    return (
        f'<div class="alert engine-health">{light(Light.RED, [p.cause for p in health.problems])}'
        " <h2>The engine is not healthy</h2>"
        "<p>These loops are down, crashing or stalled; each restarts by itself once its cause is "
        "gone (see the log's <code>loop.crashed</code> / <code>loop.fault</code> lines).</p>"
        + table(["Loop", "Cause", "For", "Restarts"], rows)
        + "</div>"
    )


def render_system(view: SystemView, now: float) -> str:
    lag_rows = [
        [
            esc(item.topic),
            esc("—" if item.partition is None else item.partition),
            f'<span class="num">{item.end}</span>',
            f'<span class="num">{item.committed}</span>',
            f"<strong>{item.lag}</strong>",
        ]
        for item in view.lag
    ]
    rate_rows = [[esc(t), f"{rate:.2f}"] for t, rate in view.throughput.items()]
    outbox_rows = [
        [
            esc(target),
            f"{view.pending.get(target, 0)}",
            esc(
                age_text(
                    None if target not in view.oldest_pending else now - view.oldest_pending[target]
                )
            ),
        ]
        for target in ("fortnox", "till")
    ]
    budget_rows = [
        [
            esc(b.tenant),
            f"<code>{esc(b.client_id)}</code>",
            f'{b.in_window} / {b.limit} per {b.window_seconds:g} s<div class="bar">'
            f'<span style="width:{min(100.0, b.used * 100):.0f}%"></span></div>',
            f"{b.acquired}",
            f"{b.waited}",
            f"{b.mean_wait:.3f} s",
            f"{b.max_wait:.3f} s",
            f"{b.penalties}",
            f"{b.waiting_now}",
        ]
        for b in view.budgets
    ]
    worker_rows = [
        [
            esc(w.worker),
            esc("all" if w.partitions is None else ", ".join(str(p) for p in w.partitions)),
            esc("—" if w.tenants is None else w.tenants),
            esc(w.detail),
        ]
        for w in view.workers
    ]
    return (
        f"<h1>System</h1><p class='muted'>Runtime: <strong>{esc(view.runtime)}</strong> · "
        f"{view.tenants} tenants · {view.paused} paused · {view.dead_letters} dead letters open"
        "</p><h2>Consumer lag</h2>"
        + table(["Topic", "Partition", "End offset", "Committed", "Lag"], lag_rows)
        + "<h2>Throughput (last minute)</h2>"
        + table(
            ["Topic", "Messages / s"], rate_rows, empty="Nothing reconciled in the last minute."
        )
        + "<h2>Outbox</h2>"
        + table(["Target", "Pending", "Oldest"], outbox_rows)
        + "<h2>Fortnox request budget</h2>"
        + table(
            [
                "Tenant",
                "Client",
                "In window",
                "Requests",
                "Waited",
                "Mean wait",
                "Max wait",
                "429 pauses",
                "Queued now",
            ],
            budget_rows,
            empty="No Fortnox requests made yet.",
        )
        + "<h2>Workers</h2>"
        + table(
            ["Worker", "Partitions", "Tenants", ""],
            worker_rows,
            empty="This runtime reports no workers (not running).",
        )
    )
