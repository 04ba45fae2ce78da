"""Customers: one test per rule of each master mode and per bug the properties found."""

from __future__ import annotations

from typing import Any

from reconcilers import customers
from tests.reconcilers.world import World
from topics import commands as cm
from topics.settings import CustomerMaster, CustomerSettings, StockSettings, TenantSettings

ANNA = {"name": "Anna Andersson", "email": "anna@example.se"}
ANNA_2 = {"name": "Anna Andersson", "email": "anna@example.se", "city": "Lund"}
BO = {"name": "Bo Berg"}
BO_2 = {"name": "Bo Berg", "city": "Umeå"}


def world_for(master: CustomerMaster, **options: Any) -> World:
    return World(
        settings=TenantSettings(
            customers=CustomerSettings(master=master, **options),
            stock=StockSettings(enabled=False),
        )
    )


def fields(value: dict[str, Any]) -> dict[str, Any]:
    from topics.till import CustomerFields

    return CustomerFields.model_validate(value).model_dump(mode="json")


def report(world: World, till_id: str) -> dict[str, Any]:
    found = world.state.get("report", f"customer:{till_id}")
    assert found is not None
    return found


def creates(world: World) -> list[str]:
    unique = {c.id: c for c in world.emitted if isinstance(c, cm.CreateFortnoxCustomer)}
    return sorted(c.data.till_customer_id for c in unique.values())


# --- till as master ------------------------------------------------------------------------------


def test_till_master_creates_updates_overwrites_and_deactivates() -> None:
    world = world_for(CustomerMaster.TILL)
    world.till_upsert_customer("c1", ANNA)
    world.quiesce()
    assert world.fx_customers == {"Kc1": fields(ANNA)}
    world.till_upsert_customer("c1", ANNA_2)
    world.quiesce()
    assert world.fx_customers["Kc1"] == fields(ANNA_2)
    world.fx_put_customer("Kc1", BO)  # someone edits the customer in Fortnox
    world.quiesce()
    assert world.fx_customers["Kc1"] == fields(ANNA_2), "the till's fields overwrite it"
    assert report(world, "c1")["kind"] == "fortnox_edit_overwritten"
    assert "c1" in world.till_customers and world.till_customers["c1"] == fields(ANNA_2)
    world.till_delete_customer("c1")
    world.quiesce()
    assert world.fx_customers["Kc1"]["active"] is False
    assert creates(world) == ["c1"]


def test_till_master_recreates_a_customer_fortnox_deleted() -> None:
    world = world_for(CustomerMaster.TILL)
    world.till_upsert_customer("c1", ANNA)
    world.quiesce()
    world.fx_delete_customer("Kc1")
    world.quiesce()
    assert world.fx_customers == {"Kc1-1": fields(ANNA)}
    assert world.state.get(customers.TILL, "c1")["number"] == "Kc1-1"  # type: ignore[index]


def test_a_till_edit_while_the_create_is_in_flight_reaches_fortnox() -> None:
    """The create carried the first fields; the answer must not make Kassasync believe Fortnox
    has the later ones (it used to, and the edit never reached Fortnox)."""
    world = world_for(CustomerMaster.TILL)
    world.till_upsert_customer("c1", ANNA)
    world.process_all()
    world.advance(10)
    world.tick()
    world.process_all()
    world.till_upsert_customer("c1", ANNA_2)
    world.process_all()
    world.execute_fortnox()
    world.process_all()
    world.advance(10)
    world.tick()
    world.process_all()
    updates = [c for c in world.fx_queue if isinstance(c, cm.UpdateFortnoxCustomer)]
    assert [u.data.customer.city for u in updates] == ["Lund"], "sent without waiting for a poll"
    world.quiesce()
    assert world.fx_customers["Kc1"] == fields(ANNA_2)


def test_import_brings_the_fortnox_register_in_once_during_the_first_pass() -> None:
    world = world_for(CustomerMaster.TILL, import_fortnox_register=True)
    world.fx_put_customer("F1", ANNA, announce=False)
    world.fx_put_customer("F2", BO, announce=False)
    world.full_sync_customers()
    world.quiesce()
    assert world.till_customers == {"fortnox-F1": fields(ANNA), "fortnox-F2": fields(BO)}
    world.fx_put_customer("F3", ANNA_2)  # after the import: the till is master, not taken
    world.fx_put_customer("F1", ANNA_2)  # a Fortnox edit of an imported customer: overwritten
    world.quiesce()
    assert set(world.till_customers) == {"fortnox-F1", "fortnox-F2"}
    assert world.fx_customers["F1"] == fields(ANNA)
    assert report(world, "fortnox-F1")["kind"] == "fortnox_edit_overwritten"
    world.till_upsert_customer("fortnox-F2", BO_2)  # from now on the till owns it
    world.quiesce()
    assert world.fx_customers["F2"] == fields(BO_2)
    assert not creates(world)


