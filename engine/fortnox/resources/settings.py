"""Company information and terms of payment."""

from __future__ import annotations

from engine.fortnox.errors import NotFound
from engine.fortnox.models import CompanyInformation, TermsOfPayment
from engine.fortnox.paging import paginate
from engine.fortnox.resources.base import Resource, seg


class Settings(Resource):
    async def company_information(self) -> CompanyInformation:
        path = "/3/companyinformation"
        data = await self.client.get_json(path)
        return self._one(data, "CompanyInformation", CompanyInformation, path)

    async def terms_of_payments(self) -> list[TermsOfPayment]:
        path = "/3/termsofpayments"
        return [t async for t in paginate(self.client, path, "TermsOfPayments", TermsOfPayment)]

    async def get_terms_of_payment(self, code: str) -> TermsOfPayment | None:
        path = f"/3/termsofpayments/{seg(code)}"
        try:
            data = await self.client.get_json(path)
        except NotFound:
            return None
        return self._one(data, "TermsOfPayment", TermsOfPayment, path)
