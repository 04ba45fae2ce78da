"""A tenant's settings page over HTTP, as an operator and an attacker would use it: the lists come
from the shop's Fortnox (the sandbox, over real HTTP, with the tenant's stored tokens), the
preflight shows every problem with its fix, a save is validated and versioned, an old version
can be restored, and the engine's next Z-report uses the new settings without a restart."""

from __future__ import annotations

import html
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.clock import utcnow
from engine.embedded.runtime import EmbeddedEngine
from engine.secrets import Secret
from engine.tenant_setup import read_lists
from engine.tenants import FortnoxConnection
from engine.web import settings_page
from tests.fortnox.sandbox_env import SandboxEnv, http_sandbox
from tests.ops.world import TENANT, add_tenant, new_engine
from tests.web.test_dashboard import BASE, BEARER, login, session
from topics import fortnox as fx
from topics.settings import TenantSettings
from topics.till import PaymentLine, VatLine, ZReportClosed, ZReportData

PAGE = f"/tenants/{TENANT}/settings"


def shop_settings(series: str = "B") -> TenantSettings:
    """Z-reports on, posting to ``series`` (the sandbox's B is not manual, F is), with tips on
    account 3900 (inactive in the sandbox's chart)."""
    return TenantSettings.model_validate(
        {
            "payments": {"enabled": True},
            "flush_window_seconds": 0,
            "zreports": {
                "enabled": True,
                "series": series,
                "accounts": {
                    "payment_methods": {"card": 1580, "cash": 1910},
                    "sales_by_vat": {"25": 3001, "12": 3002},
                    "vat_by_rate": {"25": 2611, "12": 2621},
                    "rounding": 3740,
                    "tips": 3900,
                },
            },
        }
    )


@dataclass
class World:
    engine: EmbeddedEngine
    env: SandboxEnv
    http: httpx.AsyncClient

    async def form(self, cookie: str) -> tuple[str, dict[str, str]]:
        """The page and its settings form's fields as a browser would post them."""
        page = await self.http.get(PAGE, headers=session(cookie))
        assert page.status_code == 200, page.text
        return page.text, form_fields(page.text)


def form_fields(page: str) -> dict[str, str]:
    """The settings form's inputs and selected options (checked boxes only), like a browser."""
    body = page.split('id="settings-form"', 1)[1].split("</form>", 1)[0]
    fields: dict[str, str] = {}
    for tag in re.findall(r"<input [^>]*>", body):
        name = re.search(r'name="([^"]+)"', tag)
        if name is None:
            continue
        value = re.search(r'value="([^"]*)"', tag)
        if 'type="checkbox"' in tag and " checked" not in tag:
            continue
        fields[html.unescape(name.group(1))] = html.unescape(value.group(1) if value else "")
    for name, options in re.findall(r'<select [^>]*name="([^"]+)"[^>]*>(.*?)</select>', body, re.S):
        chosen = re.search(r'<option value="([^"]*)" selected>', options)
        first = re.search(r'<option value="([^"]*)"', options)
        picked = chosen or first
        fields[html.unescape(name)] = html.unescape(picked.group(1)) if picked else ""
    return fields


def problem_kinds(page: str) -> list[tuple[str, str]]:
    return re.findall(r'<li class="problem" data-setting="([^"]+)" data-kind="([^"]+)">', page)


@pytest.fixture()
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with http_sandbox() as env:
        engine = new_engine(tmp_path)
        add_tenant(
            engine,
            fortnox=FortnoxConnection(
                api_base=env.base_url,
                auth_base=env.base_url,
                client_id=env.client_id,
                client_secret=Secret(env.client_secret),
            ),
        )
        config = engine.tenants.get(TENANT)
        assert config is not None
        engine.tenants.upsert(config.model_copy(update={"settings": shop_settings()}))
        await engine.token_store.save(TENANT, await env.mint())
        transport = httpx.ASGITransport(engine.app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=30) as http:
            yield World(engine, env, http)