def test_without_the_import_fortnox_only_customers_are_left_alone() -> None:
    world = world_for(CustomerMaster.TILL)
    world.fx_put_customer("F1", ANNA)
    world.full_sync_customers()
    world.quiesce()
    assert not world.till_customers
    assert not [c for c in world.emitted if c.TOPIC == "fortnox.commands"]  # type: ignore[attr-defined]


def test_turning_the_import_on_later_imports_customers_seen_before() -> None:
    world = world_for(CustomerMaster.TILL)
    world.fx_put_customer("F1", ANNA)
    world.quiesce()  # seen and ignored
    world.change_settings(
        world.settings.model_copy(
            update={
                "customers": CustomerSettings(
                    master=CustomerMaster.TILL, import_fortnox_register=True
                )
            }
        )
    )
    world.full_sync_customers()
    world.quiesce()
    assert world.till_customers == {"fortnox-F1": fields(ANNA)}


# --- Fortnox as master ---------------------------------------------------------------------------


def test_fortnox_master_edits_flow_to_the_till_and_till_edits_are_overwritten() -> None:
    world = world_for(CustomerMaster.FORTNOX)
    world.fx_put_customer("F1", ANNA)
    world.quiesce()
    assert world.till_customers == {"fortnox-F1": fields(ANNA)}
    world.fx_put_customer("F1", ANNA_2)
    world.quiesce()
    assert world.till_customers["fortnox-F1"] == fields(ANNA_2)
    world.till_upsert_customer("fortnox-F1", BO)
    world.quiesce()
    assert world.till_customers["fortnox-F1"] == fields(ANNA_2)
    assert world.fx_customers["F1"] == fields(ANNA_2)
    assert report(world, "fortnox-F1")["kind"] == "till_edit_overwritten"
    world.till_delete_customer("fortnox-F1")
    world.quiesce()
    assert world.till_customers["fortnox-F1"] == fields(ANNA_2)
    assert report(world, "fortnox-F1")["kind"] == "till_delete_overwritten"


def test_fortnox_master_a_new_till_customer_is_created_in_fortnox_once() -> None:
    world = world_for(CustomerMaster.FORTNOX)
    world.till_upsert_customer("c1", ANNA)
    world.process_all()
    world.advance(10)
    world.tick()
    world.process_all()
    world.execute_fortnox("lost")  # committed, answer lost: the writer runs it again
    world.quiesce()
    assert world.fx_customer_creates == [("c1", "Kc1")]
    world.till_upsert_customer("c1", ANNA_2)  # now Fortnox is master for c1 too
    world.quiesce()
    assert world.fx_customers["Kc1"] == fields(ANNA)
    assert world.till_customers["c1"] == fields(ANNA)


def test_fortnox_master_a_till_delete_during_the_create_is_overwritten() -> None:
    world = world_for(CustomerMaster.FORTNOX)
    world.till_upsert_customer("c1", ANNA)
    world.process_all()
    world.advance(10)
    world.tick()
    world.process_all()
    world.till_delete_customer("c1")
    world.quiesce()
    assert world.till_customers == {"c1": fields(ANNA)}, "Fortnox has it: the till gets it back"


def _created_earlier(world: World, till_id: str, number: str, value: dict[str, Any]) -> None:
    """Kassasync created ``number`` for ``till_id`` (its mark is in Fortnox), but this state
    never recorded it: a Kafka partition taken over before the create's answer was journalled,
    then the poll that sees the customer read before the till's event."""
    world.fx_customer_owner[number] = till_id
    world.fx_put_customer(number, value)
    world.process_all()


def test_a_customer_created_for_a_till_customer_is_taken_back_not_created_again() -> None:
    world = world_for(CustomerMaster.TILL)
    _created_earlier(world, "c1", "Kc1", ANNA)
    world.till_upsert_customer("c1", ANNA_2)
    world.quiesce()
    assert set(world.fx_customers) == {"Kc1"}, "no second customer Kc1-1"
    assert world.state.get(customers.TILL, "c1")["number"] == "Kc1"  # type: ignore[index]
    assert world.fx_customers["Kc1"] == fields(ANNA_2), "the till's later fields reach it"
    assert not world.till_customers.keys() - {"c1"}


