"""Issue 16, repair, in the reconciler: a sale Kassasync's write overwrote and then applied to
Fortnox again reaches the till like any change made in Fortnox, once; it is recorded as
repaired (``stock.repaired``), not as a possible lost sale; one that could not be repaired is
still reported and changes nothing."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from reconcilers.stock import OVERLAPS, REPAIRS, Level
from tests.reconcilers.world import FxArticle, World
from topics import commands as cm
from topics import fortnox as fx

D = Decimal


def _world() -> World:
    world = World()
    world.fx_articles["A1"] = FxArticle("A1", "Article A1", qty=D(10))
    world.full_sync()
    world.quiesce()
    return world


def stock_command(world: World, delta: D = D(-2)) -> cm.ApplyFortnoxStock:
    """The till sells on A1: the stock write to Fortnox its flush asks for."""
    world.till_sale("A1", delta)
    world.process_all()
    world.advance(10)
    world.tick()
    world.process_all()
    command = world.fx_queue.popleft()
    assert isinstance(command, cm.ApplyFortnoxStock)
    return command


def _overwrite(world: World) -> tuple[cm.ApplyFortnoxStock, D, D]:
    """The till sells 2; our write reads 10, a web shop sale of 1 lands, our write sets 8 (the
    sale is gone from Fortnox)."""
    command = stock_command(world)
    article = world.fx_articles["A1"]
    read = article.qty
    article.qty = read - 1  # the web shop's sale, inside the window
    article.qty = read + command.data.delta  # our absolute write replaces it
    world.send(
        fx.FortnoxStockWritten,
        data={
            "article_number": "A1",
            "command_id": command.id,
            "read": read,
            "written": article.qty,
            "seq": world.seq(),
        },
    )
    world.send_outcome(command, "done")
    world.process_all()
    return command, read, article.qty


def _found(world: World, command_id: str, overlap: dict[str, Any]) -> None:
    world.send(
        fx.FortnoxStockOverlapFound,
        data={
            "article_number": "A1",
            "command_id": command_id,
            "seq": world.seq(),
            "overlap": {"reason": "feed_event_in_window", **overlap},
        },
    )


def test_a_repaired_sale_reaches_the_till_once_and_is_not_a_possible_lost_sale() -> None:
    world = _world()
    command, read, written = _overwrite(world)
    assert (read, written) == (D(10), D(8))
    # The session established the overwritten sale (-1) and applied it again: 8 -> 7.
    article = world.fx_articles["A1"]
    article.qty = written - 1
    repair = {
        "read": str(read),
        "written": str(written),
        "foreign": "-1",
        "repaired": True,
        "repair_read": str(written),
        "repair_written": str(article.qty),
    }
    _found(world, command.id, repair)
    _found(world, command.id, repair)  # delivered twice: applied once
    world.quiesce()
    assert world.fx_articles["A1"].qty == D(7)
    assert world.till_stock["A1"] == D(7)
    assert Level.load(world.state.get("stock", "A1")).settled
    assert len(world.write_reports(REPAIRS, command.id)) == 1
    assert world.write_reports(OVERLAPS, command.id) == []


def test_an_overwrite_that_could_not_be_repaired_is_reported_and_changes_nothing() -> None:
    world = _world()
    command, read, written = _overwrite(world)
    _found(world, command.id, {"read": str(read), "written": str(written), "level": "8"})
    world.quiesce()
    # The sale is lost on both sides (the same wrong number): only the report shows it.
    assert world.fx_articles["A1"].qty == D(8)
    assert world.till_stock["A1"] == D(8)
    assert len(world.write_reports(OVERLAPS, command.id)) == 1
    assert world.write_reports(REPAIRS, command.id) == []