async def test_the_page_shows_fortnoxs_lists_and_the_preflights_problems(world: World) -> None:
    cookie = await login(world.http)
    page, _ = await world.form(cookie)
    # Fortnox's own lists: every series with whether it is manual, cost centres, terms, prices.
    assert re.search(r"<option value=\"B\" selected>B — Kundfakturor \(not manual\)", page)
    assert '<option value="F">F — Kassa (manual)</option>' in page
    assert '<option value="100">100 — Butik City</option>' in page
    assert "999 — Nedlagd butik (inactive)" in page
    assert '<option value="30">30 — 30 dagar netto</option>' in page
    assert '<option value="B">B — Återförsäljare</option>' in page
    assert '<option value="1910">1910 Kassa</option>' in page  # the accounts' suggestions
    # The saved settings' preflight: the series is not manual, the tips' account is inactive.
    assert problem_kinds(page) == [
        ("zreports.series", "series_not_manual"),
        ("zreports.accounts.tips", "account_inactive"),
    ]
    assert "Manuell kontering" in page  # the fix in Fortnox
    assert "Or choose a manual series Fortnox has here: A, F." in page  # and the fix here
    # Never a script, and the strict CSP.
    answer = await world.http.get(PAGE, headers=session(cookie))
    assert "<script" not in answer.text and " style=" not in answer.text
    assert "script-src" not in answer.headers["content-security-policy"]
    assert "'unsafe-inline'" not in answer.headers["content-security-policy"]


async def test_check_shows_the_problems_of_what_was_picked_and_saves_nothing(
    world: World,
) -> None:
    cookie = await login(world.http)
    _, fields = await world.form(cookie)
    before = world.engine.tenants.versions(TENANT)
    fields.update(
        {
            "zreports.series": "F",
            "pm_val_0": "1234",
            "zreports.cost_center": "999",
            "action": "check",
        }
    )
    answer = await world.http.post(PAGE, data=fields, headers=session(cookie))
    assert answer.status_code == 200
    # Every problem, each with the setting it concerns (the series is fine now).
    assert problem_kinds(answer.text) == [
        ("zreports.accounts.payment_methods.card", "account_missing"),
        ("zreports.accounts.tips", "account_inactive"),
        ("zreports.cost_center", "cost_center_inactive"),
    ]
    assert "Or choose an active cost centre Fortnox has here: 100." in answer.text
    assert "not saved yet" in answer.text
    assert world.engine.tenants.versions(TENANT) == before
    # The operator's input is shown again as posted.
    assert re.search(r'<option value="F" selected>', answer.text)


async def test_save_is_refused_with_problems_then_saved_as_a_new_version(world: World) -> None:
    cookie = await login(world.http)
    _, fields = await world.form(cookie)
    versions = world.engine.tenants.versions(TENANT)
    fields.update({"zreports.series": "C", "action": "save"})
    refused = await world.http.post(PAGE, data=fields, headers=session(cookie))
    assert refused.status_code == 409
    assert "Not saved: the preflight found" in refused.text
    assert world.engine.tenants.versions(TENANT) == versions
    # A manual series and accounts Fortnox has: saved, versioned, in force at once.
    fields.update(
        {
            "zreports.series": "F",
            "zreports.accounts.tips": "",
            "zreports.cost_center": "100",
            "note": "series F for the till",
        }
    )
    saved = await world.http.post(PAGE, data=fields, headers=session(cookie))
    assert saved.status_code == 303, saved.text
    assert saved.headers["location"] == f"{PAGE}?saved={versions[0].version + 1}"
    config = world.engine.tenants.get(TENANT)
    assert config is not None
    assert config.settings.zreports.series == "F"
    assert config.settings.zreports.cost_center == "100"
    assert config.settings.zreports.accounts.tips is None
    assert config.settings.zreports.accounts.payment_methods == {"card": 1580, "cash": 1910}
    # Nothing the form does not show was lost.
    assert config.settings.zreports.accounts.rounding == 3740
    assert config.settings.payments.enabled and config.settings.flush_window_seconds == 0
    latest = world.engine.tenants.versions(TENANT)[0]
    assert (latest.version, latest.source, latest.note) == (
        versions[0].version + 1,
        "dashboard",
        "series F for the till",
    )
    page = await world.http.get(saved.headers["location"], headers=session(cookie))
    assert "Saved as version" in page.text
    assert 'id="preflight-clear"' in page.text
    assert "<code>zreports.series</code>: B → F" in page.text


