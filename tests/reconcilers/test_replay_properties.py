"""Across all flows at once (hypothesis): replaying a log into an empty store gives the same
state and the same commands; redelivering any message changes nothing; switching the customer
master mode converges to the new master's invariants."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from reconcilers.dispatch import reconcile
from reconcilers.state import MemoryState
from tests.reconcilers import test_articles_properties as arts
from tests.reconcilers import test_customers_properties as custs
from tests.reconcilers.test_invoices_payments_ledger import payment, voucher
from tests.reconcilers.test_zreports import ACCOUNTS, master, worked_example
from tests.reconcilers.world import World
from topics import outcomes as oc
from topics.envelope import Envelope
from topics.settings import (
    CustomerMaster,
    CustomerSettings,
    InvoiceSettings,
    LedgerSettings,
    PaymentSettings,
    TenantSettings,
    ZReportSettings,
)

other = st.one_of(
    st.tuples(st.just("sale"), st.sampled_from(arts.NUMBERS), st.integers(-3, 3)),
    st.tuples(st.just("fx_sale"), st.sampled_from(arts.NUMBERS), st.integers(-3, 3)),
    st.tuples(st.just("invoice"), st.integers(0, 2), st.sampled_from(custs.TILL_IDS)),
    st.tuples(st.just("zreport"), st.integers(1, 3), st.integers(0, 2)),
    st.tuples(st.just("payment"), st.sampled_from(("p1", "p2")), st.integers(990, 1010)),
    st.tuples(st.just("payment_deleted"), st.sampled_from(("p1", "p2"))),
    st.tuples(st.just("voucher"), st.booleans()),
    st.tuples(st.just("master_data")),
    st.tuples(st.just("export")),
    st.tuples(st.just("pause")),
    st.tuples(st.just("resume")),
)
mixed_action = st.one_of(
    st.tuples(st.just("a"), arts.action),
    st.tuples(st.just("c"), custs.action),
    st.tuples(st.just("o"), other),
)


def mixed_world(master_mode: CustomerMaster) -> World:
    world = World(
        settings=TenantSettings(
            customers=CustomerSettings(
                master=master_mode, delete_missing=master_mode is CustomerMaster.FORTNOX
            ),
            zreports=ZReportSettings(enabled=True, accounts=ACCOUNTS, cost_center="100"),
            invoices=InvoiceSettings(enabled=True),
            payments=PaymentSettings(enabled=True, ignore_invoice_below=1000),
            ledger=LedgerSettings(enabled=True),
        )
    )
    world.master_data(master())
    return world


def apply_mixed(world: World, act: tuple[Any, ...], fresh: list[int]) -> None:
    kind, inner = act
    if kind == "a":
        arts.apply(world, inner, fresh)
        if inner[0] == "put":
            # Stock goods here, so stock runs along with everything else.
            world.fx_articles[inner[1]].stock_goods = True
    elif kind == "c":
        custs.apply(world, inner)
    else:
        apply_other(world, inner)


def apply_other(world: World, act: tuple[Any, ...]) -> None:
    name = act[0]
    if name == "sale" and act[1] in world.fx_articles and act[2]:
        world.till_sale(act[1], Decimal(act[2]))
    elif name == "fx_sale" and act[1] in world.fx_articles and act[2]:
        world.fortnox_sale(act[1], Decimal(act[2]))
        world.poll(act[1])
    elif name == "invoice":
        world.till_invoice(f"i{act[1]}", act[2])
    elif name == "zreport":
        day = dt.date(2025, 3, 10 + act[2])
        world.till_zreport(worked_example(z_number=act[1], business_date=day))
    elif name == "payment":
        if world.state.get("pay", act[1]) is None or act[1] in world.fx_payments:
            world.fx_put_payment(payment(act[1], act[2]))
    elif name == "payment_deleted":
        world.fx_delete_payment(act[1])
    elif name == "voucher":
        world.fx_voucher(voucher(["f1"] if act[1] else []))
    elif name == "master_data":
        world.master_data(master())
    elif name == "export":
        world.send(
            oc.ExportRequested,
            data={"from_date": dt.date(2025, 3, 1), "to_date": dt.date(2025, 3, 31)},
        )
    elif name == "pause":
        world.send(
            oc.TenantPaused,
            data={"error": {"kind": "login_expired", "message": "expired", "fix": "log in"}},
        )
    elif name == "resume":
        world.send(oc.TenantResumed)


def mixed_run(master_mode: CustomerMaster, actions: list[tuple[Any, ...]]) -> World:
    """A world after ``actions`` of every flow, resumed and quiet: its log is ``processed``."""
    world = mixed_world(master_mode)
    fresh = [0]
    for act in actions:
        apply_mixed(world, act, fresh)
    world.send(oc.TenantResumed)
    world.quiesce()
    return world


def replay(messages: list[Envelope]) -> tuple[MemoryState, list[str]]:
    state = MemoryState()
    commands: list[str] = []
    for msg in messages:
        decision = reconcile(state, msg)
        state.apply(decision)
        commands.extend(c.model_dump_json() for c in decision.commands)
    return state, commands


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    master_mode=st.sampled_from(list(CustomerMaster)),
    actions=st.lists(mixed_action, min_size=20, max_size=60),
)
def test_replaying_the_log_into_an_empty_store_gives_the_same_state_and_commands(
    master_mode: CustomerMaster, actions: list[tuple[Any, ...]]
) -> None:
    note(f"master_mode={master_mode!r} actions={actions!r}")
    world = mixed_run(master_mode, actions)
    state, commands = replay(world.processed)
    assert state.records == world.state.records
    assert commands == [c.model_dump_json() for c in world.emitted]
    again, commands_again = replay(world.processed)
    assert again.records == state.records and commands_again == commands


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    master_mode=st.sampled_from(list(CustomerMaster)),
    actions=st.lists(mixed_action, min_size=20, max_size=60),
)
def test_redelivering_any_message_of_any_flow_changes_nothing(
    master_mode: CustomerMaster, actions: list[tuple[Any, ...]]
) -> None:
    """At rest, every message handled again (outcomes, settings, master data, pauses, Fortnox
    records, till events, completions...) leaves state as it is and emits no command."""
    note(f"master_mode={master_mode!r} actions={actions!r}")
    world = mixed_world(master_mode)
    fresh = [0]
    for act in actions:
        apply_mixed(world, act, fresh)
    world.send(oc.TenantResumed)
    world.quiesce()
    before = dict(world.state.records)
    for msg in list(world.processed):
        if msg.type == "sync.tick":  # type: ignore[attr-defined]
            continue  # a tick is time passing, not a fact: it is never redelivered as one
        decision = reconcile(world.state, msg)
        assert not decision.commands, (msg, decision.commands)
        world.state.apply(decision)
        changed = {
            k
            for k in set(before) | set(world.state.records)
            if before.get(k) != world.state.records.get(k)
        }
        assert not changed, (msg.id, msg.type, sorted(changed))  # type: ignore[attr-defined]


flip = st.tuples(st.just("flip"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.sampled_from(list(CustomerMaster)),
    till=custs.initial_till,
    fortnox=custs.initial_fortnox,
    actions=st.lists(st.one_of(custs.action, flip), min_size=20, max_size=60),
)
def test_switching_the_master_mode_converges_to_the_new_masters_rules(
    start: CustomerMaster,
    till: dict[str, int],
    fortnox: dict[str, int],
    actions: list[tuple[Any, ...]],
) -> None:
    note(f"start={start!r} till={till!r} fortnox={fortnox!r} actions={actions!r}")
    world = custs.make_world(start, False, till, fortnox)
    for act in actions:
        if act[0] == "flip":
            current = world.settings.customers.master
            new = CustomerMaster.FORTNOX if current is CustomerMaster.TILL else CustomerMaster.TILL
            world.change_settings(
                world.settings.model_copy(update={"customers": CustomerSettings(master=new)})
            )
        else:
            custs.apply(world, act)
    custs.settle(world)
    mapping = custs.check_bijection(world)
    custs.check_created_once(world)
    if world.settings.customers.master is CustomerMaster.FORTNOX:
        by_number = {n: t for t, n in mapping.items()}
        for number, fields in world.fx_customers.items():
            till_id = by_number.get(number)
            assert till_id is not None and world.till_customers.get(till_id) == fields, number
        for till_id in world.till_customers:
            assert mapping.get(till_id) is not None, till_id
    else:
        for till_id, fields in world.till_customers.items():
            number = mapping.get(till_id)
            assert number is not None, till_id
            assert world.fx_customers.get(number) == fields, (till_id, number)
