"""The operator surface's pure queries: what counts as pending drift."""

from __future__ import annotations

from reconcilers.queries import article_drifts, stock_drifts

SETTLED = {"base": "5", "till": "5", "fx": "5", "to_fx": "0", "to_till": "0"}
OWED = {**SETTLED, "to_till": "5"}


def test_stock_owed_to_one_side_is_drift() -> None:
    assert stock_drifts(OWED, {"in_till": True})
    assert stock_drifts(OWED, None)
    assert not stock_drifts(SETTLED, {"in_till": True})
    assert stock_drifts({**SETTLED, "fx_inflight": "cmd-1"}, None)


def test_stock_of_an_article_held_out_of_the_till_is_not_drift() -> None:
    """#E#-excluded, or its barcode held by another article: nothing is owed while it is."""
    assert not stock_drifts(OWED, {"in_till": False, "reason": "excluded"})
    assert not stock_drifts(OWED, {"in_till": False, "reason": "barcode_conflict"})


def test_an_unreadable_stock_record_is_drift() -> None:
    assert stock_drifts({"to_fx": "not a number"}, None)


def test_an_article_is_drift_until_the_till_has_what_fortnox_has() -> None:
    want = {"in_till": True, "article": {"name": "Kaffe", "price": "49"}}
    assert article_drifts(want, None)
    assert article_drifts(want, {"sent": {"name": "Kaffe", "price": "45"}})
    assert article_drifts(want, {"sent": want["article"], "stale": True})
    assert not article_drifts(want, {"sent": want["article"]})
    assert not article_drifts({**want, "in_till": False}, None)
    assert not article_drifts({**want, "keep": True}, None)