def test_fortnox_master_brings_a_marked_customer_into_the_till_under_its_own_id() -> None:
    world = world_for(CustomerMaster.FORTNOX)
    _created_earlier(world, "c1", "Kc1", ANNA)
    world.quiesce()
    assert world.till_customers == {"c1": fields(ANNA)}, "not as a second till customer"
    world.till_upsert_customer("c1", ANNA_2)
    world.quiesce()
    assert set(world.fx_customers) == {"Kc1"} and world.till_customers["c1"] == fields(ANNA)


def test_a_number_someone_else_holds_is_still_passed_over() -> None:
    world = world_for(CustomerMaster.TILL)
    _created_earlier(world, "c9", "Kc1", BO)  # Kassasync's mark for another till customer
    world.fx_put_customer("F1", BO)  # and a user's own customer, no mark
    world.till_upsert_customer("c1", ANNA)
    world.quiesce()
    assert world.state.get(customers.TILL, "c1")["number"] == "Kc1-1"  # type: ignore[index]
    assert world.fx_customers["Kc1"] == fields(BO), "the other customer's record is untouched"


def test_delete_missing_removes_till_customers_fortnox_no_longer_has() -> None:
    for delete_missing in (False, True):
        world = world_for(CustomerMaster.FORTNOX, delete_missing=delete_missing)
        world.fx_put_customer("F1", ANNA)
        world.fx_put_customer("F2", BO)
        world.quiesce()
        world.fx_delete_customer("F1")
        world.fx_delete_customer("F2", announce=False)
        world.full_sync_customers()
        world.quiesce()
        if delete_missing:
            assert not world.till_customers
        else:
            assert set(world.till_customers) == {"fortnox-F1", "fortnox-F2"}
            assert report(world, "fortnox-F1")["kind"] == "not_in_fortnox"
        assert not creates(world), "a customer Fortnox deleted is not created again"


def test_delete_missing_never_deletes_a_new_till_customer_waiting_to_be_created() -> None:
    world = world_for(CustomerMaster.FORTNOX, delete_missing=True)
    world.till_upsert_customer("c1", ANNA)
    world.process_all()
    world.full_sync_customers()  # completes before c1's flush window
    world.quiesce()
    assert world.till_customers == {"c1": fields(ANNA)}
    assert world.fx_customers == {"Kc1": fields(ANNA)}


def test_a_till_edit_crossing_our_write_to_the_till_is_resolved() -> None:
    """Found by the customers property: the till edits a customer while Fortnox's version is on
    its way to the till; after it lands the till has Fortnox's version, and so must we."""
    world = world_for(CustomerMaster.FORTNOX)
    world.till_upsert_customer("c1", ANNA)
    world.quiesce()
    world.till_delete_customer("c1")
    world.process_all()
    world.advance(10)
    world.tick()
    world.process_all()  # Fortnox's version goes to the till again...
    world.till_upsert_customer("c1", ANNA_2)  # ...while the till edits it
    world.fx_put_customer("Kc1", ANNA_2, announce=False)  # and Fortnox gets the same edit
    world.quiesce()
    assert world.till_customers["c1"] == world.fx_customers["Kc1"] == fields(ANNA_2)


# --- passes, redeliveries, settings ------------------------------------------------------------


def test_a_poll_or_our_own_create_during_a_pass_is_not_missing() -> None:
    world = world_for(CustomerMaster.FORTNOX, delete_missing=True)
    world.fx_put_customer("X1", ANNA)
    world.fx_put_customer("X2", BO)
    world.quiesce()
    world.pass_start("customers")
    world.pass_step("customers")  # X1
    world.poll_customer("X1")  # read again outside the pass
    world.till_upsert_customer("c1", ANNA_2)
    world.process_all()
    world.advance(10)
    world.tick()
    world.process_all()
    world.execute_fortnox()  # Kc1 is created behind the pass's cursor: the pass never lists it
    world.process_all()
    world.pass_end("customers")
    world.quiesce()
    assert set(world.till_customers) == {"fortnox-X1", "fortnox-X2", "c1"}
    assert not world.notes_named("customer.deleted_in_fortnox")


def test_an_older_till_event_redelivered_does_not_undo_a_newer_one() -> None:
    world = world_for(CustomerMaster.TILL)
    world.till_upsert_customer("c1", ANNA)
    world.quiesce()
    first = next(m for m in world.processed if m.type == "till.customer.upserted")  # type: ignore[attr-defined]
    world.till_upsert_customer("c1", ANNA_2)
    world.quiesce()
    world.handle(first)
    world.quiesce()
    assert world.fx_customers["Kc1"] == fields(ANNA_2)


def test_an_older_settings_message_redelivered_does_not_switch_the_master_back() -> None:
    world = world_for(CustomerMaster.TILL)
    old = world.processed[0]
    world.change_settings(
        world.settings.model_copy(
            update={"customers": CustomerSettings(master=CustomerMaster.FORTNOX)}
        )
    )
    world.process_all()
    world.handle(old)
    world.fx_put_customer("F1", ANNA)
    world.quiesce()
    assert world.till_customers == {"fortnox-F1": fields(ANNA)}


