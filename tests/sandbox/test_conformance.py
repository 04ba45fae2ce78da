"""Conformance: every sandbox endpoint's answers (and the bodies these tests send) validate against
Fortnox's own OpenAPI document, /work/shared/reference/fortnox-openapi.json.

Known gaps between the document and real Fortnox are relaxed in ``openapi.py`` (nulls, voucher
``Year``) or checked here instead of the schema, each with its source:

* error bodies: PascalCase keys on 404s, lower-case on 400s (fortnox-api.md §4.1, recorded
  ``articles/find_failure.yml`` and ``invoices/filter_invalid.yml``); the document's
  ``ErrorInformation`` shows PascalCase only;
* 401: exactly ``{"message":"unauthorized"}``, which the document does not describe
  (fortnox-api.md §1.2, recorded ``authentication/expired_token.yml``);
* ``GET /api/warehouse/status-v1/stockbalance`` and ``.../documenttypes-v1``: the document's 200
  schema is one item while its description says "A list of ..."; the sandbox answers a list
  and each item is validated;
* ``GET /3/sie/{Type}``, ``GET /3/archive/{id}``, ``GET /3/inbox/{Id}`` on a file: the document
  gives JSON schemas, but these return the file itself (fortnox-api.md §5.4 "returned as a
  streamed file", §5.8); SIE output is checked as SIE text, downloads byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.routing import Match

from sandbox.fortnox.app import API_ROUTERS
from sandbox.fortnox.seed import Seeded
from tests.sandbox import openapi

ROUTES = [route for router in API_ROUTERS for route in router.routes]


def template_of(method: str, path: str) -> str:
    scope = {"type": "http", "path": path, "root_path": "", "method": method, "headers": []}
    for route in ROUTES:
        if route.matches(scope)[0] == Match.FULL:
            return str(getattr(route, "path", ""))
    raise AssertionError(f"no sandbox route for {method} {path}")


@dataclass
class Call:
    method: str
    template: str
    sent: Any
    response: httpx.Response


class Recorder:
    def __init__(self, api: httpx.AsyncClient) -> None:
        self.api = api
        self.calls: list[Call] = []

    async def __call__(
        self,
        method: str,
        path: str,
        *,
        expect: int,
        json: Any = None,
        params: dict[str, Any] | None = None,
        files: dict[str, Any] | None = None,
    ) -> httpx.Response:
        r = await self.api.request(method, path, json=json, params=params, files=files)
        assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text[:300]}"
        self.calls.append(Call(method, template_of(method, path), json, r))
        return r


async def exercise(call: Recorder, demo: Seeded) -> None:
    """Every route once or more, with realistic bodies."""
    today = demo.tenant.today().isoformat()
    year = demo.tenant.fy_for_date(demo.tenant.today())
    fy = {"financialyear": year}

    # customers
    await call("GET", "/3/customers", expect=200)
    await call("GET", "/3/customers/1", expect=200)
    new = await call(
        "POST",
        "/3/customers",
        expect=201,
        json={"Customer": {"Name": "Konform AB", "Email": "k@example.se", "CountryCode": "SE"}},
    )
    number = new.json()["Customer"]["CustomerNumber"]
    await call("PUT", f"/3/customers/{number}", expect=200, json={"Customer": {"City": "Umeå"}})
    await call("DELETE", f"/3/customers/{number}", expect=204)
    await call("GET", f"/3/customers/{number}", expect=404)
    await call("GET", "/3/customers", expect=400, params={"filter": "bogus"})

    # articles, units, price lists, prices
    await call("GET", "/3/articles", expect=200, params={"limit": 500})
    await call("GET", "/3/articles/1001", expect=200)
    art = await call(
        "POST",
        "/3/articles",
        expect=201,
        json={
            "Article": {
                "ArticleNumber": "K-1",
                "Description": "Konformvara",
                "VAT": 25,
                "Unit": "st",
            }
        },
    )
    assert art.json()["Article"]["ArticleNumber"] == "K-1"
    await call("PUT", "/3/articles/K-1", expect=200, json={"Article": {"QuantityInStock": 4}})
    await call("GET", "/3/units", expect=200)
    await call("GET", "/3/units/st", expect=200)
    await call("POST", "/3/units", expect=201, json={"Unit": {"Code": "ask", "Description": "Ask"}})
    await call("PUT", "/3/units/ask", expect=200, json={"Unit": {"CodeEnglish": "box"}})
    await call("DELETE", "/3/units/ask", expect=204)
    await call("GET", "/3/pricelists", expect=200)
    await call("GET", "/3/pricelists/A", expect=200)
    await call(
        "POST",
        "/3/pricelists",
        expect=201,
        json={"PriceList": {"Code": "C", "Description": "Kampanj"}},
    )
    await call("PUT", "/3/pricelists/C", expect=200, json={"PriceList": {"Comments": "vår"}})
    await call(
        "POST",
        "/3/prices",
        expect=201,
        json={"Price": {"PriceList": "A", "ArticleNumber": "K-1", "FromQuantity": 0, "Price": 10}},
    )
    await call("GET", "/3/prices/A/K-1", expect=200)
    await call("PUT", "/3/prices/A/K-1", expect=200, json={"Price": {"Price": 12}})
    await call(
        "POST",
        "/3/prices",
        expect=201,
        json={"Price": {"PriceList": "A", "ArticleNumber": "K-1", "FromQuantity": 5, "Price": 9}},
    )
    await call("GET", "/3/prices/A/K-1/5", expect=200)
    await call("PUT", "/3/prices/A/K-1/5", expect=200, json={"Price": {"Price": 8}})
    await call("GET", "/3/prices/sublist/A/K-1", expect=200)
    await call("DELETE", "/3/prices/A/K-1/5", expect=204)
    await call("DELETE", "/3/articles/K-1", expect=204)
    await call("GET", "/3/articles/K-1", expect=404)

    # terms of payment, cost centres
    await call("GET", "/3/termsofpayments", expect=200)
    await call("GET", "/3/termsofpayments/30", expect=200)
    await call(
        "POST",
        "/3/termsofpayments",
        expect=201,
        json={"TermsOfPayment": {"Code": "20", "Description": "20 dagar"}},
    )
    await call(
        "PUT", "/3/termsofpayments/20", expect=200, json={"TermsOfPayment": {"Description": "20 d"}}
    )
    await call("DELETE", "/3/termsofpayments/20", expect=204)
    await call("GET", "/3/costcenters", expect=200)
    await call("GET", "/3/costcenters/100", expect=200)
    await call(
        "POST",
        "/3/costcenters",
        expect=201,
        json={"CostCenter": {"Code": "300", "Description": "Kafé"}},
    )
    await call(
        "PUT", "/3/costcenters/300", expect=200, json={"CostCenter": {"Note": "öppnar i vår"}}
    )
    await call("DELETE", "/3/costcenters/300", expect=204)
    await call(
        "POST",
        "/3/projects",
        expect=201,
        json={"Project": {"ProjectNumber": "P1", "Description": "Sommarkiosk"}},
    )
    await call("GET", "/3/projects", expect=200)
    await call("GET", "/3/projects/P1", expect=200)
    await call("PUT", "/3/projects/P1", expect=200, json={"Project": {"Status": "COMPLETED"}})
    await call("DELETE", "/3/projects/P1", expect=204)

    # invoices and payments
    await call("GET", "/3/invoices", expect=200)
    inv = await call(
        "POST",
        "/3/invoices",
        expect=201,
        json={
            "Invoice": {
                "CustomerNumber": "2",
                "InvoiceDate": today,
                "ExternalInvoiceReference1": "kvitto 9",
                "InvoiceRows": [{"ArticleNumber": "1002", "DeliveredQuantity": "2"}],
            }
        },
    )
    doc = inv.json()["Invoice"]["DocumentNumber"]
    await call("GET", f"/3/invoices/{doc}", expect=200)
    await call(
        "PUT", f"/3/invoices/{doc}", expect=200, json={"Invoice": {"YourReference": "Berit"}}
    )
    await call("GET", "/3/invoicepayments", expect=200)
    pay = await call(
        "POST",
        "/3/invoicepayments",
        expect=201,
        json={"InvoicePayment": {"InvoiceNumber": int(doc), "Amount": 50, "PaymentDate": today}},
    )
    pay_no = pay.json()["InvoicePayment"]["Number"]
    await call("GET", f"/3/invoicepayments/{pay_no}", expect=200)
    await call(
        "PUT", f"/3/invoicepayments/{pay_no}", expect=200, json={"InvoicePayment": {"Amount": 60}}
    )
    await call("PUT", f"/3/invoicepayments/{pay_no}/bookkeep", expect=200)
    other = await call(
        "POST",
        "/3/invoicepayments",
        expect=201,
        json={"InvoicePayment": {"InvoiceNumber": int(doc), "Amount": 1, "PaymentDate": today}},
    )
    await call(
        "DELETE", f"/3/invoicepayments/{other.json()['InvoicePayment']['Number']}", expect=204
    )
    await call("PUT", f"/3/invoices/{doc}/bookkeep", expect=200)
    spare = await call("POST", "/3/invoices", expect=201, json={"Invoice": {"CustomerNumber": "1"}})
    await call("PUT", f"/3/invoices/{spare.json()['Invoice']['DocumentNumber']}/cancel", expect=200)

    # orders
    await call("GET", "/3/orders", expect=200)
    order = await call(
        "POST",
        "/3/orders",
        expect=201,
        json={
            "Order": {
                "CustomerNumber": "3",
                "ExternalInvoiceReference1": "kvitto 10",
                "YourOrderNumber": "K1-10",
                "OrderRows": [
                    {"ArticleNumber": "1005", "OrderedQuantity": "6", "DeliveredQuantity": "6"}
                ],
            }
        },
    )
    order_no = order.json()["Order"]["DocumentNumber"]
    await call("GET", f"/3/orders/{order_no}", expect=200)
    await call("PUT", f"/3/orders/{order_no}", expect=200, json={"Order": {"Remarks": "Hämtas"}})
    await call("GET", "/3/orders", expect=200, params={"externalinvoicereference1": "kvitto 10"})
    await call("PUT", f"/3/orders/{order_no}/cancel", expect=200)

    # bookkeeping
    await call("GET", "/3/financialyears", expect=200, params={"date": today})
    await call("GET", f"/3/financialyears/{year}", expect=200)
    nxt = demo.tenant.today().year + 1
    await call(
        "POST",
        "/3/financialyears",
        expect=201,
        json={
            "FinancialYear": {
                "FromDate": f"{nxt}-01-01",
                "ToDate": f"{nxt}-12-31",
                "AccountingMethod": "ACCRUAL",
            }
        },
    )
    await call("GET", "/3/accounts", expect=200, params={**fy, "limit": 500})
    await call("GET", "/3/accounts/3001", expect=200, params=fy)
    await call(
        "POST",
        "/3/accounts",
        expect=201,
        params=fy,
        json={
            "Account": {
                "Number": 3010,
                "Description": "Försäljning kafé",
                "CostCenterSettings": "ALLOWED",
            }
        },
    )
    await call(
        "PUT", "/3/accounts/3010", expect=200, params=fy, json={"Account": {"Active": False}}
    )
    await call("DELETE", "/3/accounts/3010", expect=204, params=fy)
    await call("GET", "/3/voucherseries", expect=200, params=fy)
    await call("GET", "/3/voucherseries/F", expect=200, params=fy)
    await call(
        "POST",
        "/3/voucherseries",
        expect=201,
        params=fy,
        json={"VoucherSeries": {"Code": "K2", "Description": "Kassa 2", "Manual": True}},
    )
    await call(
        "PUT",
        "/3/voucherseries/K2",
        expect=200,
        params=fy,
        json={"VoucherSeries": {"Description": "Kassa två"}},
    )
    await call("GET", "/3/settings/lockedperiod", expect=200)
    voucher = await call(
        "POST",
        "/3/vouchers",
        expect=201,
        params=fy,
        json={
            "Voucher": {
                "Description": "Z-dagrapport 11, kassa K1",
                "TransactionDate": today,
                "VoucherSeries": "F",
                "Comments": "kassa K1",
                "VoucherRows": [
                    {"Account": 1910, "Debit": 250.0},
                    {"Account": 1580, "Debit": 1000.0},
                    {
                        "Account": 3001,
                        "Credit": 1000.0,
                        "CostCenter": "100",
                        "TransactionInformation": "25 %",
                    },
                    {"Account": 2611, "Credit": 250.0},
                ],
            }
        },
    )
    vno = voucher.json()["Voucher"]["VoucherNumber"]
    await call("POST", "/3/vouchers", expect=400, params=fy, json={"Voucher": {"Description": "x"}})
    await call("GET", "/3/vouchers", expect=200, params=fy)
    await call("GET", "/3/vouchers/sublist", expect=200, params=fy)
    await call("GET", "/3/vouchers/sublist/F", expect=200, params=fy)
    await call("GET", f"/3/vouchers/F/{vno}", expect=200, params=fy)
    await call("GET", "/3/companyinformation", expect=200)
    await call("GET", "/3/settings/company", expect=200)
    sie = await call("GET", "/3/sie/4", expect=200, params=fy)
    assert sie.content.startswith(b"#FLAGGA 0\r\n") and b"#SIETYP 4" in sie.content

    # files
    pdf = {"file": ("kvitto.pdf", b"%PDF-1.4 x", "application/pdf")}
    await call("GET", "/3/inbox", expect=200)
    up = await call("POST", "/3/inbox", expect=201, params={"path": "Inbox_v"}, files=pdf)
    file_id = up.json()["File"]["Id"]
    await call("GET", "/3/inbox/Inbox_v", expect=200)
    got = await call("GET", f"/3/inbox/{file_id}", expect=200)
    assert got.content == b"%PDF-1.4 x"
    await call(
        "POST",
        "/3/voucherfileconnections",
        expect=201,
        json={
            "VoucherFileConnection": {
                "FileId": file_id,
                "VoucherNumber": str(vno),
                "VoucherSeries": "F",
            }
        },
    )
    await call("GET", "/3/voucherfileconnections", expect=200)
    await call("GET", f"/3/voucherfileconnections/{file_id}", expect=200)
    await call("DELETE", f"/3/voucherfileconnections/{file_id}", expect=204)
    await call("GET", "/3/archive", expect=200)
    await call("GET", f"/3/archive/{file_id}", expect=200)
    await call("DELETE", f"/3/archive/{file_id}", expect=204)
    arch = await call("POST", "/3/archive", expect=201, params={"path": "z"}, files=pdf)
    await call("GET", "/3/archive/z", expect=200)
    await call("DELETE", "/3/archive", expect=204, params={"path": "z"})
    in2 = await call("POST", "/3/inbox", expect=201, files=pdf)
    await call("DELETE", f"/3/inbox/{in2.json()['File']['Id']}", expect=204)
    assert arch.json()["File"]["Name"] == "kvitto.pdf"

    # warehouse
    await call("GET", "/api/warehouse/tenants-v4", expect=200)
    await call("GET", "/api/warehouse/status-v1/stockbalance", expect=403)
    demo.tenant.warehouse_active = True
    await call(
        "GET", "/api/warehouse/status-v1/stockbalance", expect=200, params={"itemIds": "1001,1002"}
    )
    out = "/api/warehouse/documentdeliveries/custom/outbound-v1/KASSA/20"
    body = {"date": today, "deliveryState": "delivery", "rows": [{"itemId": "1001", "quantity": 2}]}
    await call("PUT", out, expect=200, json=body)
    await call("GET", out, expect=200)
    await call("PUT", f"{out}/release", expect=200)
    await call("PUT", f"{out}/void", expect=200)
    inbound = "/api/warehouse/documentdeliveries/custom/inbound-v1/INLEV/3"
    await call(
        "PUT",
        inbound,
        expect=200,
        json={"date": today, "rows": [{"itemId": "1001", "quantity": 5}]},
    )
    await call("GET", inbound, expect=200)
    await call("PUT", f"{inbound}/release", expect=200)
    await call("PUT", f"{inbound}/void", expect=200)
    types = "/api/warehouse/documentdeliveries/custom/documenttypes-v1"
    made = await call(
        "POST", types, expect=201, json={"category": "OUTBOUND", "referenceType": "RETUR"}
    )
    assert made.json() == 1
    await call("GET", types, expect=200)
    await call("GET", f"{types}/RETUR", expect=200)


@pytest.fixture
async def calls(api: httpx.AsyncClient, demo: Seeded) -> list[Call]:
    recorder = Recorder(api)
    await exercise(recorder, demo)
    return recorder.calls


def _check(call: Call) -> list[str]:
    r = call.response
    where = f"{call.method} {call.template} -> {r.status_code}"
    problems: list[str] = []
    if call.sent is not None and r.status_code < 400:
        name = openapi.request_schema(call.method, call.template)
        if name is None:
            problems.append(f"{where}: the document has no request schema")
        else:
            partial = call.method == "PUT" and call.template.startswith("/3/")
            errors = openapi.schema_errors(name, call.sent, partial=partial)
            problems += [f"{where} request: {m}" for m in errors]
    if r.status_code == 204:
        return problems + ([f"{where}: 204 with a body"] if r.content else [])
    ctype, name = openapi.response_schema(call.method, call.template, r.status_code)
    if r.status_code >= 400 and call.template.startswith("/3/"):
        inner = r.json()["ErrorInformation"]
        keys = (
            {"Error", "Message", "Code"} if r.status_code == 404 else {"error", "message", "code"}
        )
        if set(inner) != keys:
            problems.append(f"{where}: error keys {sorted(inner)}, expected {sorted(keys)}")
        lowered = {k.lower(): v for k, v in inner.items()}
        problems += openapi.schema_errors(
            "fortnox_ErrorInformation_Wrap",
            {
                "ErrorInformation": {
                    "Error": lowered["error"],
                    "Message": lowered["message"],
                    "Code": lowered["code"],
                }
            },
        )
        return problems
    if call.template in ("/3/sie/{Type}", "/3/archive/{id}") or (
        call.template == "/3/inbox/{Id}"
        and not r.headers["content-type"].startswith("application/json")
    ):
        return problems  # files: checked in exercise()
    body = r.json()
    if (
        isinstance(body, list)
        and name
        and openapi.describes_list(call.method, call.template, r.status_code)
    ):
        for item in body:
            problems += [f"{where}: {m}" for m in openapi.schema_errors(name, item)]
        return problems
    if name is None:
        inline = openapi.inline_response_type(call.method, call.template, r.status_code)
        if inline == "integer" and isinstance(body, int):
            return problems
        return [*problems, f"{where}: the document has no response schema ({ctype})"]
    return problems + [f"{where}: {m}" for m in openapi.schema_errors(name, body)]


async def test_every_answer_and_request_matches_fortnox_openapi(calls: list[Call]) -> None:
    problems = [p for call in calls for p in _check(call)]
    assert problems == [], "\n".join(problems)


async def test_every_sandbox_route_is_in_the_document_and_exercised(calls: list[Call]) -> None:
    routes = {
        (method, str(getattr(route, "path", "")))
        for route in ROUTES
        for method in (getattr(route, "methods", None) or set())
    }
    missing_in_doc = sorted(f"{m} {p}" for m, p in routes if openapi.operation(m, p) is None)
    assert missing_in_doc == []
    exercised = {(c.method, c.template) for c in calls}
    assert sorted(f"{m} {p}" for m, p in routes - exercised) == []


async def test_auth_failures_are_outside_the_document(admin: httpx.AsyncClient) -> None:
    r = await admin.get("/3/articles")
    assert (r.status_code, r.content) == (401, b'{"message":"unauthorized"}')


async def test_numbers_as_strings_quirk_matches_recorded_traffic(
    api: httpx.AsyncClient, demo: Seeded
) -> None:
    """With the quirk on, article numbers come as text, as in the 2026 recording
    ``articles/search_by_name.yml`` and accodeing/fortnox-api#145 (``"QuantityInStock": "-8"``).
    The list schema already types most of them as strings; only QuantityInStock differs."""
    demo.tenant.quirks.numbers_as_strings = frozenset({"articles"})
    item = (await api.get("/3/articles", params={"articlenumber": "1001"})).json()
    errors = openapi.schema_errors("fortnox_ArticleListItem_Wrap", item)
    assert errors and all("QuantityInStock" in e for e in errors)
