"""The Z-report preflight run on settings (what the settings page and ``kassasync tenants
settings`` show): every problem, each with its setting, by the same rules that stop a Z-report's
voucher, which still reports the first one."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from reconcilers.vouchers import PreflightError, build_voucher, settings_problems
from topics.errors import ErrorKind
from topics.fortnox import (
    AccountInfo,
    CostCenterInfo,
    CostCenterSetting,
    FinancialYear,
    MasterData,
    SeriesInfo,
    YearMasterData,
)
from topics.settings import ZReportSettings
from topics.till import PaymentLine, VatLine, ZReportData

DAY = dt.date(2026, 12, 5)
MASTER = MasterData(
    years=[
        YearMasterData(
            year=FinancialYear(id=7, from_date=dt.date(2026, 1, 1), to_date=dt.date(2026, 12, 31)),
            accounts=[
                AccountInfo(number=1580),
                AccountInfo(number=1910),
                AccountInfo(number=3001),
                AccountInfo(number=2611),
                AccountInfo(number=3900, active=False),
                AccountInfo(number=5010, cost_center_settings=CostCenterSetting.MANDATORY),
            ],
            series=[SeriesInfo(code="A", manual=True), SeriesInfo(code="B", manual=False)],
        )
    ],
    cost_centers=[CostCenterInfo(code="100"), CostCenterInfo(code="999", active=False)],
    locked_until=dt.date(2026, 6, 30),
)


def zsettings(**changes: object) -> ZReportSettings:
    base: dict[str, object] = {
        "enabled": True,
        "series": "A",
        "accounts": {
            "payment_methods": {"card": 1580, "cash": 1910},
            "sales_by_vat": {"25": 3001},
            "vat_by_rate": {"25": 2611},
        },
    }
    return ZReportSettings.model_validate(base | changes)


def test_clean_settings_have_no_problem() -> None:
    assert settings_problems(zsettings(), MASTER, DAY) == []


def test_every_problem_is_reported_with_its_setting() -> None:
    settings = zsettings(
        series="B",
        accounts={
            "payment_methods": {"card": 1580, "swish": 1234},
            "sales_by_vat": {"25": 3001},
            "vat_by_rate": {"25": 2611},
            "tips": 3900,
            "rounding": 5010,
        },
        cost_center="999",
        cost_centers={"K2": "404"},
    )
    found = [(p.setting, p.error.kind) for p in settings_problems(settings, MASTER, DAY)]
    assert found == [
        ("zreports.series", ErrorKind.SERIES_NOT_MANUAL),
        ("zreports.accounts.payment_methods.swish", ErrorKind.ACCOUNT_MISSING),
        ("zreports.accounts.tips", ErrorKind.ACCOUNT_INACTIVE),
        ("zreports.cost_center", ErrorKind.COST_CENTER_INACTIVE),
        ("zreports.cost_centers.K2", ErrorKind.COST_CENTER_MISSING),
    ]


def test_a_mandatory_cost_centre_is_asked_for_per_till_without_one() -> None:
    settings = zsettings(
        accounts={"payment_methods": {"card": 1580}, "rounding": 5010},
        cost_centers={"K1": "100"},
    )
    found = settings_problems(settings, MASTER, DAY, tills=["K1", "K3"])
    assert [(p.setting, p.error.kind) for p in found] == [
        ("zreports.cost_center", ErrorKind.COST_CENTER_REQUIRED),
        ("zreports.cost_centers.K3", ErrorKind.COST_CENTER_REQUIRED),
    ]
    assert "till K3" in found[1].error.fix or "till K3" in found[1].error.message


def test_a_locked_day_and_a_day_without_a_financial_year() -> None:
    locked = settings_problems(zsettings(), MASTER, dt.date(2026, 6, 1))
    assert [(p.setting, p.error.kind) for p in locked] == [
        ("zreports.start_date", ErrorKind.PERIOD_LOCKED)
    ]
    no_year = settings_problems(zsettings(series="B"), MASTER, dt.date(2027, 1, 2))
    # Without a financial year nothing else can be checked.
    assert [p.error.kind for p in no_year] == [ErrorKind.FINANCIAL_YEAR_MISSING]


def test_a_z_report_still_stops_at_the_first_problem() -> None:
    z = ZReportData(
        z_number=1,
        till_id="K1",
        business_date=DAY,
        payments=[PaymentLine(method="swish", amount=Decimal(125))],
        vat=[VatLine(rate=Decimal(25), sales_net=Decimal(100), sales_vat=Decimal(25))],
    )
    settings = zsettings(
        series="B",
        accounts={
            "payment_methods": {"swish": 1234},
            "sales_by_vat": {"25": 3001},
            "vat_by_rate": {"25": 2611},
        },
    )
    with pytest.raises(PreflightError) as first:
        build_voucher(z, settings, MASTER)
    assert first.value.error.kind is ErrorKind.SERIES_NOT_MANUAL
    with pytest.raises(PreflightError) as next_one:
        build_voucher(z, settings.model_copy(update={"series": "A"}), MASTER)
    assert next_one.value.error.kind is ErrorKind.ACCOUNT_MISSING
    fixed = settings.model_copy(
        update={
            "series": "A",
            "accounts": settings.accounts.model_copy(update={"payment_methods": {"swish": 1910}}),
        }
    )
    built = build_voucher(z, fixed, MASTER)
    assert built is not None and built[1] == 7
