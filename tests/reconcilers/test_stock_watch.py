"""Issue 13/16: a write whose feed watch died with its process is a possible lost sale.

The session watches Fortnox's topics feed for a few seconds after each absolute stock write (a
sale inside the read-to-write window shows there). That watch lives in memory: a process that
stops within those seconds takes it along. The reconciler therefore remembers every watched
write until its watch reports (``fortnox.stock.checked`` or ``fortnox.stock.overlap``); when a
new watch starts first, the writes the old one never finished are reported, never dropped."""

from __future__ import annotations

from decimal import Decimal

from reconcilers.stock import OVERLAPS, UNCHECKED, WATCHES
from tests.reconcilers.test_stock_repair import _found, _world, stock_command
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
    assert world.write_reports(OVERLAPS, command.id) == []


def test_a_write_whose_watch_died_with_its_process_is_a_possible_lost_sale() -> None:
    world = _world()
    _started(world, "w1")
    command = _write(world, "w1")
    # The process stops before the watch ended; the next one starts a new watch.
    _started(world, "w2")
    [overlap] = world.write_reports(OVERLAPS, command.id)
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
    assert world.write_reports(OVERLAPS, command.id) == []
    assert _unchecked(world) == {command.id}


def test_an_overlap_found_ends_the_watch_and_is_reported_once() -> None:
    world = _world()
    _started(world, "w1")
    command = _write(world, "w1")
    _found(world, command.id, {"read": "10", "written": "8"})
    world.process_all()
    assert _unchecked(world) == set()
    _started(world, "w2")
    [overlap] = world.write_reports(OVERLAPS, command.id)
    assert overlap["reason"] == "feed_event_in_window"


def test_an_unwatched_write_is_not_remembered() -> None:
    world = _world()
    _started(world, "w1")
    command = _write(world, None)  # no feed: nothing watches, nothing to end
    assert _unchecked(world) == set()
    _started(world, "w2")
    assert world.write_reports(OVERLAPS, command.id) == []


def test_each_write_of_a_command_is_reported_on_its_own() -> None:
    """The bench's one missed overwrite (no invoices, 30 % of PUTs answered 503): a write the
    level could not settle was reported, the command wrote again from a new read, and the feed
    found a sale inside that second write's window. Both writes are possible lost sales; the
    second was dropped as a "duplicate" of the first when the records were keyed by command."""
    world = _world()
    _started(world, "w1")
    command = stock_command(world, D(-2))
    article = world.fx_articles["A1"]
    # First PUT (10 -> 8) answered 503; a web shop sale makes the level 9; ambiguous, so it is
    # reported and the command writes again from the level it reads: 9 -> 7.
    article.qty = D(7)
    world.send(
        fx.FortnoxStockWritten,
        data={
            "article_number": "A1",
            "command_id": command.id,
            "read": "9",
            "written": "7",
            "seq": world.seq(),
            "watch": "w1",
            "overlap": {
                "reason": "outcome_ambiguous",
                "read": "10",
                "written": "8",
                "level": "9",
                "assumed_landed": False,
            },
        },
    )
    world.send_outcome(command, "done")
    world.process_all()
    first = world.write_reports(OVERLAPS, command.id)
    assert [(r["read"], r["written"]) for r in first] == [("10", "8")]
    # The second write is watched like any other: a crash now would still report it.
    assert _unchecked(world) == {command.id}
    for _ in range(2):  # delivered twice: reported once
        _found(world, command.id, {"read": "9", "written": "7"})
    world.process_all()
    reports = world.write_reports(OVERLAPS, command.id)
    assert sorted((r["reason"], r["read"], r["written"]) for r in reports) == [
        ("feed_event_in_window", "9", "7"),
        ("outcome_ambiguous", "10", "8"),
    ]
    assert _unchecked(world) == set()
    assert len(world.notes_named("stock.possible_lost_sale")) == 2


def test_a_report_stored_under_the_bare_command_id_still_counts_for_its_write() -> None:
    """Stores from before one record per write keep their reports under the command id: a
    redelivered report of the same write is not shown twice."""
    world = _world()
    _started(world, "w1")
    command = _write(world, "w1")
    legacy = {"article": "A1", "reason": "feed_event_in_window", "read": "10", "written": "8"}
    world.state.records[(OVERLAPS, command.id)] = legacy
    _found(world, command.id, {"read": "10", "written": "8"})
    world.process_all()
    assert world.write_reports(OVERLAPS, command.id) == [legacy]
    assert world.notes_named("stock.possible_lost_sale") == []
