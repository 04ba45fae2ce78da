"""``/3/companyinformation`` and ``/3/settings/company``: ``DatabaseNumber`` is the tenant id."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from sandbox.fortnox import errors as E
from sandbox.fortnox.listing import json_response
from sandbox.fortnox.resources.common import params, tenant_of

router = APIRouter()


def _no_params(request: Request) -> None:
    if params(request):
        raise E.INVALID_PARAMETER()


@router.get("/3/companyinformation")
async def company_information(request: Request) -> Response:
    _no_params(request)
    tenant = tenant_of(request)
    c = tenant.company
    return json_response(
        {
            "CompanyInformation": {
                "Address": c["Address"],
                "City": c["City"],
                "CompanyName": c["CompanyName"],
                "CountryCode": c["CountryCode"],
                "DatabaseNumber": tenant.id,
                "OrganizationNumber": c["OrganizationNumber"],
                "VisitAddress": c["Address"],
                "VisitCity": c["City"],
                "VisitCountryCode": c["CountryCode"],
                "VisitZipCode": c["ZipCode"],
                "ZipCode": c["ZipCode"],
            }
        }
    )


@router.get("/3/settings/company")
async def company_settings(request: Request) -> Response:
    _no_params(request)
    tenant = tenant_of(request)
    c = tenant.company
    return json_response(
        {
            "CompanySettings": {
                "Address": c["Address"],
                "BG": "123-4567",
                "BIC": "",
                "BranchCode": "",
                "City": c["City"],
                "ContactFirstName": "Sandra",
                "ContactLastName": "Sandlåda",
                "Country": c["Country"],
                "CountryCode": c["CountryCode"],
                "DatabaseNumber": str(tenant.id),
                "Domicile": c["City"],
                "Email": c["Email"],
                "Fax": "",
                "IBAN": "",
                "Name": c["CompanyName"],
                "OrganizationNumber": c["OrganizationNumber"],
                "PG": "",
                "Phone1": c["Phone1"],
                "Phone2": "",
                "TaxEnabled": True,
                "VATNumber": c["VATNumber"],
                "VisitAddress": c["Address"],
                "VisitCity": c["City"],
                "VisitCountry": c["Country"],
                "VisitCountryCode": c["CountryCode"],
                "VisitName": c["CompanyName"],
                "VisitZipCode": c["ZipCode"],
                "WWW": "",
                "ZipCode": c["ZipCode"],
            }
        }
    )
