"""Control messages: a paused tenant's skipped commands are done again on resume; repeated
outcomes count once; dead letters are retried or discarded by an operator."""

from __future__ import annotations

from typing import Any

from tests.reconcilers.test_zreports import master, worked_example
from tests.reconcilers.test_zreports import z_settings as zs
from tests.reconcilers.world import FxArticle, World
from topics import outcomes as oc
from topics.errors import ErrorKind, shop_error
from topics.settings import InvoiceSettings, StockSettings, TenantSettings

EXPIRED = shop_error(ErrorKind.LOGIN_EXPIRED, tenant="shop")


def skip_everything(world: World) -> None:
    """The writers find the tenant paused: every queued command is skipped."""
    world.process_all()
    for queue in (world.fx_queue, world.till_queue):
        while queue:
            world.send_outcome(queue.popleft(), "skipped", error=EXPIRED)
    world.process_all()


def paused_world() -> World:
    world = World(
        settings=TenantSettings(
            zreports=zs(),
            invoices=InvoiceSettings(enabled=True),
            stock=StockSettings(enabled=False),
        )
    )
    world.master_data(master())
    return world


def test_commands_skipped_while_paused_are_done_after_resume() -> None:
    world = paused_world()
    world.fx_articles["A1"] = FxArticle("A1", "Kaffe", ean="E1", stock_goods=False)
    world.full_sync()
    world.till_zreport(worked_example())
    world.till_upsert_customer("c1", {"name": "Anna"})
    world.till_invoice("i1", "c1")
    world.process_all()
    world.advance(10)
    world.tick()
    world.send(oc.TenantPaused, data={"error": EXPIRED})
    skip_everything(world)
    status = world.state.get("tenant", "status")
    assert status is not None and status["paused"] and status["error"]["kind"] == "login_expired"
    assert not world.fx_vouchers and not world.fx_customers and not world.till_articles
    world.send(oc.TenantResumed)
    world.quiesce()
    assert [v["key"] for v in world.fx_vouchers] == ["K1:1234"]
    assert set(world.fx_customers) == {"Kc1"}
    assert len(world.fx_orders) == 1
    assert set(world.till_articles) == {"A1"}
    status = world.state.get("tenant", "status")
    assert status is not None and not status["paused"]


def test_an_expired_login_in_an_outcome_pauses_the_tenant_once() -> None:
    world = paused_world()
    world.till_zreport(worked_example())
    world.process_all()
    cmd = world.fx_queue.popleft()
    for _ in range(2):
        world.send_outcome(cmd, "rejected", error=EXPIRED)
    world.process_all()
    flow = world.state.get("flow", "zreports")
    assert flow is not None and flow["rejected"] == 1, "a repeated outcome counts once"
    world.send(oc.TenantResumed)
    world.process_all()
    old = next(m for m in world.processed if m.type == "sync.outcome")  # type: ignore[attr-defined]
    world.handle(old)  # the old outcome again must not pause the tenant again
    status = world.state.get("tenant", "status")
    assert status is not None and not status["paused"]
    world.quiesce()
    assert len(world.fx_vouchers) == 1


def _rejected_voucher(world: World) -> str:
    world.till_zreport(worked_example())
    world.process_all()
    cmd = world.fx_queue.popleft()
    error = shop_error(ErrorKind.FORTNOX_REJECTED, detail="something Fortnox did not like")
    world.send_outcome(cmd, "rejected", error=error)
    world.process_all()
    return cmd.id


def _action(world: World, dead_letter_id: str, action: str) -> None:
    data: dict[str, Any] = {"dead_letter_id": dead_letter_id, "action": action}
    world.send(oc.DeadLetterAction, data=data)


def test_an_operator_retries_a_dead_letter() -> None:
    world = paused_world()
    command_id = _rejected_voucher(world)
    world.quiesce()
    assert not world.fx_vouchers
    _action(world, command_id, "retry")
    world.quiesce()
    _action(world, command_id, "retry")  # twice: the second finds nothing to do
    world.quiesce()
    assert len(world.fx_vouchers) == 1


def test_an_operator_discards_a_dead_letter() -> None:
    world = paused_world()
    command_id = _rejected_voucher(world)
    _action(world, command_id, "discard")
    world.quiesce()
    assert not world.fx_vouchers
    assert world.state.get("cmd", command_id) is None


def test_double_booking_of_invoiced_sales_is_warned_about() -> None:
    world = paused_world()
    both = world.settings.model_copy(update={"zreports": zs(includes_invoiced_sales=True)})
    world.change_settings(both)
    world.process_all()
    warnings = world.state.get("tenant", "warnings")
    assert warnings is not None
    assert any("Double booking" in w for w in warnings["warnings"])
    assert world.notes_named("settings.warning")
