"""Ledger documents: voucher file connections, archive downloads and SIE exports."""

from __future__ import annotations

from engine.fortnox.models import VoucherFileConnection
from engine.fortnox.paging import paginate
from engine.fortnox.resources.base import Resource, seg


class Files(Resource):
    async def voucher_file_connections(
        self,
        *,
        voucher_series: str | None = None,
        voucher_number: int | None = None,
        voucher_year: int | None = None,
    ) -> list[VoucherFileConnection]:
        params = {
            "voucherseries": voucher_series,
            "vouchernumber": voucher_number,
            "voucheryear": voucher_year,
        }
        path = "/3/voucherfileconnections"
        items = paginate(self.client, path, "VoucherFileConnections", VoucherFileConnection, params)
        found = [c async for c in items]
        # Search parameters match substrings: keep exact matches only.
        return [
            c
            for c in found
            if (voucher_series is None or c.voucher_series == voucher_series)
            and (voucher_number is None or str(c.voucher_number) == str(voucher_number))
            and (voucher_year is None or c.voucher_year == voucher_year)
        ]

    async def get_voucher_file_connection(self, file_id: str) -> VoucherFileConnection:
        path = f"/3/voucherfileconnections/{seg(file_id)}"
        data = await self.client.get_json(path)
        return self._one(data, "VoucherFileConnection", VoucherFileConnection, path)

    async def download(self, file_id: str) -> bytes:
        """The bytes of an archive file (e.g. a voucher's attached receipt)."""
        return await self.client.get_bytes(f"/3/archive/{seg(file_id)}")

    async def sie(self, sie_type: int, financial_year: int | None = None) -> bytes:
        """A SIE export (type 1-4) of ``financial_year`` as the bytes Fortnox sent."""
        if sie_type not in (1, 2, 3, 4):
            raise ValueError("SIE type must be 1, 2, 3 or 4")
        return await self.client.get_bytes(f"/3/sie/{sie_type}", {"financialyear": financial_year})
