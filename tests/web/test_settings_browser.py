"""An operator sets a shop up from its Fortnox's own lists, in headless Debian Chromium.

The engine runs for real on loopback; the shop's Fortnox is the sandbox served over HTTP (a
service account: the engine gets its own token). The operator logs in, opens the shop's settings
page, picks a voucher series that is not manual and checks: the preflight shows the problem with
its fix in Fortnox and the manual series to pick instead. The operator picks a manual series and
checks again: the problem is gone. Saving makes it version 2, which the page lists under the
first, and the engine uses it at once. Screenshots go to test-artifacts/settings-*.png.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.embedded.runtime import EmbeddedEngine
from engine.executors.fortnox import SessionTiming
from engine.secrets import SecretBox, generate_key
from engine.tenants import FortnoxConnection, TenantConfig
from sandbox.fortnox.app import create_app
from tests.fortnox.sandbox_env import serve
from tests.ops.world import ADMIN_TOKEN, Live, free_port, wait_for
from tests.web.test_browser import ARTIFACTS, start_chromium
from topics.settings import TenantSettings

pytestmark = pytest.mark.browser

SHOP = "kvarnen"


def sandbox_company(admin: httpx.Client) -> dict[str, Any]:
    """A Fortnox company (the demo seed: series A and F manual, B and C not) with a service
    account for Kassasync."""
    answer = admin.post(
        "/_sandbox/tenants",
        json={
            "seed": "demo",
            "clients": [
                {
                    "client_id": "kassasync-browser",
                    "client_secret": "browser-secret-0123456789",
                    "service_account": True,
                }
            ],
        },
    )
    assert answer.status_code == 201, answer.text
    data = answer.json()
    client = data["clients"][0]
    return {
        "client_id": client["client_id"],
        "client_secret": client["client_secret"],
        "tenant_id": data["tenant_id"],
    }


def shop(fortnox_url: str, credentials: dict[str, Any]) -> TenantConfig:
    return TenantConfig(
        id=SHOP,
        name="Kvarnen Café",
        settings=TenantSettings.model_validate(
            {
                "flush_window_seconds": 0,
                "zreports": {
                    "enabled": True,
                    "series": "F",
                    "accounts": {
                        "payment_methods": {"card": 1580, "cash": 1910, "swish": 1930},
                        "sales_by_vat": {"25": 3001, "12": 3002, "6": 3003},
                        "vat_by_rate": {"25": 2611, "12": 2621, "6": 2631},
                        "rounding": 3740,
                    },
                    "cost_centers": {"K1": "100"},
                },
            }
        ),
        fortnox=FortnoxConnection.at(fortnox_url, credentials, poll_seconds=5),
    )


def test_an_operator_picks_a_series_sees_the_preflight_problem_and_clears_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SE_OFFLINE", "true")
    ARTIFACTS.mkdir(exist_ok=True)
    with serve(create_app()) as fortnox_url, httpx.Client(base_url=fortnox_url) as admin:
        credentials = sandbox_company(admin)
        engine = EmbeddedEngine(
            tmp_path / "engine",
            SecretBox(generate_key()),
            http_port=free_port(),
            admin_token=ADMIN_TOKEN,
            timing=SessionTiming(poll_seconds=5, masterdata_seconds=30, idle_seconds=0.05),
        )
        engine.tenants.upsert(shop(fortnox_url, credentials))
        live = Live(engine)
        chrome = start_chromium(tmp_path / "chromium-profile")
        try:
            with live:
                walk(chrome, live)
        finally:
            chrome.quit()
    for name in ("1-page", "2-not-manual-problem", "3-manual-clear", "4-saved-versions"):
        assert (ARTIFACTS / f"settings-{name}.png").stat().st_size > 10_000, name


def walk(chrome: Any, live: Live) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    def shot(name: str) -> None:
        chrome.save_screenshot(str(ARTIFACTS / f"settings-{name}.png"))

    def series() -> Any:
        return Select(chrome.find_element(By.ID, "zreports-series"))

    def problems() -> list[Any]:
        return list(chrome.find_elements(By.CSS_SELECTOR, "#problems li.problem"))

    def loaded(marker: str) -> bool:
        return bool(chrome.find_elements(By.ID, marker))

    # The operator logs in and opens the shop's settings page.
    chrome.get(f"{live.url}/login?next=/tenants/{SHOP}/settings")
    wait_for(lambda: chrome.find_elements(By.ID, "token"), 10)[0].send_keys(ADMIN_TOKEN)
    chrome.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(lambda: loaded("settings-form"), 15)
    # Fortnox's series, each with whether it is manual; the saved settings pass the preflight.
    labels = {o.get_attribute("value"): o.text for o in series().options}
    assert labels == {
        "A": "A — Redovisning (manual)",
        "B": "B — Kundfakturor (not manual)",
        "C": "C — Inbetalningar (not manual)",
        "F": "F — Kassa (manual)",
    }
    assert series().first_selected_option.get_attribute("value") == "F"
    assert loaded("preflight-clear")
    rows = chrome.find_elements(By.CSS_SELECTOR, "#series-list tr[data-series=B] td")
    assert rows[-1].text == "no"
    shot("1-page")

    # A series that is not manual: the preflight's problem, its fix in Fortnox and here.
    series().select_by_value("B")
    chrome.find_element(By.ID, "check").click()
    wait_for(lambda: problems(), 15)
    found = problems()
    assert [p.get_attribute("data-kind") for p in found] == ["series_not_manual"]
    assert found[0].get_attribute("data-setting") == "zreports.series"
    text = found[0].text
    assert "Voucher series B is not manual (Manuell kontering) in Fortnox." in text
    assert "tick Manuell kontering for series B" in text
    assert "Or choose a manual series Fortnox has here: A, F." in text
    assert (
        found[0]
        .find_element(By.LINK_TEXT, "Open in Fortnox ↗")
        .get_attribute("href")
        .startswith("https://apps.fortnox.se/settings/bookkeeping/voucherseries")
    )
    assert "not saved yet" in chrome.find_element(By.ID, "preflight").text
    assert series().first_selected_option.get_attribute("value") == "B"  # kept as picked
    shot("2-not-manual-problem")

    # A manual one: the problem is gone.
    series().select_by_value("A")
    chrome.find_element(By.ID, "check").click()
    wait_for(lambda: loaded("preflight-clear"), 15)
    assert not problems()
    assert "series A" in chrome.find_element(By.ID, "preflight-clear").text
    shot("3-manual-clear")

    # Saved: version 2 (the configuration's was 1), in force without a restart.
    chrome.find_element(By.ID, "note").send_keys("series A for the café's tills")
    chrome.find_element(By.ID, "save").click()
    wait_for(lambda: "Saved as version 2" in chrome.page_source, 15)
    versions = chrome.find_elements(By.CSS_SELECTOR, "#versions-table tbody tr")
    assert [v.get_attribute("data-version") for v in versions] == ["2", "1"]
    assert "zreports.series: F → A" in versions[0].text
    assert "series A for the café's tills" in versions[0].text
    assert versions[1].find_elements(By.CSS_SELECTOR, "button")  # Restore the first
    chrome.find_element(By.ID, "versions").location_once_scrolled_into_view  # noqa: B018
    shot("4-saved-versions")
    with live.api() as api:
        data = api.get(f"/ops/api/tenants/{SHOP}/settings").json()
        assert data["settings"]["zreports"]["series"] == "A"
        assert data["problems"] == []
