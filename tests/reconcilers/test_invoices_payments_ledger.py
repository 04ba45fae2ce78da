"""Invoices -> orders (customer first, terms checked, never twice), payments -> back office
(filters, idempotent, changes, deletions) and ledger vouchers (once per voucher)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from reconcilers import invoices, payments
from tests.reconcilers.world import World
from topics import commands as cm
from topics.errors import ErrorKind
from topics.fortnox import FortnoxPayment, FortnoxVoucher, MasterData, VoucherRowInfo
from topics.settings import (
    CustomerMaster,
    CustomerSettings,
    InvoiceSettings,
    LedgerSettings,
    PaymentSettings,
    StockSettings,
    TenantSettings,
)

ANNA = {"name": "Anna Andersson", "email": "anna@example.se"}
ANNA_MOVED = {"name": "Anna Andersson", "email": "anna@example.se", "city": "Malmö"}


def invoice_world(
    master: CustomerMaster = CustomerMaster.TILL, terms: str | None = None, **invoice: Any
) -> World:
    world = World(
        settings=TenantSettings(
            customers=CustomerSettings(master=master),
            invoices=InvoiceSettings(enabled=True, terms_of_payment=terms, **invoice),
            stock=StockSettings(enabled=False),
        )
    )
    world.master_data(MasterData(terms_of_payment=["30", "10"]))
    world.process_all()
    return world


def orders(world: World) -> list[cm.CreateFortnoxOrder]:
    unique = {c.id: c for c in world.emitted if isinstance(c, cm.CreateFortnoxOrder)}
    return list(unique.values())


def inv(world: World, invoice_id: str) -> dict[str, Any]:
    found = world.state.get(invoices.KIND, invoice_id)
    assert found is not None
    return found


# --- invoices ------------------------------------------------------------------------------------


@pytest.mark.parametrize("master", list(CustomerMaster))
def test_a_new_till_customer_is_created_first_then_the_order(master: CustomerMaster) -> None:
    world = invoice_world(master)
    world.till_upsert_customer("c1", ANNA)
    world.till_invoice("i1", "c1")
    world.process_all()
    assert not orders(world), "no order before the customer is in Fortnox"
    assert inv(world, "i1")["status"] == "waiting"
    world.quiesce()
    kinds = [c.type for c in world.emitted if c.TOPIC == "fortnox.commands"]  # type: ignore[attr-defined]
    assert kinds == ["fortnox.customer.create", "fortnox.order.create"]
    assert [r["customer"] for r in world.fx_order_rows] == ["Kc1"]
    assert inv(world, "i1")["status"] == "done"
    assert world.fx_customer_creates == [("c1", "Kc1")]


def test_an_invoice_for_a_customer_the_till_has_not_sent_waits_for_it() -> None:
    world = invoice_world()
    world.till_invoice("i1", "c9")
    world.quiesce()
    assert inv(world, "i1")["status"] == "waiting"
    assert "c9" in inv(world, "i1")["waiting_for"]
    world.till_upsert_customer("c9", ANNA)
    world.quiesce()
    assert inv(world, "i1")["status"] == "done"
    assert [r["customer"] for r in world.fx_order_rows] == ["Kc9"]


def test_an_existing_customer_is_used_at_once_and_pending_changes_go_first() -> None:
    """Till-as-master: a change to the customer still in the flush window is written before
    the order, so the order carries the customer's current details."""
    world = invoice_world()
    world.till_upsert_customer("c1", ANNA)
    world.quiesce()
    world.till_upsert_customer("c1", ANNA_MOVED)
    world.till_invoice("i1", "c1")
    world.process_all()
    kinds = [c.type for c in world.fx_queue]  # type: ignore[attr-defined]
    assert kinds == ["fortnox.customer.update", "fortnox.order.create"]
    world.quiesce()
    assert world.fx_customers["Kc1"]["city"] == "Malmö"


def test_terms_of_payment_are_checked_against_fortnox_and_the_order_goes_when_fixed() -> None:
    world = invoice_world(terms="30")
    world.till_upsert_customer("c1", ANNA)
    world.till_invoice("i1", "c1", terms_of_payment="60")
    world.quiesce()
    record = inv(world, "i1")
    assert record["status"] == "waiting"
    assert record["error"]["kind"] == ErrorKind.TERMS_OF_PAYMENT_MISSING.value
    assert '"60"' in record["error"]["message"]
    assert not orders(world)
    world.master_data(MasterData(terms_of_payment=["30", "60"]))
    world.quiesce()
    assert inv(world, "i1")["status"] == "done"
    assert orders(world)[0].data.terms_of_payment == "60"


