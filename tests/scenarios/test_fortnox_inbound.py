"""What comes in from Fortnox, through the running engine (both runtimes): odd records, skewed
clocks, full passes.

* A record Fortnox accepts never stops the tenant's polling: what the till cannot take is
  reported for that article, and the rest of the register (and the customer and payment polls
  behind it) goes on syncing.
* Poll cursors come from Fortnox's own clock: with the engine's clock 10 minutes ahead of or
  behind Fortnox's, no article, customer or payment is lost (without waiting for a full pass).
* The full pass runs at start-up: delete-missing removes till-only articles and customers after a
  restart, and the dashboard's last full pass moves.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from engine import clock
from sandbox.fortnox.clock import BusinessClock
from tests.scenarios.conftest import Factory
from tests.scenarios.harness import TENANT, ScenarioRuntime

pytestmark = pytest.mark.slow


@pytest.fixture()
def engine_clock() -> Iterator[None]:
    """Restores the engine's clock after a test that skews it."""
    yield
    clock.skew(dt.timedelta(0))


async def _add_payment(rt: ScenarioRuntime, amount: float) -> int:
    """Register a payment in Fortnox on an open invoice; returns the invoice number."""
    invoices = (await rt.fortnox("invoices"))["invoices"]
    number = next(
        int(i["DocumentNumber"])
        for i in sorted(invoices, key=lambda i: int(i["DocumentNumber"]))
        if float(i.get("Balance") or 0) >= amount
    )
    await rt.admin(
        "POST",
        f"/invoices/{number}/payments",
        json={"Amount": amount, "PaymentDate": rt.sandbox_state.clock.today().isoformat()},
    )
    return number


def _paid(rt: ScenarioRuntime, invoice: int, amount: str) -> bool:
    return any(
        p["invoice_number"] == invoice and p["amount"] == amount for p in rt.till.payments.values()
    )


def _full_passes(rt: Any) -> dict[str, float | None]:
    passes: dict[str, float | None] = rt.full_passes()
    return passes


async def test_an_article_the_till_cannot_take_is_reported_and_the_rest_goes_on(
    runtime: Factory,
) -> None:
    async with runtime() as rt:
        await rt.settle()
        session = rt.session  # type: ignore[attr-defined]
        held = rt.till.articles["1001"]
        # Fortnox takes a barcode with a space and a description with a control character.
        await rt.admin("PATCH", "/records/articles/1001", json={"EAN": "123 456"})
        await rt.admin(
            "POST",
            "/records/articles",
            json={"ArticleNumber": "N-77", "Description": "Ny\x07vara", "SalesPrice": 10},
        )
        # Later changes of other records, in every register the session polls.
        await rt.admin("PATCH", "/records/articles/1002", json={"Description": "Te grönt 20 p"})
        await rt.admin("PATCH", "/records/customers/1", json={"Name": "Anna Berg"})
        invoice = await _add_payment(rt, 11.0)
        await rt.settle()

        # The session never stopped: same session, polls done, nothing crashed.
        assert rt.session is session  # type: ignore[attr-defined]
        assert rt.till.articles["1002"]["description"] == "Te grönt 20 p"
        assert rt.till.customers["fortnox-1"]["name"] == "Anna Berg"
        assert _paid(rt, invoice, "11.00")

        # The till keeps the version of 1001 it took; the shop is told what to fix.
        assert rt.till.articles["1001"] == held
        report = rt.state("report", "article:1001")
        assert report is not None and report["kind"] == "till_refuses_article"
        assert report["fields"] == ["ean"] and report["values"] == {"ean": "123 456"}
        assert "barcode" in report["fix"]
        assert "N-77" not in rt.till.articles
        report = rt.state("report", "article:N-77")
        assert report is not None and report["fields"] == ["description"]
        if rt.name == "embedded":  # the dashboard's tenant page lists the report
            engine: Any = rt.engine  # type: ignore[attr-defined]
            page = await rt.http.get(
                f"{rt.engine_url}/tenants/{TENANT}",  # type: ignore[attr-defined]
                headers={"Authorization": f"Bearer {engine.admin_token}"},
            )
            assert page.status_code == 200 and "till_refuses_article" in page.text
            # In the shop's words (what to fix), the record behind a disclosure.
            assert f'<div class="report-said">{report["fix"]}</div>' in page.text

        # Fixed in Fortnox: the article reaches the till as usual.
        await rt.admin("PATCH", "/records/articles/1001", json={"EAN": "7350000001234"})
        await rt.admin("PATCH", "/records/articles/N-77", json={"Description": "Ny vara"})
        await rt.settle()
        assert rt.till.articles["1001"]["ean"] == "7350000001234"
        assert rt.till.articles["N-77"]["description"] == "Ny vara"
        assert rt.till.refused == 0


