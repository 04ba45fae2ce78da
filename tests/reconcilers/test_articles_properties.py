"""Articles, Fortnox -> till: unique barcodes at every step, exclusion, conflicts admitted when
they clear, till edits overwritten, deleted and missing articles removed (hypothesis)."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from reconcilers import articles
from tests.reconcilers.world import FxArticle, World
from topics import till as tl
from topics.settings import ArticleSettings, StockSettings, TenantSettings

NUMBERS = ("A1", "A2", "A3", "A4", "A5")
EANS = ("E1", "E2", "E3")
TILL_ONLY = ("T1", "A5")  # A5 is also a Fortnox number: Fortnox may take the till's article over
DESCRIPTIONS = ("Kaffe", "Te", "Mjölk", "Kaffe #E#", "#E# Te (dold)")
PRICES = (None, Decimal("10.00"), Decimal("12.50"), Decimal("99.00"))
MARKER = "#E#"

number = st.sampled_from(NUMBERS)
ean = st.sampled_from((None, *EANS, *EANS))
price = st.sampled_from(PRICES)

put = st.tuples(
    st.just("put"),
    number,
    st.sampled_from((0, 0, 1, 1, 2, 2, 3, 4)),  # one in four is excluded
    ean,
    price,
    price,
    st.booleans(),
)
action = st.one_of(
    put,
    put,
    put,
    st.tuples(st.just("delete"), number, st.booleans()),
    st.tuples(st.just("poll"), number),
    st.tuples(st.just("pass_start")),
    st.tuples(st.just("pass_step")),
    st.tuples(st.just("pass_step")),
    st.tuples(st.just("pass_end")),
    st.tuples(st.just("till_edit"), st.sampled_from(NUMBERS + TILL_ONLY), st.integers(0, 2)),
    st.tuples(st.just("process")),
    st.tuples(st.just("process")),
    st.tuples(st.just("process")),
    st.tuples(st.just("execute")),
    st.tuples(st.just("deliver")),
    st.tuples(st.just("deliver")),
    st.tuples(st.just("tick"), st.integers(0, 4)),
    st.tuples(st.just("redeliver"), st.integers(0, 10_000)),
    st.tuples(st.just("price_list"), st.sampled_from(("A", "B"))),
)
actions_st = st.lists(action, min_size=20, max_size=60)
#: What Fortnox has before the actions start: articles with barcodes from a small pool.
initial_fortnox = st.lists(put, min_size=2, max_size=5, unique_by=lambda p: p[1])
till_only = st.lists(
    st.tuples(st.sampled_from(TILL_ONLY), ean), max_size=2, unique_by=lambda t: t[0]
)


def make_world(
    delete_missing: bool,
    initial: list[tuple[str, str | None]],
    fortnox: list[tuple[Any, ...]] = (),  # type: ignore[assignment]
) -> World:
    world = World(
        settings=TenantSettings(
            articles=ArticleSettings(delete_missing=delete_missing),
            stock=StockSettings(enabled=False),
        )
    )
    used: set[str] = set()
    for num, code in initial:
        if code in used:
            code = None
        if code is not None:
            used.add(code)
        changes: dict[str, Any] = {"description": f"Kassans {num}", "price": Decimal("5.00")}
        if code is not None:
            changes["ean"] = code
        world.till_edit_article(num, changes)
    world.process_all()
    if fortnox:
        fresh = [0]
        for spec in fortnox:
            apply(world, (*spec[:-1], False), fresh)
        world.full_sync()
        world.quiesce()
    return world


def apply(world: World, act: tuple[Any, ...], fresh: list[int]) -> None:
    name = act[0]
    if name == "put":
        _, num, desc, code, price_a, price_b, announce = act
        world.fx_put_article(
            FxArticle(
                num,
                DESCRIPTIONS[desc],
                ean=code,
                stock_goods=False,
                price=price_a,
                prices={"B": price_b},
            ),
            announce=announce,
        )
    elif name == "delete":
        world.fx_delete_article(act[1], announce=act[2])
    elif name == "poll":
        world.poll(act[1])
    elif name in ("pass_start", "pass_step", "pass_end"):
        getattr(world, name)("articles")
    elif name == "till_edit":
        num, kind = act[1], act[2]
        if num in world.till_articles:
            fresh[0] += 1
            changes: dict[str, Any] = [
                {"description": f"Ändrad i kassan {fresh[0]}"},
                {"price": Decimal("1.00")},
                {"ean": f"X{fresh[0]}"},
            ][kind]
            world.till_edit_article(num, changes)
    elif name == "process":
        world.process_one()
    elif name == "execute":
        world.execute_fortnox()
    elif name == "deliver":
        world.deliver_till()
    elif name == "tick":
        world.advance(float(act[1]))
        world.tick()
    elif name == "redeliver":
        world.redeliver(act[1])
    elif name == "price_list":
        current = world.settings
        world.change_settings(
            current.model_copy(
                update={"articles": current.articles.model_copy(update={"price_list": act[1]})}
            )
        )


def settle(world: World) -> None:
    """Finish what is under way, run one complete pass, and let everything settle."""
    world.process_all()
    world.pass_end("articles")
    world.full_sync()
    world.quiesce()
    assert not world.barcode_violations


def observed_by_fortnox(world: World) -> set[str]:
    return {
        m.data.article.article_number  # type: ignore[attr-defined]
        for m in world.processed
        if m.type == "fortnox.article.changed"  # type: ignore[attr-defined]
    }


def check_converged(world: World, initial: list[tuple[str, str | None]]) -> None:
    price_list = world.settings.articles.price_list
    delete_missing = world.settings.articles.delete_missing
    till = world.till_articles
    # (f) till-only articles: kept unless delete-missing is on.
    seen = observed_by_fortnox(world)
    till_only = {n for n, _ in initial if n not in seen}
    blocked: dict[str, str] = {}
    for num in till_only:
        if delete_missing:
            assert num not in till, f"{num} is not in Fortnox and delete-missing is on"
        else:
            assert num in till, f"{num} was removed although delete-missing is off"
            if till[num].get("ean"):
                blocked[till[num]["ean"]] = num
    # (b) nothing excluded, (c) nothing deleted, Fortnox's fields and the chosen price.
    eligible = {n: a for n, a in world.fx_articles.items() if MARKER not in a.description}
    for num, held in till.items():
        if num in till_only:
            continue
        assert num in world.fx_articles, f"{num} is deleted in Fortnox but still in the till"
        assert num in eligible, f"{num} is excluded with {MARKER} but still in the till"
        assert held == eligible[num].till_view(price_list), num
    # (c) and (d): exactly one article per barcode is in the till; the rest wait, reported.
    groups: dict[str | None, list[str]] = defaultdict(list)
    for num, art in eligible.items():
        groups[art.ean].append(num)
    for code, members in groups.items():
        in_till = [n for n in members if n in till]
        if code is None:
            assert in_till == members
            continue
        if code in blocked:
            assert not in_till, (code, blocked[code], in_till)
            continue
        assert len(in_till) == 1, (code, members, in_till)
        for loser in set(members) - set(in_till):
            want = world.state.get(articles.WANT, loser)
            assert want is not None and want["reason"] == "barcode_conflict", (loser, want)
            assert want["holder"] == in_till[0]
            assert any(
                n.fields.get("article") == loser
                for n in world.notes_named("article.barcode_conflict")
            )


def check_till_edits_reported(world: World) -> None:
    """(e) Every till edit of an article Fortnox has is reported as overwritten."""
    reported = {n.fields["message_id"] for n in world.notes_named("article.till_edit_overwritten")}
    fortnox_numbers = observed_by_fortnox(world)
    for msg in world.processed:
        if isinstance(msg, tl.ArticleEdited) and msg.data.article_number in fortnox_numbers:
            earlier = world.processed.index(msg)
            known = any(
                m.type == "fortnox.article.changed"  # type: ignore[attr-defined]
                and m.data.article.article_number == msg.data.article_number  # type: ignore[attr-defined]
                for m in world.processed[:earlier]
            )
            if known:
                assert msg.id in reported, msg


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    delete_missing=st.booleans(),
    initial=till_only,
    fortnox=initial_fortnox,
    actions=actions_st,
)
def test_barcodes_unique_at_every_step_and_the_till_converges(
    delete_missing: bool,
    initial: list[tuple[str, str | None]],
    fortnox: list[tuple[Any, ...]],
    actions: list[tuple[Any, ...]],
) -> None:
    note(f"delete_missing={delete_missing!r} initial={initial!r}")
    note(f"fortnox={fortnox!r}")
    note(f"actions={actions!r}")
    world = make_world(delete_missing, initial, fortnox)
    fresh = [0]
    for act in actions:
        apply(world, act, fresh)
        assert not world.barcode_violations, (act, world.barcode_violations)
    settle(world)
    check_converged(world, initial)
    check_till_edits_reported(world)
    assert not world.false_missing("article.deleted_in_fortnox", "article")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fortnox=initial_fortnox,
    first=st.lists(action, min_size=10, max_size=30),
    second=st.lists(action, min_size=10, max_size=30),
)
def test_a_holder_keeps_its_barcode_while_it_stays_eligible(
    fortnox: list[tuple[Any, ...]], first: list[tuple[Any, ...]], second: list[tuple[Any, ...]]
) -> None:
    """The article that holds a barcode keeps it; only a change to the holder moves it."""
    note(f"fortnox={fortnox!r}")
    note(f"first={first!r}")
    note(f"second={second!r}")
    world = make_world(False, [], fortnox)
    fresh = [0]
    for act in first:
        apply(world, act, fresh)
    settle(world)
    holders = {a["ean"]: n for n, a in world.till_articles.items() if a.get("ean")}
    checkpoint = len(world.fx_article_history)
    for act in second:
        apply(world, act, fresh)
        assert not world.barcode_violations
    settle(world)
    check_converged(world, [])
    for code, holder in holders.items():
        if _stayed_eligible(world, holder, code, checkpoint):
            assert world.till_articles.get(holder, {}).get("ean") == code, (code, holder)


def _stayed_eligible(world: World, number: str, code: str, checkpoint: int) -> bool:
    """True if Fortnox had ``number`` with barcode ``code`` and without the exclusion marker
    all the time since ``checkpoint`` (a position in the world's article history)."""
    art = world.fx_articles.get(number)
    if art is None or art.ean != code or MARKER in art.description:
        return False
    for changed, version in world.fx_article_history[checkpoint:]:
        if changed != number:
            continue
        if version is None or version.ean != code or MARKER in version.description:
            return False
    return True
