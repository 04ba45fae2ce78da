"""The till ingest API: authenticated, validated, idempotent by message id.

``POST /v1/tenants/{tenant}/events`` takes one till event or ``{"events": [...]}`` (at most 500).
A batch is all or nothing: if any event is invalid nothing is stored and the answer lists every
problem with its index and field, so the till fixes and resends the batch. Events already
received (same message id, same content) are acknowledged again without being stored twice; a
known id with other content is a conflict (409) and nothing of the batch is stored.

The door bounds every value later code converts or formats (``docs/contract.md``, *Limits*):
numbers are parsed with at most 20 significant digits, dates and times lie in the years
2000-2100 (the models in ``topics.till``), and ``occurred_at`` is at most five minutes ahead of
the engine's clock (here).

Redelivery window (``docs/contract.md``, *Redelivery window*): an event whose ``occurred_at`` is
more than :data:`REDELIVERY_WINDOW` old is refused (422, field ``occurred_at``), and the
message ids received are remembered for that window after they arrived (retention,
``engine/store/retention.py``, forgets them later). A resend inside the window is a duplicate;
a resend after it is that old, so it is refused with the reason, never stored a second time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import structlog
from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter, ValidationError

from engine.clock import utcnow
from engine.embedded.edge import Edge
from engine.store.compact import payload_of
from engine.store.db import log_table
from engine.tenants import TenantDirectory
from topics import registry
from topics.common import MAX_DIGITS, REDELIVERY_WINDOW_DAYS, TENANT_PATTERN, OversizedNumber
from topics.envelope import Envelope
from topics.names import Topic
from topics.till import StockCounted, StockMovement

log = structlog.get_logger("kassasync.ingest")

MAX_BODY_BYTES = 1_000_000
MAX_BATCH = 500
MAX_FUTURE = dt.timedelta(minutes=5)
REDELIVERY_WINDOW = dt.timedelta(days=REDELIVERY_WINDOW_DAYS)
#: How long a received message id is remembered: an event arrives at most :data:`MAX_FUTURE`
#: before its ``occurred_at``, so once this has passed since it arrived, a resend is older than
#: the window and refused.
SEEN_FOR = REDELIVERY_WINDOW + MAX_FUTURE
#: Ids of vouchers queued from SIE files (``engine/sie_import.py``): that import's record of
#: what was booked, which it checks on every import, so retention keeps them for ever.
SIE_IDS = "sie-"


#: What a 401 of the tills' doors asks for (RFC 9110 15.5.2: a 401 names its scheme).
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="kassasync-ingest"'}


def problem(status: int, error: str, problems: list[dict[str, Any]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": error}
    if problems:
        body["problems"] = problems
    return JSONResponse(
        status_code=status, content=body, headers=CHALLENGE if status == 401 else None
    )


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
        409: described(
            "nothing was stored: a message id was received before with other content", _PROBLEM
        ),
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
        items = parse_body(raw)
        if isinstance(items, JSONResponse):
            return items
        events, problems = validate_batch(tenant, items)
        if problems:
            log.info("ingest.rejected", tenant=tenant, problems=len(problems))
            return problem(422, "the batch was not stored: fix these events and resend", problems)
        stored = store(edge, tenant, events)
        if stored.conflicts:
            return conflict(tenant, stored.conflicts)
        if stored.accepted and on_stored is not None:
            on_stored()
        log.info(
            "ingest.accepted", tenant=tenant, accepted=stored.accepted, duplicates=stored.duplicates
        )
        return JSONResponse(
            status_code=202 if stored.accepted else 200,
            content={"accepted": stored.accepted, "duplicates": stored.duplicates},
        )

    return api


def _json_int(text: str) -> int | OversizedNumber:
    """A JSON integer, or :class:`OversizedNumber` past :data:`MAX_DIGITS` digits (Python's
    ``int()`` refuses more than 4,300 digits with a ValueError, and is quadratic before that)."""
    return OversizedNumber(text) if len(text.lstrip("-")) > MAX_DIGITS else int(text)


def _json_float(text: str) -> Decimal | OversizedNumber:
    """A JSON number with a fraction or exponent, exactly (as a Decimal, never a binary float
    that would turn ``1e-999999`` into 0), or :class:`OversizedNumber` when it is out of bounds."""
    if len(text) > 4 * MAX_DIGITS:
        return OversizedNumber(text)
    try:
        value = Decimal(text)
    except InvalidOperation:
        return OversizedNumber(text)
    if len(value.as_tuple().digits) > MAX_DIGITS or abs(value.adjusted()) > MAX_DIGITS:
        return OversizedNumber(text)
    return value


def _no_constant(text: str) -> None:
    raise ValueError(f"{text} is not JSON")


def parse_body(raw: bytes) -> list[Any] | JSONResponse:
    """The events of an ingest body (one event or ``{"events": [...]}``), or the answer that
    refuses it. Both runtimes' ingest APIs read bodies through here."""
    try:
        body = json.loads(
            raw, parse_int=_json_int, parse_float=_json_float, parse_constant=_no_constant
        )
    except (ValueError, UnicodeDecodeError, RecursionError) as bad:
        # JSONDecodeError is a ValueError; so is NaN or Infinity, which JSON does not have.
        return problem(400, f"body is not valid JSON: {type(bad).__name__}")
    items = body.get("events") if isinstance(body, dict) and "events" in body else [body]
    if not isinstance(items, list) or not items:
        return problem(422, "'events' must be a non-empty list of till events")
    if len(items) > MAX_BATCH:
        return problem(413, f"at most {MAX_BATCH} events per request")
    return items


