"""``PUT /v1/sie-files/{tenant}/{name}``: a till PC's daily SIE file, uploaded by the
till-PC agent (``kassasync agent watch``, engine/agent.py), imported as ``kassasync import-sie``
imports it (engine/sie_import.py: the same checks, refusals and voucher identity).

* **Who.** The tenant's ingest key, as for the till ingest door (``Authorization: Bearer KEY``).
* **Once.** An upload is identified by the file's name and the SHA-256 of its bytes. A file that
  was queued answers the same report again (200, ``"repeat": true``) without being read again; a
  refused file is checked again (a setting may have changed since) and queues nothing until it
  passes. Vouchers are identified by the import itself too, so the same vouchers under another
  file name are duplicates, never booked twice.
* **Integrity.** ``X-Content-SHA256`` (hex), when sent, must match the body: a file cut short on
  the way is refused with 400 and the agent sends it again.
* **Answers.** 202 queued (``report`` is import-sie's report), 200 the same upload again, 422
  refused (``report.errors`` name file, line, voucher and value), 400 a bad name or checksum,
  401 a wrong key, 404 not a tenant id, 413 over :data:`MAX_FILE_BYTES`.
* **Dashboard.** Every upload leaves a report on the tenant's page (Recent reports, key
  ``sie-file:NAME``; kept in ``sie_file_reports``, not in the replayable state) in the shop's
  words: what was received, or why nothing of the file is booked and what to do. Problems
  while posting (a missing account, a locked period) show where the Z-reports' do, as for
  ``import-sie``.

Both runtimes serve this door with the code here (:func:`add_upload_route` for the HTTP rules,
:func:`receive` for the import): the embedded engine queues onto its log
(:func:`router`), the Kafka ingest onto ``till.events`` as ``import-sie --runtime kafka`` does
(:class:`engine.kafka.ingest.SieFileDoor`), each keeping its uploads in its own database.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import structlog
from fastapi import APIRouter, FastAPI, Header, Request
from fastapi.responses import JSONResponse

from engine.clock import utcnow
from engine.embedded.edge import Edge
from engine.gateway.ingest import _authorised, problem, read_capped
from engine.sie_import import (
    EdgeVoucherQueue,
    ImportReport,
    Refusal,
    VoucherQueue,
    import_file,
)
from engine.store.db import Database
from engine.tenants import TenantDirectory
from topics.common import TENANT_PATTERN

log = structlog.get_logger("kassasync.sie_files")

MAX_FILE_BYTES: Final = 8 * 1024 * 1024
"""A till's daily file is kilobytes; a larger upload is not one (and is refused unread)."""
PATH_PREFIX: Final = "/v1/sie-files/"
"""Every upload's path starts so (the HTTP door caps bodies by path prefix)."""
_NAME_RE: Final = re.compile(r"[^\x00-\x1f\x7f/\\:]{1,200}")
_SHA_RE: Final = re.compile(r"[0-9a-f]{64}")
_SHOWN_REFUSALS: Final = 3

_DDL: Final = (
    """CREATE TABLE IF NOT EXISTS sie_uploads (
    tenant TEXT NOT NULL, name TEXT NOT NULL, sha256 TEXT NOT NULL, outcome TEXT NOT NULL,
    report TEXT NOT NULL, at TEXT NOT NULL, PRIMARY KEY (tenant, name, sha256)) WITHOUT ROWID""",
    # The dashboard's report per file name. Not in ``state``: state is what the log replays
    # to, and a refused upload puts nothing on the log (engine/ops/sqlite.py reads both).
    """CREATE TABLE IF NOT EXISTS sie_file_reports (
    tenant TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (tenant, name)) WITHOUT ROWID""",
)

Outcome = Literal["queued", "refused"]


