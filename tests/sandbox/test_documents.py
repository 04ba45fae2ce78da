"""Invoices, invoice payments and orders."""

from __future__ import annotations

import httpx

from sandbox.fortnox.resources.invoices import ocr_for
from sandbox.fortnox.seed import Seeded
from sandbox.fortnox.state import SandboxState
from tests.sandbox.conftest import error_info


def test_ocr_matches_recorded_fortnox_value() -> None:
    assert ocr_for("5") == "539"  # recorded invoices/search_by_name: DocumentNumber 5, OCR 539


async def test_invoice_totals_due_date_and_payments(
    api: httpx.AsyncClient, demo: Seeded, state: SandboxState
) -> None:
    today = demo.tenant.today()
    created = await api.post(
        "/3/invoices",
        json={
            "Invoice": {
                "CustomerNumber": "2",
                "InvoiceDate": today.isoformat(),
                "InvoiceRows": [
                    {"ArticleNumber": "2001", "DeliveredQuantity": 3},
                    {"ArticleNumber": "1001", "DeliveredQuantity": "2", "Price": 60.5},
                ],
            }
        },
    )
    assert created.status_code == 201
    inv = created.json()["Invoice"]
    assert inv["TermsOfPayment"] == "30" and inv["CustomerName"] == "Byggfirman Bengtsson AB"
    assert inv["Net"] == 3 * 149.0 + 2 * 60.5
    assert inv["TotalVAT"] == round(3 * 149.0 * 0.25 + 2 * 60.5 * 0.12, 2)
    assert inv["Total"] == round(inv["Net"] + inv["TotalVAT"])
    assert inv["InvoiceRows"][0]["DeliveredQuantity"] == "3"
    assert inv["Balance"] == inv["Total"] and inv["FinalPayDate"] is None
    number = inv["DocumentNumber"]
    part = await api.post(
        "/3/invoicepayments",
        json={
            "InvoicePayment": {
                "InvoiceNumber": int(number),
                "Amount": 100,
                "PaymentDate": today.isoformat(),
            }
        },
    )
    assert part.status_code == 201
    payment = part.json()["InvoicePayment"]
    assert payment["Booked"] is False and payment["InvoiceTotal"] == str(int(inv["Total"]))
    assert (await api.get(f"/3/invoices/{number}")).json()["Invoice"]["Balance"] == inv[
        "Total"
    ] - 100
    rest = inv["Total"] - 100
    await api.post(
        "/3/invoicepayments",
        json={
            "InvoicePayment": {
                "InvoiceNumber": int(number),
                "Amount": rest,
                "PaymentDate": today.isoformat(),
            }
        },
    )
    paid = (await api.get(f"/3/invoices/{number}")).json()["Invoice"]
    assert paid["Balance"] == 0 and paid["FinalPayDate"] == today.isoformat()
    fully = (await api.get("/3/invoices", params={"filter": "fullypaid"})).json()["Invoices"]
    assert number in {i["DocumentNumber"] for i in fully}
    # bookkeep: voucher in series C, event on the invoices topic
    booked = await api.put(f"/3/invoicepayments/{payment['Number']}/bookkeep")
    assert booked.json()["InvoicePayment"]["Booked"] is True
    assert booked.json()["InvoicePayment"]["VoucherSeries"] == "C"
    types = [e["type"] for e in state.feed.events("invoices", demo.tenant.id)]
    assert "invoice-created-v1" in types and "invoicepayment-bookkeep-v1" in types
    locked = await api.delete(f"/3/invoicepayments/{payment['Number']}")
    assert error_info(locked)[0] == 2999024


async def test_payment_rules_and_search(
    api: httpx.AsyncClient, demo: Seeded, state: SandboxState
) -> None:
    missing = await api.post(
        "/3/invoicepayments", json={"InvoicePayment": {"InvoiceNumber": 999, "Amount": 1}}
    )
    assert error_info(missing)[0] == 2000434
    early = await api.post(
        "/3/invoicepayments",
        json={"InvoicePayment": {"InvoiceNumber": 3, "Amount": 1, "PaymentDate": "2000-01-01"}},
    )
    assert error_info(early)[0] == 2999023
    created = await api.post(
        "/3/invoicepayments", json={"InvoicePayment": {"InvoiceNumber": 3, "Amount": 10}}
    )
    number = created.json()["InvoicePayment"]["Number"]
    hits = (await api.get("/3/invoicepayments", params={"invoicenumber": "3"})).json()[
        "InvoicePayments"
    ]
    assert {p["InvoiceNumber"] for p in hits} == {3}
    updated = await api.put(f"/3/invoicepayments/{number}", json={"InvoicePayment": {"Amount": 20}})
    assert updated.json()["InvoicePayment"]["Amount"] == 20.0
    assert (await api.delete(f"/3/invoicepayments/{number}")).status_code == 204
    assert (await api.get(f"/3/invoicepayments/{number}")).status_code == 404
    last = state.feed.events("invoices", demo.tenant.id)[-1]
    assert (last["type"], last["entityId"]) == ("invoicepayment-deleted-v1", number)
    # sortorder is ignored on invoice payments (softwerkab/fortnox-csharp-api-sdk#253)
    desc = await api.get(
        "/3/invoicepayments", params={"sortby": "paymentdate", "sortorder": "descending"}
    )
    numbers = [p["Number"] for p in desc.json()["InvoicePayments"]]
    assert numbers == sorted(numbers, key=int)


