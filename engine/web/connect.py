"""Connecting shops to Fortnox from the dashboard: add a shop, its consent link, Fortnox's
callback, and deactivating / activating a shop's integration.

* ``GET /fortnox/callback`` is public: Fortnox sends the shop's administrator there after they
  approved (or refused) Kassasync. It needs no admin token; the sealed ``state`` says which
  tenant the answer belongs to (see :mod:`engine.fortnox.onboarding`).
* ``/tenants/new`` and ``/tenants/{tenant}/connection`` (pages) and ``/ops/api/tenants``,
  ``/ops/api/tenants/{tenant}/connection|deactivate|activate`` (JSON) need the admin token, and
  their POSTs the same CSRF checks as every other dashboard action.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import re
import uuid
from collections.abc import Callable, Iterable
from urllib.parse import urlencode

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from engine.clock import utcnow
from engine.fortnox.errors import ConsentError, FortnoxError
from engine.fortnox.onboarding import ConnectionState, Onboarding
from engine.fortnox.tokens import TokenStore
from engine.ops import Ops, SqliteOpsStore
from engine.tenant_data import delete_tenant_data
from engine.tenants import FortnoxConnection, TenantConfig, TenantDirectory, TillConnection
from engine.web.api import CSRF_HEADER
from engine.web.auth import AdminAuth, Forbidden, Session, check_same_origin
from engine.web.html import default_frame, url
from engine.web.pages import read_form
from topics.errors import ErrorKind, shop_error
from topics.outcomes import Source, TenantPaused, TenantPausedData, TenantResumed, TenantResumedData

log = structlog.get_logger("kassasync.web.connect")

#: Pauses a new consent clears by itself (anything else, an operator's pause say, stays).
CONSENT_PAUSES = frozenset(
    {
        ErrorKind.NOT_CONNECTED,
        ErrorKind.LOGIN_EXPIRED,
        ErrorKind.CONSENT_REVOKED,
        ErrorKind.LICENCE_OR_SCOPE_MISSING,
    }
)
#: Pauses that tokens stored later answer by themselves (not a missing scope: the tokens of a
#: connection without the scope look fine, and resuming would only pause again).
STALE_WITH_NEW_TOKENS = frozenset(
    {ErrorKind.NOT_CONNECTED, ErrorKind.LOGIN_EXPIRED, ErrorKind.CONSENT_REVOKED}
)
DEACTIVATED_REASON = "the Fortnox integration is deactivated"
TENANT_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def resume_if_waiting_for_consent(ops: Ops, tenant: str) -> bool:
    """After a new consent: resume the tenant unless something else than its Fortnox
    connection paused it (an operator's pause stays). True if a resume was appended."""
    summary = ops.summary(tenant)
    if summary is None:
        return False
    if summary.paused is not None and summary.paused.kind not in CONSENT_PAUSES:
        log.info("fortnox.connect.still_paused", tenant=tenant, kind=summary.paused.kind.value)
        return False
    # Also when not (yet) paused: a pause the session asked for before the consent arrived
    # may still be on its way through the log, and the resume must come after it.
    ops.store.append(
        TenantResumed(
            id=f"consent-resume-{uuid.uuid4().hex}",
            tenant=tenant,
            occurred_at=utcnow(),
            source=Source.KASSASYNC,
            data=TenantResumedData(reason="Fortnox connected: the shop approved Kassasync"),
        )
    )
    log.info("fortnox.connect.resumed", tenant=tenant)
    return True


async def resume_where_connected(ops: Ops, store: TokenStore, tenants: Iterable[str]) -> list[str]:
    """Resume tenants paused for their Fortnox connection that have working tokens by now.

    The callback resumes its tenant at once; this is the safety net for a pause that reached the
    log after that resume (the session found no tokens a moment before they were saved), and for
    tokens stored by another process (``kassasync connect`` on the engine's data folder)."""
    resumed: list[str] = []
    for tenant in tenants:
        status = ops.store.record(tenant, "tenant", "status") or {}
        error = status.get("error") if status.get("paused") else None
        kind = error.get("kind") if isinstance(error, dict) else None
        if kind not in STALE_WITH_NEW_TOKENS:
            continue
        tokens = await store.load(tenant)
        if tokens is None or tokens.login_expired or await store.deactivated(tenant):
            continue
        if kind != ErrorKind.NOT_CONNECTED:
            # Expired or revoked: only tokens issued after the pause answer it (tokens that
            # merely look fine, say after a 401 Fortnox gave anyway, must not flap).
            paused_at = _timestamp(status.get("at"))
            if paused_at is None or tokens.issued_at <= paused_at:
                continue
        if resume_if_waiting_for_consent(ops, tenant):
            resumed.append(tenant)
    return resumed


def _timestamp(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


class BadBody(Exception):
    """A JSON body that is not a JSON object (400)."""


class NewShop(BaseModel):
    """A shop the operator adds: no Fortnox tokens yet (it connects through its link)."""

    model_config = ConfigDict(extra="forbid")

    id: str

    @field_validator("id")
    @classmethod
    def _tenant_id(cls, value: str) -> str:
        if not TENANT_ID.fullmatch(value):
            raise ValueError(
                "a tenant id is 1-63 lower-case letters, digits, '-' or '_', starting with a "
                "letter or digit"
            )
        return value

    name: str = Field(default="", max_length=200)
    till_endpoint: str | None = Field(default=None, max_length=2000)
    #: How often Kassasync asks the shop's Fortnox for changes (seconds).
    poll_seconds: float = Field(default=30.0, ge=1, le=3600)


class Deactivation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: False: keep everything synced so far (activate again and it carries on); True: delete it.
    delete_data: bool = False


class Activation(BaseModel):
    """Activating takes no options (an empty body or ``{}``)."""

    model_config = ConfigDict(extra="forbid")


def _page(title: str, text: str, *, status: int = 200, ok: bool = True) -> Response:
    """The page the shop's administrator lands on (no navigation: they are not an operator)."""
    return default_frame().respond(
        None, "callback.html", csrf=None, status=status, heading=title, text=text, ok=ok
    )


def router(
    ops: Ops,
    auth: AdminAuth,
    onboarding: Callable[[], Onboarding | None],
    tenants: TenantDirectory,
) -> APIRouter:
    routes = APIRouter(include_in_schema=False)
    frame = default_frame()

    def session(request: Request) -> Session:
        return auth.require(request)

    def need_onboarding() -> Onboarding:
        found = onboarding()
        if found is None:
            raise ConsentError(
                "no Fortnox app is configured: set KASSASYNC_FORTNOX_CLIENT_ID and "
                "KASSASYNC_FORTNOX_CLIENT_SECRET"
            )
        return found

    def api_actor(request: Request, who: Session) -> None:
        if who.via == "cookie":
            check_same_origin(request)
            if not hmac.compare_digest(auth.csrf_token(who), request.headers.get(CSRF_HEADER, "")):
                raise Forbidden(f"send the session's CSRF token in {CSRF_HEADER}")

    # -- the shared steps ----------------------------------------------------------------------

    def add_shop(shop: NewShop) -> str:
        if tenants.get(shop.id) is not None:
            raise ValueError(f"tenant {shop.id} exists already")
        key = tenants.upsert(
            TenantConfig(
                id=shop.id,
                name=shop.name,
                till=TillConnection(endpoint=shop.till_endpoint or None),
                fortnox=FortnoxConnection(poll_seconds=shop.poll_seconds),
            ),
            source="dashboard",
            note="shop added",
        )
        assert key is not None
        log.info("tenant.added", tenant=shop.id, via="dashboard")
        return key

    def link_for(tenant: str) -> str:
        config = tenants.get(tenant)
        if config is None:
            raise ValueError(f"no tenant {tenant!r}")
        return need_onboarding().link(tenant, config.settings)

    async def deactivate(tenant: str, delete_data: bool) -> bool:
        if tenants.get(tenant) is None:
            raise ValueError(f"no tenant {tenant!r}")
        service = need_onboarding()
        revoked = await service.deactivate(tenant)
        if delete_data:
            store = ops.store
            if not isinstance(store, SqliteOpsStore):
                raise ValueError("deleting a tenant's data works in the embedded runtime only")
            delete_tenant_data(store.db, tenant)
        ops.store.append(
            TenantPaused(
                id=f"deactivate-{uuid.uuid4().hex}",
                tenant=tenant,
                occurred_at=utcnow(),
                source=Source.OPERATOR,
                data=TenantPausedData(
                    error=shop_error(
                        ErrorKind.PAUSED_BY_OPERATOR, detail=DEACTIVATED_REASON, tenant=tenant
                    )
                ),
            )
        )
        log.info("tenant.deactivated", tenant=tenant, revoked=revoked, data_deleted=delete_data)
        return revoked

    async def activate(tenant: str) -> None:
        if tenants.get(tenant) is None:
            raise ValueError(f"no tenant {tenant!r}")
        await need_onboarding().activate(tenant)
        ops.store.append(
            TenantResumed(
                id=f"activate-{uuid.uuid4().hex}",
                tenant=tenant,
                occurred_at=utcnow(),
                source=Source.OPERATOR,
                data=TenantResumedData(reason="integration activated again"),
            )
        )
        log.info("tenant.activated", tenant=tenant)

    # -- Fortnox's callback (public) ------------------------------------------------------------

    @routes.get("/fortnox/callback")
    async def callback(request: Request) -> Response:
        query = dict(request.query_params)
        try:
            service = need_onboarding()
            if tenants.get(service.open_state(query.get("state", "")).tenant) is None:
                raise ConsentError("this shop is no longer set up in Kassasync")
            connected = await service.complete(query)
        except ConsentError as refused:
            log.warning(
                "fortnox.connect.callback_refused", tenant=refused.tenant, error=refused.message
            )
            return _page("Fortnox was not connected", refused.message, status=400, ok=False)
        except FortnoxError as failed:
            log.warning("fortnox.connect.exchange_failed", error=type(failed).__name__)
            return _page(
                "Fortnox was not connected",
                "Fortnox did not accept the approval (it may have been used already or be "
                "older than 10 minutes). Open the consent link again.",
                status=400,
                ok=False,
            )
        config = tenants.get(connected.tenant)
        name = (config.name if config else "") or connected.tenant
        return _page(
            "Fortnox is connected",
            f"Kassasync now syncs {name} with Fortnox. The first sync starts at once.",
        )

    # -- pages -----------------------------------------------------------------------------------

    @routes.get("/tenants/new")
    async def new_shop_page(request: Request, who: Session = Depends(session)) -> Response:
        return frame.respond(
            request, "new_shop.html", csrf=auth.csrf_token(who), added="", message=""
        )

    @routes.post("/tenants/new")
    async def new_shop(request: Request, who: Session = Depends(session)) -> Response:
        form = await read_form(request)
        auth.check_post(request, who, form)
        csrf = auth.csrf_token(who)
        try:
            shop = NewShop(
                id=form.get("id", "").strip(),
                name=form.get("name", "").strip(),
                till_endpoint=form.get("till_endpoint", "").strip() or None,
                poll_seconds=form.get("poll_seconds", "").strip() or 30.0,
            )
            key = add_shop(shop)
        except (ValidationError, ValueError) as bad:
            text = problem_text(bad) if isinstance(bad, ValidationError) else str(bad)
            return frame.respond(
                request, "new_shop.html", csrf=csrf, status=400, added="", message=text
            )
        return frame.respond(
            request, "new_shop.html", csrf=csrf, status=201, added=shop.id, key=key
        )

    @routes.get("/tenants/{tenant}/connection")
    async def connection_page(
        request: Request, tenant: str, who: Session = Depends(session)
    ) -> Response:
        csrf = auth.csrf_token(who)
        if tenants.get(tenant) is None:
            return frame.respond(
                request,
                "message.html",
                csrf=csrf,
                status=404,
                heading=f"No tenant {tenant}",
                text="There is no tenant with this id.",
                link="/",
                link_text="Back to the overview",
            )
        service = onboarding()
        if service is None:
            return frame.respond(request, "no_fortnox_app.html", csrf=csrf, status=503)
        config = tenants.get(tenant)
        status = await service.status(tenant, config.settings if config else None)
        link = None
        if status.state is not ConnectionState.DEACTIVATED:
            try:
                link = link_for(tenant)
            except ConsentError as missing:
                link = None
                log.warning("fortnox.connect.no_link", tenant=tenant, error=missing.message)
        return frame.respond(
            request,
            "connection.html",
            csrf=csrf,
            conn=status,
            link=link,
            done=request.query_params.get("done", "")[:200],
            connected=status.state is ConnectionState.CONNECTED,
            deactivated=status.state is ConnectionState.DEACTIVATED,
        )

    @routes.post("/tenants/{tenant}/deactivate")
    async def deactivate_page(
        request: Request, tenant: str, who: Session = Depends(session)
    ) -> Response:
        form = await read_form(request)
        auth.check_post(request, who, form)
        back = f"/tenants/{url(tenant)}/connection"
        delete = form.get("delete_data") == "1"
        try:
            revoked = await deactivate(tenant, delete)
        except (ValueError, ConsentError) as failed:
            return RedirectResponse(f"{back}?{_q(done=_text(failed))}", status_code=303)
        text = (
            "Deactivated"
            + (" and its data deleted" if delete else ", data kept")
            + ("; Fortnox revoked the token." if revoked else "; there was no token to revoke.")
        )
        return RedirectResponse(f"{back}?{_q(done=text)}", status_code=303)

    @routes.post("/tenants/{tenant}/activate")
    async def activate_page(
        request: Request, tenant: str, who: Session = Depends(session)
    ) -> Response:
        form = await read_form(request)
        auth.check_post(request, who, form)
        back = f"/tenants/{url(tenant)}/connection"
        try:
            await activate(tenant)
        except (ValueError, ConsentError) as failed:
            return RedirectResponse(f"{back}?{_q(done=_text(failed))}", status_code=303)
        text = "Activated: send the consent link to connect the shop again."
        return RedirectResponse(f"{back}?{_q(done=text)}", status_code=303)

    # -- JSON ------------------------------------------------------------------------------------

    async def json_body(request: Request) -> dict[str, object]:
        raw = await request.body()  # capped by the door while it is read
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except ValueError:
            raise BadBody("the body is not JSON") from None
        if not isinstance(data, dict):
            raise BadBody("send a JSON object")
        return data

    @routes.post("/ops/api/tenants")
    async def add_api(request: Request, who: Session = Depends(session)) -> JSONResponse:
        api_actor(request, who)
        try:
            shop = NewShop.model_validate(await json_body(request))
            key = add_shop(shop)
        except ValidationError as bad:
            return JSONResponse({"error": problem_text(bad)}, status_code=400)
        except BadBody as bad:
            return JSONResponse({"error": str(bad)}, status_code=400)
        except ValueError as bad:
            return JSONResponse({"error": str(bad)}, status_code=409)
        out: dict[str, object] = {"tenant": shop.id, "api_key": key, "connection": "not_connected"}
        try:
            out["consent_link"] = link_for(shop.id)
        except ConsentError as missing:
            out["consent_link"] = None
            out["error"] = missing.message
        return JSONResponse(out, status_code=201)

    @routes.get("/ops/api/tenants/{tenant}/connection")
    async def connection_api(tenant: str, who: Session = Depends(session)) -> JSONResponse:
        if tenants.get(tenant) is None:
            return JSONResponse({"error": f"no tenant {tenant!r}"}, status_code=404)
        try:
            config = tenants.get(tenant)
            status = await need_onboarding().status(tenant, config.settings if config else None)
            link = None if status.state is ConnectionState.DEACTIVATED else link_for(tenant)
        except ConsentError as missing:
            return JSONResponse({"error": missing.message}, status_code=503)
        return JSONResponse({**status.as_dict(), "consent_link": link})

    @routes.post("/ops/api/tenants/{tenant}/deactivate")
    async def deactivate_api(
        request: Request, tenant: str, who: Session = Depends(session)
    ) -> JSONResponse:
        api_actor(request, who)
        try:
            choice = Deactivation.model_validate(await json_body(request))
            revoked = await deactivate(tenant, choice.delete_data)
        except ValidationError as bad:
            return JSONResponse({"error": problem_text(bad)}, status_code=400)
        except BadBody as bad:
            return JSONResponse({"error": str(bad)}, status_code=400)
        except (ValueError, ConsentError) as failed:
            return JSONResponse({"error": _text(failed)}, status_code=404)
        return JSONResponse(
            {
                "tenant": tenant,
                "deactivated": True,
                "revoked": revoked,
                "data_deleted": choice.delete_data,
            }
        )

    @routes.post("/ops/api/tenants/{tenant}/activate")
    async def activate_api(
        request: Request, tenant: str, who: Session = Depends(session)
    ) -> JSONResponse:
        api_actor(request, who)
        try:
            Activation.model_validate(await json_body(request))
            await activate(tenant)
        except ValidationError as bad:
            return JSONResponse({"error": problem_text(bad)}, status_code=400)
        except BadBody as bad:
            return JSONResponse({"error": str(bad)}, status_code=400)
        except (ValueError, ConsentError) as failed:
            return JSONResponse({"error": _text(failed)}, status_code=404)
        return JSONResponse({"tenant": tenant, "deactivated": False})

    return routes


def problem_text(bad: ValidationError) -> str:
    """The first problem of a form or body, as ``field: message``."""
    first = bad.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return f"{where}: {first['msg'].removeprefix('Value error, ')}"


def _text(failed: Exception) -> str:
    return failed.message if isinstance(failed, FortnoxError) else str(failed)


def _q(**params: str) -> str:
    return urlencode(params)