async def test_save_anyway_keeps_the_problems_and_restore_brings_a_version_back(
    world: World,
) -> None:
    cookie = await login(world.http)
    _, fields = await world.form(cookie)
    first = world.engine.tenants.versions(TENANT)[0].version
    fields.update({"zreports.series": "C", "action": "save", "accept_problems": "1"})
    saved = await world.http.post(PAGE, data=fields, headers=session(cookie))
    assert saved.status_code == 303
    assert world.engine.tenants.get(TENANT).settings.zreports.series == "C"  # type: ignore[union-attr]
    _, fields = await world.form(cookie)
    restore = await world.http.post(
        f"{PAGE}/restore",
        data={"csrf": fields["csrf"], "version": str(first)},
        headers=session(cookie),
    )
    assert restore.status_code == 303
    assert world.engine.tenants.get(TENANT).settings.zreports.series == "B"  # type: ignore[union-attr]
    latest = world.engine.tenants.versions(TENANT)[0]
    assert (latest.version, latest.source, latest.note) == (
        first + 2,
        "restore",
        f"restored version {first}",
    )


async def test_invalid_settings_are_refused_with_the_field_and_kept_on_the_form(
    world: World,
) -> None:
    cookie = await login(world.http)
    _, fields = await world.form(cookie)
    versions = world.engine.tenants.versions(TENANT)
    for change, expected in (
        ({"pm_key_0": "card", "pm_val_0": "99"}, "payment_methods.card: Input should be greater"),
        ({"ledger.years": "11"}, "ledger.years: Input should be less than or equal to 10"),
        ({"pm_key_2": "", "pm_val_2": "1910"}, "has 1910 but no payment method"),
        ({"customers.import_fortnox_register": "1"}, "applies to till-as-master only"),
    ):
        posted = {**fields, **change, "action": "save"}
        answer = await world.http.post(PAGE, data=posted, headers=session(cookie))
        assert answer.status_code == 400, change
        assert "These settings are not valid" in answer.text
        assert expected in html.unescape(answer.text), (change, answer.text[:3000])
    assert world.engine.tenants.versions(TENANT) == versions


async def test_posts_need_the_session_and_its_csrf_token(world: World) -> None:
    cookie = await login(world.http)
    _, fields = await world.form(cookie)
    versions = world.engine.tenants.versions(TENANT)
    good = {**fields, "zreports.series": "F", "action": "save", "accept_problems": "1"}
    # No login: the login page, nothing saved.
    anonymous = await world.http.post(PAGE, data=good)
    assert anonymous.status_code == 401
    assert (await world.http.get(PAGE)).status_code == 401
    assert (await world.http.get(f"/ops/api/tenants/{TENANT}/settings")).status_code == 401
    # A forged form (another site's page, or no token): refused.
    forged = await world.http.post(PAGE, data={**good, "csrf": "forged"}, headers=session(cookie))
    assert forged.status_code == 403
    cross = await world.http.post(
        PAGE, data=good, headers={**session(cookie), "Sec-Fetch-Site": "cross-site"}
    )
    assert cross.status_code == 403
    restore = await world.http.post(
        f"{PAGE}/restore", data={"version": "1"}, headers=session(cookie)
    )
    assert restore.status_code == 403
    assert world.engine.tenants.versions(TENANT) == versions
    # An unknown tenant is a 404 page, not an error.
    missing = await world.http.get("/tenants/nobody/settings", headers=session(cookie))
    assert missing.status_code == 404


async def test_the_json_view_has_the_lists_problems_and_versions(world: World) -> None:
    answer = await world.http.get(f"/ops/api/tenants/{TENANT}/settings", headers=BEARER)
    assert answer.status_code == 200
    data: dict[str, Any] = answer.json()
    assert {s["code"]: s["manual"] for s in data["lists"]["series"]} == {
        "A": True,
        "B": False,
        "C": False,
        "F": True,
    }
    assert data["settings"]["zreports"]["series"] == "B"
    assert data["problems"][0]["kind"] == "series_not_manual"
    assert data["problems"][0]["here"].endswith("A, F.")
    assert data["versions"][0]["source"] == "config"
    assert data["fortnox_error"] is None


async def test_without_fortnox_the_page_says_why_and_still_edits(world: World) -> None:
    await world.engine.token_store.delete(TENANT)
    cookie = await login(world.http)
    page, fields = await world.form(cookie)
    assert 'id="fortnox-unread"' in page
    assert 'id="preflight-skipped"' in page
    # The saved values are still offered (marked as not found in Fortnox).
    assert '<option value="B" selected>B — not in Fortnox</option>' in page
    refused = await world.http.post(
        PAGE, data={**fields, "action": "save"}, headers=session(cookie)
    )
    assert refused.status_code == 409
    assert "Fortnox&#39;s lists could not be read" in refused.text


