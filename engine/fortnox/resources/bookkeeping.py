"""Bookkeeping (scope ``bookkeeping``/``costcenter``): accounts, voucher series, cost centres,
financial years, the locked period, vouchers and their pre-flight check.

Vouchers cannot be updated and Fortnox has no idempotency key, so :meth:`Bookkeeping.create_voucher`
is never retried once the request may have arrived (it raises UnknownOutcome). Put a unique
marker (e.g. ``KS:<z-report id>``) as a whitespace-separated token in the voucher's
``Comments`` and use :meth:`Bookkeeping.find_vouchers_by_marker` to look before trying again.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable
from datetime import date
from decimal import Decimal

from engine.fortnox.errors import (
    AccountInactive,
    AccountMissing,
    CostCenterInactive,
    CostCenterMissing,
    FinancialYearMissing,
    NotFound,
    PeriodLocked,
    SeriesMissing,
    SeriesNotManual,
    VoucherUnbalanced,
)
from engine.fortnox.models import (
    Account,
    CostCenter,
    FinancialYear,
    LockedPeriod,
    Project,
    Voucher,
    VoucherSeries,
)
from engine.fortnox.paging import paginate
from engine.fortnox.resources.base import Resource, seg


def has_marker(voucher: Voucher, marker: str) -> bool:
    """True when ``marker`` is a whole whitespace-separated token of Comments or Description."""
    pattern = re.compile(r"(?<!\S)" + re.escape(marker) + r"(?!\S)")
    return any(pattern.search(text or "") for text in (voucher.comments, voucher.description))


class Bookkeeping(Resource):
    # --- financial years and the locked period ----------------------------------------------

    async def financial_years(self) -> list[FinancialYear]:
        path = "/3/financialyears"
        return [y async for y in paginate(self.client, path, "FinancialYears", FinancialYear)]

    async def financial_year_for(self, day: date) -> FinancialYear | None:
        """The financial year containing ``day``, or None if the company has none."""
        path = "/3/financialyears"
        params = {"date": day.isoformat()}
        async for year in paginate(self.client, path, "FinancialYears", FinancialYear, params):
            if year.from_date is None or year.contains(day):
                return year
        return None

    async def get_financial_year(self, year_id: int) -> FinancialYear:
        path = f"/3/financialyears/{year_id}"
        return self._one(await self.client.get_json(path), "FinancialYear", FinancialYear, path)

    async def locked_period(self) -> LockedPeriod:
        path = "/3/settings/lockedperiod"
        data = await self.client.get_json(path)
        if not isinstance(data.get("LockedPeriod"), dict):
            return LockedPeriod()
        return self._one(data, "LockedPeriod", LockedPeriod, path)

    # --- accounts, series, cost centres -----------------------------------------------------

    def accounts(self, financial_year: int | None = None) -> AsyncIterator[Account]:
        params = {"financialyear": financial_year}
        return paginate(self.client, "/3/accounts", "Accounts", Account, params)

    async def get_account(self, number: int, financial_year: int | None = None) -> Account | None:
        path = f"/3/accounts/{number}"
        try:
            data = await self.client.get_json(path, {"financialyear": financial_year})
        except NotFound:
            return None
        return self._one(data, "Account", Account, path)

    async def voucher_series(self, financial_year: int | None = None) -> list[VoucherSeries]:
        params = {"financialyear": financial_year}
        return [
            s
            async for s in paginate(
                self.client, "/3/voucherseries", "VoucherSeriesCollection", VoucherSeries, params
            )
        ]

    async def get_voucher_series(
        self, code: str, financial_year: int | None = None
    ) -> VoucherSeries | None:
        path = f"/3/voucherseries/{seg(code)}"
        try:
            data = await self.client.get_json(path, {"financialyear": financial_year})
        except NotFound:
            return None
        return self._one(data, "VoucherSeries", VoucherSeries, path)

    async def cost_centers(self) -> list[CostCenter]:
        path = "/3/costcenters"
        return [c async for c in paginate(self.client, path, "CostCenters", CostCenter)]

    async def get_cost_center(self, code: str) -> CostCenter | None:
        path = f"/3/costcenters/{seg(code)}"
        try:
            data = await self.client.get_json(path)
        except NotFound:
            return None
        return self._one(data, "CostCenter", CostCenter, path)

    async def projects(self) -> list[Project]:
        path = "/3/projects"
        return [p async for p in paginate(self.client, path, "Projects", Project)]

    # --- vouchers -------------------------------------------------------------------------

    async def create_voucher(self, voucher: Voucher, financial_year: int | None) -> Voucher:
        """POST a voucher into ``financial_year`` (never retried once it may have arrived)."""
        context = {
            "series": voucher.voucher_series,
            "date": voucher.transaction_date.isoformat() if voucher.transaction_date else None,
            "cost_center": voucher.cost_center,
            "subject": voucher.description,
        }
        data = await self.client.send_json(
            "POST",
            "/3/vouchers",
            {"Voucher": voucher.to_payload()},
            params={"financialyear": financial_year},
            idempotent=False,
            context=context,
        )
        return self._one(data, "Voucher", Voucher, "/3/vouchers")

    def vouchers(
        self,
        financial_year: int | None = None,
        *,
        from_date: date | None = None,
        to_date: date | None = None,
        lastmodified: str | None = None,
    ) -> AsyncIterator[Voucher]:
        params = {
            "financialyear": financial_year,
            "fromdate": from_date.isoformat() if from_date else None,
            "todate": to_date.isoformat() if to_date else None,
            "lastmodified": lastmodified,
        }
        return paginate(self.client, "/3/vouchers", "Vouchers", Voucher, params)

    def voucher_sublist(
        self,
        series: str,
        financial_year: int | None = None,
        *,
        from_date: date | None = None,
        to_date: date | None = None,
    ) -> AsyncIterator[Voucher]:
        params = {
            "financialyear": financial_year,
            "fromdate": from_date.isoformat() if from_date else None,
            "todate": to_date.isoformat() if to_date else None,
        }
        path = f"/3/vouchers/sublist/{seg(series)}"
        return paginate(self.client, path, "Vouchers", Voucher, params)

    async def get_voucher(self, series: str, number: int, financial_year: int | None) -> Voucher:
        path = f"/3/vouchers/{seg(series)}/{number}"
        data = await self.client.get_json(path, {"financialyear": financial_year})
        return self._one(data, "Voucher", Voucher, path)

    async def find_vouchers_by_marker(
        self,
        series: str,
        financial_year: int | None,
        marker: str,
        *,
        transaction_date: date | None = None,
    ) -> list[Voucher]:
        """Vouchers of ``series`` whose Comments or Description hold ``marker`` as a token.

        Used to look before re-posting after an UnknownOutcome. ``transaction_date`` narrows the
        scan to that day.
        """
        found: list[Voucher] = []
        async for voucher in self.voucher_sublist(
            series, financial_year, from_date=transaction_date, to_date=transaction_date
        ):
            if has_marker(voucher, marker):
                found.append(voucher)
        return found

    # --- pre-flight -------------------------------------------------------------------------

    async def check_voucher(self, voucher: Voucher) -> FinancialYear:
        """Check what Fortnox would refuse, before posting; returns the financial year.

        Raises FinancialYearMissing, PeriodLocked, SeriesMissing, SeriesNotManual,
        AccountMissing, AccountInactive, CostCenterMissing, CostCenterInactive or
        VoucherUnbalanced with the shop-facing details filled in.
        """
        tenant = self.client.tenant
        day = voucher.transaction_date
        if day is None:
            raise ValueError("voucher has no transaction date")
        rows = voucher.voucher_rows or []
        debit = sum((r.debit or Decimal(0) for r in rows), Decimal(0))
        credit = sum((r.credit or Decimal(0) for r in rows), Decimal(0))
        if debit != credit or len(rows) < 2:
            raise VoucherUnbalanced(
                "voucher does not balance",
                tenant=tenant,
                details={"subject": voucher.description, "debit": debit, "credit": credit},
            )
        year = await self.financial_year_for(day)
        if year is None or year.id is None:
            raise FinancialYearMissing(
                "no financial year for the date", tenant=tenant, details={"date": day}
            )
        locked = await self.locked_period()
        if locked.locks(day):
            raise PeriodLocked("period is locked", tenant=tenant, details={"date": day})
        code = voucher.voucher_series or ""
        series = await self.get_voucher_series(code, year.id)
        if series is None:
            raise SeriesMissing("voucher series missing", tenant=tenant, details={"series": code})
        if series.manual is False:
            raise SeriesNotManual(
                "voucher series is not manual", tenant=tenant, details={"series": code}
            )
        for number in sorted({r.account for r in rows if r.account is not None}):
            account = await self.get_account(number, year.id)
            if account is None:
                raise AccountMissing("account missing", tenant=tenant, details={"account": number})
            if account.active is False:
                raise AccountInactive(
                    "account inactive", tenant=tenant, details={"account": number}
                )
        for code_ in _cost_centres(voucher.cost_center, (r.cost_center for r in rows)):
            centre = await self.get_cost_center(code_)
            if centre is None:
                raise CostCenterMissing(
                    "cost centre missing", tenant=tenant, details={"cost_center": code_}
                )
            if centre.active is False:
                raise CostCenterInactive(
                    "cost centre inactive", tenant=tenant, details={"cost_center": code_}
                )
        return year


def _cost_centres(head: str | None, rows: Iterable[str | None]) -> list[str]:
    return sorted({c for c in (head, *rows) if c})
