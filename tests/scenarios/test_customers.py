"""Customers through the running engine, in both master modes."""

from __future__ import annotations

import pytest

from tests.scenarios.conftest import Factory

pytestmark = pytest.mark.slow


def upsert(rt: object, till_id: str, name: str, **fields: str) -> dict[str, object]:
    return rt.event(  # type: ignore[attr-defined, no-any-return]
        "till.customer.upserted",
        {"till_customer_id": till_id, "customer": {"name": name, **fields}},
    )


async def _fortnox_customers(rt: object) -> dict[str, dict[str, object]]:
    data = await rt.fortnox("customers")  # type: ignore[attr-defined]
    return {c["CustomerNumber"]: c for c in data["customers"]}


async def test_fortnox_master_edits_flow_to_the_till(runtime: Factory) -> None:
    async with runtime({"customers": {"master": "fortnox"}}) as rt:
        await rt.settle()
        assert rt.till.customers["fortnox-1"]["name"] == "Anna Andersson"
        await rt.admin("PATCH", "/records/customers/1", json={"Name": "Anna Berg"})
        await rt.settle()
        assert rt.till.customers["fortnox-1"]["name"] == "Anna Berg"


async def test_fortnox_master_brings_the_whole_customer_not_the_list_view(
    runtime: Factory,
) -> None:
    """Fortnox's customer list is a subset (no Type, Phone1, CountryCode, Active): the till gets
    the customer as Fortnox holds it, not as the list shows it."""
    async with runtime({"customers": {"master": "fortnox"}}) as rt:
        await rt.settle()
        company = {
            "Name": "Bolaget AB",
            "Type": "COMPANY",
            "Phone1": "040-123456",
            "ZipCode": "211 20",
            "CountryCode": "SE",
            "OrganisationNumber": "556677-8899",
        }
        created = await rt.admin("POST", "/records/customers", json=company)
        number = created.json()["CustomerNumber"]
        await rt.settle()
        till = rt.till.customers[f"fortnox-{number}"]
        assert till["type"] == "COMPANY"
        assert (till["phone"], till["zip_code"], till["country_code"]) == (
            "040-123456",
            "211 20",
            "SE",
        )
        assert till["organisation_number"] == "556677-8899"


async def test_an_edit_outside_the_list_view_reaches_the_till(runtime: Factory) -> None:
    """Fortnox's customer list is a subset: a customer listed again with the same list item may
    have changed outside it (its Type). An incremental poll drops that item as the overlap's
    repeat; the next full pass fetches the customer whole again (it is not served from what the
    poll knew of it) and the till gets the edit."""
    async with runtime({"customers": {"master": "fortnox"}}) as rt:
        await rt.settle()
        await rt.admin("PATCH", "/records/customers/1", json={"City": "Lund"})
        await rt.settle()
        assert rt.till.customers["fortnox-1"]["city"] == "Lund"
        await rt.admin("PATCH", "/records/customers/1", json={"Type": "COMPANY"})
        await rt.settle()
        rt.force_full_sync()
        await rt.settle()
        assert rt.till.customers["fortnox-1"]["type"] == "COMPANY"


async def test_fortnox_master_overwrites_till_edits_but_creates_new_till_customers(
    runtime: Factory,
) -> None:
    async with runtime({"customers": {"master": "fortnox"}}) as rt:
        await rt.settle()
        rt.till.customers["fortnox-1"]["name"] = "Fel Namn"
        await rt.send(upsert(rt, "fortnox-1", "Fel Namn"))
        await rt.send(upsert(rt, "C77", "Ny Kund", city="Lund"))
        await rt.settle()
        assert rt.till.customers["fortnox-1"]["name"] == "Anna Andersson"
        customers = await _fortnox_customers(rt)
        assert customers["KC77"]["Name"] == "Ny Kund"
        assert customers["KC77"]["ExternalReference"] == "kassasync:C77"
        report = rt.state("report", "customer:fortnox-1")
        assert report is not None and report["kind"] == "till_edit_overwritten"


async def test_fortnox_master_customer_deleted_in_fortnox_leaves_the_till(runtime: Factory) -> None:
    async with runtime({"customers": {"master": "fortnox", "delete_missing": True}}) as rt:
        await rt.settle()
        assert "fortnox-5" in rt.till.customers
        await rt.admin("DELETE", "/records/customers/5")
        rt.force_full_sync()
        await rt.settle()
        assert "fortnox-5" not in rt.till.customers


async def test_till_master_sends_edits_and_overwrites_fortnox_edits(runtime: Factory) -> None:
    async with runtime({"customers": {"master": "till"}}) as rt:
        await rt.send(upsert(rt, "T1", "Till Kund", city="Malmö"))
        await rt.settle()
        customers = await _fortnox_customers(rt)
        assert customers["KT1"]["City"] == "Malmö"
        assert not any(k.startswith("fortnox-") for k in rt.till.customers)  # no import
        await rt.admin("PATCH", "/records/customers/KT1", json={"City": "Ystad"})
        await rt.settle()
        assert (await _fortnox_customers(rt))["KT1"]["City"] == "Malmö"
        report = rt.state("report", "customer:T1")
        assert report is not None and report["kind"] == "fortnox_edit_overwritten"


async def test_a_customer_kassasync_made_before_is_taken_back_not_made_twice(
    runtime: Factory,
) -> None:
    """Fortnox has KT9 marked for till customer T9, made by Kassasync while this state did not
    record it (a partition taken over mid-create, a restored backup), and the poll reads it before
    the till's event: T9 is linked to KT9, not created again as KT9-1."""
    async with runtime({"customers": {"master": "till"}}) as rt:
        await rt.settle()
        made = {"CustomerNumber": "KT9", "Name": "Till Kund", "ExternalReference": "kassasync:T9"}
        await rt.admin("POST", "/records/customers", json=made)
        rt.force_full_sync()
        await rt.settle()
        await rt.send(upsert(rt, "T9", "Till Kund", city="Malmö"))
        await rt.settle()
        customers = await _fortnox_customers(rt)
        assert sorted(n for n in customers if n.startswith("KT9")) == ["KT9"]
        assert customers["KT9"]["City"] == "Malmö"
        assert customers["KT9"]["ExternalReference"] == "kassasync:T9"


async def test_till_master_one_off_import_of_the_fortnox_register(runtime: Factory) -> None:
    async with runtime({"customers": {"master": "till", "import_fortnox_register": True}}) as rt:
        await rt.settle()
        assert rt.till.customers["fortnox-1"]["name"] == "Anna Andersson"
        imported = len(rt.till.customers)
        await rt.admin("POST", "/records/customers", json={"Name": "Efter Importen"})
        await rt.settle()
        assert len(rt.till.customers) == imported  # the import happened once
