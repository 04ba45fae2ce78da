"""Unit tests of the dashboard's view models: local times, the dashboard's settings, each
document's phase, when a dead letter is stale, the history ring buffer and the charts' geometry.
And the charts through the app."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from engine.ops.documents import DocKind, Phase, fixed_since, invoice, payment, zreport
from engine.ops.history import History, Metric, Sample, TenantSample
from engine.web.charts import HEIGHT, LEFT, WIDTH, chart, nice_top, number
from engine.web.templating import BadDashboardSetting, DashboardSettings, Times
from tests.ops.world import TENANT, new_engine, paused_with_dead_letters
from tests.web.test_dashboard import BASE, BEARER

STOCKHOLM = ZoneInfo("Europe/Stockholm")


def test_times_are_shown_in_the_operators_zone_with_utc_kept() -> None:
    winter = dt.datetime(2026, 12, 5, 1, 0, 5, 123456, tzinfo=dt.UTC).timestamp()
    summer = dt.datetime(2026, 7, 1, 12, 0, 0, tzinfo=dt.UTC).timestamp()
    times = Times(STOCKHOLM, now=winter + 42)
    assert times.local(winter) == "2026-12-05 02:00:05 CET"
    assert times.local(summer) == "2026-07-01 14:00:00 CEST"
    assert times.utc(winter) == "2026-12-05 01:00:05 UTC"
    assert times.iso(winter) == "2026-12-05T01:00:05+00:00"
    assert times.clock(winter) == "02:00:05"
    assert times.ago(winter) == "42 s"
    # Records keep ISO texts (with microseconds); a text without a zone is UTC.
    assert times.local("2026-12-05T01:00:05.123456+00:00") == "2026-12-05 02:00:05 CET"
    assert times.local("2026-12-05T01:00:05") == "2026-12-05 02:00:05 CET"
    for nothing in (None, "", "not a time", True):
        assert times.local(nothing) == "" and times.stamp(nothing) is None


def test_dashboard_settings_come_from_the_environment_and_are_checked() -> None:
    assert DashboardSettings.from_env({}) == DashboardSettings("Europe/Stockholm", 30)
    given = {"KASSASYNC_DASHBOARD_TZ": "UTC", "KASSASYNC_DASHBOARD_REFRESH": "0"}
    assert DashboardSettings.from_env(given) == DashboardSettings("UTC", 0)
    for bad in (
        {"KASSASYNC_DASHBOARD_TZ": "Mars/Olympus"},
        {"KASSASYNC_DASHBOARD_TZ": "../etc/passwd"},
        {"KASSASYNC_DASHBOARD_REFRESH": "soon"},
        {"KASSASYNC_DASHBOARD_REFRESH": "-1"},
        {"KASSASYNC_DASHBOARD_REFRESH": "86400"},
    ):
        with pytest.raises(BadDashboardSetting, match="KASSASYNC_DASHBOARD_"):
            DashboardSettings.from_env(bad)


ERROR = {
    "kind": "account_missing",
    "message": "Account 3001 does not exist in Fortnox",
    "fix": "Create it",
}


def test_a_zreport_s_phase_and_its_fortnox_voucher() -> None:
    report = {"report": {"business_date": "2026-12-01"}}
    posted = zreport(
        "z1",
        {
            **report,
            "status": "posted",
            "command_id": "c1",
            "voucher": {"series": "A", "number": 12, "year": 2026},
        },
        {},
    )
    assert (posted.phase, posted.fortnox, posted.can_rerun) == (
        Phase.DONE,
        "voucher A 12 (2026)",
        False,
    )
    failed = zreport("z2", {**report, "status": "waiting", "error": ERROR}, {})
    assert failed.phase is Phase.FAILED and failed.can_rerun
    assert failed.error is not None and failed.detail == ERROR["message"]
    waiting = zreport("z3", {**report, "status": "waiting", "waiting_for": "master data"}, {})
    assert (waiting.phase, waiting.detail, waiting.can_rerun) == (
        Phase.WAITING,
        "master data",
        True,
    )
    dead = zreport("z4", {**report, "status": "posting", "command_id": "c4"}, {"c4": "c4"})
    assert dead.phase is Phase.FAILED and dead.dead_letter == "c4"
    working = zreport("z5", {**report, "status": "posting", "command_id": "c5"}, {})
    assert working.phase is Phase.WORKING and not working.can_rerun
    skipped = zreport("z6", {**report, "status": "before_start", "reason": "too early"}, {})
    assert (skipped.phase, skipped.detail) == (Phase.SKIPPED, "too early")
    assert posted.date == "2026-12-01"


def test_an_invoice_s_phase_and_its_fortnox_order() -> None:
    data = {"invoice": {"invoice_date": "2026-11-30"}}
    done = invoice("i1", {**data, "status": "done", "order": "4711", "command_id": "c"}, {"c": "c"})
    assert (done.phase, done.fortnox, done.dead_letter) == (Phase.DONE, "order 4711", None)
    rejected = invoice("i2", {**data, "status": "rejected", "error": ERROR, "command_id": "d"}, {})
    assert rejected.phase is Phase.FAILED and rejected.can_rerun
    waiting = invoice("i3", {**data, "status": "waiting", "waiting_for": "customer K1"}, {})
    assert (waiting.phase, waiting.can_rerun) == (Phase.WAITING, False)


def test_a_payment_s_phase_follows_its_command() -> None:
    record = {
        "status": "delivered",
        "delivered": "p1",
        "payment": {"payment_date": "2026-11-20", "invoice_number": 1001},
    }
    assert payment("1", record, {}, "done").phase is Phase.DONE
    assert payment("1", record, {}, "pending").phase is Phase.WORKING
    refused = payment("1", record, {"p1": "p1"}, "dead")
    assert refused.phase is Phase.FAILED and refused.dead_letter == "p1" and refused.can_rerun
    assert refused.fortnox == "payment 1 of invoice 1001"
    skipped = payment("2", {"status": "skipped", "skipped": "invoice number below 900"}, {}, None)
    assert (skipped.phase, skipped.detail) == (Phase.SKIPPED, "invoice number below 900")


def test_a_dead_letter_is_stale_once_its_document_is_done_by_a_later_command() -> None:
    posted = {"status": "posted", "command_id": "new", "voucher": {"series": "A", "number": 3}}
    assert fixed_since(DocKind.ZREPORT, "z", posted, "old", None) == (
        "Z-report z was posted since as voucher A 3"
    )
    # The dead command itself is the one that posted it: not stale, the record is odd.
    assert fixed_since(DocKind.ZREPORT, "z", {**posted, "command_id": "old"}, "old", None) is None
    assert fixed_since(DocKind.ZREPORT, "z", {"status": "waiting"}, "old", None) is None
    assert fixed_since(DocKind.INVOICE, "i", {"status": "done", "order": 9}, "old", None) == (
        "Invoice i reached Fortnox since as order 9"
    )
    later = {"status": "delivered", "delivered": "new"}
    assert fixed_since(DocKind.PAYMENT, "5", later, "old", "done") is not None
    assert fixed_since(DocKind.PAYMENT, "5", later, "old", "pending") is None
    assert fixed_since(DocKind.PAYMENT, "5", {**later, "delivered": "old"}, "old", "done") is None
    assert "deleted in Fortnox" in str(
        fixed_since(DocKind.PAYMENT, "5", {"status": "deleted"}, "x", None)
    )
    assert fixed_since(DocKind.PAYMENT, "5", None, "x", None) is None


def test_the_history_keeps_its_last_samples_and_only_busy_tenants() -> None:
    history = History(size=3, every=10)
    assert history.due(0) and history.series(Metric.LAG) == []
    for n in range(5):
        busy = {"a": TenantSample(dead_letters=n, retrying=1)} if n % 2 else {}
        history.add(Sample(at=100.0 + n, lag=n, dead_letters=n, tenants=busy))
    assert [s.at for s in history.samples()] == [102.0, 103.0, 104.0]
    assert history.series(Metric.LAG) == [(102.0, 2.0), (103.0, 3.0), (104.0, 4.0)]
    assert history.series(Metric.ERRORS, "a") == [(102.0, 0.0), (103.0, 4.0), (104.0, 0.0)]
    assert not history.due(113.9) and history.due(114.0)
    assert TenantSample().quiet and not TenantSample(settled=1).quiet


def test_a_chart_s_geometry() -> None:
    assert [nice_top(v) for v in (0, 0.3, 1, 3, 7, 12, 90, 101)] == [1, 0.5, 1, 5, 10, 20, 100, 200]
    assert [number(v) for v in (0.0, 2.0, 0.25, 1234.5)] == ["0", "2", "0.25", "1234"]
    empty = chart("lag", "Lag", "messages", [])
    assert empty.empty and empty.line == "" and empty.latest == "—"
    one = chart("lag", "Lag", "messages", [(0.0, 3.0)])
    assert one.empty and one.line == ""
    drawn = chart("lag", "Lag", "messages", [(0.0, 0.0), (5.0, 5.0), (10.0, 2.5)])
    bottom = HEIGHT - 14
    assert (
        drawn.line
        == f"M{LEFT:.1f},{bottom:.1f} L{(LEFT + WIDTH) / 2:.1f},0.0 L{WIDTH:.1f},{bottom / 2:.1f}"
    )
    assert drawn.area.endswith("Z") and (drawn.top, drawn.latest) == ("5", "2.5")
    assert (drawn.start, drawn.end, drawn.samples) == (0.0, 10.0, 3)


async def test_the_system_and_tenant_pages_chart_the_history(tmp_path: Path) -> None:
    engine = new_engine(tmp_path)
    await paused_with_dead_letters(engine, "1", "2")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(engine.app), base_url=BASE) as c:
        # The first look takes the first sample: one point, no line yet.
        system = (await c.get("/system", headers=BEARER)).text
        assert "collecting samples" in system and len(engine.ops.history.samples()) == 1
        engine.ops.sample()
        engine.ops.sample()
        system = (await c.get("/system", headers=BEARER)).text
        for metric in ("lag", "throughput", "budget", "errors"):
            assert f'id="chart-{metric}"' in system, metric
        errors = system.split('id="chart-errors"', 1)[1].split("</figure>", 1)[0]
        assert re.search(r'<path class="line-red" d="M[\d.]+,[\d.]+ L', errors)
        assert '<span class="latest">2</span> · 3 sample(s)' in errors
        assert "style=" not in system and "<script" not in system
        tenant = (await c.get(f"/tenants/{TENANT}", headers=BEARER)).text
        mine = tenant.split('id="chart-errors"', 1)[1].split("</figure>", 1)[0]
        assert '<span class="latest">2</span>' in mine
        assert "dead letters + commands being retried" in mine
    # The engine's own loop: a sample and the fixed dead letters swept.
    before = len(engine.ops.history.samples())
    engine.ops.housekeeping()
    assert len(engine.ops.history.samples()) == before + 1
    last = engine.ops.history.last()
    assert last is not None and last.tenant(TENANT).dead_letters == 2
    assert last.tenant("nobody") == TenantSample()


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("KASSASYNC_DASHBOARD_TZ", "Mars/Olympus", "is not a time zone"),
        ("KASSASYNC_DASHBOARD_REFRESH", "soon", "is not a whole number"),
    ],
)
def test_a_bad_dashboard_setting_is_one_line_and_exit_2(
    tmp_path: Path, name: str, value: str, said: str
) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, name: value}
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "demo", "--duration", "1", "--http-port", "0"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"kassasync: {name}={value!r} {said}"
        + (" (try Europe/Stockholm or UTC)" if "zone" in said else "")
    ]
