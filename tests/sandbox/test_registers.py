"""Customers, articles, prices and the small registers: Fortnox's rules and quirks."""

from __future__ import annotations

import httpx

from sandbox.fortnox.seed import EAN_CONFLICT, Seeded
from sandbox.fortnox.state import SandboxState
from tests.sandbox.conftest import error_info


async def test_customer_number_is_assigned_and_reserved_forever(api: httpx.AsyncClient) -> None:
    created = await api.post("/3/customers", json={"Customer": {"Name": "Ny Kund AB"}})
    assert created.status_code == 201
    customer = created.json()["Customer"]
    assert customer["CustomerNumber"] == "9"
    assert customer["Currency"] == "SEK" and customer["Active"] is True
    assert customer["DefaultDeliveryTypes"] == {
        "Invoice": "PRINT",
        "Order": "PRINT",
        "Offer": "PRINT",
    }
    assert (await api.delete("/3/customers/9")).status_code == 204
    gone = await api.get("/3/customers/9")
    assert gone.status_code == 404
    assert gone.json() == {
        "ErrorInformation": {"Error": 1, "Message": "Kan inte hitta kunden.", "Code": 2000433}
    }
    again = await api.post(
        "/3/customers", json={"Customer": {"Name": "Återanvänd", "CustomerNumber": "9"}}
    )
    assert again.status_code == 400
    assert error_info(again)[0] == 2000637
    taken = await api.post(
        "/3/customers", json={"Customer": {"Name": "Dubbel", "CustomerNumber": "1"}}
    )
    assert error_info(taken)[0] == 2000637
    nxt = await api.post("/3/customers", json={"Customer": {"Name": "Nästa"}})
    assert nxt.json()["Customer"]["CustomerNumber"] == "10"