@dataclass(frozen=True, slots=True)
class Upload:
    """What the engine did with one uploaded file (the body of every 200/202/422 answer)."""

    file: str
    sha256: str
    outcome: Outcome
    report: dict[str, Any]
    message: str
    repeat: bool = False

    def body(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "sha256": self.sha256,
            "outcome": self.outcome,
            "repeat": self.repeat,
            "message": self.message,
            "report": self.report,
        }


def ensure_table(db: Database) -> None:
    with db.transaction():
        for ddl in _DDL:
            db.conn.execute(ddl)


def valid_name(name: str) -> bool:
    """A plain file name: no folders, no control characters, not ``.`` or ``..``."""
    return _NAME_RE.fullmatch(name) is not None and name.strip(". ") != ""


def _where(refusal: Refusal) -> str:
    parts = [f"line {refusal.line}"] if refusal.line else []
    if refusal.voucher:
        parts.append(f"voucher {refusal.voucher}")
    if refusal.value is not None:
        parts.append(f"'{refusal.value}'")
    return (", ".join(parts) + ": " if parts else "") + refusal.message


def shop_message(name: str, report: ImportReport) -> str:
    """The upload's outcome as the shop reads it on the dashboard."""
    if report.errors:
        shown = "; ".join(_where(r) for r in report.errors[:_SHOWN_REFUSALS])
        more = len(report.errors) - _SHOWN_REFUSALS
        extra = f" (and {more} more)" if more > 0 else ""
        return (
            f"The till's file {name} was not booked, none of it: {shown}{extra}. Correct it in "
            "the till and export the file again (the agent moved it to its refused folder)."
        )
    if report.accepted == 0:
        return (
            f"The till's file {name} was received; its {_vouchers(report.vouchers)} had all "
            "been received before, so nothing more is booked."
        )
    before = f" ({report.duplicates} received before)" if report.duplicates else ""
    return (
        f"The till's file {name} was received: {_vouchers(report.accepted)} will be booked in "
        f"Fortnox{before}."
    )


def _vouchers(count: int) -> str:
    return f"{count} voucher" if count == 1 else f"{count} vouchers"


def _remember(db: Database, tenant: str, upload: Upload) -> None:
    at = utcnow().isoformat()
    with db.transaction(durable=True) as conn:  # the agent is told after this
        if upload.outcome == "queued":
            conn.execute(
                "INSERT OR REPLACE INTO sie_uploads (tenant, name, sha256, outcome, report, at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (tenant, upload.file, upload.sha256, upload.outcome, json.dumps(upload.body()), at),
            )
        dashboard = {
            "at": at,
            "kind": "sie_file_refused" if upload.outcome == "refused" else "sie_file_received",
            "file": upload.file,
            "message": upload.message,
        }
        conn.execute(
            "INSERT OR REPLACE INTO sie_file_reports (tenant, name, value) VALUES (?, ?, ?)",
            (tenant, upload.file, json.dumps(dashboard, ensure_ascii=False)),
        )


def _earlier(db: Database, tenant: str, name: str, sha256: str) -> Upload | None:
    row = db.conn.execute(
        "SELECT report FROM sie_uploads WHERE tenant = ? AND name = ? AND sha256 = ?",
        (tenant, name, sha256),
    ).fetchone()
    if row is None:
        return None
    body = json.loads(row[0])
    return Upload(
        file=body["file"],
        sha256=body["sha256"],
        outcome=body["outcome"],
        report=body["report"],
        message=body["message"],
        repeat=True,
    )


