"""Files: ``/3/inbox`` and ``/3/archive`` (multipart upload, folder listing, file download) and
``/3/voucherfileconnections`` (attach a file to a voucher).

Uploads take the multipart field ``file``. A file has an ``Id`` and an ``ArchiveFileId``; a
voucher file connection accepts either as ``FileId``, and connecting an inbox file moves it to
the archive. A connection targets the voucher in the year given by ``financialyeardate`` /
``financialyear``, else the preselected year (the "wrong year" trap of
softwerkab/fortnox-csharp-api-sdk#175).
"""

from __future__ import annotations

import uuid
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from sandbox.fortnox import errors as E
from sandbox.fortnox.collection import Record
from sandbox.fortnox.listing import json_response, parse_list_query, search_predicate
from sandbox.fortnox.payloads import VoucherFileConnectionPayload
from sandbox.fortnox.resources.common import (
    base_url,
    financial_year_param,
    params,
    read_payload,
    render_page,
    require,
    single,
    tenant_of,
)
from sandbox.fortnox.state import StoredFile, Tenant

router = APIRouter()

INBOX_FOLDERS = ("Inbox_v", "Inbox_s", "Inbox_kf")
ARCHIVE_ROOT = "root"


def folder_id(tenant: Tenant, area: str, name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"fortnox-sandbox:{tenant.id}:{area}:{name}"))


