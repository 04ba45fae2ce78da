"""Projects (``/3/projects``): list, get, create, update, delete, keyed by ``ProjectNumber``.

A voucher row's ``Project`` must name one of them (else Fortnox answers 2001161 "Kan inte hitta
projektet."). A project given no number gets the next free numeric one, as Fortnox does. Its
``Status`` is ``NOTSTARTED``, ``ONGOING`` (the default) or ``COMPLETED``.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from starlette.responses import Response

from sandbox.fortnox import errors as E
from sandbox.fortnox.collection import Record
from sandbox.fortnox.listing import parse_list_query
from sandbox.fortnox.payloads import S20, S50, Payload
from sandbox.fortnox.resources.common import (
    base_url,
    params,
    read_payload,
    render_page,
    require,
    single,
    tenant_of,
)
from sandbox.fortnox.state import Tenant

router = APIRouter()

PROJECT_NOT_FOUND = E.PROJECT_MISSING


class ProjectPayload(Payload):
    Comments: str | None = None
    ContactPerson: S50 | None = None
    Description: S50 | None = None
    EndDate: str | None = None
    ProjectLeader: S50 | None = None
    ProjectNumber: S20 | None = None
    StartDate: str | None = None
    Status: Literal["NOTSTARTED", "ONGOING", "COMPLETED"] | None = None


def _next_number(tenant: Tenant) -> str:
    numbers = [int(r.key) for r in tenant.projects if r.key.isdigit()]
    return str(max(numbers, default=0) + 1)


def create_project(tenant: Tenant, given: dict[str, Any]) -> Record:
    require(given, "Description")
    number = str(given.get("ProjectNumber") or _next_number(tenant))
    if number in tenant.projects:
        raise E.ALREADY_EXISTS(what="Projektet", key=number)
    data: dict[str, Any] = {  # dates only when given: Fortnox's schema has no empty date
        "Comments": "",
        "ContactPerson": "",
        "ProjectLeader": "",
        "Status": "ONGOING",
        **given,
        "ProjectNumber": number,
    }
    return tenant.projects.insert(number, data, now=tenant.now())


def _view(rec: Record, base: str) -> dict[str, Any]:
    return {"@url": f"{base}/3/projects/{rec.key}", **rec.data}


def _get(tenant: Tenant, number: str) -> Record:
    rec = tenant.projects.get(number)
    if rec is None:
        raise PROJECT_NOT_FOUND()
    return rec


@router.get("/3/projects")
async def list_projects(request: Request) -> Response:
    tenant = tenant_of(request)
    query = parse_list_query(params(request), lastmodified=False)
    keys = tenant.projects.query(cache_key=query.cache_key())
    return render_page(request, tenant, tenant.projects, "Projects", keys, query, _view)


@router.get("/3/projects/{ProjectNumber}")
async def get_project(request: Request, ProjectNumber: str) -> Response:
    tenant = tenant_of(request)
    return single("Project", _view(_get(tenant, ProjectNumber), base_url(request)))


@router.post("/3/projects")
async def post_project(request: Request) -> Response:
    tenant = tenant_of(request)
    payload = await read_payload(request, "Project", ProjectPayload)
    rec = create_project(tenant, payload.given())
    return single("Project", _view(rec, base_url(request)), status=201)


@router.put("/3/projects/{ProjectNumber}")
async def put_project(request: Request, ProjectNumber: str) -> Response:
    tenant = tenant_of(request)
    rec = _get(tenant, ProjectNumber)
    given = (await read_payload(request, "Project", ProjectPayload)).given()
    if given.get("ProjectNumber") not in (None, rec.key):
        raise E.INVALID_VALUE(field="ProjectNumber", value=str(given["ProjectNumber"]))
    rec.data.update(given)
    tenant.projects.touch(rec, now=tenant.now())
    return single("Project", _view(rec, base_url(request)))


@router.delete("/3/projects/{ProjectNumber}")
async def delete_project(request: Request, ProjectNumber: str) -> Response:
    tenant = tenant_of(request)
    _get(tenant, ProjectNumber)
    tenant.projects.delete(ProjectNumber)
    return Response(status_code=204)
