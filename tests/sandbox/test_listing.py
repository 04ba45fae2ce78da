"""List requests: paging, lastmodified, search, sort and filter as Fortnox answers them."""

from __future__ import annotations

from datetime import datetime

import httpx

from sandbox.fortnox.clock import STOCKHOLM
from sandbox.fortnox.seed import Seeded
from sandbox.fortnox.state import SandboxState
from tests.sandbox.conftest import error_info, reauth


async def test_paging_meta_and_default_limit(api: httpx.AsyncClient, demo: Seeded) -> None:
    r = (await api.get("/3/articles")).json()
    assert r["MetaInformation"] == {"@TotalResources": 50, "@TotalPages": 1, "@CurrentPage": 1}
    assert len(r["Articles"]) == 50
    page = (await api.get("/3/articles", params={"limit": 20, "page": 3})).json()
    assert page["MetaInformation"] == {"@TotalResources": 50, "@TotalPages": 3, "@CurrentPage": 3}
    assert len(page["Articles"]) == 10
    first = (await api.get("/3/articles", params={"limit": 20})).json()["Articles"]
    offset = (await api.get("/3/articles", params={"limit": 5, "offset": 2})).json()["Articles"]
    assert [a["ArticleNumber"] for a in offset] == [a["ArticleNumber"] for a in first[2:7]]
    beyond = (await api.get("/3/articles", params={"limit": 20, "page": 9})).json()
    assert beyond["Articles"] == []


async def test_paging_walks_every_record_once(api: httpx.AsyncClient) -> None:
    seen: list[str] = []
    page = 1
    while True:
        body = (await api.get("/3/articles", params={"limit": 7, "page": page})).json()
        seen += [a["ArticleNumber"] for a in body["Articles"]]
        if page >= body["MetaInformation"]["@TotalPages"]:
            break
        page += 1
    assert len(seen) == len(set(seen)) == 50


async def test_limit_over_500_and_bad_paging_are_invalid_parameters(api: httpx.AsyncClient) -> None:
    assert (await api.get("/3/articles", params={"limit": 500})).status_code == 200
    for params in ({"limit": 501}, {"limit": 0}, {"page": 0}, {"page": "x"}, {"offset": -1}):
        r = await api.get("/3/articles", params=params)
        assert r.status_code == 400
        assert error_info(r)[0] == 2000588


async def test_unknown_parameter_is_2000588(api: httpx.AsyncClient) -> None:
    r = await api.get("/3/customers", params={"color": "red"})
    assert r.status_code == 400
    assert r.json() == {
        "ErrorInformation": {"error": 1, "message": "Ogiltig parameter i anropet.", "code": 2000588}
    }
    assert (
        await api.get("/3/termsofpayments", params={"lastmodified": "2025-01-01"})
    ).status_code == 400


async def test_invalid_filter_is_2000587_lower_case(api: httpx.AsyncClient) -> None:
    r = await api.get("/3/invoices", params={"filter": "bogus"})
    assert r.status_code == 400
    assert r.json() == {
        "ErrorInformation": {
            "error": 1,
            "message": "Ett ogiltigt filter har använts.",
            "code": 2000587,
        }
    }


async def test_filter_active_inactive(api: httpx.AsyncClient) -> None:
    active = (await api.get("/3/customers", params={"filter": "active"})).json()
    inactive = (await api.get("/3/customers", params={"filter": "inactive"})).json()
    assert active["MetaInformation"]["@TotalResources"] == 7
    assert [c["Name"] for c in inactive["Customers"]] == ["Gustav Gran"]


async def test_search_is_case_insensitive_substring(api: httpx.AsyncClient) -> None:
    hits = (await api.get("/3/articles", params={"articlenumber": "a100"})).json()["Articles"]
    assert {a["ArticleNumber"] for a in hits} == {"A100", "A1001", "A1002"}
    desc = (await api.get("/3/articles", params={"description": "KAFFEBÖNOR"})).json()["Articles"]
    assert len(desc) == 4
    both = (
        await api.get("/3/articles", params={"articlenumber": "A10", "description": "kenya"})
    ).json()["Articles"]
    assert [a["ArticleNumber"] for a in both] == ["A101"]
    miss = (await api.get("/3/customers", params={"name": "nothing"})).json()
    assert miss == {
        "MetaInformation": {"@TotalResources": 0, "@TotalPages": 0, "@CurrentPage": 1},
        "Customers": [],
    }


