"""The operator's day, through the app over HTTP: the overview of thousands of tenants with
search, filter and paging; the dead letters of every tenant; auto-refresh and local times;
each document's state with a re-run; a fixed problem's stale dead letter and a no-op retry."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
import pytest

from engine.clock import utcnow
from engine.embedded.runtime import EmbeddedEngine
from tests.ops.world import (
    ADMIN_TOKEN,
    TENANT,
    Till,
    add_tenant,
    deliver,
    new_engine,
    paused_with_dead_letters,
    payment,
)
from tests.web.test_dashboard import BASE, BEARER, csrf_of, login, session
from topics import fortnox as fx

ROW = re.compile(r'<tr><td><a href="/tenants/([^"]+)">')


def tenants_listed(page: str) -> list[str]:
    table = (
        page.split('id="tenants"', 1)[1].split("</table>", 1)[0] if 'id="tenants"' in page else ""
    )
    return ROW.findall(table)


def changed_payment(engine: EmbeddedEngine, number: str, amount: str, seq: int) -> None:
    """Fortnox shows a new version of a payment (another amount)."""
    engine.ops.store.append(
        fx.FortnoxPaymentChanged(
            id=f"fx-pay-{number}-{seq}",
            tenant=TENANT,
            occurred_at=utcnow(),
            data=fx.FortnoxPaymentData(
                payment=fx.FortnoxPayment(
                    number=number,
                    invoice_number=1000 + int(number),
                    amount=Decimal(amount),
                    payment_date=dt.date(2026, 11, 21),
                ),
                observed=fx.Observation(seq=seq),
            ),
        )
    )


@pytest.fixture()
async def crowd(tmp_path: Path) -> EmbeddedEngine:
    """3,000 shops and a paused one with two dead letters."""
    engine = new_engine(tmp_path)
    await paused_with_dead_letters(engine, "1", "2")
    for n in range(3000):
        add_tenant(engine, f"shop{n:04d}", name=f"Shop number {n}")
    return engine


@pytest.fixture()
async def client(crowd: EmbeddedEngine) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(crowd.app), base_url=BASE) as c:
        yield c


async def test_the_overview_of_3000_tenants_is_searched_filtered_and_paged(
    client: httpx.AsyncClient,
) -> None:
    started = time.perf_counter()
    first = await client.get("/", headers=BEARER)
    took = time.perf_counter() - started
    assert first.status_code == 200
    assert tenants_listed(first.text) == [TENANT] + [f"shop{n:04d}" for n in range(49)]
    assert "page 1 of 61" in first.text and "3001 tenants" in first.text
    assert 'rel="next"' in first.text and "page=2" in first.text
    # The page stays a page: 50 rows, not 3,001 (the old overview listed every tenant).
    assert len(first.text) < 200_000, len(first.text)
    assert took < 10, f"the overview of 3,001 tenants took {took:.1f} s"

    last = await client.get("/?page=61", headers=BEARER)
    assert tenants_listed(last.text) == ["shop2999"]
    beyond = await client.get("/?page=999", headers=BEARER)
    assert tenants_listed(beyond.text) == ["shop2999"] and "page 61 of 61" in beyond.text
    wide = await client.get("/?per=200&page=2", headers=BEARER)
    assert len(tenants_listed(wide.text)) == 200 and "page 2 of 16" in wide.text

    by_id = await client.get("/?q=SHOP0042", headers=BEARER)
    assert tenants_listed(by_id.text) == ["shop0042"]
    by_name = await client.get("/?q=number+42", headers=BEARER)
    assert tenants_listed(by_name.text) == ["shop0042"] + [f"shop{n:04d}" for n in range(420, 430)]
    assert "(11 tenants shown)" in by_name.text
    # Paging keeps the search.
    paged = await client.get("/?q=number+1&per=25", headers=BEARER)
    assert 'href="?q=number+1&amp;per=25&amp;page=2"' in paged.text

    problems = await client.get("/?light=problems", headers=BEARER)
    assert tenants_listed(problems.text) == [TENANT]
    older_link = await client.get("/?only=problems", headers=BEARER)
    assert tenants_listed(older_link.text) == [TENANT]
    red_first = await client.get("/?sort=light&q=shop000", headers=BEARER)
    assert tenants_listed(red_first.text)[0] == "shop0000"  # no red one matches the search
    red_first = await client.get("/?sort=light&per=25&page=1", headers=BEARER)
    assert tenants_listed(red_first.text)[0] == TENANT
    nothing = await client.get("/?q=no-such-shop", headers=BEARER)
    assert "No tenants to show for this search" in nothing.text
    junk = await client.get("/?light=<b>&page=x&per=-5", headers=BEARER)
    assert junk.status_code == 200 and "<b>" not in junk.text


async def test_dead_letters_of_every_tenant_on_one_page(tmp_path: Path) -> None:
    engine = new_engine(tmp_path)
    await paused_with_dead_letters(engine, "1", "2")
    add_tenant(engine, "kiosken", name="Kiosken")
    payment(engine, "7", tenant="kiosken")
    await deliver(engine, Till(), tenant="kiosken")
    kiosk = engine.ops.dead_letters(tenant="kiosken")[0].id
    async with httpx.AsyncClient(transport=httpx.ASGITransport(engine.app), base_url=BASE) as c:
        page = (await c.get("/deadletters", headers=BEARER)).text
        assert page.count('<tr><td><a href="/tenants/') == 3
        assert "bageriet (2)" in page and "kiosken (1)" in page and "Payments (3)" in page
        one = (await c.get("/deadletters?tenant=kiosken", headers=BEARER)).text
        assert one.count('<tr><td><a href="/tenants/') == 1 and kiosk in one
        none = (await c.get("/deadletters?flow=stock", headers=BEARER)).text
        assert "No open dead letters for this filter" in none
        paged = (await c.get("/deadletters?per=2&page=2", headers=BEARER)).text
        assert paged.count('<tr><td><a href="/tenants/') == 1 and "page 2 of 2" in paged
        overview = (await c.get("/", headers=BEARER)).text
        assert 'href="/deadletters?tenant=bageriet"' in overview

        # Retry from the page: back on the same filtered page, with what happened.
        cookie = await login(c)
        csrf = csrf_of((await c.get("/deadletters?tenant=kiosken", headers=session(cookie))).text)
        answer = await c.post(
            f"/deadletters/{quote(kiosk, safe='')}/retry",
            data={"csrf": csrf, "next": "/deadletters?tenant=kiosken&page=1"},
            headers=session(cookie),
        )
        assert answer.status_code == 303
        location = answer.headers["location"]
        assert location.startswith("/deadletters?tenant=kiosken&page=1&done=requeued&id=")
        shown = (await c.get(location, headers=session(cookie))).text
        assert f"Dead letter {kiosk} retried: its command was queued again." in shown
        assert "No open dead letters for this filter" in shown
        retried = (await c.get("/deadletters?status=retried", headers=BEARER)).text
        assert kiosk in retried and "retried" in retried

        first = engine.ops.dead_letters(tenant=TENANT)[0].id
        answer = await c.post(
            f"/deadletters/{quote(first, safe='')}/discard",
            data={"csrf": csrf, "next": "/deadletters?flow=payments"},
            headers=session(cookie),
        )
        assert answer.headers["location"].startswith("/deadletters?flow=payments&done=discarded")
        assert [d.id for d in engine.ops.dead_letters()] == [
            d.id for d in engine.ops.dead_letters(tenant=TENANT)
        ]
        assert len(engine.ops.dead_letters()) == 1
        api = await c.get("/ops/api/deadletters?status=discarded", headers=BEARER)
        assert [d["id"] for d in api.json()["dead_letters"]] == [first]


async def test_pages_reload_themselves_and_show_local_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KASSASYNC_DASHBOARD_TZ", "America/New_York")
    monkeypatch.setenv("KASSASYNC_DASHBOARD_REFRESH", "20")
    engine = new_engine(tmp_path)
    await paused_with_dead_letters(engine, "1")
    row = engine.ops.dead_letters()[0]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(engine.app), base_url=BASE) as c:
        for path in ("/", "/deadletters", f"/tenants/{TENANT}", "/system"):
            page = (await c.get(path, headers=BEARER)).text
            assert '<meta http-equiv="refresh" content="20">' in page, path
            assert "reloads every 20 s" in page and "America/New_York" in page, path
            assert re.search(r"updated \d\d:\d\d:\d\d America/New_York", page), path
        stopped = (await c.get("/deadletters?tenant=bageriet&refresh=off", headers=BEARER)).text
        assert 'http-equiv="refresh"' not in stopped
        page = (await c.get("/deadletters", headers=BEARER)).text
        assert 'href="/deadletters?refresh=off"' in page
        # The dead letter's time: New York's, with UTC in the title.
        since = dt.datetime.fromtimestamp(row.created_at, ZoneInfo("America/New_York"))
        utc = dt.datetime.fromtimestamp(row.created_at, dt.UTC)
        local = since.strftime("%Y-%m-%d %H:%M:%S %Z")
        assert local.endswith((" EST", " EDT"))
        assert f'title="{utc:%Y-%m-%d %H:%M:%S} UTC">{local}</time>' in page
        # No raw ISO or microsecond stamp in the text the operator reads.
        shown = " ".join(re.findall(r">([^<]*)<", page.split("<main>", 1)[1].split("<details>")[0]))
        assert "+00:00" not in shown and not re.search(r"\d\d:\d\d:\d\d\.\d", shown)
    monkeypatch.setenv("KASSASYNC_DASHBOARD_REFRESH", "0")
    quiet = new_engine(tmp_path / "quiet")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(quiet.app), base_url=BASE) as c:
        assert 'http-equiv="refresh"' not in (await c.get("/", headers=BEARER)).text


async def test_each_payment_shows_its_state_and_a_failed_one_runs_again(tmp_path: Path) -> None:
    engine = new_engine(tmp_path)
    add_tenant(engine)
    payment(engine, "1")
    payment(engine, "2")
    till = Till()
    await deliver(engine, till)  # both refused: dead letters
    till.accept = True
    changed_payment(engine, "2", "99.00", seq=5)
    await deliver(engine, till)  # payment 2's new version reaches the till
    async with httpx.AsyncClient(transport=httpx.ASGITransport(engine.app), base_url=BASE) as c:
        cookie = await login(c)
        page = (await c.get(f"/tenants/{TENANT}", headers=session(cookie))).text
        docs = page.split('id="document-list"', 1)[1].split("</table>", 1)[0]
        rows = docs.split("<tr>")[2:]
        assert len(rows) == 2
        two, one = rows  # newest first
        assert "payment 2 of invoice 1002" in two and "state-done" in two
        assert "Re-run" not in two
        assert "payment 1 of invoice 1001" in one and "state-failed" in one
        assert "the till refused it" in one and ">Re-run</button>" in one
        failed_only = (await c.get(f"/tenants/{TENANT}?phase=failed", headers=BEARER)).text
        listed = failed_only.split('id="document-list"', 1)[1].split("</table>", 1)[0]
        assert "payment 1 of" in listed and "payment 2 of" not in listed
        only_z = (await c.get(f"/tenants/{TENANT}?doc=zreport", headers=BEARER)).text
        assert "No documents for this filter" in only_z

        csrf = csrf_of(page)
        rerun = await c.post(
            f"/tenants/{TENANT}/documents/payment/1/rerun",
            data={"csrf": csrf, "next": f"/tenants/{TENANT}#documents"},
            headers=session(cookie),
        )
        assert rerun.status_code == 303
        shown = (await c.get(rerun.headers["location"], headers=session(cookie))).text
        assert "Payment 1: its dead letter was retried." in shown
        await deliver(engine, till)
        assert [p["data"]["payment"]["number"] for p in till.received][-1] == "1"
        after = (await c.get(f"/tenants/{TENANT}", headers=BEARER)).text
        docs = after.split('id="document-list"', 1)[1].split("</table>", 1)[0]
        assert docs.count("state-done") == 2 and ">Re-run</button>" not in docs
        # Running a done one again does nothing, and says so.
        again = await c.post(
            f"/tenants/{TENANT}/documents/payment/1/rerun",
            data={"csrf": csrf},
            headers=session(cookie),
        )
        text = (await c.get(again.headers["location"], headers=session(cookie))).text
        assert "Nothing to re-run: Payment 1 is done (payment 1 of invoice 1001)." in text
        api = await c.get(f"/ops/api/tenants/{TENANT}/documents?kind=payment", headers=BEARER)
        by_key = {d["key"]: d for d in api.json()["documents"]}
        assert by_key["1"]["phase"] == "done" and by_key["1"]["fortnox"].startswith("payment 1")
        assert not by_key["1"]["can_rerun"]
        noop = await c.post(f"/ops/api/tenants/{TENANT}/documents/payment/1/rerun", headers=BEARER)
        assert noop.status_code == 200 and noop.json()["noop"] is True
        missing = await c.post(
            f"/tenants/{TENANT}/documents/payment/404/rerun",
            data={"csrf": csrf},
            headers=session(cookie),
        )
        assert "failed=" in missing.headers["location"]


async def test_a_fixed_problem_marks_its_stale_dead_letter_and_a_no_op_retry_says_so(
    tmp_path: Path,
) -> None:
    engine = new_engine(tmp_path)
    add_tenant(engine)
    payment(engine, "1")
    payment(engine, "2")
    till = Till()
    await deliver(engine, till)
    stale_one, stale_two = (d.id for d in engine.ops.dead_letters())
    # The shop fixes the mapping and corrects both payments in Fortnox: new versions arrive.
    till.accept = True
    changed_payment(engine, "1", "130.00", seq=11)
    changed_payment(engine, "2", "140.00", seq=12)
    await deliver(engine, till)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(engine.app), base_url=BASE) as c:
        page = (await c.get(f"/tenants/{TENANT}", headers=BEARER)).text
        assert page.count("✓ fixed since: a later version of payment") == 2
        listing = (await c.get("/deadletters", headers=BEARER)).text
        assert "Mark the 2 fixed one(s) resolved" in listing

        # Retry of a fixed one: nothing is sent again, and the page says so.
        cookie = await login(c)
        csrf = csrf_of((await c.get(f"/tenants/{TENANT}", headers=session(cookie))).text)
        sent = len(till.received)
        answer = await c.post(
            f"/deadletters/{quote(stale_one, safe='')}/retry",
            data={"csrf": csrf, "next": f"/tenants/{TENANT}"},
            headers=session(cookie),
        )
        shown = (await c.get(answer.headers["location"], headers=session(cookie))).text
        assert (
            "Nothing to retry: a later version of payment 1 reached the till since. "
            "The dead letter is marked resolved."
        ) in shown
        await deliver(engine, till)
        assert len(till.received) == sent  # the old version was not sent again

        # The other one: the engine's sweep (or the page's button) marks it resolved.
        assert engine.ops.resolve_fixed() == [stale_two]
        resolved = await c.get("/ops/api/deadletters?status=resolved", headers=BEARER)
        assert {d["id"] for d in resolved.json()["dead_letters"]} == {stale_one, stale_two}
        overview = (await c.get("/ops/api/overview", headers=BEARER)).json()
        assert overview["tenants"][0]["dead_letters"] == 0
        flows = {f["flow"]: f["light"] for f in overview["tenants"][0]["flows"]}
        assert flows["payments"] != "red"
        # An API retry of a dead letter that is not stale still retries (not a no-op).
        assert engine.ops.resolve_fixed() == []


async def test_the_resolve_button_closes_every_fixed_dead_letter(tmp_path: Path) -> None:
    engine = new_engine(tmp_path)
    add_tenant(engine)
    payment(engine, "1")
    till = Till()
    await deliver(engine, till)
    till.accept = True
    changed_payment(engine, "1", "130.00", seq=11)
    await deliver(engine, till)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(engine.app), base_url=BASE) as c:
        cookie = await login(c)
        csrf = csrf_of((await c.get("/deadletters", headers=session(cookie))).text)
        answer = await c.post(
            "/deadletters/resolve-fixed",
            data={"csrf": csrf, "next": "/deadletters?page=1"},
            headers=session(cookie),
        )
        shown = (await c.get(answer.headers["location"], headers=session(cookie))).text
        assert "1 dead letter(s) marked resolved: their documents are done by now." in shown
        assert "No open dead letters" in shown
    assert ADMIN_TOKEN not in shown