def zreport(number: int, till: str, method: str) -> ZReportClosed:
    return ZReportClosed(
        id=f"z-{number}",
        tenant=TENANT,
        occurred_at=utcnow(),
        data=ZReportData(
            z_number=number,
            till_id=till,
            business_date=utcnow().date(),
            payments=[PaymentLine(method=method, amount=Decimal("125.00"))],
            vat=[VatLine(rate=Decimal(25), sales_net=Decimal(100), sales_vat=Decimal(25))],
        ),
    )


async def test_a_saved_change_reaches_the_z_report_flow_without_a_restart(world: World) -> None:
    """Two Z-reports wait: one for the series that is not manual, one for a payment method
    with no account. The page runs the preflight on them too, offers a row for the new till
    and payment method, and once the operator picks series F and an account for Swish the same
    engine posts both (no restart, no other step)."""
    engine = world.engine
    config = engine.tenants.get(TENANT)
    assert config is not None
    async with await engine._api_for(config) as api:
        lists = await read_lists(api, utcnow().date())
    engine.ops.store.append(
        fx.FortnoxMasterDataRefreshed(
            id="md-1", tenant=TENANT, occurred_at=utcnow(), data=lists.master
        )
    )
    engine.ops.store.append(zreport(1, "K1", "card"))
    engine.ops.store.append(zreport(2, "K2", "swish"))
    engine.processor.step()
    waits = {
        key: engine.ops.store.record(TENANT, "zr", key)["error"]["kind"]  # type: ignore[index]
        for key in ("K1:1", "K2:2")
    }
    assert waits == {"K1:1": "series_not_manual", "K2:2": "account_mapping_missing"}

    cookie = await login(world.http)
    page, fields = await world.form(cookie)
    today = utcnow().date()
    assert problem_kinds(page) == [
        ("zreports.series", "series_not_manual"),
        ("zreports.accounts.tips", "account_inactive"),
        ("zreports.accounts.payment_methods.swish", "account_mapping_missing"),
    ]
    assert f"Z-report 1 (till K1, {today}) waits for it." in page
    assert f"Z-report 2 (till K2, {today}) waits for it." in page
    # Rows for what the till's reports use and the settings lack, their accounts to pick.
    assert (fields["pm_key_2"], fields["pm_val_2"]) == ("swish", "")
    assert [fields[f"cc_key_{i}"] for i in range(2)] == ["K1", "K2"]
    fields.update(
        {
            "zreports.series": "F",
            "zreports.accounts.tips": "",
            "pm_val_2": "1930",
            "action": "save",
        }
    )
    saved = await world.http.post(PAGE, data=fields, headers=session(cookie))
    assert saved.status_code == 303, saved.text
    engine.processor.step()
    for key in ("K1:1", "K2:2"):
        posted = engine.ops.store.record(TENANT, "zr", key)
        assert posted is not None and posted["status"] == "posting", posted


async def test_markup_in_fortnoxs_lists_is_shown_as_text(world: World) -> None:
    """A cost centre someone named with HTML in Fortnox cannot put script on the page."""
    created = await world.env.admin.post(
        f"/_sandbox/tenants/{world.env.tenant_id}/records/costcenters",
        json={"Code": "X1", "Description": '<script>alert("x")</script><b onmouseover=1>'},
    )
    assert created.status_code == 201, created.text
    cookie = await login(world.http)
    page = await world.http.get(f"{PAGE}?reload=1", headers=session(cookie))
    assert page.status_code == 200
    assert "<script" not in page.text and "<b onmouseover" not in page.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page.text


async def test_a_fortnox_that_does_not_answer_in_time_is_said_not_waited_for(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings_page, "LISTS_TIMEOUT_SECONDS", 0.5)
    await world.env.fault("latency", ms=2000, path_prefix="/3/costcenters")
    cookie = await login(world.http)
    started = time.monotonic()
    page = await world.http.get(PAGE, headers=session(cookie))
    assert time.monotonic() - started < 1.9  # not the 2 s Fortnox takes
    assert page.status_code == 200
    assert 'id="fortnox-unread"' in page.text
    assert "Fortnox did not answer within 0.5 seconds" in page.text
