"""Voucher rules, one test per rule, plus numbering, listing and immutability."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from sandbox.fortnox.seed import Seeded
from tests.sandbox.conftest import error_info


@pytest.fixture
def year(demo: Seeded) -> int:
    fy = demo.tenant.fy_for_date(demo.tenant.today())
    assert fy is not None
    return fy


def voucher(demo: Seeded, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "Description": "Z-dagrapport 7, kassa K1",
        "TransactionDate": demo.tenant.today().isoformat(),
        "VoucherSeries": "F",
        "VoucherRows": [
            {"Account": 1910, "Debit": 125.0},
            {"Account": 3001, "Credit": 100.0, "CostCenter": "100"},
            {"Account": 2611, "Credit": 25.0},
        ],
    }
    body.update(overrides)
    return {"Voucher": body}


async def post(api: httpx.AsyncClient, body: dict[str, Any], year: int | None) -> httpx.Response:
    params = {"financialyear": year} if year is not None else {}
    return await api.post("/3/vouchers", json=body, params=params)


async def test_valid_voucher_is_numbered_per_series_and_year(
    api: httpx.AsyncClient, demo: Seeded, year: int
) -> None:
    first = await post(api, voucher(demo), year)
    assert first.status_code == 201
    v = first.json()["Voucher"]
    assert (v["VoucherSeries"], v["VoucherNumber"], v["Year"]) == ("F", 1, year)
    assert v["ReferenceType"] == "MANUAL"
    assert [r["Account"] for r in v["VoucherRows"]] == [1910, 3001, 2611]
    assert v["VoucherRows"][1]["Description"] == "Försäljning inom Sverige, 25 % moms"
    second = (await post(api, voucher(demo), year)).json()["Voucher"]
    assert second["VoucherNumber"] == 2
    other = (await post(api, voucher(demo, VoucherSeries="A"), year)).json()["Voucher"]
    assert other["VoucherNumber"] == 1
    got = await api.get("/3/vouchers/F/2", params={"financialyear": year})
    assert got.json()["Voucher"]["VoucherRows"][0]["Debit"] == 125.0
    series = (await api.get("/3/voucherseries/F", params={"financialyear": year})).json()
    assert series["VoucherSeries"]["NextVoucherNumber"] == 3
    sub = (await api.get("/3/vouchers/sublist/F", params={"financialyear": year})).json()
    assert [x["VoucherNumber"] for x in sub["Vouchers"]] == [1, 2]
    assert all("VoucherRows" not in x for x in sub["Vouchers"])
    # earlier year: the demo's September voucher is F 1 of that year
    assert (await api.get("/3/vouchers/F/1", params={"financialyear": year - 1})).status_code == 200
    assert (await api.get("/3/vouchers/F/9", params={"financialyear": year})).status_code == 404


async def test_vouchers_cannot_be_updated_or_deleted(
    api: httpx.AsyncClient, demo: Seeded, year: int
) -> None:
    await post(api, voucher(demo), year)
    for method in ("PUT", "DELETE"):
        r = await api.request(
            method, "/3/vouchers/F/1", params={"financialyear": year}, json=voucher(demo)
        )
        assert r.status_code == 404
        assert r.json()["ErrorInformation"]["Code"] == 2000762


async def test_rule_description_at_most_200(
    api: httpx.AsyncClient, demo: Seeded, year: int
) -> None:
    assert (await post(api, voucher(demo, Description="x" * 200), year)).status_code == 201
    r = await post(api, voucher(demo, Description="x" * 201), year)
    assert r.status_code == 400
    assert error_info(r) == (2999018, "Fältet Description får vara högst 200 tecken")


async def test_rule_description_date_series_required(
    api: httpx.AsyncClient, demo: Seeded, year: int
) -> None:
    for field in ("Description", "TransactionDate", "VoucherSeries"):
        body = voucher(demo)
        del body["Voucher"][field]
        r = await post(api, body, year)
        assert error_info(r) == (2999019, f"Fältet {field} är obligatoriskt")


async def test_rule_at_least_two_rows(api: httpx.AsyncClient, demo: Seeded, year: int) -> None:
    r = await post(api, voucher(demo, VoucherRows=[{"Account": 1910, "Debit": 0}]), year)
    assert error_info(r) == (2999017, "En verifikation måste ha minst två rader")


async def test_rule_financial_year_must_exist(api: httpx.AsyncClient, demo: Seeded) -> None:
    r = await post(api, voucher(demo, TransactionDate="2001-05-05"), None)
    assert r.status_code == 400
    assert error_info(r) == (2999007, "Räkenskapsår saknas för valt datum (2001-05-05)")


async def test_rule_date_must_be_in_the_addressed_year(
    api: httpx.AsyncClient, demo: Seeded, year: int
) -> None:
    last_year = f"{demo.tenant.today().year - 1}-12-30"
    # no financialyear: the preselected (current) year is used, and the date is not in it
    r = await post(api, voucher(demo, TransactionDate=last_year), None)
    assert error_info(r)[0] == 2999025
    ok = await post(api, voucher(demo, TransactionDate=last_year), year - 1)
    assert ok.status_code == 201
    assert error_info(await post(api, voucher(demo), 99))[0] == 2999007
    wrong_year = await post(api, voucher(demo, Year=year - 1), year)
    assert error_info(wrong_year)[0] == 2999020


async def test_rule_not_in_locked_period(api: httpx.AsyncClient, demo: Seeded, year: int) -> None:
    locked = (await api.get("/3/settings/lockedperiod")).json()["LockedPeriod"]["EndDate"]
    r = await post(api, voucher(demo, TransactionDate=locked), year - 1)
    assert r.status_code == 400
    code, message = error_info(r)
    assert code == 2000401
    assert f"låst perioden t.o.m. {locked}" in message


async def test_rule_series_exists_in_that_year(
    api: httpx.AsyncClient, demo: Seeded, year: int
) -> None:
    r = await post(api, voucher(demo, VoucherSeries="Z"), year)
    assert error_info(r) == (2999010, 'Verifikationsserien "Z" finns inte')


async def test_rule_series_is_manual(api: httpx.AsyncClient, demo: Seeded, year: int) -> None:
    r = await post(api, voucher(demo, VoucherSeries="B"), year)
    assert error_info(r) == (2999011, "Verifikationsserien är inte manuell (B)")
    await api.put(
        "/3/voucherseries/B",
        params={"financialyear": year},
        json={"VoucherSeries": {"Manual": True}},
    )
    assert (await post(api, voucher(demo, VoucherSeries="B"), year)).status_code == 201
    # Manual is per year: the year before still says no
    last = voucher(demo, VoucherSeries="B", TransactionDate=f"{demo.tenant.today().year - 1}-12-01")
    assert error_info(await post(api, last, year - 1))[0] == 2999011


async def test_rule_account_exists(api: httpx.AsyncClient, demo: Seeded, year: int) -> None:
    rows = [{"Account": 1910, "Debit": 10}, {"Account": 3999, "Credit": 10}]
    r = await post(api, voucher(demo, VoucherRows=rows), year)
    assert error_info(r) == (2001304, 'Kunde inte hitta konto "3999"')


async def test_rule_account_active(api: httpx.AsyncClient, demo: Seeded, year: int) -> None:
    rows = [{"Account": 1910, "Debit": 10}, {"Account": 3900, "Credit": 10}]
    r = await post(api, voucher(demo, VoucherRows=rows), year)
    assert error_info(r) == (2999012, 'Konto "3900" är inte aktivt')
    await api.put(
        "/3/accounts/3900", params={"financialyear": year}, json={"Account": {"Active": True}}
    )
    assert (await post(api, voucher(demo, VoucherRows=rows), year)).status_code == 201


async def test_rule_cost_center_exists(api: httpx.AsyncClient, demo: Seeded, year: int) -> None:
    rows = [{"Account": 1910, "Debit": 10}, {"Account": 3001, "Credit": 10, "CostCenter": "777"}]
    r = await post(api, voucher(demo, VoucherRows=rows), year)
    assert error_info(r) == (2999013, 'Kunde inte hitta kostnadsställe "777"')


async def test_rule_cost_center_active(api: httpx.AsyncClient, demo: Seeded, year: int) -> None:
    rows = [{"Account": 1910, "Debit": 10}, {"Account": 3001, "Credit": 10, "CostCenter": "999"}]
    r = await post(api, voucher(demo, VoucherRows=rows), year)
    assert error_info(r) == (2000947, 'Kostnadsstället "999" är inaktivt')


async def test_rule_mandatory_cost_center(api: httpx.AsyncClient, demo: Seeded, year: int) -> None:
    rows: list[dict[str, Any]] = [{"Account": 5010, "Debit": 10}, {"Account": 1930, "Credit": 10}]
    r = await post(api, voucher(demo, VoucherRows=rows), year)
    assert error_info(r) == (2999014, "Kostnadsställe är obligatoriskt för konto 5010")
    rows[0]["CostCenter"] = "100"
    assert (await post(api, voucher(demo, VoucherRows=rows), year)).status_code == 201


async def test_rule_cost_center_not_allowed(
    api: httpx.AsyncClient, demo: Seeded, year: int
) -> None:
    rows = [{"Account": 2650, "Debit": 10, "CostCenter": "100"}, {"Account": 1930, "Credit": 10}]
    r = await post(api, voucher(demo, VoucherRows=rows), year)
    assert error_info(r) == (2999015, "Kostnadsställe är inte tillåtet för konto 2650")


async def test_rule_debit_equals_credit(api: httpx.AsyncClient, demo: Seeded, year: int) -> None:
    rows = [{"Account": 1910, "Debit": 100.005}, {"Account": 3001, "Credit": 100}]
    r = await post(api, voucher(demo, VoucherRows=rows), year)
    assert error_info(r) == (
        2999016,
        "Verifikationen balanserar inte (debet 100.01, kredit 100.00)",
    )


async def test_voucher_updates_account_balance_and_emits_event(
    api: httpx.AsyncClient, demo: Seeded, year: int
) -> None:
    before = (await api.get("/3/accounts/1910", params={"financialyear": year})).json()["Account"]
    await post(api, voucher(demo), year)
    after = (await api.get("/3/accounts/1910", params={"financialyear": year})).json()["Account"]
    assert after["BalanceCarriedForward"] == before["BalanceCarriedForward"] + 125.0
    events = demo.tenant.feed.events("vouchers", demo.tenant.id)
    assert events[-1]["type"] == "voucher-created-v1"
    assert (events[-1]["entityId"], events[-1]["year"], events[-1]["series"]) == ("1", year, "F")


async def test_financial_years_by_date_and_creation_copies_the_books(
    api: httpx.AsyncClient, demo: Seeded, year: int
) -> None:
    today = demo.tenant.today()
    found = (await api.get("/3/financialyears", params={"date": today.isoformat()})).json()
    assert [fy["Id"] for fy in found["FinancialYears"]] == [year]
    none = (await api.get("/3/financialyears", params={"date": "1999-01-01"})).json()
    assert none["FinancialYears"] == []
    nxt = today.year + 1
    created = await api.post(
        "/3/financialyears",
        json={"FinancialYear": {"FromDate": f"{nxt}-01-01", "ToDate": f"{nxt}-12-31"}},
    )
    assert created.status_code == 201
    new_id = created.json()["FinancialYear"]["Id"]
    series = (await api.get("/3/voucherseries", params={"financialyear": new_id})).json()
    assert {(s["Code"], s["Manual"]) for s in series["VoucherSeriesCollection"]} >= {
        ("A", True),
        ("F", True),
    }
    accounts = (await api.get("/3/accounts", params={"financialyear": new_id, "limit": 500})).json()
    assert accounts["MetaInformation"]["@TotalResources"] == 29
    overlap = await api.post(
        "/3/financialyears",
        json={"FinancialYear": {"FromDate": f"{nxt}-06-01", "ToDate": f"{nxt + 1}-05-31"}},
    )
    assert error_info(overlap)[0] == 2999027
    assert demo.tenant.feed.events("financial-years", demo.tenant.id)[-1]["entityId"] == str(new_id)


async def test_accounts_are_per_year(api: httpx.AsyncClient, demo: Seeded, year: int) -> None:
    await api.put(
        "/3/accounts/3004", params={"financialyear": year}, json={"Account": {"Active": False}}
    )
    now = (await api.get("/3/accounts/3004", params={"financialyear": year})).json()["Account"]
    before = (await api.get("/3/accounts/3004", params={"financialyear": year - 1})).json()[
        "Account"
    ]
    assert (now["Active"], before["Active"]) == (False, True)
    assert (now["Year"], before["Year"]) == (year, year - 1)
    gone = await api.get("/3/accounts/1234", params={"financialyear": year})
    assert gone.json() == {
        "ErrorInformation": {"Error": 1, "Message": "Kan inte hitta kontot.", "Code": 2000423}
    }
    created = await api.post(
        "/3/accounts",
        params={"financialyear": year},
        json={"Account": {"Number": 3011, "Description": "Försäljning kafé"}},
    )
    assert created.status_code == 201
    assert (await api.delete("/3/accounts/3011", params={"financialyear": year})).status_code == 204