async def test_customer_update_and_validation(api: httpx.AsyncClient) -> None:
    r = await api.put("/3/customers/1", json={"Customer": {"CountryCode": "NO", "City": "Oslo"}})
    assert r.status_code == 200
    assert r.json()["Customer"]["Country"] == "Norge"
    assert error_info(await api.post("/3/customers", json={"Customer": {}}))[0] == 2999019
    unknown = await api.put("/3/customers/1", json={"Customer": {"Colour": "blue"}})
    assert unknown.json() == {
        "ErrorInformation": {"error": 1, "message": "Felaktigt fältnamn (Colour)", "code": 2001399}
    }
    ro = await api.put("/3/customers/1", json={"Customer": {"Country": "Sverige"}})
    assert error_info(ro) == (2999022, "Fältet Country är skrivskyddat")
    bad_terms = await api.put("/3/customers/1", json={"Customer": {"TermsOfPayment": "99"}})
    assert error_info(bad_terms)[0] == 2000429
    bad_json = await api.post(
        "/3/customers", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert error_info(bad_json) == (2002115, "Error deserializing JSON: JSON_ERROR_SYNTAX")
    no_wrapper = await api.post("/3/customers", json={"Name": "X"})
    assert error_info(no_wrapper)[0] == 2001392
    bad_chars = await api.post(
        "/3/customers", json={"Customer": {"Name": "X", "CustomerNumber": "A B"}}
    )
    assert error_info(bad_chars)[0] == 2000359


async def test_article_sales_price_is_read_only_and_follows_price_list_a(
    api: httpx.AsyncClient,
) -> None:
    article = (await api.get("/3/articles/1001")).json()["Article"]
    assert article["SalesPrice"] == 69.0
    rejected = await api.put("/3/articles/1001", json={"Article": {"SalesPrice": 75}})
    assert rejected.status_code == 400
    assert error_info(rejected) == (2999022, "Fältet SalesPrice är skrivskyddat")
    put = await api.put("/3/prices/A/1001/0", json={"Price": {"Price": 79}})
    assert put.status_code == 200 and put.json()["Price"]["Price"] == 79.0
    assert (await api.get("/3/articles/1001")).json()["Article"]["SalesPrice"] == 79.0
    # price list B or FromQuantity > 0 do not change SalesPrice
    await api.post(
        "/3/prices",
        json={
            "Price": {"PriceList": "A", "ArticleNumber": "1001", "FromQuantity": 10, "Price": 60}
        },
    )
    await api.put("/3/prices/B/1001/0", json={"Price": {"Price": 10}})
    assert (await api.get("/3/articles/1001")).json()["Article"]["SalesPrice"] == 79.0
    sub = (await api.get("/3/prices/sublist/A/1001")).json()["Prices"]
    assert [(p["FromQuantity"], p["Price"]) for p in sub] == [(0.0, 79.0), (10.0, 60.0)]
    first = (await api.get("/3/prices/A/1001")).json()["Price"]
    assert first["FromQuantity"] == 0.0
    dup = await api.post(
        "/3/prices",
        json={"Price": {"PriceList": "A", "ArticleNumber": "1001", "FromQuantity": 10, "Price": 1}},
    )
    assert error_info(dup)[0] == 2999021
    assert (await api.delete("/3/prices/A/1001/10")).status_code == 204
    assert (await api.get("/3/prices/A/1001/10")).status_code == 404


async def test_article_crud_quantity_is_absolute(api: httpx.AsyncClient, demo: Seeded) -> None:
    new = await api.post(
        "/3/articles",
        json={"Article": {"Description": "Ny vara", "EAN": "7310000000001", "QuantityInStock": 5}},
    )
    assert new.status_code == 201
    number = new.json()["Article"]["ArticleNumber"]
    assert new.json()["Article"]["SalesPrice"] is None
    r = await api.put(
        f"/3/articles/{number}", json={"Article": {"QuantityInStock": 3, "StockGoods": True}}
    )
    assert r.json()["Article"]["QuantityInStock"] == 3.0
    assert r.json()["Article"]["DisposableQuantity"] == 3.0
    missing = await api.get("/3/articles/NOPE")
    assert missing.json() == {
        "ErrorInformation": {"Error": 1, "Message": "Kan inte hitta artikeln.", "Code": 2000428}
    }
    assert (await api.delete(f"/3/articles/{number}")).status_code == 204
    assert (
        error_info(await api.post("/3/articles", json={"Article": {"Description": ""}}))[0]
        == 2999019
    )
    long = await api.post("/3/articles", json={"Article": {"Description": "x" * 201}})
    assert error_info(long) == (2999018, "Fältet Description får vara högst 200 tecken")
    vat = await api.post("/3/articles", json={"Article": {"Description": "x", "VAT": 19}})
    assert error_info(vat)[0] == 2999020
    unit = await api.post("/3/articles", json={"Article": {"Description": "x", "Unit": "parsec"}})
    assert error_info(unit)[0] == 2000432
    text_bool = await api.put("/3/articles/1001", json={"Article": {"Active": "maybe"}})
    assert error_info(text_bool)[0] == 2000134
    text_num = await api.put("/3/articles/1001", json={"Article": {"QuantityInStock": "lots"}})
    assert error_info(text_num)[0] == 2000108


async def test_demo_articles_include_hidden_and_ean_conflict(api: httpx.AsyncClient) -> None:
    articles = (await api.get("/3/articles", params={"limit": 500})).json()["Articles"]
    assert any("#E#" in a["Description"] for a in articles)
    eans = {a["ArticleNumber"]: a["EAN"] for a in articles}
    assert eans[EAN_CONFLICT[0]] == eans[EAN_CONFLICT[1]] != ""


async def test_list_numbers_are_strings_where_the_schema_says_so_and_quirk_makes_all(
    api: httpx.AsyncClient, admin: httpx.AsyncClient, demo: Seeded
) -> None:
    item = (await api.get("/3/articles", params={"articlenumber": "1001"})).json()["Articles"][0]
    assert item["VAT"] == "12" and item["SalesPrice"] == "69" and item["QuantityInStock"] == 40.0
    single = (await api.get("/3/articles/1001")).json()["Article"]
    assert single["QuantityInStock"] == 40.0 and single["VAT"] == 12.0
    r = await admin.patch(
        f"/_sandbox/tenants/{demo.tenant.id}", json={"quirks": {"numbers_as_strings": ["articles"]}}
    )
    assert r.status_code == 200
    item = (await api.get("/3/articles", params={"articlenumber": "1001"})).json()["Articles"][0]
    assert item["QuantityInStock"] == "40"
    single = (await api.get("/3/articles/1001")).json()["Article"]
    assert single["QuantityInStock"] == "40" and single["Active"] is True
    assert (await api.get("/3/customers/1")).json()["Customer"]["InvoiceDiscount"] is None


async def test_small_registers(api: httpx.AsyncClient) -> None:
    units = (await api.get("/3/units")).json()["Units"]
    assert {u["Code"] for u in units} >= {"st", "kg", "h"}
    assert (
        await api.post("/3/units", json={"Unit": {"Code": "pall", "Description": "Pall"}})
    ).status_code == 201
    assert error_info(await api.delete("/3/units/st"))[0] == 2999024  # used by articles
    assert (await api.delete("/3/units/pall")).status_code == 204
    assert (await api.get("/3/units/pall")).json()["ErrorInformation"]["Code"] == 2000432
    lists = (await api.get("/3/pricelists")).json()["PriceLists"]
    assert [(p["Code"], p["PreSelected"]) for p in lists] == [("A", True), ("B", False)]
    terms = (await api.get("/3/termsofpayments")).json()["TermsOfPayments"]
    assert {t["Code"] for t in terms} == {"0", "10", "30"}
    assert (await api.get("/3/termsofpayments/77")).json()["ErrorInformation"]["Code"] == 2000429
    centres = (await api.get("/3/costcenters")).json()["CostCenters"]
    assert [(c["Code"], c["Active"]) for c in centres] == [("100", True), ("999", False)]
    cc = await api.post(
        "/3/costcenters", json={"CostCenter": {"Code": "200", "Description": "Lager"}}
    )
    assert cc.status_code == 201
    put = await api.put("/3/costcenters/200", json={"CostCenter": {"Active": False}})
    assert put.json()["CostCenter"]["Active"] is False


async def test_company_information_database_number_is_tenant_id(
    api: httpx.AsyncClient, demo: Seeded
) -> None:
    info = (await api.get("/3/companyinformation")).json()["CompanyInformation"]
    assert info["DatabaseNumber"] == demo.tenant.id
    settings = (await api.get("/3/settings/company")).json()["CompanySettings"]
    assert settings["DatabaseNumber"] == str(demo.tenant.id)


async def test_warehouse_detection_and_stock_rules(
    api: httpx.AsyncClient, admin: httpx.AsyncClient, demo: Seeded, state: SandboxState
) -> None:
    tenant = demo.tenant
    assert (await api.get("/api/warehouse/tenants-v4")).json() == {
        "activated": False,
        "tenantId": tenant.id,
    }
    off = await api.get("/api/warehouse/status-v1/stockbalance")
    assert off.status_code == 403 and off.json()["error"] == "warehouse_not_activated"
    await admin.patch(f"/_sandbox/tenants/{tenant.id}", json={"warehouse": True})
    assert (await api.get("/api/warehouse/tenants-v4")).json()["activated"] is True
    locked = await api.put("/3/articles/1001", json={"Article": {"QuantityInStock": 1}})
    assert locked.status_code == 400 and error_info(locked)[0] == 2003127
    assert (await api.get("/3/articles/1001")).json()["Article"]["QuantityInStock"] == 40.0
    balance = (
        await api.get("/api/warehouse/status-v1/stockbalance", params={"itemIds": "1001,1002"})
    ).json()
    assert balance == [
        {"itemId": "1001", "stockPointCode": "LAGER", "availableStock": 40.0, "inStock": 40.0},
        {"itemId": "1002", "stockPointCode": "LAGER", "availableStock": 25.0, "inStock": 25.0},
    ]
    doc = {
        "date": tenant.today().isoformat(),
        "deliveryState": "delivery",
        "rows": [{"itemId": "1001", "quantity": 3}],
    }
    path = "/api/warehouse/documentdeliveries/custom/outbound-v1/kassa/1001"
    first = await api.put(path, json=doc)
    assert first.status_code == 200 and first.json()["referenceType"] == "KASSA"
    again = await api.put(path, json=doc)
    assert again.status_code == 200
    assert (await api.get("/3/articles/1001")).json()["Article"]["QuantityInStock"] == 37.0
    doc["rows"] = [{"itemId": "1001", "quantity": 5}]
    await api.put(path, json=doc)
    assert (await api.get("/3/articles/1001")).json()["Article"]["QuantityInStock"] == 35.0
    reserve = {**doc, "deliveryState": "reservation", "rows": [{"itemId": "1002", "quantity": 2}]}
    await api.put("/api/warehouse/documentdeliveries/custom/outbound-v1/kassa/1002", json=reserve)
    b = (await api.get("/api/warehouse/status-v1/stockbalance", params={"itemIds": "1002"})).json()
    assert b[0]["availableStock"] == 23.0 and b[0]["inStock"] == 25.0
    inbound = {"date": tenant.today().isoformat(), "rows": [{"itemId": "1001", "quantity": 10}]}
    await api.put("/api/warehouse/documentdeliveries/custom/inbound-v1/leverans/1", json=inbound)
    assert (await api.get("/3/articles/1001")).json()["Article"]["QuantityInStock"] == 45.0
    wrong = await api.put(
        "/api/warehouse/documentdeliveries/custom/outbound-v1/leverans/2", json=doc
    )
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_document_type"
    voided = await api.put(f"{path}/void")
    assert voided.json()["voided"] is True
    assert (await api.get("/3/articles/1001")).json()["Article"]["QuantityInStock"] == 50.0
    after = await api.put(path, json=doc)
    assert after.status_code == 400 and after.json()["error"] == "document_is_voided"
    reserved = "/api/warehouse/documentdeliveries/custom/outbound-v1/kassa/1002"
    assert (await api.put(f"{reserved}/release")).json()["warehouseReady"] is True
    assert (await api.put(reserved, json=reserve)).json()["error"] == "document_is_released"
    forbidden = await api.put(
        "/api/warehouse/documentdeliveries/custom/outbound-v1/FAKTURA/1", json=doc
    )
    assert forbidden.status_code == 400
    bad_item = {**doc, "rows": [{"itemId": "nope", "quantity": 1}]}
    r = await api.put("/api/warehouse/documentdeliveries/custom/outbound-v1/kassa/9", json=bad_item)
    assert r.status_code == 404 and r.json()["error"] == "item_not_found"
    events = [e["type"] for e in state.feed.events("warehouse-stockbalances", tenant.id)]
    assert events.count("warehouse-stockbalance-changed-v1") >= 4
