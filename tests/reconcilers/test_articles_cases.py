"""Articles: one test per rule and per bug the properties found, replayable by name."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tests.reconcilers.test_articles_properties import apply, check_converged, make_world, settle
from tests.reconcilers.world import FxArticle, World
from topics import commands as cm
from topics import fortnox as fx
from topics.settings import ArticleSettings, StockSettings, TenantSettings


def world_with(*arts: FxArticle, delete_missing: bool = False) -> World:
    world = World(
        settings=TenantSettings(
            articles=ArticleSettings(delete_missing=delete_missing),
            stock=StockSettings(enabled=False),
        )
    )
    for art in arts:
        world.fx_articles[art.number] = art
    world.full_sync()
    world.quiesce()
    return world


def art(number: str, ean: str | None, description: str = "Kaffe", **extra: Any) -> FxArticle:
    return FxArticle(number, description, ean=ean, stock_goods=False, **extra)


def eans(world: World) -> dict[str, str | None]:
    return {n: a.get("ean") for n, a in sorted(world.till_articles.items())}


def _number(cmd: Any) -> str:
    data = cmd.data
    return str(data.article.article_number if hasattr(data, "article") else data.article_number)


def report(world: World, number: str) -> dict[str, Any]:
    found = world.state.get("report", f"article:{number}")
    assert found is not None
    return found


# --- barcode conflicts -------------------------------------------------------------------------


def test_a_newcomer_with_a_taken_barcode_waits_and_is_reported_naming_the_holder() -> None:
    world = world_with(art("A1", "E1"), art("A2", "E1"))
    assert eans(world) == {"A1": "E1"}
    assert report(world, "A2") == {**report(world, "A2"), "kind": "barcode_conflict"}
    assert report(world, "A2")["holder"] == "A1" and report(world, "A2")["ean"] == "E1"


def test_the_newcomer_is_admitted_when_the_holder_loses_the_barcode() -> None:
    world = world_with(art("A1", "E1"), art("A2", "E1"))
    world.fx_put_article(art("A1", "E9"))
    world.quiesce()
    assert eans(world) == {"A1": "E9", "A2": "E1"}
    assert not world.barcode_violations


def test_the_newcomer_is_admitted_when_the_holder_is_excluded() -> None:
    world = world_with(art("A1", "E1"), art("A2", "E1"))
    world.fx_put_article(art("A1", "E1", "Kaffe #E#"))
    world.quiesce()
    assert eans(world) == {"A2": "E1"}
    removes = [c for c in world.emitted if isinstance(c, cm.RemoveTillArticle)]
    assert [(c.data.article_number, c.data.reason) for c in removes] == [("A1", "excluded")]


def test_the_newcomer_is_admitted_when_the_holder_is_deleted_or_goes_missing() -> None:
    world = world_with(art("A1", "E1"), art("A2", "E1"), art("A3", "E1"))
    world.fx_delete_article("A1")
    world.quiesce()
    assert eans(world) == {"A2": "E1"}
    assert report(world, "A3")["holder"] == "A2", "the queue now waits for the new holder"
    world.fx_delete_article("A2", announce=False)  # only a full pass finds out
    world.quiesce()
    assert eans(world) == {"A2": "E1"}
    world.full_sync()
    world.quiesce()
    assert eans(world) == {"A3": "E1"}


def test_a_flush_that_admits_a_newcomer_before_the_holder_is_due_does_not_hang() -> None:
    """The newcomer's flush window started earlier than the holder's: the holder is flushed
    along with it (the reconciler used to loop for ever here)."""
    world = world_with(art("A1", "E1"), art("A2", "E1"))
    world.fx_put_article(art("A2", "E1", "Te nytt namn"))
    world.process_all()
    world.advance(1)
    world.fx_delete_article("A1")
    world.process_all()
    world.advance(1.5)
    world.tick()
    world.process_all()
    kinds = [(c.type, _number(c)) for c in world.till_queue]  # type: ignore[attr-defined]
    assert kinds == [("till.article.remove", "A1"), ("till.article.upsert", "A2")]
    world.quiesce()
    assert eans(world) == {"A2": "E1"} and not world.barcode_violations


def test_two_articles_swapping_barcodes_never_share_one_in_the_till() -> None:
    world = world_with(art("A1", "E1"), art("A2", "E2"))
    world.fx_put_article(art("A1", "E2"))
    world.fx_put_article(art("A2", "E1"))
    world.quiesce()
    assert eans(world) == {"A1": "E2", "A2": "E1"}
    assert not world.barcode_violations
    released = [c.id for c in world.emitted if ":release" in c.id]
    assert len(released) == 1


def test_a_till_edit_crossing_our_write_does_not_free_the_barcode_too_early() -> None:
    """Found by the soak run: the till edits A5's barcode away while our upsert of A5 (with E3)
    is on its way; E3 must stay taken until a write of ours lands after the edit."""
    fortnox = [("put", "A1", 0, None, None, None, False), ("put", "A5", 0, "E3", None, None, False)]
    actions: list[tuple[Any, ...]] = [
        ("till_edit", "A5", 0),
        ("tick", 2),
        ("till_edit", "A5", 2),
        ("put", "A1", 0, "E3", None, None, False),
        ("put", "A5", 0, None, None, None, False),
        ("poll", "A1"),
        ("poll", "A5"),
        ("process",),
        ("process",),
        ("process",),
        ("process",),
        ("tick", 2),
        ("process",),
        ("deliver",),
        ("deliver",),
        ("deliver",),
    ]
    world = make_world(False, [], fortnox)
    fresh = [0]
    for act in actions:
        apply(world, act, fresh)
        assert not world.barcode_violations, act
    settle(world)
    check_converged(world, [])


# --- till edits, exclusion, price list ---------------------------------------------------------


def test_a_till_edit_is_overwritten_and_reported() -> None:
    world = world_with(art("A1", "E1", price=Decimal("10.00")))
    world.till_edit_article("A1", {"price": Decimal("1.00"), "description": "Fel"})
    world.quiesce()
    assert world.till_articles["A1"]["price"] == Decimal("10.00")
    assert world.till_articles["A1"]["description"] == "Kaffe"
    assert report(world, "A1")["kind"] == "till_edit_overwritten"
    assert report(world, "A1")["changes"] == {"price": "1.00", "description": "Fel"}


def test_an_excluded_article_is_never_sent_and_leaves_the_till_when_marked() -> None:
    world = world_with(art("A1", "E1", "#E# Gammal kaffe"), art("A2", None))
    assert set(world.till_articles) == {"A2"}
    world.fx_put_article(art("A2", None, "Te #E#"))
    world.quiesce()
    assert not world.till_articles
    world.fx_put_article(art("A2", None, "Te"))
    world.quiesce()
    assert set(world.till_articles) == {"A2"}


def test_the_price_comes_from_the_chosen_list_and_survives_a_switch_until_read() -> None:
    world = world_with(art("A1", None, price=Decimal("10.00"), prices={"B": Decimal("8.00")}))
    assert world.till_articles["A1"]["price"] == Decimal("10.00")
    settings = world.settings.model_copy(
        update={"articles": world.settings.articles.model_copy(update={"price_list": "B"})}
    )
    world.change_settings(settings)
    world.process_all()
    world.advance(10)
    world.tick()
    world.process_all()
    # Nothing read from list B yet: the till keeps a price rather than losing it.
    assert all(c.data.article.price == Decimal("10.00") for c in world.till_queue)  # type: ignore[attr-defined]
    world.quiesce()  # the next read of the article carries list B
    assert world.till_articles["A1"]["price"] == Decimal("8.00")
    # A record that still carries list A's price (read before the switch reached the poller)
    # does not put list A's price in the till.
    world.send(
        fx.FortnoxArticleChanged,
        data={"article": world.fx_articles["A1"].model("A"), "observed": {"seq": world.seq()}},
    )
    world.quiesce()
    assert world.till_articles["A1"]["price"] == Decimal("8.00")
    prices = [c.data.article.price for c in world.emitted if isinstance(c, cm.UpsertTillArticle)]
    assert prices == [Decimal("10.00"), Decimal("8.00")]


# --- deleted, missing, till-only ---------------------------------------------------------------


def test_deleted_and_missing_articles_always_leave_the_till() -> None:
    world = world_with(art("A1", "E1"), art("A2", "E2"), delete_missing=False)
    world.fx_delete_article("A1")
    world.fx_delete_article("A2", announce=False)
    world.quiesce()
    assert set(world.till_articles) == {"A2"}
    world.full_sync()
    world.quiesce()
    assert not world.till_articles
    reasons = [c.data.reason for c in world.emitted if isinstance(c, cm.RemoveTillArticle)]
    assert reasons == ["deleted_in_fortnox", "missing_in_fortnox"]


def test_till_only_articles_stay_unless_delete_missing_is_on() -> None:
    for delete_missing in (False, True):
        world = make_world(delete_missing, [("T1", "E1")])
        world.fx_put_article(art("A1", "E1"))
        settle(world)
        if delete_missing:
            assert eans(world) == {"A1": "E1"}, "removed, and its barcode went to A1"
        else:
            assert world.till_articles["T1"]["ean"] == "E1" and "A1" not in world.till_articles
            assert report(world, "A1")["holder"] == "T1"


def test_a_till_only_article_is_taken_over_when_fortnox_creates_it() -> None:
    world = make_world(False, [("A5", "E1")])
    world.fx_put_article(art("A5", "E2", "Från Fortnox"))
    settle(world)
    assert world.till_articles["A5"]["description"] == "Från Fortnox"
    assert world.till_articles["A5"]["ean"] == "E2"


def test_a_poll_between_the_records_of_a_full_pass_does_not_make_an_article_missing() -> None:
    world = world_with(art("A1", None), art("A2", None))
    world.pass_start("articles")
    world.pass_step("articles")  # A1 in the pass
    world.poll("A1")  # and read again, outside the pass
    world.pass_end("articles")
    world.quiesce()
    assert set(world.till_articles) == {"A1", "A2"}
    assert not world.notes_named("article.deleted_in_fortnox")


def test_redelivered_records_and_completions_change_nothing() -> None:
    world = world_with(art("A1", "E1"), art("A2", None))
    old = list(world.processed)
    world.fx_put_article(art("A1", "E7", "Ny"))
    world.fx_delete_article("A2")
    world.quiesce()
    world.fx_put_article(art("A2", None, "Tillbaka"))
    world.quiesce()
    before = len(world.emitted)
    for msg in old + list(world.processed):
        world.handle(msg)  # old records, the deletion, the old pass's completion...
    world.quiesce()
    assert eans(world) == {"A1": "E7", "A2": None}
    assert world.till_articles["A2"]["description"] == "Tillbaka"
    assert len(world.emitted) == before, "nothing was sent again"
    assert not [
        n
        for n in world.notes_named("article.deleted_in_fortnox")
        if "missing" in n.fields["reason"]
    ]


def test_a_disabled_article_flow_removes_nothing_at_a_pass() -> None:
    world = world_with(art("A1", None))
    settings = world.settings.model_copy(
        update={"articles": world.settings.articles.model_copy(update={"enabled": False})}
    )
    world.change_settings(settings)
    world.full_sync()
    world.quiesce()
    assert set(world.till_articles) == {"A1"}
    assert not [c for c in world.emitted if isinstance(c, cm.RemoveTillArticle)]


# --- what the till cannot take -----------------------------------------------------------------


def test_an_article_the_till_cannot_take_is_reported_and_the_rest_is_sent() -> None:
    world = world_with(art("A1", "E1"), art("A2", "123 456"), art("A3", "E3", "Ring\x07klocka"))
    assert eans(world) == {"A1": "E1"}
    assert report(world, "A2")["kind"] == "till_refuses_article"
    assert report(world, "A2")["fields"] == ["ean"]
    assert report(world, "A2")["values"] == {"ean": "123 456"}
    assert report(world, "A3")["fields"] == ["description"]
    want = world.state.get("art.want", "A2")
    assert want is not None and want["in_till"] is False and want["reason"] == "till_refuses"
    assert [n.fields["article"] for n in world.notes_named("article.till_refuses")] == ["A2", "A3"]


def test_a_till_article_keeps_its_last_version_and_barcode_until_fortnox_is_fixed() -> None:
    world = world_with(art("A1", "E1"))
    world.fx_put_article(art("A1", "E 1", "Kaffe ny"))
    world.fx_put_article(art("A4", "E1"))  # wants A1's old barcode, which the till still has
    world.quiesce()
    assert eans(world) == {"A1": "E1"}
    assert world.till_articles["A1"]["description"] == "Kaffe"
    assert report(world, "A1")["kind"] == "till_refuses_article"
    assert report(world, "A4")["kind"] == "barcode_conflict"
    # Fixed in Fortnox: sent as usual, and the barcode it gave up goes to the one waiting.
    world.fx_put_article(art("A1", "E2", "Kaffe ny"))
    world.quiesce()
    assert eans(world) == {"A1": "E2", "A4": "E1"}
    assert world.till_articles["A1"]["description"] == "Kaffe ny"
    assert not world.barcode_violations


def test_a_refused_article_is_reported_once_per_change() -> None:
    world = world_with(art("A2", "123 456"))
    world.fx_put_article(art("A2", "123 456", "Kaffe"), announce=True)
    world.full_sync()
    world.quiesce()
    assert len(world.notes_named("article.till_refuses")) == 1


def test_an_unreadable_record_is_reported_and_not_taken_for_missing_by_the_pass() -> None:
    world = world_with(art("A1", "E1"), art("A2", "E2"), delete_missing=True)
    world.fx_delete_article("A2", announce=False)  # only a pass can tell
    world.send(
        fx.FortnoxRecordUnreadable,
        data={
            "resource": "articles",
            "key": "A1",
            "problem": "Fortnox's record has values Kassasync cannot read (QuantityInStock)",
            "observed": {"via": "full_sync", "seq": world.seq(), "sync_pass": "p-odd"},
        },
    )
    world.send(
        fx.FortnoxSyncCompleted,
        data={"resource": "articles", "sync_pass": "p-odd", "count": 1},
    )
    world.quiesce()
    assert eans(world) == {"A1": "E1"}, "A2 was not in the pass; A1 was, unreadable"
    assert report(world, "A1")["kind"] == "fortnox_record_unreadable"
    assert "QuantityInStock" in report(world, "A1")["problem"]


def test_delete_missing_turned_on_after_the_pass_removes_till_only_articles_at_once() -> None:
    """On Kafka the session's full pass (fortnox.changes) can reach the reconciler before the
    settings that asked for it (sync.control): the settings then remove the till-only articles
    themselves, from what the last full pass showed."""
    world = world_with(art("A1", "E1"), delete_missing=False)
    world.till_articles["T1"] = {"article_number": "T1", "description": "Bara i kassan"}
    world.till_edit_article("T1", {"description": "Bara i kassan"})
    world.quiesce()
    assert "T1" in world.till_articles
    world.change_settings(
        TenantSettings(
            articles=ArticleSettings(delete_missing=True), stock=StockSettings(enabled=False)
        )
    )
    world.quiesce()  # no new full pass
    assert set(world.till_articles) == {"A1"}
    reasons = [c.data.reason for c in world.emitted if isinstance(c, cm.RemoveTillArticle)]
    assert reasons == ["missing_in_fortnox"]


def test_delete_missing_turned_on_before_any_pass_removes_nothing_yet() -> None:
    world = World(
        settings=TenantSettings(
            articles=ArticleSettings(delete_missing=False), stock=StockSettings(enabled=False)
        )
    )
    world.till_articles["T1"] = {"article_number": "T1", "description": "Bara i kassan"}
    world.till_edit_article("T1", {"description": "Bara i kassan"})
    world.process_all()
    world.change_settings(
        TenantSettings(
            articles=ArticleSettings(delete_missing=True), stock=StockSettings(enabled=False)
        )
    )
    world.process_all()
    # Nothing shows what Fortnox has yet: every article would look till-only.
    assert not [c for c in world.emitted if isinstance(c, cm.RemoveTillArticle)]


def test_an_article_created_behind_a_passs_cursor_is_not_taken_for_missing() -> None:
    """A pass publishes its records at its end: an article created in Fortnox after the pass
    read its page, and announced by the feed meanwhile, reaches the log before the pass that
    does not list it."""
    world = world_with(art("A2", None))
    world.pass_start("articles")
    world.pass_step("articles")  # A2: the cursor is past where A1 will be
    world.fx_put_article(art("A1", None, "Ny i Fortnox"))  # the feed announces it at once
    world.process_all()
    world.pass_end("articles")
    world.quiesce()
    assert set(world.till_articles) == {"A1", "A2"}
    assert not world.notes_named("article.deleted_in_fortnox")
