"""Z-reports, invoices and payments through the running engine."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from tests.scenarios.conftest import Factory

pytestmark = pytest.mark.slow

DOC = Path(__file__).resolve().parents[2] / "docs" / "contract.md"


def worked_example() -> dict[str, Any]:
    """The Z-report of sie-and-pos.md §1.9 / §2.3, as docs/contract.md shows it."""
    import re

    blocks = re.findall(r"```json\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    event = next(json.loads(b) for b in blocks if '"till.zreport.closed"' in b)
    assert isinstance(event, dict)
    # The demo company has locked its books up to last year: close the day today instead.
    event["tenant"] = "shop"
    event["occurred_at"] = dt.datetime.now(dt.UTC).isoformat()
    event["data"]["business_date"] = dt.date.today().isoformat()
    return event


async def _vouchers(rt: Any, year: int) -> list[dict[str, Any]]:
    data = await rt.fortnox("financialyears")
    for fy in data["financialyears"]:
        if fy["FromDate"].startswith(str(year)):
            return [
                v
                for v in fy["vouchers"]
                if v.get("VoucherSeries") == "F"
                and "kassasync zreport" in (v.get("Comments") or "")
            ]
    return []


async def test_the_worked_z_report_posts_once_however_often_it_is_sent(runtime: Factory) -> None:
    """Sent twice with one id and once with another: one voucher, balanced at 13,160.40."""
    async with runtime() as rt:
        event = worked_example()
        await rt.settle()
        assert (await rt.send(event)).status_code == 202
        resent = {**event, "id": "z-K1-1234-resent"}
        again = await rt.send(event)
        # Both doors know the id (the Kafka one from till.events): a duplicate, stored once.
        assert (again.status_code, again.json()) == (200, {"accepted": 0, "duplicates": 1})
        assert (await rt.send(resent)).status_code == 202
        await rt.settle()
        vouchers = await _vouchers(rt, dt.date.today().year)
        assert len(vouchers) == 1
        rows = vouchers[0]["VoucherRows"]
        debit = sum(round(float(r.get("Debit") or 0), 2) for r in rows)
        credit = sum(round(float(r.get("Credit") or 0), 2) for r in rows)
        assert round(debit, 2) == round(credit, 2) == 13160.40
        record = rt.state("zr", "K1:1234")
        assert record is not None and record["status"] == "posted"


async def test_a_z_report_waits_for_a_missing_mapping_and_posts_when_fixed(
    runtime: Factory,
) -> None:
    async with runtime() as rt:
        await rt.settle()
        event = worked_example()
        event["id"] = "z-bad"
        event["data"] = {**event["data"], "z_number": 1300}
        event["data"]["payments"] = [
            *event["data"]["payments"][:-1],
            {"method": "voucher", "amount": "500.00"},
        ]
        await rt.send(event)
        await rt.settle()
        record = rt.state("zr", "K1:1300")
        assert record is not None and record["status"] == "waiting"
        assert record["error"]["kind"] == "account_mapping_missing"
        assert "payment method voucher" in record["error"]["message"]
        await rt.update_settings({"zreports": {"accounts": {"payment_methods": {"voucher": 2421}}}})
        await rt.settle()
        assert (rt.state("zr", "K1:1300") or {})["status"] == "posted"


async def test_an_invoice_becomes_one_order_after_its_customer(runtime: Factory) -> None:
    async with runtime({"customers": {"master": "till"}}) as rt:
        invoice = rt.event(
            "till.invoice.created",
            {
                "invoice_id": "5531",
                "till_customer_id": "C17",
                "invoice_date": dt.date.today().isoformat(),
                "terms_of_payment": "30",
                "rows": [
                    {
                        "article_number": "1001",
                        "description": "Kaffe",
                        "quantity": "2",
                        "unit_price": "69.00",
                        "vat_rate": "12",
                    }
                ],
            },
            msg_id="inv-5531",
        )
        customer = rt.event(
            "till.customer.upserted", {"till_customer_id": "C17", "customer": {"name": "Anna"}}
        )
        await rt.send(invoice)  # before its customer: it waits
        await rt.send(customer)
        await rt.send({**invoice, "id": "inv-5531-again"})
        await rt.settle()
        orders = (await rt.fortnox("orders"))["orders"]
        mine = [o for o in orders if o.get("ExternalInvoiceReference1") == "KS-5531"]
        assert len(mine) == 1
        assert mine[0]["CustomerNumber"] == "KC17"
        assert (rt.state("inv", "5531") or {})["status"] == "done"


async def test_payments_reach_the_till_with_the_filters(runtime: Factory) -> None:
    async with runtime({"payments": {"ignore_invoice_below": 2}}) as rt:
        await rt.settle()
        invoices = {i["DocumentNumber"]: i for i in (await rt.fortnox("invoices"))["invoices"]}
        delivered = {p["invoice_number"] for p in rt.till.payments.values()}
        assert delivered and all(n >= 2 for n in delivered)
        open_invoice = next(
            n
            for n, i in sorted(invoices.items())
            if float(i.get("Balance") or 0) > 0 and int(n) >= 2
        )
        await rt.admin(
            "POST",
            f"/invoices/{open_invoice}/payments",
            json={"Amount": 10.0, "PaymentDate": dt.date.today().isoformat()},
        )
        await rt.settle()
        amounts = [
            p["amount"]
            for p in rt.till.payments.values()
            if p["invoice_number"] == int(open_invoice)
        ]
        assert "10.00" in amounts


async def test_a_z_report_in_a_locked_period_waits_with_the_shops_error(runtime: Factory) -> None:
    async with runtime() as rt:
        await rt.settle()
        event = worked_example()
        event["data"]["business_date"] = f"{dt.date.today().year - 1}-03-14"
        await rt.send(event)
        await rt.settle()
        record = rt.state("zr", "K1:1234")
        assert record is not None and record["status"] == "waiting"
        assert record["error"]["kind"] == "period_locked"
        assert "is locked in Fortnox" in record["error"]["message"]