def test_the_tenants_terms_apply_and_wait_for_master_data() -> None:
    world = World(
        settings=TenantSettings(
            invoices=InvoiceSettings(enabled=True, terms_of_payment="10"),
            stock=StockSettings(enabled=False),
        )
    )
    world.till_upsert_customer("c1", ANNA)
    world.till_invoice("i1", "c1")
    world.quiesce()
    assert inv(world, "i1")["waiting_for"] == "Fortnox master data"
    world.master_data(MasterData(terms_of_payment=["10"]))
    world.quiesce()
    assert orders(world)[0].data.terms_of_payment == "10"


def test_an_invoice_before_the_start_date_or_while_off_is_sent_when_settings_include_it() -> None:
    world = invoice_world(start_date=dt.date(2026, 4, 1))
    world.till_upsert_customer("c1", ANNA)
    world.till_invoice("i1", "c1")
    world.quiesce()
    assert inv(world, "i1")["status"] == "before_start"
    world.change_settings(
        world.settings.model_copy(update={"invoices": InvoiceSettings(enabled=False)})
    )
    world.till_invoice("i2", "c1")
    world.quiesce()
    assert inv(world, "i2")["status"] == "disabled"
    world.change_settings(
        world.settings.model_copy(update={"invoices": InvoiceSettings(enabled=True)})
    )
    world.quiesce()
    assert sorted(o.data.invoice_id for o in orders(world)) == ["i1", "i2"]


def test_fortnox_as_master_an_invoice_for_a_customer_deleted_in_fortnox_waits() -> None:
    world = invoice_world(CustomerMaster.FORTNOX)
    world.fx_put_customer("F1", ANNA)
    world.quiesce()
    world.fx_delete_customer("F1")
    world.till_invoice("i1", "fortnox-F1")
    world.quiesce()
    assert "deleted in Fortnox" in inv(world, "i1")["waiting_for"]
    assert not orders(world) and not world.fx_customer_creates


def test_a_rejected_create_of_the_customer_holds_the_invoice_with_the_reason() -> None:
    world = invoice_world()
    world.till_upsert_customer("c1", ANNA)
    world.till_invoice("i1", "c1")
    world.process_all()
    world.advance(10)
    world.tick()
    world.process_all()
    cmd = world.fx_queue.popleft()
    error = {"kind": "fortnox_rejected", "message": "Fortnox rejected: bad email", "fix": "fix"}
    world.send_outcome(cmd, "rejected", error=error)
    world.quiesce()
    record = inv(world, "i1")
    assert record["status"] == "waiting" and record["error"]["message"].endswith("bad email")
    assert not world.fx_customer_creates
    world.till_upsert_customer("c1", ANNA_MOVED)  # the shop fixes the customer in the till
    world.quiesce()
    assert inv(world, "i1")["status"] == "done"


