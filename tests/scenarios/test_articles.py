"""Articles through the running engine: Fortnox is master, #E#, unique barcodes, till edits."""

from __future__ import annotations

import pytest

from tests.scenarios.conftest import Factory

pytestmark = pytest.mark.slow


async def test_fortnox_articles_reach_the_till_with_the_price_list(runtime: Factory) -> None:
    async with runtime() as rt:
        await rt.settle()
        assert rt.till.articles["1001"]["price"] == "69.00"
        assert rt.till.articles["1001"]["description"] == "Kaffe bryggmalet 450 g"
        assert "2008" in rt.till.articles  # service articles too
        assert "X-900" not in rt.till.articles  # '#E#' in the description
        assert rt.state("art.want", "X-900") == {
            "in_till": False,
            "reason": "excluded",
            "ean_held": None,
            "ean_waiting": None,
        }


async def test_price_comes_from_the_chosen_price_list(runtime: Factory) -> None:
    async with runtime({"articles": {"price_list": "B"}}) as rt:
        await rt.settle()
        assert rt.till.articles["1001"]["price"] == "55.20"  # list B; list A's price is 69.00
        # A price-list change does not touch the article's lastmodified: the next full pass
        # (every 6 hours) is what brings it.
        await rt.admin("PUT", "/prices/B/1001/0", json={"Price": 55.0})
        rt.force_full_sync()
        await rt.settle()
        assert rt.till.articles["1001"]["price"] == "55.00"


async def test_gaining_and_losing_the_exclusion_marker(runtime: Factory) -> None:
    async with runtime() as rt:
        await rt.settle()
        assert "1001" in rt.till.articles
        await rt.admin("PATCH", "/records/articles/1001", json={"Description": "Kaffe #E#"})
        await rt.settle()
        assert "1001" not in rt.till.articles
        await rt.admin("PATCH", "/records/articles/1001", json={"Description": "Kaffe åter"})
        await rt.settle()
        assert rt.till.articles["1001"]["description"] == "Kaffe åter"


async def test_a_barcode_newcomer_waits_and_is_admitted_when_the_holder_lets_go(
    runtime: Factory,
) -> None:
    async with runtime() as rt:
        await rt.settle()
        shared = rt.till.articles["2001"]["ean"]
        assert "X-901" not in rt.till.articles
        want = rt.state("art.want", "X-901")
        assert want is not None and want["reason"] == "barcode_conflict"
        report = rt.state("report", "article:X-901")
        assert report is not None and report["kind"] == "barcode_conflict"
        await rt.admin("PATCH", "/records/articles/2001", json={"EAN": "7359999999994"})
        await rt.settle()
        assert rt.till.articles["X-901"]["ean"] == shared
        assert rt.till.articles["2001"]["ean"] == "7359999999994"
        assert rt.till.refused == 0  # the till never saw two articles with one barcode


async def test_a_till_edit_is_overwritten_and_reported(runtime: Factory) -> None:
    async with runtime() as rt:
        await rt.settle()
        rt.till.articles["1001"]["price"] = "1.00"  # the clerk's edit in the till
        await rt.send(
            rt.event(
                "till.article.edited", {"article_number": "1001", "changes": {"price": "1.00"}}
            )
        )
        await rt.settle()
        assert rt.till.articles["1001"]["price"] == "69.00"
        report = rt.state("report", "article:1001")
        assert report is not None and report["kind"] == "till_edit_overwritten"


async def test_an_article_deleted_in_fortnox_leaves_the_till(runtime: Factory) -> None:
    async with runtime() as rt:
        await rt.settle()
        assert "3005" in rt.till.articles
        await rt.admin("DELETE", "/records/articles/3005")
        rt.force_full_sync()
        await rt.settle()
        assert "3005" not in rt.till.articles


async def test_pending_drift_is_zero_at_quiescence_with_held_out_articles(runtime: Factory) -> None:
    """The demo company has an #E#-excluded stock article (X-900) and one whose barcode another
    article holds (X-901): their stock waits for them, it is not drift (docs/operations.md)."""
    async with runtime() as rt:
        await rt.settle()
        assert "X-900" not in rt.till.articles and "X-901" not in rt.till.articles
        drift = await rt.drift()
        assert (drift.unsettled_stock, drift.unsent_articles) == (0, 0), drift