@dataclass(frozen=True, slots=True)
class Conflict:
    """An event of a batch whose message id was received before with other content."""

    index: int
    id: str
    #: Where the first one with this id is on the log.
    offset: int

    def problem(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "field": "id",
            "problem": f"message id {self.id!r} was received before with other content "
            f"(stored at offset {self.offset}): send a changed event under a new id",
        }


def conflict(tenant: str, conflicts: list[Conflict]) -> JSONResponse:
    """409: message ids this tenant sent before with other content; nothing was stored."""
    log.warning("ingest.conflict", tenant=tenant, message_ids=[c.id for c in conflicts][:20])
    ids = ", ".join(repr(c.id) for c in conflicts[:5])
    return problem(
        409,
        f"message id {ids} was received before with other content; nothing was stored. "
        "A changed event needs a new id",
        [c.problem() for c in conflicts],
    )


def validate_batch(
    tenant: str, items: list[Any], now: dt.datetime | None = None, *, window: bool = True
) -> tuple[list[Envelope], list[dict[str, Any]]]:
    """The events of a batch, or the problems that refuse it (index, field, problem each).
    ``now`` is the engine's clock (``occurred_at`` may be at most five minutes ahead of it).
    ``window=False`` leaves out the redelivery window: the SIE import queues vouchers of any
    date, and remembers their ids for ever (``SIE_IDS``)."""
    events: list[Envelope] = []
    problems: list[dict[str, Any]] = []
    moment = now or utcnow()
    latest = moment + MAX_FUTURE
    earliest = moment - REDELIVERY_WINDOW
    seen: set[str] = set()
    stock_ids: dict[tuple[str, str], tuple[int, object]] = {}
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
        except Exception as failed:  # a validator's bug must not answer 5xx to a till
            log.exception("ingest.validation_failed", tenant=tenant, index=index)
            problems.append(
                {
                    "index": index,
                    "field": "(event)",
                    "problem": f"could not be validated ({type(failed).__name__})",
                }
            )
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
        elif window and event.occurred_at < earliest:
            problems.append(
                {
                    "index": index,
                    "field": "occurred_at",
                    "problem": f"is older than the redelivery window ({REDELIVERY_WINDOW_DAYS} "
                    "days): Kassasync no longer remembers what it received then, so it cannot "
                    "tell a resend from a new event and stores neither. Leave it out, or send it "
                    "as a new event with a new id and the current time",
                }
            )
        elif event.id in seen:
            problems.append({"index": index, "field": "id", "problem": "repeated in this batch"})
        else:
            reused = _reused_stock_id(event, stock_ids, index)
            if reused is not None:
                problems.append(reused)
                continue
            seen.add(event.id)
            events.append(event)
    return events, problems