async def test_sortby_and_sortorder(api: httpx.AsyncClient) -> None:
    asc = (await api.get("/3/articles", params={"sortby": "quantityinstock"})).json()["Articles"]
    qty = [a["QuantityInStock"] for a in asc]
    assert qty == sorted(qty)
    desc = (
        await api.get("/3/customers", params={"sortby": "name", "sortorder": "descending"})
    ).json()["Customers"]
    names = [c["Name"].lower() for c in desc]
    assert names == sorted(names, reverse=True)
    assert (await api.get("/3/articles", params={"sortby": "colour"})).status_code == 400


async def test_lastmodified_has_minute_resolution_in_swedish_time(
    api: httpx.AsyncClient, admin: httpx.AsyncClient, state: SandboxState, demo: Seeded
) -> None:
    state.clock.set(datetime(2030, 3, 10, 12, 30, 40, tzinfo=STOCKHOLM))
    state.clock.freeze()
    reauth(api, state, demo)
    await admin.patch(
        f"/_sandbox/tenants/{demo.tenant.id}/records/customers/1", json={"City": "Visby"}
    )
    state.clock.advance(120)  # 12:32:40
    await admin.patch(
        f"/_sandbox/tenants/{demo.tenant.id}/records/customers/2", json={"City": "Kiruna"}
    )

    async def numbers(since: str) -> list[str]:
        body = (await api.get("/3/customers", params={"lastmodified": since})).json()
        return [c["CustomerNumber"] for c in body["Customers"]]

    assert await numbers("2030-03-10 12:30") == ["1", "2"]
    assert await numbers("2030-03-10 12:30:59") == ["1", "2"]  # seconds are ignored
    assert await numbers("2030-03-10 12:31") == ["2"]
    assert await numbers("2030-03-10 12:32") == ["2"]
    assert await numbers("2030-03-10 12:33") == []
    assert await numbers("2030-03-10") == ["1", "2"]
    assert (await api.get("/3/customers", params={"lastmodified": "10/3/2030"})).status_code == 400


async def test_lastmodified_compares_wall_clock_in_the_repeated_autumn_hour(
    api: httpx.AsyncClient, admin: httpx.AsyncClient, state: SandboxState, demo: Seeded
) -> None:
    # 2030-10-27 03:00 CEST becomes 02:00 CET: 02:xx happens twice
    state.clock.set(datetime(2030, 10, 27, 2, 40, tzinfo=STOCKHOLM))  # first 02:40 (CEST)
    state.clock.freeze()
    reauth(api, state, demo)
    await admin.patch(f"/_sandbox/tenants/{demo.tenant.id}/records/customers/1", json={"City": "A"})
    state.clock.advance(30 * 60)  # 02:10 CET, the second pass
    await admin.patch(f"/_sandbox/tenants/{demo.tenant.id}/records/customers/2", json={"City": "B"})
    body = (await api.get("/3/customers", params={"lastmodified": "2030-10-27 02:30"})).json()
    # customer 2 changed later but at an earlier wall-clock time: a poller must look back
    assert [c["CustomerNumber"] for c in body["Customers"]] == ["1"]


async def test_empty_list_and_list_views_are_subsets(api: httpx.AsyncClient) -> None:
    customers = (await api.get("/3/customers", params={"limit": 1})).json()["Customers"][0]
    assert set(customers) == {
        "@url",
        "Address1",
        "Address2",
        "City",
        "CustomerNumber",
        "Email",
        "Name",
        "OrganisationNumber",
        "Phone",
        "ZipCode",
    }
    vouchers = (await api.get("/3/vouchers", params={"financialyear": 1})).json()["Vouchers"]
    assert vouchers and all("VoucherRows" not in v for v in vouchers)
