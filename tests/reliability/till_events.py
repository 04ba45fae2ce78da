"""Till events for the ingest-door tests of both runtimes: valid by default, with any field
replaced through keyword arguments."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

#: Stands in for a number too long for Python's int() (more than 4,300 digits).
HUGE = "9" * 5000


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def event(tenant: str, type_: str, data: dict[str, Any], **envelope: Any) -> dict[str, Any]:
    return {
        "id": envelope.pop("id", f"ev-{uuid.uuid4().hex[:12]}"),
        "tenant": tenant,
        "type": type_,
        "occurred_at": envelope.pop("occurred_at", now().isoformat()),
        "source": "till",
        "data": data,
        **envelope,
    }


def movement(tenant: str = "shop-a", **data: Any) -> dict[str, Any]:
    envelope = {k: data.pop(k) for k in ("id", "occurred_at") if k in data}
    return event(
        tenant,
        "till.stock.movement",
        {
            "article_number": "1001",
            "movement_id": f"mv-{uuid.uuid4().hex[:10]}",
            "delta": "-1",
            "reason": "sale",
            **data,
        },
        **envelope,
    )


def invoice(tenant: str = "shop-a", **data: Any) -> dict[str, Any]:
    return event(
        tenant,
        "till.invoice.created",
        {
            "invoice_id": f"i-{uuid.uuid4().hex[:8]}",
            "till_customer_id": "C1",
            "invoice_date": "2026-03-14",
            "rows": [
                {"description": "Kaffe", "quantity": "2", "unit_price": "69.00", "vat_rate": "12"}
            ],
            **data,
        },
    )


def zreport(tenant: str = "shop-a", **data: Any) -> dict[str, Any]:
    return event(
        tenant,
        "till.zreport.closed",
        {
            "z_number": 1,
            "till_id": "K1",
            "business_date": "2026-03-14",
            "vat": [{"rate": "25", "sales_net": "100.00", "sales_vat": "25.00"}],
            "payments": [{"method": "cash", "amount": "125.00"}],
            **data,
        },
    )


def voucher(tenant: str = "shop-a", **data: Any) -> dict[str, Any]:
    return event(
        tenant,
        "till.voucher.submitted",
        {
            "key": f"sie-{uuid.uuid4().hex[:8]}",
            "transaction_date": "2026-03-14",
            "description": "Dagskassa",
            "rows": [{"account": 1910, "amount": "125.00"}, {"account": 3001, "amount": "-125.00"}],
            **data,
        },
    )


def customer(
    till_id: str, name: str, sequence: int | None = None, **envelope: Any
) -> dict[str, Any]:
    data: dict[str, Any] = {"till_customer_id": till_id, "customer": {"name": name}}
    if sequence is not None:
        data["sequence"] = sequence
    return event("shop-a", "till.customer.upserted", data, **envelope)


def raw_with(body: dict[str, Any], marker: str, literal: str) -> bytes:
    """``body`` as JSON with the string ``marker`` replaced by the raw JSON text ``literal``
    (json.dumps cannot write a 5,000-digit integer)."""
    text = json.dumps(body)
    assert f'"{marker}"' in text
    return text.replace(f'"{marker}"', literal).encode()