def _reused_stock_id(
    event: Envelope, earlier: dict[tuple[str, str], tuple[int, object]], index: int
) -> dict[str, Any] | None:
    """A problem if ``event`` is a stock movement (or count) whose ``movement_id`` (or
    ``count_id``) came earlier in the same batch with other data (the same movement or count
    sent twice is left to the reconciler, which applies an id once)."""
    data: object
    if isinstance(event, StockMovement):
        field_name, ident, data = "movement_id", event.data.movement_id, event.data
    elif isinstance(event, StockCounted):
        field_name, ident, data = "count_id", event.data.count_id, event.data
    else:
        return None
    first, other = earlier.setdefault((field_name, ident), (index, data))
    if first == index or other == data:
        return None
    what = "movement" if field_name == "movement_id" else "count"
    return {
        "index": index,
        "field": f"data.{field_name}",
        "problem": f"is used by event {first} of this batch for another {what}",
    }


@dataclass(slots=True)
class Stored:
    """What :func:`store` did with a batch: nothing at all when ``conflicts`` is not empty."""

    accepted: int = 0
    duplicates: int = 0
    conflicts: list[Conflict] = field(default_factory=list)


def store(edge: Edge, tenant: str, events: list[Envelope], now: float | None = None) -> Stored:
    """Store the events not received before, in one transaction; all or nothing: an id received
    before with other content stores none of the batch. ``now`` (Unix time) is when they
    arrived: retention forgets each id :data:`SEEN_FOR` later."""
    result = Stored()
    table = log_table(Topic.TILL_EVENTS)
    arrived = utcnow().timestamp() if now is None else now
    with edge.db.transaction(durable=True) as conn:  # the till is told 202 after this
        fresh: list[tuple[Envelope, bytes]] = []
        for index, event in enumerate(events):
            payload = registry.dump(event)
            found = conn.execute(
                f'SELECT s."offset", s.digest, l.payload FROM ingest_seen s LEFT JOIN {table} l '
                'ON l."offset" = s."offset" WHERE s.tenant = ? AND s.msg_id = ?',
                (tenant, event.id),
            ).fetchone()
            if found is None:
                fresh.append((event, payload))
            elif _same(_stored(found[2]), found[1], event, payload):
                result.duplicates += 1
            else:
                result.conflicts.append(Conflict(index, event.id, int(found[0])))
        if result.conflicts:
            result.duplicates = 0
            return result
        for event, payload in fresh:
            offset = edge.log.append_raw(Topic.TILL_EVENTS, event, payload)
            conn.execute(
                'INSERT INTO ingest_seen (tenant, msg_id, "offset", at, digest) '
                "VALUES (?, ?, ?, ?, ?)",
                (tenant, event.id, offset, arrived, digest(payload)),
            )
            result.accepted += 1
    return result


def digest(payload: bytes) -> bytes:
    """What ``ingest_seen`` keeps of an event to recognise it once its log row is trimmed."""
    return hashlib.blake2b(payload, digest_size=16).digest()


def _stored(column: bytes | None) -> bytes | None:
    """The event a log row holds (packed or not, engine/store/compact.py); None once trimmed."""
    return None if column is None else payload_of(bytes(column))


def _same(stored: bytes | None, known: bytes | None, event: Envelope, payload: bytes) -> bool:
    if stored is not None:  # compared by value while the log still holds it
        return registry.same_message(stored, event)
    if known is not None:  # the log row was trimmed: the digest of what was stored decides
        return digest(payload) == bytes(known)
    # Remembered before digests were kept, and trimmed since: the id alone decides.
    return True