def test_switching_to_fortnox_as_master_brings_in_fortnox_only_customers() -> None:
    world = world_for(CustomerMaster.TILL)
    world.fx_put_customer("F1", ANNA)
    world.till_upsert_customer("c1", BO)
    world.quiesce()
    world.change_settings(
        world.settings.model_copy(
            update={"customers": CustomerSettings(master=CustomerMaster.FORTNOX)}
        )
    )
    world.quiesce()
    assert world.till_customers == {"fortnox-F1": fields(ANNA), "c1": fields(BO)}
    assert world.fx_customers == {"F1": fields(ANNA), "Kc1": fields(BO)}


def test_two_stores_with_different_settings_do_not_share_them() -> None:
    """The settings cache once keyed settings by (tenant, revision): a second store at the same
    revision got the first store's settings."""
    one = world_for(CustomerMaster.TILL)
    one.fx_put_customer("F1", ANNA)
    one.quiesce()
    two = world_for(CustomerMaster.FORTNOX)
    two.fx_put_customer("F1", ANNA)
    two.quiesce()
    assert not one.till_customers
    assert two.till_customers == {"fortnox-F1": fields(ANNA)}


def test_till_master_a_customer_created_behind_a_pass_is_not_created_again() -> None:
    """Kafka's chaos run: the create's outcome was applied before the records of a pass that had
    read its page before the create (they travel on different topics), the pass took the new
    customer for missing, and the till being master, it was created again as Kc1-1."""
    world = world_for(CustomerMaster.TILL)
    world.till_upsert_customer("c2", BO)
    world.quiesce()
    world.pass_start("customers")
    world.pass_step("customers")  # Kc2: the pass's cursor is past where Kc1 will be
    world.till_upsert_customer("c1", ANNA)
    world.process_all()
    world.advance(10)
    world.tick()
    world.process_all()
    world.execute_fortnox()  # Kc1 is created; its outcome reaches the log before the pass
    world.process_all()
    world.pass_end("customers")
    world.quiesce()
    assert sorted(world.fx_customers) == ["Kc1", "Kc2"]
    assert world.fx_customer_creates == [("c2", "Kc2"), ("c1", "Kc1")]
    assert not world.notes_named("customer.deleted_in_fortnox")
    # The next pass lists it: nothing was lost by not proving it missing.
    world.full_sync_customers()
    world.quiesce()
    assert sorted(world.fx_customers) == ["Kc1", "Kc2"]
    assert not world.notes_named("customer.deleted_in_fortnox")


def test_a_pass_still_proves_missing_what_was_deleted_before_it_began() -> None:
    world = world_for(CustomerMaster.FORTNOX, delete_missing=True)
    world.fx_put_customer("X1", ANNA)
    world.fx_put_customer("X2", BO)
    world.quiesce()
    world.fx_delete_customer("X2", announce=False)  # nobody tells Kassasync
    world.full_sync_customers()
    world.quiesce()
    assert set(world.till_customers) == {"fortnox-X1"}
    assert [n.fields["number"] for n in world.notes_named("customer.deleted_in_fortnox")] == ["X2"]


def test_a_customer_deleted_before_a_pass_is_missing_whenever_its_create_outcome_arrives() -> None:
    """The create's outcome lags (on Kafka it travels on another topic) and is applied between
    the records of a pass that began after the customer was deleted in Fortnox: the pass still
    proves it missing (the till being master, it is created again), as in log order."""
    for outcome_between_the_pass_records in (False, True):
        world = world_for(CustomerMaster.TILL)
        world.till_upsert_customer("c2", BO)
        world.quiesce()
        world.till_upsert_customer("c1", ANNA)
        world.process_all()
        world.advance(10)
        world.tick()
        world.process_all()
        world.execute_fortnox()  # Kc1 is created; its outcome is the last message on the log
        outcome = world.log.pop()
        world.fx_delete_customer("Kc1", announce=False)  # deleted before the pass begins
        world.full_sync_customers()  # does not list Kc1
        if outcome_between_the_pass_records:
            world.log.insert(len(world.log) - 1, outcome)  # just before the completion
        else:
            world.log.appendleft(outcome)
        world.quiesce()
        missing = [n.fields["number"] for n in world.notes_named("customer.deleted_in_fortnox")]
        assert missing == ["Kc1"], outcome_between_the_pass_records
        assert sorted(world.fx_customers) == ["Kc1-1", "Kc2"]