async def test_a_full_pass_does_not_take_a_refused_article_for_missing(runtime: Factory) -> None:
    async with runtime({"articles": {"delete_missing": True}}) as rt:
        await rt.settle()
        await rt.admin("PATCH", "/records/articles/1001", json={"EAN": "123 456"})
        await rt.settle()
        rt.force_full_sync()
        await rt.settle()
        assert "1001" in rt.till.articles
        want = rt.state("art.want", "1001")
        assert want is not None and want["reason"] == "till_refuses"


@pytest.mark.parametrize(
    "skew",
    [
        "fortnox_behind",
        "fortnox_ahead",
        "engine_ahead",
    ],
)
async def test_skewed_clocks_lose_no_article_customer_or_payment(
    runtime: Factory, engine_clock: None, skew: str
) -> None:
    """Fortnox's clock 10 minutes behind the engine's (the sandbox's clock started in the past,
    or the engine's clock skewed ahead) or ahead of it: every change made in Fortnox reaches the
    till by the incremental polls, without waiting for a full pass."""
    options: dict[str, Any] = {}
    if skew == "fortnox_behind":
        start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
        options["fortnox_clock"] = BusinessClock(start=start)
    async with runtime(**options) as rt:
        if skew == "engine_ahead":
            clock.skew(dt.timedelta(minutes=10))
        elif skew == "fortnox_ahead":
            moved = await rt.http.post(
                f"{rt.sandbox_url}/_sandbox/clock/advance", json={"minutes": 10}
            )
            assert moved.status_code == 200, moved.text
        await rt.settle()
        passes = _full_passes(rt)
        for round_ in range(3):
            await rt.admin(
                "PATCH", "/records/articles/1002", json={"Description": f"Te runda {round_}"}
            )
            await rt.admin("PATCH", "/records/customers/1", json={"Name": f"Anna {round_}"})
            invoice = await _add_payment(rt, 3.0 + round_)
            await rt.settle()
            assert rt.till.articles["1002"]["description"] == f"Te runda {round_}"
            assert rt.till.customers["fortnox-1"]["name"] == f"Anna {round_}"
            assert _paid(rt, invoice, f"{3 + round_}.00")
        # Seen by the incremental polls, not by a full pass.
        assert _full_passes(rt) == passes


async def test_delete_missing_removes_till_only_and_deleted_records_at_the_start_up_full_pass(
    runtime: Factory,
) -> None:
    settings: dict[str, Any] = {
        "articles": {"delete_missing": True},
        "customers": {"master": "fortnox", "delete_missing": True},
    }
    # Without the topics feed, only a full pass can notice what is gone from Fortnox.
    async with runtime(settings, feed=False) as rt:
        await rt.settle()
        assert "fortnox-5" in rt.till.customers and "3005" in rt.till.articles
        # The till reports an article Fortnox does not have; Fortnox loses a customer and an
        # article.
        rt.till.articles["T-1"] = {"article_number": "T-1", "description": "Bara i kassan"}
        await rt.send(
            rt.event(
                "till.article.edited",
                {"article_number": "T-1", "changes": {"description": "Bara i kassan"}},
            )
        )
        await rt.admin("DELETE", "/records/customers/5")
        await rt.admin("DELETE", "/records/articles/3005")
        await rt.settle()
        # Incremental polls cannot see what is gone: all three are still in the till.
        assert "T-1" in rt.till.articles
        assert "fortnox-5" in rt.till.customers and "3005" in rt.till.articles
        before = _full_passes(rt)

        await rt.restart()  # type: ignore[attr-defined]
        await rt.settle()

        after = _full_passes(rt)
        for resource in ("articles", "customers", "payments"):
            assert (after.get(resource) or 0) > (before.get(resource) or 0), resource
        assert "T-1" not in rt.till.articles
        assert "3005" not in rt.till.articles
        assert "fortnox-5" not in rt.till.customers
        sync = rt.state("sync", "articles")
        assert sync is not None and sync["current"] is None and sync["pass"]


async def test_turning_delete_missing_on_removes_till_only_articles_without_a_restart(
    runtime: Factory,
) -> None:
    async with runtime(feed=False) as rt:
        await rt.settle()
        rt.till.articles["T-2"] = {"article_number": "T-2", "description": "Bara i kassan"}
        await rt.send(
            rt.event(
                "till.article.edited",
                {"article_number": "T-2", "changes": {"description": "Bara i kassan"}},
            )
        )
        await rt.settle()
        assert "T-2" in rt.till.articles  # delete-missing is off: till-only articles stay
        before = _full_passes(rt)
        await rt.update_settings({"articles": {"delete_missing": True}})
        await rt.settle()
        assert "T-2" not in rt.till.articles
        assert (_full_passes(rt)["articles"] or 0) > (before["articles"] or 0)