invoice_action = st.one_of(
    st.tuples(st.just("invoice"), st.integers(0, 3), st.integers(0, 2)),
    st.tuples(st.just("customer"), st.integers(0, 2)),
    st.tuples(st.just("process")),
    st.tuples(st.just("process")),
    st.tuples(st.just("execute"), st.sampled_from(("ok", "ok", "lost", "retrying"))),
    st.tuples(st.just("tick"), st.integers(0, 4)),
    st.tuples(st.just("redeliver"), st.integers(0, 10_000)),
    st.tuples(st.just("redeliver"), st.integers(0, 10_000)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    master=st.sampled_from(list(CustomerMaster)),
    actions=st.lists(invoice_action, min_size=10, max_size=50),
)
def test_never_two_orders_for_one_invoice_and_never_before_the_customer(
    master: CustomerMaster, actions: list[tuple[Any, ...]]
) -> None:
    note(f"master={master!r} actions={actions!r}")
    world = invoice_world(master)
    sent: dict[str, str] = {}
    for act in actions:
        if act[0] == "invoice":
            invoice_id, till_id = f"i{act[1]}", f"c{act[2]}"
            sent.setdefault(invoice_id, till_id)
            world.till_invoice(invoice_id, sent[invoice_id])
        elif act[0] == "customer":
            world.till_upsert_customer(f"c{act[1]}", ANNA)
        elif act[0] == "process":
            world.process_one()
        elif act[0] == "execute":
            world.execute_fortnox(act[1])
        elif act[0] == "tick":
            world.advance(float(act[1]))
            world.tick()
        else:
            world.redeliver(act[1])
    for till_id in set(sent.values()):
        world.till_upsert_customer(till_id, ANNA)
    world.quiesce()
    per_invoice = [o.data.invoice_id for o in orders(world)]
    assert sorted(per_invoice) == sorted(sent), "exactly one order per invoice"
    assert len(world.fx_orders) == len(sent)
    for row in world.fx_order_rows:
        invoice_id = row["cmd"].data.invoice_id
        assert world.fx_customer_owner[row["customer"]] == sent[invoice_id]
    assert all(inv(world, i)["status"] == "done" for i in sent)


# --- payments ------------------------------------------------------------------------------------


def payment(number: str, invoice: int, amount: str = "100.00", **extra: Any) -> FortnoxPayment:
    base: dict[str, Any] = {
        "number": number,
        "invoice_number": invoice,
        "amount": Decimal(amount),
        "payment_date": dt.date(2026, 3, 10),
    }
    return FortnoxPayment.model_validate({**base, **extra})


def payment_world(**filters: Any) -> World:
    return World(
        settings=TenantSettings(
            payments=PaymentSettings(enabled=True, **filters), stock=StockSettings(enabled=False)
        )
    )


def registers(world: World) -> list[cm.RegisterTillPayment]:
    unique = {c.id: c for c in world.emitted if isinstance(c, cm.RegisterTillPayment)}
    return list(unique.values())


def test_payment_filters_ignore_before_date_and_invoice_numbers_below_n() -> None:
    world = payment_world(ignore_before=dt.date(2026, 3, 10), ignore_invoice_below=1000)
    world.fx_put_payment(payment("1", 1000))  # on the date and at the floor: taken
    world.fx_put_payment(payment("2", 1001, payment_date=dt.date(2026, 3, 9)))  # before the date
    world.fx_put_payment(payment("3", 999))  # invoice number below N
    world.quiesce()
    assert set(world.till_payments) == {"1"}
    assert world.state.get(payments.KIND, "2")["skipped"] == "registered before 2026-03-10"  # type: ignore[index]
    assert world.state.get(payments.KIND, "3")["skipped"] == "invoice number below 1000"  # type: ignore[index]


def test_a_payment_is_handed_over_once_with_its_currency_rate() -> None:
    world = payment_world()
    euro = payment(
        "7",
        1500,
        amount="1150.00",
        amount_currency=Decimal("100.00"),
        currency="EUR",
        currency_rate=Decimal("11.5"),
        currency_unit=Decimal(1),
    )
    world.fx_put_payment(euro)
    for _ in range(3):
        world.poll_payment("7")
    world.quiesce()
    for index in range(len(world.processed)):
        world.redeliver(index)
    world.quiesce()
    assert len(registers(world)) == 1
    handed = world.till_payments["7"]
    assert (handed["currency"], handed["currency_rate"], handed["amount_currency"]) == (
        "EUR",
        "11.5",
        "100.00",
    )


def test_a_changed_payment_is_sent_again_and_an_older_record_is_ignored() -> None:
    world = payment_world()
    world.fx_put_payment(payment("7", 1500, amount="100.00"))
    world.quiesce()
    first = len(world.processed) - 1
    world.fx_put_payment(payment("7", 1500, amount="150.00"))
    world.quiesce()
    assert world.till_payments["7"]["amount"] == "150.00"
    for index in range(first + 1):
        world.redeliver(index)  # the older record again
    world.quiesce()
    assert world.till_payments["7"]["amount"] == "150.00"
    assert len(registers(world)) == 2


def test_a_deleted_payment_is_reported_and_removed() -> None:
    world = payment_world()
    world.fx_put_payment(payment("7", 1500))
    world.quiesce()
    world.fx_delete_payment("7")
    world.quiesce()
    assert "7" not in world.till_payments
    assert world.state.get("report", "payment:7")["kind"] == "deleted_in_fortnox"  # type: ignore[index]
    for index in range(len(world.processed)):
        world.redeliver(index)
    world.quiesce()
    assert "7" not in world.till_payments
    assert len([c for c in world.emitted if isinstance(c, cm.RemoveTillPayment)]) == 1


def test_loosened_filters_hand_over_the_payments_they_skipped() -> None:
    world = payment_world(ignore_invoice_below=2000)
    world.fx_put_payment(payment("1", 1500))
    world.quiesce()
    assert not world.till_payments
    world.change_settings(
        world.settings.model_copy(update={"payments": PaymentSettings(enabled=True)})
    )
    world.quiesce()
    assert set(world.till_payments) == {"1"}


payment_action = st.one_of(
    st.tuples(
        st.just("put"),
        st.sampled_from(("p1", "p2", "p3", "p4")),
        st.integers(990, 1010),
        st.sampled_from(("100.00", "250.00")),
        st.integers(8, 12),
    ),
    st.tuples(st.just("delete"), st.sampled_from(("p1", "p2", "p3", "p4"))),
    st.tuples(st.just("poll"), st.sampled_from(("p1", "p2", "p3", "p4"))),
    st.tuples(st.just("process")),
    st.tuples(st.just("deliver")),
    st.tuples(st.just("redeliver"), st.integers(0, 10_000)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions=st.lists(payment_action, min_size=5, max_size=40))
def test_the_back_office_gets_every_payment_that_passes_the_filters(
    actions: list[tuple[Any, ...]],
) -> None:
    note(repr(actions))
    cutoff = dt.date(2026, 3, 10)
    world = payment_world(ignore_before=cutoff, ignore_invoice_below=1000)
    deleted: set[str] = set()
    passed: set[str] = set()
    for act in actions:
        if act[0] == "put" and act[1] not in deleted:
            world.fx_put_payment(
                payment(act[1], act[2], act[3], payment_date=dt.date(2026, 3, act[4]))
            )
            if act[2] >= 1000 and act[4] >= 10:
                passed.add(act[1])
        elif act[0] == "delete" and act[1] in world.fx_payments:
            world.fx_delete_payment(act[1])
            deleted.add(act[1])
        elif act[0] == "poll":
            world.poll_payment(act[1])
        elif act[0] == "process":
            world.process_one()
        elif act[0] == "deliver":
            world.deliver_till()
        elif act[0] == "redeliver":
            world.redeliver(act[1])
    world.quiesce()
    expected = {n: p.model_dump(mode="json") for n, p in world.fx_payments.items() if n in passed}
    assert world.till_payments == expected
    # Idempotent by number: a payment is sent again only when its content changed.
    last: dict[str, str] = {}
    for cmd in registers(world):
        content = cmd.data.payment.model_dump_json()
        assert last.get(cmd.data.payment.number) != content, cmd
        last[cmd.data.payment.number] = content


# --- ledger --------------------------------------------------------------------------------------


def voucher(attachments: list[str]) -> FortnoxVoucher:
    return FortnoxVoucher(
        series="A",
        number=12,
        year=7,
        transaction_date=dt.date(2026, 3, 1),
        description="Hyra mars",
        rows=[
            VoucherRowInfo(account=5010, debit=Decimal("8000.00")),
            VoucherRowInfo(account=1930, credit=Decimal("8000.00")),
        ],
        attachments=attachments,
    )


def test_a_ledger_voucher_is_sent_once_and_again_only_when_its_attachments_change() -> None:
    world = World(
        settings=TenantSettings(
            ledger=LedgerSettings(enabled=True), stock=StockSettings(enabled=False)
        )
    )
    for _ in range(3):
        world.fx_voucher(voucher([]))
    world.quiesce()
    world.fx_voucher(voucher(["file-1"]))
    world.quiesce()
    for index in range(len(world.processed)):
        world.redeliver(index)
    world.quiesce()
    sends = {c.id for c in world.emitted if isinstance(c, cm.SendTillLedgerVoucher)}
    assert len(sends) == 2
    assert world.till_vouchers["7:A:12"]["attachments"] == ["file-1"]


def test_no_ledger_when_the_flow_is_off() -> None:
    world = World(settings=TenantSettings(stock=StockSettings(enabled=False)))
    world.fx_voucher(voucher([]))
    world.quiesce()
    assert not world.till_vouchers