def receive(db: Database, queue: VoucherQueue, tenant: str, name: str, data: bytes) -> Upload:
    """Import one uploaded file onto ``queue`` (or answer the earlier import of the same name and
    bytes); the uploads are kept in ``db`` (:func:`ensure_table` made their tables)."""
    sha256 = hashlib.sha256(data).hexdigest()
    earlier = _earlier(db, tenant, name, sha256)
    if earlier is not None:
        log.info("sie_files.repeat", tenant=tenant, file=name, sha256=sha256[:16])
        return earlier
    with tempfile.TemporaryDirectory(prefix="kassasync-sie-") as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        report = import_file(queue, tenant, path)
    report.file = name  # the till's name, never the engine's temporary folder
    report.errors = [
        Refusal(name, r.line, r.message, r.voucher, r.value) if r.file == str(path) else r
        for r in report.errors
    ]
    upload = Upload(
        file=name,
        sha256=sha256,
        outcome="refused" if report.errors else "queued",
        report=json.loads(json.dumps(report.to_dict(), default=str)),
        message=shop_message(name, report),
    )
    _remember(db, tenant, upload)
    log.info(
        "sie_files.received",
        tenant=tenant,
        file=name,
        outcome=upload.outcome,
        accepted=report.accepted,
        duplicates=report.duplicates,
        refusals=len(report.errors),
    )
    return upload


Authorise = Callable[[str, str | None], Awaitable[bool]]
"""Whether an ``Authorization`` header holds the tenant's ingest key."""
Receive = Callable[[str, str, bytes], Awaitable[Upload]]
"""The import of one upload (tenant, file name, bytes): :func:`receive` on a runtime's queue."""


class Unavailable(Exception):
    """Where the vouchers go cannot be reached now (the agent sends the file again later)."""


def add_upload_route(
    api: APIRouter | FastAPI,
    authorised: Authorise,
    receive_upload: Receive,
    on_stored: Callable[[], None] | None = None,
) -> None:
    """The door itself, on both runtimes: who, which name, how big, which checksum, and the
    answers (the module's text); ``on_stored`` runs after vouchers were queued."""

    @api.put(
        PATH_PREFIX + "{tenant}/{name}",
        tags=["ingest"],
        status_code=202,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/octet-stream": {"schema": {"type": "string"}}},
            }
        },
    )
    async def upload(
        tenant: str,
        name: str,
        request: Request,
        authorization: str | None = Header(default=None),
        x_content_sha256: str | None = Header(default=None),
    ) -> JSONResponse:
        if not re.fullmatch(TENANT_PATTERN, tenant):
            return problem(404, "unknown tenant")
        if not await authorised(tenant, authorization):
            return problem(401, "missing or wrong API key for this tenant")
        if not valid_name(name):
            return problem(400, "the file name must be a plain name (no folders, 1-200 chars)")
        raw = await read_capped(request, MAX_FILE_BYTES)
        if raw is None:
            return problem(
                413, f"the file is larger than {MAX_FILE_BYTES} bytes: not a till's daily file"
            )
        if x_content_sha256 is not None:
            claimed = x_content_sha256.strip().lower()
            if _SHA_RE.fullmatch(claimed) is None or claimed != hashlib.sha256(raw).hexdigest():
                return problem(400, "X-Content-SHA256 does not match the body: send it again")
        try:
            done = await receive_upload(tenant, name, raw)
        except Unavailable as failed:
            log.error("sie_files.unavailable", tenant=tenant, file=name, error=str(failed))
            return problem(503, "the engine cannot queue the file now; send it again later")
        if done.outcome == "queued" and not done.repeat and on_stored is not None:
            on_stored()
        status = 422 if done.outcome == "refused" else 200 if done.repeat else 202
        return JSONResponse(status_code=status, content=done.body())


def router(
    directory: TenantDirectory, edge: Edge, on_stored: Callable[[], None] | None = None
) -> APIRouter:
    """The embedded engine's door: vouchers onto its log; ``on_stored`` wakes the processor."""
    ensure_table(edge.db)
    api = APIRouter()

    async def authorised(tenant: str, authorization: str | None) -> bool:
        return _authorised(directory, tenant, authorization)

    async def receive_upload(tenant: str, name: str, data: bytes) -> Upload:
        return receive(edge.db, EdgeVoucherQueue(edge), tenant, name, data)

    add_upload_route(api, authorised, receive_upload, on_stored)
    return api
