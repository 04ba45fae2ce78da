"""A Fortnox record the session could not read: reported for that record, never missing."""

from __future__ import annotations

from tests.reconcilers.world import World
from topics import fortnox as fx
from topics.settings import CustomerMaster, CustomerSettings, StockSettings, TenantSettings


def unreadable(world: World, resource: str, key: str, sync_pass: str | None = None) -> None:
    world.send(
        fx.FortnoxRecordUnreadable,
        data={
            "resource": resource,
            "key": key,
            "problem": "Fortnox's record has values Kassasync cannot read (CustomerNumber)",
            "observed": {"via": "full_sync", "seq": world.seq(), "sync_pass": sync_pass},
        },
    )


def test_an_unreadable_customer_in_a_pass_is_reported_and_not_deleted_from_the_till() -> None:
    world = World(
        settings=TenantSettings(
            customers=CustomerSettings(master=CustomerMaster.FORTNOX, delete_missing=True),
            stock=StockSettings(enabled=False),
        )
    )
    world.fx_put_customer("F1", {"name": "Anna Andersson"})
    world.fx_put_customer("F2", {"name": "Bo Berg"})
    world.quiesce()
    assert set(world.till_customers) == {"fortnox-F1", "fortnox-F2"}
    world.fx_delete_customer("F2", announce=False)  # only a pass can tell
    unreadable(world, "customers", "F1", "p-c")
    world.send(
        fx.FortnoxSyncCompleted, data={"resource": "customers", "sync_pass": "p-c", "count": 1}
    )
    world.quiesce()
    assert set(world.till_customers) == {"fortnox-F1"}
    report = world.state.get("report", "customer:fortnox-F1")
    assert report is not None and report["kind"] == "fortnox_record_unreadable"


def test_an_unreadable_payment_is_reported() -> None:
    world = World(settings=TenantSettings(stock=StockSettings(enabled=False)))
    unreadable(world, "payments", "7")
    world.quiesce()
    report = world.state.get("report", "payment:7")
    assert report is not None and "CustomerNumber" in report["problem"]
    assert [n.fields["key"] for n in world.notes_named("fortnox.record_unreadable")] == ["7"]
