"""A person at the dashboard, in headless Debian Chromium driven by Selenium and chromedriver.

The engine runs for real on loopback with a tenant paused (Fortnox login expired) and a payment
its till refused (a dead letter). The person logs in on /login, finds the paused tenant's error
with its fix and Fortnox link, retries the dead letter and sees it clear, then resumes the
tenant. Screenshots go to test-artifacts/ (git-ignored).

Chromium and chromedriver come from Debian (``apt-get install chromium chromium-driver``): this
test fails, and does not skip, when they are missing.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.ops.world import ADMIN_TOKEN, TENANT, live_paused_engine, wait_for

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
INSTALL = "install them with: apt-get install -y chromium chromium-driver"


def start_chromium(profile: Path, *extra: str) -> Any:
    """Headless Debian Chromium under chromedriver; fails the test when either is missing."""
    chromium = CHROMIUM if CHROMIUM.exists() else shutil.which("chromium")
    driver = CHROMEDRIVER if CHROMEDRIVER.exists() else shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.fail(f"headless Chromium and chromedriver are needed for this test; {INSTALL}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--window-size=1360,1100",
        f"--user-data-dir={profile}",
        *extra,
    ):
        options.add_argument(flag)
    chrome = webdriver.Chrome(options=options, service=Service(executable_path=str(driver)))
    chrome.set_page_load_timeout(30)
    return chrome


def test_operator_logs_in_sees_the_paused_tenant_and_retries_a_dead_letter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Never let Selenium Manager look for (or download) a browser or driver of its own.
    monkeypatch.setenv("SE_OFFLINE", "true")
    chrome = start_chromium(tmp_path / "chromium-profile")
    try:
        operate(chrome, tmp_path)
    finally:
        chrome.quit()
    for name in ("1-login", "3-tenant-paused-with-dead-letter", "4-dead-letter-retried"):
        assert (ARTIFACTS / f"dashboard-{name}.png").stat().st_size > 10_000


def operate(chrome: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    ARTIFACTS.mkdir(exist_ok=True)

    def flash_text() -> str:
        # One script, so the page cannot be replaced between finding the element and reading
        # it (a form post redirects: an element found before that is stale after).
        text = chrome.execute_script(
            "const flash = document.querySelector('.flash'); return flash ? flash.innerText : '';"
        )
        return str(text or "")

    def shot(name: str) -> Path:
        path = ARTIFACTS / f"dashboard-{name}.png"
        chrome.save_screenshot(str(path))
        return path

    with live_paused_engine(tmp_path / "engine") as (live, till):
        # Without the token: 401 and a way to log in.
        chrome.get(f"{live.url}/tenants/{TENANT}")
        assert "Log in first" in chrome.page_source
        chrome.find_element(By.LINK_TEXT, "Log in").click()
        wait_for(lambda: chrome.find_elements(By.ID, "token"), 10)[0].send_keys(ADMIN_TOKEN)
        shot("1-login")
        chrome.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

        # Back on the page asked for, with a session cookie (HttpOnly: not for scripts).
        wait_for(lambda: chrome.current_url == f"{live.url}/tenants/{TENANT}", 10)
        cookies = {c["name"]: c for c in chrome.get_cookies()}
        session = cookies["kassasync_session"]
        assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Strict"
        assert ADMIN_TOKEN not in session["value"]

        chrome.get(f"{live.url}/")
        overview = chrome.find_element(By.TAG_NAME, "table").text
        assert TENANT in overview and "paused" in overview
        shot("2-overview")

        chrome.find_element(By.LINK_TEXT, TENANT).click()
        paused = wait_for(lambda: chrome.find_elements(By.ID, "paused"), 10)[0]
        assert "Your Fortnox login has expired" in paused.text
        assert "How to fix:" in paused.text
        link = paused.find_element(By.PARTIAL_LINK_TEXT, "Fortnox settings page")
        assert link.get_attribute("href") == "https://apps.fortnox.se/integrations"
        letters = chrome.find_element(By.ID, "deadletters")
        assert letters.text == "Dead letters (1)"
        assert "payment account 1930 is not mapped" in chrome.page_source
        shot("3-tenant-paused-with-dead-letter")

        chrome.find_element(By.XPATH, "//button[normalize-space()='Retry']").click()
        wait_for(lambda: "retried: its command was queued again" in flash_text(), 10)
        assert chrome.find_element(By.ID, "deadletters").text == "Dead letters (0)"
        assert "No dead letters" in chrome.page_source
        shot("4-dead-letter-retried")

        # The requeued payment reaches the till; then the shop renews its login: resume.
        wait_for(lambda: [c for c in till.received if c["type"] == "till.payment.register"])
        chrome.find_element(By.XPATH, "//button[normalize-space()='Resume']").click()
        wait_for(lambda: "resumed" in flash_text(), 10)

        def resumed() -> bool:
            chrome.refresh()
            return not chrome.find_elements(By.ID, "paused")

        wait_for(resumed, 10, 0.3)
        shot("5-tenant-resumed")

        with live.api() as api:
            letters_left = api.get("/ops/api/deadletters").json()["dead_letters"]
            retried = api.get("/ops/api/deadletters?status=retried").json()["dead_letters"]
        assert letters_left == [] and len(retried) == 1

        chrome.get(f"{live.url}/system")
        assert "Consumer lag" in chrome.page_source
        shot("6-system")


#: A name on the shop's LAN, as an operator's browser would reach the engine; Chromium maps it
#: to the engine's loopback address. It is not "potentially trustworthy" (not localhost, not
#: HTTPS), so Chromium refuses to store a Secure cookie from it.
LAN_NAME = "kassasync.lan"


@pytest.mark.parametrize("setting", ["", "0"], ids=["secure-by-default", "cookie-secure-0"])
def test_over_plain_http_on_a_lan_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str
) -> None:
    """KASSASYNC_COOKIE_SECURE unset: Chromium drops the Secure cookie and the login does not
    stick. KASSASYNC_COOKIE_SECURE=0: the operator logs in over http://kassasync.lan:<port>/
    and uses every page, a button and the log-out."""
    from selenium.webdriver.common.by import By

    monkeypatch.setenv("SE_OFFLINE", "true")
    monkeypatch.setenv("KASSASYNC_COOKIE_SECURE", setting)
    chrome = start_chromium(
        tmp_path / "chromium-profile", f"--host-resolver-rules=MAP {LAN_NAME} 127.0.0.1"
    )
    try:
        with live_paused_engine(tmp_path / "engine") as (live, _till):
            base = live.url.replace("127.0.0.1", LAN_NAME)
            chrome.get(f"{base}/login?next=/tenants/{TENANT}")
            wait_for(lambda: chrome.find_elements(By.ID, "token"), 10)[0].send_keys(ADMIN_TOKEN)
            chrome.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            wait_for(lambda: chrome.current_url == f"{base}/tenants/{TENANT}", 10)
            if setting == "":
                assert "Log in first" in chrome.page_source
                assert not chrome.get_cookies()
                return
            session = {c["name"]: c for c in chrome.get_cookies()}["kassasync_session"]
            assert not session["secure"] and session["httpOnly"]
            assert "Your Fortnox login has expired" in chrome.page_source
            chrome.find_element(By.XPATH, "//button[normalize-space()='Retry']").click()
            wait_for(lambda: "Dead letters (0)" in chrome.page_source, 10)
            for path, text in (
                ("/", TENANT),
                ("/?only=problems", TENANT),
                ("/system", "Consumer lag"),
            ):
                chrome.get(f"{base}{path}")
                assert text in chrome.page_source, path
                assert "Log in first" not in chrome.page_source, path
            chrome.find_element(By.XPATH, "//button[normalize-space()='Log out']").click()
            wait_for(lambda: chrome.current_url.startswith(f"{base}/login"), 10)
            chrome.get(f"{base}/system")
            assert "Log in first" in chrome.page_source
    finally:
        chrome.quit()


def till_refusing(amount: str, received: list[dict[str, Any]], accept: list[bool]) -> Any:
    """A till back office that refuses payments of ``amount`` until ``accept[0]`` is set."""
    app = FastAPI()

    @app.post("/kassasync/commands")
    async def command(request: Request) -> JSONResponse:
        body = await request.json()
        paid = body.get("data", {}).get("payment", {}).get("amount")
        if body["type"] == "till.payment.register" and paid == amount and not accept[0]:
            return JSONResponse({"error": "payment account 1930 is not mapped"}, 422)
        received.append(body)
        return JSONResponse({"result": {"ok": "true"}})

    return app


def fortnox_payment(tenant: str, number: str, amount: str, seq: int) -> Any:
    import datetime as dt
    from decimal import Decimal

    from engine.clock import utcnow
    from topics import fortnox as fx

    return fx.FortnoxPaymentChanged(
        id=f"fx-pay-{tenant}-{number}-{seq}",
        tenant=tenant,
        occurred_at=utcnow(),
        data=fx.FortnoxPaymentData(
            payment=fx.FortnoxPayment(
                number=number,
                invoice_number=1000 + int(number),
                amount=Decimal(amount),
                payment_date=dt.date(2026, 11, 20 + seq % 5),
            ),
            observed=fx.Observation(seq=seq),
        ),
    )


def test_the_operators_day_on_3000_tenants(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The new pages in Chromium: search and page the overview of 3,002 tenants, the dead
    letters of every tenant (filtered, retried from there), a tenant's documents with a re-run,
    a fixed problem's dead letter resolved by the engine itself, and the history charts; the
    stylesheet loads under the strict CSP. Screenshots: dashboard-7… to dashboard-12…"""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from tests.ops.world import Live, add_tenant, free_port, new_engine

    monkeypatch.setenv("SE_OFFLINE", "true")
    ARTIFACTS.mkdir(exist_ok=True)
    received: list[dict[str, Any]] = []
    accept = [False]
    engine = new_engine(tmp_path / "engine", http_port=free_port())
    engine.ops.history.every = 0.5  # samples twice a second, so the charts fill quickly
    live = Live(engine, {"till": till_refusing("125.00", received, accept)})
    till_url = live.url_of("till") + "/kassasync/commands"
    for n in range(3000):
        add_tenant(engine, f"shop{n:04d}", name=f"Shop number {n}", till_url=till_url)
    add_tenant(engine, TENANT, till_url=till_url)
    add_tenant(engine, "kiosken", name="Kiosken vid torget", till_url=till_url)
    for message in (
        fortnox_payment(TENANT, "1", "125.00", 1),
        fortnox_payment(TENANT, "2", "125.00", 2),
        # The shop corrects payment 2 in Fortnox: the new version goes through.
        fortnox_payment(TENANT, "2", "99.00", 3),
        fortnox_payment("kiosken", "7", "125.00", 4),
    ):
        engine.ops.store.append(message)

    chrome = start_chromium(tmp_path / "chromium-profile")

    def shot(name: str) -> None:
        chrome.save_screenshot(str(ARTIFACTS / f"dashboard-{name}.png"))

    def texts(selector: str) -> list[str]:
        # One script, so a page replaced mid-read cannot leave a stale element behind.
        found = chrome.execute_script(
            "return Array.from(document.querySelectorAll(arguments[0]), e => e.innerText);",
            selector,
        )
        return [str(text) for text in found or []]

    def listed() -> list[str]:
        return texts("#tenants tbody tr td:first-child a")

    def flash() -> str:
        return " ".join(texts(".flash"))

    try:
        with live, live.api() as api:
            # Payment 1 and kiosken's 7 are refused; payment 2's refused first version is stale
            # once its second version reached the till: the engine marks it resolved itself.
            def settled() -> bool:
                open_ = api.get("/ops/api/deadletters").json()["dead_letters"]
                done = api.get("/ops/api/deadletters?status=resolved").json()["dead_letters"]
                return len(open_) == 2 and len(done) == 1

            wait_for(settled, 30, 0.2)
            chrome.get(f"{live.url}/login?next=/")
            chrome.find_element(By.ID, "token").send_keys(ADMIN_TOKEN)
            chrome.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            wait_for(lambda: chrome.find_elements(By.ID, "tenants"), 20)
            # The stylesheet is served by the app and allowed by the CSP.
            header = chrome.execute_script(
                "return getComputedStyle(document.querySelector('header')).backgroundColor"
            )
            assert header == "rgb(36, 41, 47)"
            assert "page 1 of 61" in " ".join(texts(".pager"))
            assert len(listed()) == 50

            search = chrome.find_element(By.ID, "q")
            search.send_keys("number 42")
            search.submit()
            wait_for(lambda: listed() and listed()[0] == "shop0042", 20)
            assert len(listed()) == 11
            shot("7-overview-search")

            chrome.get(f"{live.url}/")
            Select(chrome.find_element(By.ID, "light")).select_by_value("problems")
            chrome.find_element(By.ID, "light").submit()
            wait_for(lambda: listed() == [TENANT, "kiosken"], 20)
            shot("8-overview-problems")

            chrome.find_element(By.LINK_TEXT, "Dead letters").click()
            wait_for(lambda: len(texts("#deadletter-list tbody tr")) == 2, 20)
            Select(chrome.find_element(By.ID, "tenant")).select_by_value("kiosken")
            chrome.find_element(By.ID, "tenant").submit()
            wait_for(lambda: texts("#deadletter-list tbody tr td:first-child") == ["kiosken"], 20)
            assert "tenant=kiosken" in chrome.current_url
            shot("9-deadletters-kiosken")
            accept[0] = True
            chrome.find_element(By.XPATH, "//button[normalize-space()='Retry']").click()
            wait_for(lambda: "queued again" in flash(), 20)
            assert "tenant=kiosken" in chrome.current_url
            wait_for(lambda: any(r["tenant"] == "kiosken" for r in received), 20)

            chrome.get(f"{live.url}/tenants/{TENANT}#documents")
            documents = " ".join(texts("#document-list"))
            assert "payment 2 of invoice 1002" in documents and "done" in documents
            assert "payment 1 of invoice 1001" in documents and "failed" in documents
            shot("10-tenant-documents")
            chrome.find_element(By.XPATH, "//button[normalize-space()='Re-run']").click()
            wait_for(lambda: "Payment 1: its dead letter was retried" in flash(), 20)

            def paid_one() -> bool:
                return any(
                    r["tenant"] == TENANT and r["data"]["payment"]["number"] == "1"
                    for r in received
                )

            wait_for(paid_one, 20)

            def charted(path: str) -> bool:
                chrome.get(f"{live.url}{path}#history")
                return bool(chrome.find_elements(By.CSS_SELECTOR, "#chart-errors path.line-red"))

            wait_for(lambda: charted(f"/tenants/{TENANT}"), 20, 0.5)
            shot("11-tenant-history")
            wait_for(lambda: charted("/system"), 20, 0.5)
            assert "reloads every 30 s" in " ".join(texts("#updated"))
            shot("12-system-history")
            resolved = api.get("/ops/api/deadletters?status=resolved").json()["dead_letters"]
            assert [r["tenant"] for r in resolved] == [TENANT]
    finally:
        chrome.quit()
    for name in (
        "7-overview-search",
        "8-overview-problems",
        "9-deadletters-kiosken",
        "10-tenant-documents",
        "11-tenant-history",
        "12-system-history",
    ):
        assert (ARTIFACTS / f"dashboard-{name}.png").stat().st_size > 10_000, name