def parse_upload(body: bytes, content_type: str | None) -> tuple[str, bytes, str]:
    """(file name, bytes, content type) of the ``file`` field of a multipart body."""
    if not content_type or "multipart/form-data" not in content_type.lower():
        raise E.INVALID_CONTENT_TYPE()
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message: Message = BytesParser(policy=HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise E.NO_DATA()
    for part in message.iter_parts():  # type: ignore[attr-defined]
        if part.get_param("name", header="content-disposition") == "file":
            name = part.get_filename() or "file"
            payload = part.get_payload(decode=True) or b""
            return str(name), bytes(payload), part.get_content_type()
    raise E.NO_DATA()


def store_file(
    tenant: Tenant, folder: str, name: str, content: bytes, content_type: str
) -> StoredFile:
    stored = StoredFile(
        id=str(uuid.uuid4()),
        name=name,
        content=content,
        content_type=content_type,
        folder=folder,
        created=tenant.now(),
        archive_id=str(uuid.uuid4()),
    )
    tenant.files[stored.id] = stored
    return stored


def find_file(tenant: Tenant, file_id: str) -> StoredFile | None:
    found = tenant.files.get(file_id)
    if found is not None:
        return found
    for stored in tenant.files.values():
        if stored.archive_id == file_id:
            return stored
    return None


def file_view(stored: StoredFile, base: str, area: str) -> dict[str, Any]:
    return {
        "@url": f"{base}/3/{area}/{stored.id}",
        "ArchiveFileId": stored.archive_id or stored.id,
        "Comments": stored.comments,
        "Id": stored.id,
        "Name": stored.name,
        "Path": f"{stored.folder.split(':', 1)[1]}/{stored.name}",
        "Size": len(stored.content),
    }


def _files_in(tenant: Tenant, folder: str) -> list[StoredFile]:
    return sorted((f for f in tenant.files.values() if f.folder == folder), key=lambda f: f.created)


def _download(stored: StoredFile) -> Response:
    return Response(
        stored.content,
        media_type=stored.content_type or "application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{stored.name}"'},
    )


# --- inbox ----------------------------------------------------------------------------------------
def _inbox_folder(tenant: Tenant, base: str, name: str) -> dict[str, Any]:
    fid = folder_id(tenant, "inbox", name)
    return {
        "@url": f"{base}/3/inbox/{fid}",
        "Email": None,
        "Files": [file_view(f, base, "inbox") for f in _files_in(tenant, f"inbox:{name}")],
        "Folders": [],
        "Id": fid,
        "Name": name,
    }


def _inbox_root(tenant: Tenant, base: str) -> dict[str, Any]:
    fid = folder_id(tenant, "inbox", "inbox")
    return {
        "@url": f"{base}/3/inbox/{fid}",
        "Email": None,
        "Files": [],
        "Folders": [_inbox_folder(tenant, base, n) for n in INBOX_FOLDERS],
        "Id": fid,
        "Name": "inbox",
    }


def _inbox_name(tenant: Tenant, ref: str) -> str | None:
    for name in INBOX_FOLDERS:
        if ref.lower() == name.lower() or ref == folder_id(tenant, "inbox", name):
            return name
    return None


@router.get("/3/inbox")
async def inbox_root(request: Request) -> Response:
    tenant = tenant_of(request)
    return json_response({"Folder": _inbox_root(tenant, base_url(request))})


@router.get("/3/inbox/{Id}")
async def inbox_item(request: Request, Id: str) -> Response:
    tenant = tenant_of(request)
    name = _inbox_name(tenant, Id)
    if name is not None:
        return json_response({"Folder": _inbox_folder(tenant, base_url(request), name)})
    if Id == folder_id(tenant, "inbox", "inbox"):
        return json_response({"Folder": _inbox_root(tenant, base_url(request))})
    stored = find_file(tenant, Id)
    if stored is None or not stored.folder.startswith("inbox:"):
        raise E.FILE_NOT_FOUND()
    return _download(stored)


@router.post("/3/inbox")
async def inbox_upload(request: Request) -> Response:
    tenant = tenant_of(request)
    p = params(request)
    if set(p) - {"path", "folderid"}:
        raise E.INVALID_PARAMETER()
    ref = p.get("folderid") or p.get("path") or "Inbox_v"
    name = _inbox_name(tenant, ref)
    if name is None:
        raise E.FILE_NOT_FOUND()
    fname, content, ctype = parse_upload(await request.body(), request.headers.get("content-type"))
    stored = store_file(tenant, f"inbox:{name}", fname, content, ctype)
    return json_response({"File": file_view(stored, base_url(request), "inbox")}, 201)


@router.delete("/3/inbox/{Id}")
async def inbox_delete(request: Request, Id: str) -> Response:
    tenant = tenant_of(request)
    stored = find_file(tenant, Id)
    if stored is None or not stored.folder.startswith("inbox:"):
        raise E.FILE_NOT_FOUND()
    del tenant.files[stored.id]
    return Response(status_code=204)


# --- archive --------------------------------------------------------------------------------------
def _archive_folders(tenant: Tenant) -> list[str]:
    names = {
        f.folder.split(":", 1)[1] for f in tenant.files.values() if f.folder.startswith("archive:")
    }
    names.discard(ARCHIVE_ROOT)
    return sorted(names)


def _archive_folder(tenant: Tenant, base: str, path: str) -> dict[str, Any]:
    fid = folder_id(tenant, "archive", path)
    sub: list[dict[str, Any]] = [
        {
            "@url": f"{base}/3/archive/{folder_id(tenant, 'archive', n)}",
            "Email": None,
            "Files": [],
            "Folders": [],
            "Id": folder_id(tenant, "archive", n),
            "Name": n,
        }
        for n in (_archive_folders(tenant) if path == ARCHIVE_ROOT else [])
    ]
    return {
        "@url": f"{base}/3/archive/{fid}",
        "Email": None,
        "Files": [file_view(f, base, "archive") for f in _files_in(tenant, f"archive:{path}")],
        "Folders": sub,
        "Id": fid,
        "Name": path,
    }


def _archive_path(tenant: Tenant, ref: str) -> str | None:
    for path in [ARCHIVE_ROOT, *_archive_folders(tenant)]:
        if ref == path or ref == folder_id(tenant, "archive", path):
            return path
    return None


@router.get("/3/archive")
async def archive_get(request: Request) -> Response:
    tenant = tenant_of(request)
    p = params(request)
    if set(p) - {"path", "fileid"}:
        raise E.INVALID_PARAMETER()
    if "fileid" in p:
        stored = find_file(tenant, p["fileid"])
        if stored is None:
            raise E.FILE_NOT_FOUND()
        return _download(stored)
    path = _archive_path(tenant, p.get("path") or ARCHIVE_ROOT)
    if path is None:
        raise E.FILE_NOT_FOUND()
    return json_response({"Folder": _archive_folder(tenant, base_url(request), path)})


@router.get("/3/archive/{id}")
async def archive_item(request: Request, id: str) -> Response:
    tenant = tenant_of(request)
    path = _archive_path(tenant, id)
    if path is not None:
        return json_response({"Folder": _archive_folder(tenant, base_url(request), path)})
    stored = find_file(tenant, id)
    if stored is None:
        raise E.FILE_NOT_FOUND()
    return _download(stored)


@router.post("/3/archive")
async def archive_upload(request: Request) -> Response:
    tenant = tenant_of(request)
    p = params(request)
    if set(p) - {"path", "folderid"}:
        raise E.INVALID_PARAMETER()
    if "folderid" in p:
        path = _archive_path(tenant, p["folderid"])
        if path is None:
            raise E.FILE_NOT_FOUND()
    else:
        path = (p.get("path") or ARCHIVE_ROOT).strip("/") or ARCHIVE_ROOT
    fname, content, ctype = parse_upload(await request.body(), request.headers.get("content-type"))
    stored = store_file(tenant, f"archive:{path}", fname, content, ctype)
    return json_response({"File": file_view(stored, base_url(request), "archive")}, 201)


@router.delete("/3/archive/{id}")
async def archive_delete(request: Request, id: str) -> Response:
    tenant = tenant_of(request)
    stored = find_file(tenant, id)
    if stored is None:
        raise E.FILE_NOT_FOUND()
    del tenant.files[stored.id]
    return Response(status_code=204)


@router.delete("/3/archive")
async def archive_delete_folder(request: Request) -> Response:
    tenant = tenant_of(request)
    p = params(request)
    path = _archive_path(tenant, p.get("path", ""))
    if path is None:
        raise E.FILE_NOT_FOUND()
    for stored in _files_in(tenant, f"archive:{path}"):
        del tenant.files[stored.id]
    return Response(status_code=204)


# --- voucher file connections ---------------------------------------------------------------------
def connect_file(tenant: Tenant, given: dict[str, Any], query: dict[str, str]) -> Record:
    require(given, "FileId", "VoucherNumber", "VoucherSeries")
    fy_id = financial_year_param(tenant, query)
    stored = find_file(tenant, str(given["FileId"]))
    if stored is None:
        raise E.FILE_NOT_FOUND()
    voucher = tenant.vouchers[fy_id].get(f"{given['VoucherSeries']}/{given['VoucherNumber']}")
    if voucher is None:
        raise E.VOUCHER_NOT_FOUND()
    key = str(given["FileId"])
    if key in tenant.voucherfileconnections:
        raise E.ALREADY_EXISTS(what="Filkopplingen", key=key)
    if stored.folder.startswith("inbox:"):
        stored.folder = f"archive:{ARCHIVE_ROOT}"
    data = {
        "FileId": key,
        "Name": stored.name,
        "VoucherDescription": voucher.data["Description"],
        "VoucherNumber": str(voucher.data["VoucherNumber"]),
        "VoucherSeries": voucher.data["VoucherSeries"],
        "VoucherYear": fy_id,
    }
    return tenant.voucherfileconnections.insert(key, data, now=tenant.now())


def connection_view(rec: Record, base: str) -> dict[str, Any]:
    return {"@url": f"{base}/3/voucherfileconnections/{rec.key}", **rec.data}


CONNECTION_SEARCH = {
    "voucheryear": lambda r: r.data["VoucherYear"],
    "voucherdescription": lambda r: r.data["VoucherDescription"],
    "vouchernumber": lambda r: r.data["VoucherNumber"],
    "voucherseries": lambda r: r.data["VoucherSeries"],
}


@router.get("/3/voucherfileconnections")
async def list_connections(request: Request) -> Response:
    tenant = tenant_of(request)
    q = parse_list_query(params(request), search=CONNECTION_SEARCH, lastmodified=False)
    coll = tenant.voucherfileconnections
    keys = coll.query(cache_key=q.cache_key(), predicate=search_predicate(q, CONNECTION_SEARCH))
    return render_page(request, tenant, coll, "VoucherFileConnections", keys, q, connection_view)


@router.get("/3/voucherfileconnections/{FileId}")
async def get_connection(request: Request, FileId: str) -> Response:
    rec = tenant_of(request).voucherfileconnections.get(FileId)
    if rec is None:
        raise E.CONNECTION_NOT_FOUND()
    return single("VoucherFileConnection", connection_view(rec, base_url(request)))


@router.post("/3/voucherfileconnections")
async def post_connection(request: Request) -> Response:
    tenant = tenant_of(request)
    p = params(request)
    if set(p) - {"financialyear", "financialyeardate"}:
        raise E.INVALID_PARAMETER()
    payload = await read_payload(request, "VoucherFileConnection", VoucherFileConnectionPayload)
    rec = connect_file(tenant, payload.given(), p)
    return single("VoucherFileConnection", connection_view(rec, base_url(request)), status=201)


@router.delete("/3/voucherfileconnections/{FileId}")
async def delete_connection(request: Request, FileId: str) -> Response:
    tenant = tenant_of(request)
    if FileId not in tenant.voucherfileconnections:
        raise E.CONNECTION_NOT_FOUND()
    tenant.voucherfileconnections.delete(FileId)
    return Response(status_code=204)
