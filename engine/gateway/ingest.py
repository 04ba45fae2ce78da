"""The till ingest API: authenticated, validated, idempotent by message id.

``POST /v1/tenants/{tenant}/events`` takes one till event or ``{"events": [...]}`` (at most 500).
A batch is all or nothing: if any event is invalid nothing is stored and the answer lists every
problem with its index and field, so the till fixes and resends the batch. Events already
received (same message id) are acknowledged again without being stored twice.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import structlog
from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter, ValidationError

from engine.embedded.edge import Edge
from engine.tenants import TenantDirectory
from topics import registry
from topics.common import TENANT_PATTERN
from topics.envelope import Envelope

log = structlog.get_logger("kassasync.ingest")

MAX_BODY_BYTES = 1_000_000
MAX_BATCH = 500
MAX_FUTURE = dt.timedelta(minutes=5)


def problem(status: int, error: str, problems: list[dict[str, Any]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": error}
    if problems:
        body["problems"] = problems
    return JSONResponse(status_code=status, content=body)


def _authorised(directory: TenantDirectory, tenant: str, authorization: str | None) -> bool:
    if not authorization or not authorization.startswith("Bearer "):
        return False
    return directory.verify_key(tenant, authorization[len("Bearer ") :].strip())


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    """``schema`` with every ``#/$defs/...`` reference replaced by its definition."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref[len("#/$defs/") :]], defs)
        return {k: _inline(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inline(item, defs) for item in schema]
    return schema


def request_body_schema() -> dict[str, Any]:
    """The ingest body for the OpenAPI document: one till event or ``{"events": [...]}``."""
    event = TypeAdapter(registry.TillEventUnion).json_schema()
    one = _inline(event, event.get("$defs", {}))
    for option in one.get("oneOf", []):
        # ``type`` has a default in the models but picks the model: a till always sends it.
        option["required"] = sorted({*option.get("required", []), "type"})
    batch = {
        "type": "object",
        "properties": {
            "events": {"type": "array", "items": one, "minItems": 1, "maxItems": MAX_BATCH}
        },
        "required": ["events"],
        "additionalProperties": False,
    }
    return {"oneOf": [batch, one]}


_PROBLEM = {
    "type": "object",
    "properties": {
        "error": {"type": "string"},
        "problems": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer"},
                    "field": {"type": "string"},
                    "problem": {"type": "string"},
                },
            },
        },
    },
    "required": ["error"],
}
_ANSWER = {
    "type": "object",
    "properties": {"accepted": {"type": "integer"}, "duplicates": {"type": "integer"}},
    "required": ["accepted", "duplicates"],
}


def _answers() -> dict[int | str, dict[str, Any]]:
    def described(text: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"description": text, "content": {"application/json": {"schema": schema}}}

    return {
        200: described("every event had been received before", _ANSWER),
        202: described("stored (duplicates counts the ones received before)", _ANSWER),
        400: described("the body is not JSON", _PROBLEM),
        401: described("missing or wrong ingest key for this tenant", _PROBLEM),
        404: described("not a tenant id", _PROBLEM),
        413: described(f"body over {MAX_BODY_BYTES} bytes or over {MAX_BATCH} events", _PROBLEM),
        422: described("nothing was stored: the problems name each event and field", _PROBLEM),
    }


async def read_capped(request: Request, limit: int = MAX_BODY_BYTES) -> bytes | None:
    """The body, or None as soon as it is known to be larger than ``limit`` (a huge body is
    refused without being read into memory)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            return None
    return bytes(raw)


def router(
    directory: TenantDirectory, edge: Edge, on_stored: Callable[[], None] | None = None
) -> APIRouter:
    """The till-facing ingest API; ``on_stored`` is called after events were stored (the
    embedded runtime wakes its processor with it)."""
    api = APIRouter()

    @api.post(
        "/v1/tenants/{tenant}/events",
        tags=["ingest"],
        status_code=202,
        responses=_answers(),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": request_body_schema()}},
            }
        },
    )
    async def ingest(
        tenant: str, request: Request, authorization: str | None = Header(default=None)
    ) -> JSONResponse:
        import re

        if not re.match(TENANT_PATTERN, tenant):
            return problem(404, "unknown tenant")
        if not _authorised(directory, tenant, authorization):
            return problem(401, "missing or wrong API key for this tenant")
        raw = await read_capped(request)
        if raw is None:
            return problem(413, f"body is larger than {MAX_BODY_BYTES} bytes; send smaller batches")
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as bad:
            return problem(400, f"body is not valid JSON: {type(bad).__name__}")
        items = body.get("events") if isinstance(body, dict) and "events" in body else [body]
        if not isinstance(items, list) or not items:
            return problem(422, "'events' must be a non-empty list of till events")
        if len(items) > MAX_BATCH:
            return problem(413, f"at most {MAX_BATCH} events per request")
        events, problems = validate_batch(tenant, items)
        if problems:
            log.info("ingest.rejected", tenant=tenant, problems=len(problems))
            return problem(422, "the batch was not stored: fix these events and resend", problems)
        accepted, duplicates = store(edge, tenant, events)
        if accepted and on_stored is not None:
            on_stored()
        log.info("ingest.accepted", tenant=tenant, accepted=accepted, duplicates=duplicates)
        return JSONResponse(
            status_code=202 if accepted else 200,
            content={"accepted": accepted, "duplicates": duplicates},
        )

    return api


def validate_batch(tenant: str, items: list[Any]) -> tuple[list[Envelope], list[dict[str, Any]]]:
    events: list[Envelope] = []
    problems: list[dict[str, Any]] = []
    latest = dt.datetime.now(dt.UTC) + MAX_FUTURE
    seen: set[str] = set()
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append({"index": index, "field": "(event)", "problem": "must be an object"})
            continue
        try:
            event = registry.parse_till_event(item)
        except ValidationError as invalid:
            for found in registry.describe_errors(invalid):
                problems.append({"index": index, **found})
            continue
        except RecursionError:
            problems.append({"index": index, "field": "(event)", "problem": "nested too deeply"})
            continue
        if event.tenant != tenant:
            problems.append(
                {"index": index, "field": "tenant", "problem": "does not match the URL's tenant"}
            )
        elif event.occurred_at > latest:
            problems.append(
                {
                    "index": index,
                    "field": "occurred_at",
                    "problem": "is more than 5 minutes in the future: check the till's clock",
                }
            )
        elif event.id in seen:
            problems.append({"index": index, "field": "id", "problem": "repeated in this batch"})
        else:
            seen.add(event.id)
            events.append(event)
    return events, problems


def store(edge: Edge, tenant: str, events: list[Envelope]) -> tuple[int, int]:
    accepted = duplicates = 0
    with edge.db.transaction(durable=True) as conn:  # the till is told 202 after this
        for event in events:
            found = conn.execute(
                "SELECT 1 FROM ingest_seen WHERE tenant = ? AND msg_id = ?", (tenant, event.id)
            ).fetchone()
            if found:
                duplicates += 1
                continue
            offset = edge.log.append(event)
            conn.execute(
                'INSERT INTO ingest_seen (tenant, msg_id, "offset") VALUES (?, ?, ?)',
                (tenant, event.id, offset),
            )
            accepted += 1
    return accepted, duplicates
