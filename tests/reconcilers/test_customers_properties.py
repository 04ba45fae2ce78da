"""Customers in both master modes, over arbitrary interleavings (hypothesis): the mapping is a
bijection, the master's fields are on both sides, nobody is created twice in Fortnox."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from reconcilers import customers
from tests.reconcilers.world import World
from topics import commands as cm
from topics.settings import (
    CustomerMaster,
    CustomerSettings,
    StockSettings,
    TenantSettings,
)

TILL_IDS = ("c1", "c2", "c3")
FORTNOX_ONLY = ("F1", "F2", "F3")
VARIANTS: tuple[dict[str, Any], ...] = (
    {"name": "Anna Andersson", "email": "anna@example.se"},
    {"name": "Anna Andersson", "email": "anna@example.se", "city": "Lund"},
    {"name": "Bo Berg", "type": "COMPANY", "organisation_number": "556000-0000"},
    {"name": "Cissi Carlsson", "phone": "070-1234567"},
    {"name": "Dan Dahl", "active": False},
)

variant = st.integers(0, len(VARIANTS) - 1)
index = st.integers(0, 50)

till_upsert = st.tuples(st.just("till_upsert"), index, variant)
action = st.one_of(
    till_upsert,
    till_upsert,
    st.tuples(st.just("till_delete"), index),
    st.tuples(st.just("fx_create"), st.sampled_from(FORTNOX_ONLY), variant, st.booleans()),
    st.tuples(st.just("fx_edit"), index, variant, st.booleans()),
    st.tuples(st.just("fx_edit"), index, variant, st.booleans()),
    st.tuples(st.just("fx_delete"), index, st.booleans()),
    st.tuples(st.just("poll"), index),
    st.tuples(st.just("pass_start")),
    st.tuples(st.just("pass_step")),
    st.tuples(st.just("pass_end")),
    st.tuples(st.just("process")),
    st.tuples(st.just("process")),
    st.tuples(st.just("process")),
    st.tuples(st.just("execute"), st.sampled_from(("ok", "ok", "ok", "lost", "retrying"))),
    st.tuples(st.just("deliver")),
    st.tuples(st.just("tick"), st.integers(0, 4)),
    st.tuples(st.just("redeliver"), st.integers(0, 10_000)),
    st.tuples(st.just("redeliver"), st.integers(0, 10_000)),
)
actions_st = st.lists(action, min_size=20, max_size=60)
initial_till = st.dictionaries(st.sampled_from(TILL_IDS), variant, max_size=3)
initial_fortnox = st.dictionaries(st.sampled_from(FORTNOX_ONLY), variant, max_size=3)


def make_world(
    master: CustomerMaster, option: bool, till: dict[str, int], fortnox: dict[str, int]
) -> World:
    world = World(
        settings=TenantSettings(
            customers=CustomerSettings(
                master=master,
                import_fortnox_register=option and master is CustomerMaster.TILL,
                delete_missing=option and master is CustomerMaster.FORTNOX,
            ),
            stock=StockSettings(enabled=False),
        )
    )
    for number, v in sorted(fortnox.items()):
        world.fx_put_customer(number, VARIANTS[v], announce=False)
    for till_id, v in sorted(till.items()):
        world.till_upsert_customer(till_id, VARIANTS[v])
    return world


def _till_targets(world: World) -> list[str]:
    """The till edits its own customers, and customers it got from Fortnox."""
    imported = sorted(t for t in world.till_customers if t.startswith("fortnox-"))
    return [*TILL_IDS, *imported]


def apply(world: World, act: tuple[Any, ...]) -> None:
    name = act[0]
    if name == "till_upsert":
        targets = _till_targets(world)
        world.till_upsert_customer(targets[act[1] % len(targets)], VARIANTS[act[2]])
    elif name == "till_delete":
        if world.till_customers:
            targets = sorted(world.till_customers)
            world.till_delete_customer(targets[act[1] % len(targets)])
    elif name == "fx_create":
        if act[1] not in world.fx_customers:
            world.fx_put_customer(act[1], VARIANTS[act[2]], announce=act[3])
    elif name == "fx_edit":
        if world.fx_customers:
            numbers = sorted(world.fx_customers)
            world.fx_put_customer(numbers[act[1] % len(numbers)], VARIANTS[act[2]], act[3])
    elif name == "fx_delete":
        if world.fx_customers:
            numbers = sorted(world.fx_customers)
            world.fx_delete_customer(numbers[act[1] % len(numbers)], announce=act[2])
    elif name == "poll":
        if world.fx_customers:
            numbers = sorted(world.fx_customers)
            world.poll_customer(numbers[act[1] % len(numbers)])
    elif name in ("pass_start", "pass_step", "pass_end"):
        getattr(world, name)("customers")
    elif name == "process":
        world.process_one()
    elif name == "execute":
        world.execute_fortnox(act[1])
    elif name == "deliver":
        world.deliver_till()
    elif name == "tick":
        world.advance(float(act[1]))
        world.tick()
    elif name == "redeliver":
        world.redeliver(act[1])


def settle(world: World) -> None:
    world.process_all()
    world.pass_end("customers")
    world.full_sync_customers()
    world.quiesce()


def first_occurrences(world: World) -> list[Any]:
    seen: set[str] = set()
    out = []
    for msg in world.processed:
        if msg.id not in seen:
            seen.add(msg.id)
            out.append(msg)
    return out


def imported_numbers(world: World) -> set[str]:
    """Fortnox-only customers the reconciler saw before the first full pass completed."""
    found: set[str] = set()
    for msg in first_occurrences(world):
        if msg.type == "fortnox.sync.completed" and msg.data.resource == "customers":
            return found
        if msg.type == "fortnox.customer.changed" and msg.data.customer_number in FORTNOX_ONLY:
            found.add(msg.data.customer_number)
    return found


def check_bijection(world: World) -> dict[str, str]:
    """The live mapping till id <-> CustomerNumber, checked one-to-one both ways."""
    mapping: dict[str, str] = {}
    for till_id, rec in world.state.scan(customers.TILL):
        if rec.get("number") is not None:
            mapping[till_id] = rec["number"]
    numbers = Counter(mapping.values())
    assert all(c == 1 for c in numbers.values()), numbers
    for number, fx in world.state.scan(customers.FX):
        if fx.get("deleted") or fx.get("till_id") is None:
            continue
        assert mapping.get(fx["till_id"]) == number, (number, fx["till_id"], mapping)
    return mapping


def check_created_once(world: World) -> None:
    creates = Counter(till_id for till_id, _ in world.fx_customer_creates)
    commands: dict[str, set[str]] = {}
    for cmd in world.emitted:
        if isinstance(cmd, cm.CreateFortnoxCustomer):
            commands.setdefault(cmd.data.till_customer_id, set()).add(cmd.id)
    for till_id, count in creates.items():
        allowed = 1 + world.fx_customer_deletions[till_id]
        assert count <= allowed, (till_id, count, allowed)
    for till_id, ids in commands.items():
        allowed = 1 + world.fx_customer_deletions[till_id]
        assert len(ids) <= allowed, (till_id, ids, allowed)
    alive = Counter(
        world.fx_customer_owner[n] for n in world.fx_customers if n in world.fx_customer_owner
    )
    assert all(c == 1 for c in alive.values()), alive


def check_till_master(world: World, mapping: dict[str, str]) -> None:
    imported = (
        imported_numbers(world) if world.settings.customers.import_fortnox_register else set()
    )
    till_deleted = {
        m.data.till_customer_id for m in world.processed if m.type == "till.customer.deleted"
    }
    for number in imported:
        till_id = customers.fortnox_till_id(number)
        never_deleted = world.fx_customer_deletions[till_id] == 0 and till_id not in till_deleted
        if number in world.fx_customers and never_deleted:
            assert till_id in world.till_customers, f"{number} was not imported"
    for till_id, fields in world.till_customers.items():
        number = mapping.get(till_id)
        assert number is not None, f"till customer {till_id} has no Fortnox number"
        assert world.fx_customers.get(number) == fields, (till_id, number)
    for number, owner in world.fx_customer_owner.items():
        if number in world.fx_customers and owner not in world.till_customers:
            assert world.fx_customers[number]["active"] is False, (number, owner)
    touched = {
        cmd.data.customer_number
        for cmd in world.emitted
        if isinstance(cmd, cm.UpdateFortnoxCustomer | cm.DeactivateFortnoxCustomer)
    }
    assert not (touched & (set(FORTNOX_ONLY) - imported)), "a Fortnox-only customer was written"
    for till_id in world.till_customers:
        # An imported number used before (deleted, then made again) comes in as fortnox-N~2.
        number = till_id.removeprefix("fortnox-").partition("~")[0]
        assert till_id in TILL_IDS or number in imported, till_id


def check_fortnox_master(world: World, mapping: dict[str, str]) -> None:
    delete_missing = world.settings.customers.delete_missing
    by_number = {n: t for t, n in mapping.items()}
    for number, fields in world.fx_customers.items():
        till_id = by_number.get(number)
        assert till_id is not None, f"Fortnox customer {number} is not mapped"
        assert world.till_customers.get(till_id) == fields, (number, till_id)
    for till_id in world.till_customers:
        number = mapping.get(till_id)
        assert number is not None, f"till customer {till_id} has no Fortnox number"
        if number not in world.fx_customers:
            assert not delete_missing, f"{till_id} is not in Fortnox and delete-missing is on"
    for till_id, _ in world.fx_customer_creates:
        assert till_id in TILL_IDS, till_id
    # Fortnox is master: Kassasync never creates a customer again, whatever happens in Fortnox
    # (only the writer's retry of the one create may make it again after a deletion).
    commands = Counter(
        cmd.data.till_customer_id
        for cmd in {c.id: c for c in world.emitted}.values()
        if isinstance(cmd, cm.CreateFortnoxCustomer)
    )
    assert all(c == 1 for c in commands.values()), commands


def run_property(
    master: CustomerMaster,
    option: bool,
    till: dict[str, int],
    fortnox: dict[str, int],
    actions: list[tuple[Any, ...]],
) -> World:
    note(f"master={master!r} option={option!r} till={till!r} fortnox={fortnox!r}")
    note(f"actions={actions!r}")
    world = make_world(master, option, till, fortnox)
    for act in actions:
        apply(world, act)
        check_created_once(world)
    settle(world)
    mapping = check_bijection(world)
    check_created_once(world)
    if master is CustomerMaster.TILL:
        check_till_master(world, mapping)
    else:
        check_fortnox_master(world, mapping)
    assert not world.false_missing("customer.deleted_in_fortnox", "number")
    return world


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(option=st.booleans(), till=initial_till, fortnox=initial_fortnox, actions=actions_st)
def test_till_as_master(
    option: bool, till: dict[str, int], fortnox: dict[str, int], actions: list[tuple[Any, ...]]
) -> None:
    run_property(CustomerMaster.TILL, option, till, fortnox, actions)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(option=st.booleans(), till=initial_till, fortnox=initial_fortnox, actions=actions_st)
def test_fortnox_as_master(
    option: bool, till: dict[str, int], fortnox: dict[str, int], actions: list[tuple[Any, ...]]
) -> None:
    run_property(CustomerMaster.FORTNOX, option, till, fortnox, actions)
