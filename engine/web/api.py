"""The ops JSON API (``/ops/api``): what the pages show, for scripts and the CLI.

Reads take the bearer token or a session cookie. Actions take the bearer token, or a session
cookie together with the ``X-Kassasync-CSRF`` header (same origin only).
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from engine.ops import (
    ActionResult,
    Cursor,
    DeadLetterRow,
    DocKind,
    FlowStatus,
    Ops,
    OpsError,
    TenantDetail,
    TenantSummary,
)
from engine.supervision import Health, health_json
from engine.web.auth import AdminAuth, Forbidden, NeedLogin, Session, check_same_origin

CSRF_HEADER = "x-kassasync-csrf"


def jsonable(value: Any) -> Any:
    """Dataclasses, pydantic models, enums and containers as JSON values."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, DeadLetterRow):
        return dead_letter_json(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def dead_letter_json(row: DeadLetterRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "tenant": row.tenant,
        "topic": row.topic,
        "type": row.type,
        "flow": row.flow,
        "status": row.status,
        "created_at": row.created_at,
        "resolved_at": row.resolved_at,
        "error": row.error.model_dump(mode="json"),
        "message": row.message(),
    }


def flow_json(flow: FlowStatus) -> dict[str, Any]:
    return {**jsonable(flow), "light": flow.light.value, "title": flow.title}


def summary_json(summary: TenantSummary) -> dict[str, Any]:
    return {
        "tenant": summary.tenant,
        "name": summary.name,
        "light": summary.light.value,
        "paused": None if summary.paused is None else summary.paused.model_dump(mode="json"),
        "paused_at": summary.paused_at,
        "flows": [flow_json(f) for f in summary.flows],
        "dead_letters": summary.dead_letters,
        "pending": summary.pending,
        "oldest_pending": summary.oldest_pending,
    }


def detail_json(detail: TenantDetail) -> dict[str, Any]:
    out = {f.name: jsonable(getattr(detail, f.name)) for f in dataclasses.fields(detail)}
    out["summary"] = summary_json(detail.summary)
    out["drift"]["total"] = detail.drift.total
    out["cursors"] = [cursor_json(c) for c in detail.cursors]
    return out


def cursor_json(cursor: Cursor) -> dict[str, Any]:
    out: dict[str, Any] = jsonable(cursor)
    return out


def _error(failed: OpsError) -> JSONResponse:
    return JSONResponse({"error": str(failed)}, status_code=failed.status)


def router(ops: Ops, auth: AdminAuth) -> APIRouter:
    # The ops API needs the admin token; it is left out of the public OpenAPI document.
    api = APIRouter(prefix="/ops/api", tags=["ops"], include_in_schema=False)

    def reader(request: Request) -> Session:
        found = auth.authenticate(request, api=True)
        if found is None:
            raise NeedLogin(api=True, path=request.url.path)
        return found

    def actor(request: Request) -> Session:
        who = reader(request)
        if who.via == "cookie":
            check_same_origin(request)
            given = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(auth.csrf_token(who), given):
                raise Forbidden(f"send the session's CSRF token in {CSRF_HEADER}")
        return who

    async def reason_of(request: Request, default: str) -> str:
        body = await request.body()
        if not body:
            return default
        try:
            data = json.loads(body)
        except ValueError:
            return default
        value = data.get("reason") if isinstance(data, dict) else None
        return str(value) if value else default

    def done(result: ActionResult) -> JSONResponse:
        return JSONResponse(result.as_dict())

    @api.get("/overview")
    async def overview(_: Session = Depends(reader)) -> JSONResponse:
        return JSONResponse({"tenants": [summary_json(s) for s in ops.overview()]})

    @api.get("/tenants/{tenant}")
    async def tenant(tenant: str, _: Session = Depends(reader)) -> JSONResponse:
        detail = ops.tenant(tenant)
        if detail is None:
            return JSONResponse({"error": f"no tenant {tenant!r}"}, status_code=404)
        return JSONResponse(detail_json(detail))

    @api.get("/system")
    async def system(_: Session = Depends(reader)) -> JSONResponse:
        view = ops.system()
        out = jsonable(view)
        for item, lag in zip(out["lag"], view.lag, strict=True):
            item["lag"] = lag.lag
        for item, budget in zip(out["budgets"], view.budgets, strict=True):
            item["used"] = budget.used
        return JSONResponse(out)

    @api.get("/deadletters")
    async def dead_letters(
        _: Session = Depends(reader),
        tenant: str | None = None,
        status: Annotated[str, Query(pattern="^(open|retried|discarded|resolved)$")] = "open",
        limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
    ) -> JSONResponse:
        rows = ops.dead_letters(tenant=tenant, status=status, limit=limit)
        return JSONResponse({"dead_letters": [dead_letter_json(r) for r in rows]})

    @api.post("/deadletters/{dead_letter_id:path}/retry")
    async def retry(dead_letter_id: str, _: Session = Depends(actor)) -> JSONResponse:
        try:
            return done(ops.retry(dead_letter_id))
        except OpsError as failed:
            return _error(failed)

    @api.post("/deadletters/{dead_letter_id:path}/discard")
    async def discard(dead_letter_id: str, _: Session = Depends(actor)) -> JSONResponse:
        try:
            return done(ops.discard(dead_letter_id))
        except OpsError as failed:
            return _error(failed)

    @api.post("/deadletters/resolve-fixed")
    async def resolve_fixed(_: Session = Depends(actor)) -> JSONResponse:
        """Mark resolved every open dead letter whose document is done by now."""
        return JSONResponse({"resolved": ops.resolve_fixed()})

    @api.get("/tenants/{tenant}/documents")
    async def documents(
        tenant: str,
        _: Session = Depends(reader),
        kind: DocKind | None = None,
        phase: Annotated[str, Query(pattern="^(|done|failed|waiting|working|skipped)$")] = "",
        limit: Annotated[int, Query(ge=1, le=1000)] = 25,
    ) -> JSONResponse:
        """The tenant's Z-reports, invoices and payments with their state and Fortnox number."""
        if ops.summary(tenant) is None:
            return JSONResponse({"error": f"no tenant {tenant!r}"}, status_code=404)
        found = ops.documents(tenant, kind=kind, phase=phase, limit=limit)
        rows = [{**jsonable(d), "can_rerun": d.can_rerun} for d in found]
        return JSONResponse({"documents": rows})

    @api.post("/tenants/{tenant}/documents/{kind}/{key:path}/rerun")
    async def rerun(
        tenant: str, kind: DocKind, key: str, _: Session = Depends(actor)
    ) -> JSONResponse:
        try:
            return done(ops.rerun(tenant, kind, key))
        except OpsError as failed:
            return _error(failed)

    @api.get("/commands")
    async def commands(
        _: Session = Depends(reader),
        tenant: str | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
    ) -> JSONResponse:
        """Commands that failed and wait for their next attempt."""
        rows = ops.retrying(tenant, limit)
        return JSONResponse({"commands": [jsonable(r) for r in rows]})

    @api.post("/commands/{command_id:path}/retry")
    async def retry_command(command_id: str, _: Session = Depends(actor)) -> JSONResponse:
        try:
            return done(ops.retry_command(command_id))
        except OpsError as failed:
            return _error(failed)

    @api.post("/commands/{command_id:path}/cancel")
    async def cancel_command(
        command_id: str, request: Request, _: Session = Depends(actor)
    ) -> JSONResponse:
        try:
            reason = await reason_of(request, "cancelled by operator")
            return done(ops.cancel_command(command_id, reason))
        except OpsError as failed:
            return _error(failed)

    @api.post("/tenants/{tenant}/resume")
    async def resume(tenant: str, request: Request, _: Session = Depends(actor)) -> JSONResponse:
        try:
            return done(ops.resume(tenant, await reason_of(request, "resumed by operator")))
        except OpsError as failed:
            return _error(failed)

    @api.post("/tenants/{tenant}/pause")
    async def pause(tenant: str, request: Request, _: Session = Depends(actor)) -> JSONResponse:
        try:
            return done(ops.pause(tenant, await reason_of(request, "maintenance")))
        except OpsError as failed:
            return _error(failed)

    return api


def healthz_router(
    health: Callable[[], Health], extra: Callable[[], dict[str, object]]
) -> APIRouter:
    """``GET /healthz``: 200 while every supervised loop runs and nothing is stalled; otherwise
    503 with the problems (which loop, why, for how long). No token: load balancers and
    orchestrators probe it; it names loops and causes, never a secret or a tenant's data."""
    route = APIRouter()

    @route.get("/healthz")
    async def healthz() -> JSONResponse:
        found = health()
        body = health_json(found, time.monotonic(), **extra())
        return JSONResponse(body, status_code=200 if found.ok else 503)

    return route