async def test_invoice_lifecycle(api: httpx.AsyncClient) -> None:
    r = await api.post("/3/invoices", json={"Invoice": {"CustomerNumber": "404"}})
    assert error_info(r) == (2000204, "Kunde inte hitta kund")
    inv = (await api.post("/3/invoices", json={"Invoice": {"CustomerNumber": "1"}})).json()[
        "Invoice"
    ]
    n = inv["DocumentNumber"]
    upd = await api.put(f"/3/invoices/{n}", json={"Invoice": {"YourOrderNumber": "PO-1"}})
    assert upd.json()["Invoice"]["YourOrderNumber"] == "PO-1"
    assert (await api.put(f"/3/invoices/{n}/bookkeep")).json()["Invoice"]["Booked"] is True
    locked = await api.put(f"/3/invoices/{n}", json={"Invoice": {"Remarks": "x"}})
    assert error_info(locked)[0] == 2999026
    assert error_info(await api.put(f"/3/invoices/{n}/cancel"))[0] == 2999026
    ro = await api.put("/3/invoices/3", json={"Invoice": {"Total": 1}})
    assert error_info(ro)[0] == 2999022
    assert (await api.get("/3/invoices/9999")).json()["ErrorInformation"]["Code"] == 2000434


async def test_orders_search_is_substring_and_list_view_is_a_subset(
    api: httpx.AsyncClient, demo: Seeded
) -> None:
    for ref in ("K1-1", "K1-10", "K1-100"):
        r = await api.post(
            "/3/orders",
            json={
                "Order": {
                    "CustomerNumber": "3",
                    "ExternalInvoiceReference1": ref,
                    "YourOrderNumber": f"kvitto {ref}",
                    "OrderRows": [{"ArticleNumber": "1005", "OrderedQuantity": 4}],
                }
            },
        )
        assert r.status_code == 201
    order = r.json()["Order"]
    assert order["OrderRows"][0]["OrderedQuantity"] == "4"
    assert order["OrderRows"][0]["DeliveredQuantity"] == "0"
    assert (order["Net"], order["TotalVAT"], order["Total"]) == (128.0, 15.36, 143.0)
    assert order["RoundOff"] == -0.36
    hits = (await api.get("/3/orders", params={"externalinvoicereference1": "K1-1"})).json()[
        "Orders"
    ]
    assert sorted(o["ExternalInvoiceReference1"] for o in hits) == ["K1-1", "K1-10", "K1-100"]
    assert "YourOrderNumber" not in hits[0]
    by_your = (await api.get("/3/orders", params={"yourordernumber": "KVITTO K1-10"})).json()[
        "Orders"
    ]
    assert len(by_your) == 2
    by_doc = (await api.get("/3/orders", params={"documentnumber": order["DocumentNumber"]})).json()
    assert by_doc["Orders"][0]["DocumentNumber"] == order["DocumentNumber"]
    bad = await api.post(
        "/3/orders", json={"Order": {"CustomerNumber": "3", "TermsOfPayment": "45"}}
    )
    assert error_info(bad)[0] == 2000429
    too_long = await api.post(
        "/3/orders", json={"Order": {"CustomerNumber": "3", "ExternalInvoiceReference1": "x" * 81}}
    )
    assert error_info(too_long)[0] == 2999018
    no_article = await api.post(
        "/3/orders",
        json={"Order": {"CustomerNumber": "3", "OrderRows": [{"ArticleNumber": "ZZZ"}]}},
    )
    assert error_info(no_article) == (2001302, 'Kunde inte hitta artikel "ZZZ"')
    n = order["DocumentNumber"]
    assert (await api.put(f"/3/orders/{n}/cancel")).json()["Order"]["Cancelled"] is True
    cancelled = (await api.get("/3/orders", params={"filter": "cancelled"})).json()["Orders"]
    assert [o["DocumentNumber"] for o in cancelled] == [n]
    types = [e["type"] for e in demo.tenant.feed.events("orders", demo.tenant.id)]
    assert types == ["order-created-v1"] * 3 + ["order-cancelled-v1"]
    assert (await api.get("/3/orders/424242")).json()["ErrorInformation"]["Code"] == 2000439
