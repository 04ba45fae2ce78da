"""Issue 13/16: a write whose feed watch died with its process is a possible lost sale.

The session watches Fortnox's topics feed for a few seconds after each absolute stock write (a
sale inside the read-to-write window shows there). That watch lives in memory: a process that
stops within those seconds takes it along. The reconciler therefore remembers every watched
write until its watch reports (``fortnox.stock.checked`` or ``fortnox.stock.overlap``); when a
new watch starts first, the writes the old one never finished are reported, never dropped."""

from __future__ import annotations

from decimal import Decimal

from reconcilers.stock import OVERLAPS, UNCHECKED, WATCHES
from tests.reconcilers.test_stock_repair import _world, stock_command
from tests.reconcilers.world import World
from topics import commands as cm
from topics import fortnox as fx

D = Decimal


def _write(world: World, watch: str | None, delta: D = D(-2)) -> cm.ApplyFortnoxStock:
    """The till sells; Kassasync's absolute write lands, watched by ``watch``."""
    command = stock_command(world, delta)
    article = world.fx_articles["A1"]
    read = article.qty
    article.qty = read + command.data.delta
    world.send(
        fx.FortnoxStockWritten,
        data={
            "article_number": "A1",
            "command_id": command.id,
            "read": read,
            "written": article.qty,
            "seq": world.seq(),
            "watch": watch,
        },
    )
    world.send_outcome(command, "done")
    world.process_all()
    return command


def _started(world: World, watch: str) -> None:
    world.send(fx.FortnoxStockWatchStarted, data={"watch": watch})
    world.process_all()


def _unchecked(world: World) -> set[str]:
    record = world.state.get(WATCHES, UNCHECKED) or {}
    return set(record.get("writes") or {})


def test_a_checked_write_is_forgotten_and_never_reported() -> None:
    world = _world()
    _started(world, "w1")
    command = _write(world, "w1")
    assert _unchecked(world) == {command.id}
    world.send(fx.FortnoxStockChecked, data={"command_ids": [command.id]})
    world.process_all()
    assert _unchecked(world) == set()
    assert world.state.get(WATCHES, UNCHECKED) is None  # nothing left behind
    _started(world, "w2")  # a later restart finds nothing to report
    assert world.state.get(OVERLAPS, command.id) is None


def test_a_write_whose_watch_died_with_its_process_is_a_possible_lost_sale() -> None:
    world = _world()
    _started(world, "w1")
    command = _write(world, "w1")
    # The process stops before the watch ended; the next one starts a new watch.
    _started(world, "w2")
    overlap = world.state.get(OVERLAPS, command.id)
    assert overlap is not None
    assert overlap["reason"] == fx.OverlapReason.CHECK_INTERRUPTED.value
    assert (overlap["article"], overlap["read"], overlap["written"]) == ("A1", "10", "8")
    assert _unchecked(world) == set()
    assert [n.fields.get("reason") for n in world.notes_named("stock.possible_lost_sale")] == [
        "check_interrupted"
    ]


def test_the_same_watch_announced_again_reports_nothing() -> None:
    world = _world()
    _started(world, "w1")
    command = _write(world, "w1")
    _started(world, "w1")  # the session's loop restarted in the same process: same watch
    assert world.state.get(OVERLAPS, command.id) is None
    assert _unchecked(world) == {command.id}


def test_an_overlap_found_ends_the_watch_and_is_reported_once() -> None:
    world = _world()
    _started(world, "w1")
    command = _write(world, "w1")
    world.send(
        fx.FortnoxStockOverlapFound,
        data={
            "article_number": "A1",
            "command_id": command.id,
            "overlap": {"reason": "feed_event_in_window", "read": "10", "written": "8"},
        },
    )
    world.process_all()
    assert _unchecked(world) == set()
    _started(world, "w2")
    overlap = world.state.get(OVERLAPS, command.id)
    assert overlap is not None and overlap["reason"] == "feed_event_in_window"


def test_an_unwatched_write_is_not_remembered() -> None:
    world = _world()
    _started(world, "w1")
    command = _write(world, None)  # no feed: nothing watches, nothing to end
    assert _unchecked(world) == set()
    _started(world, "w2")
    assert world.state.get(OVERLAPS, command.id) is None
