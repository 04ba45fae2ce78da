"""Z-reports -> vouchers: the worked example of sie-and-pos.md §1.9/§2.3, posted once; every
shop-facing preflight error named in the shop's words; waiting and automatic posting; manual
export; start date; and balance for random Z-reports (hypothesis)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from reconcilers import zreports
from reconcilers.vouchers import build_voucher, rate_key
from tests.reconcilers.world import World
from topics import commands as cm
from topics import outcomes as oc
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
from topics.settings import StockSettings, TenantSettings, ZReportAccounts, ZReportSettings
from topics.till import PaymentLine, ProductGroupLine, VatLine, ZReportData

DAY = dt.date(2025, 3, 14)
D = Decimal

ACCOUNTS = ZReportAccounts(
    payment_methods={"cash": 1910, "card": 1580, "swish": 1930, "giftcard": 2421},
    sales_by_vat={"25": 3001, "12": 3002, "6": 3003, "0": 3004},
    vat_by_rate={"25": 2611, "12": 2621, "6": 2631},
    tips=2890,
    rounding=3740,
    gift_cards=2421,
)
ALL_ACCOUNTS = (1910, 1580, 1930, 2421, 2611, 2621, 2631, 2890, 3001, 3002, 3003, 3004, 3740)


def z_settings(**changes: Any) -> ZReportSettings:
    base = ZReportSettings(enabled=True, series="F", accounts=ACCOUNTS, cost_center="100")
    return base.model_copy(update=changes)


def master(
    *,
    accounts: list[AccountInfo] | None = None,
    series: list[SeriesInfo] | None = None,
    centers: list[CostCenterInfo] | None = None,
    years: tuple[dt.date, dt.date] = (dt.date(2025, 1, 1), dt.date(2025, 12, 31)),
    locked_until: dt.date | None = None,
) -> MasterData:
    return MasterData(
        years=[
            YearMasterData(
                year=FinancialYear(id=7, from_date=years[0], to_date=years[1]),
                accounts=accounts
                if accounts is not None
                else [AccountInfo(number=n) for n in ALL_ACCOUNTS],
                series=series if series is not None else [SeriesInfo(code="F", manual=True)],
            )
        ],
        cost_centers=centers if centers is not None else [CostCenterInfo(code="100")],
        locked_until=locked_until,
        terms_of_payment=["30"],
    )


def worked_example(**changes: Any) -> ZReportData:
    """sie-and-pos.md §2.3: 8,000 at 25 % less a 250 return, 4,480 at 12 %, 530.40 at 6 %."""
    base = ZReportData(
        z_number=1234,
        till_id="K1",
        business_date=DAY,
        vat=[
            VatLine(
                rate=D(25),
                sales_net=D("6400.00"),
                sales_vat=D("1600.00"),
                returns_net=D("200.00"),
                returns_vat=D("50.00"),
            ),
            VatLine(rate=D(12), sales_net=D("4000.00"), sales_vat=D("480.00")),
            VatLine(rate=D(6), sales_net=D("500.38"), sales_vat=D("30.02")),
        ],
        payments=[
            PaymentLine(method="cash", amount=D("2760.00")),
            PaymentLine(method="card", amount=D("8150.00")),
            PaymentLine(method="swish", amount=D("1500.00")),
            PaymentLine(method="giftcard", amount=D("500.00")),
        ],
        tips=D("150.00"),
        rounding=D("-0.40"),
        receipts=87,
    )
    return base.model_copy(update=changes)


#: The 14 rows of §1.9/§2.3: (account, debit, credit, cost centre).
EXPECTED_ROWS = [
    (1910, D("2760.00"), D(0), None),
    (1580, D("8150.00"), D(0), None),
    (1930, D("1500.00"), D(0), None),
    (2421, D("500.00"), D(0), None),
    (3740, D("0.40"), D(0), None),
    (3001, D(0), D("6400.00"), "100"),
    (3001, D("200.00"), D(0), "100"),
    (2611, D(0), D("1600.00"), None),
    (2611, D("50.00"), D(0), None),
    (3002, D(0), D("4000.00"), "100"),
    (2621, D(0), D("480.00"), None),
    (3003, D(0), D("500.38"), "100"),
    (2631, D(0), D("30.02"), None),
    (2890, D(0), D("150.00"), None),
]


def make_world(zs: ZReportSettings | None = None) -> World:
    return World(
        settings=TenantSettings(zreports=zs or z_settings(), stock=StockSettings(enabled=False))
    )


def record(world: World, z: ZReportData) -> dict[str, Any]:
    found = world.state.get(zreports.KIND, f"{z.till_id}:{z.z_number}")
    assert found is not None
    return found


def voucher_commands(world: World) -> list[cm.CreateFortnoxVoucher]:
    unique = {c.id: c for c in world.emitted if isinstance(c, cm.CreateFortnoxVoucher)}
    return list(unique.values())


def run_fortnox(world: World) -> None:
    world.process_all()
    while world.execute_fortnox():
        world.process_all()


# --- the worked example ------------------------------------------------------------------------


def test_the_worked_example_becomes_exactly_its_fourteen_rows() -> None:
    built = build_voucher(worked_example(), z_settings(), master())
    assert built is not None
    draft, year = built
    rows = [(r.account, r.debit, r.credit, r.cost_center) for r in draft.rows]
    assert rows == EXPECTED_ROWS
    assert sum((r.debit for r in draft.rows), D(0)) == D("13160.40")
    assert sum((r.credit for r in draft.rows), D(0)) == D("13160.40")
    assert year == 7
    assert draft.series == "F"
    assert draft.transaction_date == DAY
    assert "1234" in draft.description and "K1" in draft.description


def test_the_worked_example_is_posted_once_however_often_it_is_sent() -> None:
    world = make_world()
    world.master_data(master())
    for _ in range(3):
        world.till_zreport(worked_example())
    run_fortnox(world)
    for _ in range(3):
        world.till_zreport(worked_example())
    world.process_all()
    for index in range(len(world.processed)):
        world.redeliver(index)  # every message again, outcomes included
    world.process_all()
    world.master_data(master())  # a refresh retries waiting reports: this one is posted
    world.send(oc.ExportRequested, data={"from_date": DAY, "to_date": DAY})
    run_fortnox(world)
    assert len(voucher_commands(world)) == 1
    assert [v["key"] for v in world.fx_vouchers] == ["K1:1234"]
    rec = record(world, worked_example())
    assert rec["status"] == "posted"
    assert rec["voucher"] == {"series": "F", "number": "1", "year": "1"}


def test_a_lost_answer_does_not_post_twice() -> None:
    """Fortnox committed, the answer was lost: the writer runs the same command again, finds
    the voucher by its Z-report key, and reports success."""
    world = make_world()
    world.master_data(master())
    world.till_zreport(worked_example())
    world.process_all()
    world.execute_fortnox("lost")
    world.execute_fortnox("retrying")
    run_fortnox(world)
    assert len(world.fx_vouchers) == 1
    assert record(world, worked_example())["status"] == "posted"


def test_a_resent_report_with_other_figures_is_reported_not_posted_again() -> None:
    world = make_world()
    world.master_data(master())
    world.till_zreport(worked_example())
    run_fortnox(world)
    world.till_zreport(worked_example(receipts=90))
    run_fortnox(world)
    assert len(world.fx_vouchers) == 1
    report = world.state.get("report", "zreport:K1:1234")
    assert report is not None and report["kind"] == "resent_with_changes"


# --- shop-facing errors ------------------------------------------------------------------------


def _without(number: int) -> list[AccountInfo]:
    return [AccountInfo(number=n) for n in ALL_ACCOUNTS if n != number]


def _with(number: int, **changes: Any) -> list[AccountInfo]:
    return [AccountInfo(number=n, **(changes if n == number else {})) for n in ALL_ACCOUNTS]


Case = tuple[
    str,  # name
    ZReportSettings,  # broken settings
    MasterData,  # broken master data
    ZReportData,  # the report
    ErrorKind,
    tuple[str, ...],  # what the message must name
    Callable[[World], None],  # the fix
]


def _fix_settings(zs: ZReportSettings) -> Callable[[World], None]:
    def fix(world: World) -> None:
        world.change_settings(world.settings.model_copy(update={"zreports": zs}))

    return fix


def _fix_master(md: MasterData) -> Callable[[World], None]:
    return lambda world: world.master_data(md)


no_swish = ACCOUNTS.model_copy(
    update={"payment_methods": {"cash": 1910, "card": 1580, "giftcard": 2421}}
)
CASES: list[Case] = [
    (
        "mapping missing for a payment method",
        z_settings(accounts=no_swish),
        master(),
        worked_example(),
        ErrorKind.ACCOUNT_MAPPING_MISSING,
        ("payment method swish",),
        _fix_settings(z_settings()),
    ),
    (
        "mapping missing for tips",
        z_settings(accounts=ACCOUNTS.model_copy(update={"tips": None})),
        master(),
        worked_example(),
        ErrorKind.ACCOUNT_MAPPING_MISSING,
        ("tips",),
        _fix_settings(z_settings()),
    ),
    (
        "account missing",
        z_settings(),
        master(accounts=_without(1930)),
        worked_example(),
        ErrorKind.ACCOUNT_MISSING,
        ("1930",),
        _fix_master(master()),
    ),
    (
        "account inactive",
        z_settings(),
        master(accounts=_with(3740, active=False)),
        worked_example(),
        ErrorKind.ACCOUNT_INACTIVE,
        ("3740",),
        _fix_master(master()),
    ),
    (
        "series missing",
        z_settings(series="KASSA"),
        master(),
        worked_example(),
        ErrorKind.SERIES_MISSING,
        ("KASSA",),
        _fix_master(master(series=[SeriesInfo(code="KASSA", manual=True)])),
    ),
    (
        "series not manual",
        z_settings(),
        master(series=[SeriesInfo(code="F", manual=False)]),
        worked_example(),
        ErrorKind.SERIES_NOT_MANUAL,
        ("series F", "Manuell kontering"),
        _fix_master(master()),
    ),
    (
        "cost centre missing",
        z_settings(cost_center="200"),
        master(),
        worked_example(),
        ErrorKind.COST_CENTER_MISSING,
        ('"200"',),
        _fix_master(master(centers=[CostCenterInfo(code="200")])),
    ),
    (
        "cost centre of the location missing",
        z_settings(cost_center=None),
        master(),
        worked_example(location_code="STHLM"),
        ErrorKind.COST_CENTER_MISSING,
        ('"STHLM"',),
        _fix_master(master(centers=[CostCenterInfo(code="STHLM")])),
    ),
    (
        "cost centre inactive",
        z_settings(),
        master(centers=[CostCenterInfo(code="100", active=False)]),
        worked_example(),
        ErrorKind.COST_CENTER_INACTIVE,
        ('"100"',),
        _fix_master(master()),
    ),
    (
        "cost centre mandatory",
        z_settings(cost_center=None),
        master(accounts=_with(1910, cost_center_settings=CostCenterSetting.MANDATORY)),
        worked_example(),
        ErrorKind.COST_CENTER_REQUIRED,
        ("1910", "till K1"),
        _fix_settings(z_settings(cost_centers={"K1": "100"}, cost_center=None)),
    ),
    (
        "financial year missing",
        z_settings(),
        master(years=(dt.date(2024, 1, 1), dt.date(2024, 12, 31))),
        worked_example(),
        ErrorKind.FINANCIAL_YEAR_MISSING,
        ("2025-03-14",),
        _fix_master(master()),
    ),
    (
        "period locked",
        z_settings(),
        master(locked_until=dt.date(2025, 3, 31)),
        worked_example(),
        ErrorKind.PERIOD_LOCKED,
        ("2025-03-14",),
        _fix_master(master(locked_until=dt.date(2025, 2, 28))),
    ),
    (
        "unbalanced",
        z_settings(),
        master(),
        worked_example(
            payments=[
                PaymentLine(method="cash", amount=D("2700.00")),
                PaymentLine(method="card", amount=D("8150.00")),
                PaymentLine(method="swish", amount=D("1500.00")),
                PaymentLine(method="giftcard", amount=D("500.00")),
            ]
        ),
        ErrorKind.VOUCHER_UNBALANCED,
        ("13100.40", "13160.40", "Z-report 1234", "resend"),
        lambda world: world.till_zreport(worked_example()),  # the till resends it corrected
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_each_preflight_error_is_named_and_the_report_waits(case: Case) -> None:
    name, zs, md, z, kind, named, fix = case
    world = make_world(zs)
    world.master_data(md)
    world.till_zreport(z)
    run_fortnox(world)
    rec = record(world, z)
    assert rec["status"] == "waiting", name
    assert rec["error"]["kind"] == kind.value
    for thing in named:
        assert thing in rec["error"]["message"] + rec["error"]["fix"], (thing, rec["error"])
    assert rec["error"]["fix"], "every error says how to fix it"
    assert not world.fx_vouchers
    fix(world)
    run_fortnox(world)
    assert record(world, z)["status"] == "posted", name
    assert len(world.fx_vouchers) == 1


def test_a_report_waits_for_master_data_and_is_posted_when_it_arrives() -> None:
    world = make_world()
    world.till_zreport(worked_example())
    run_fortnox(world)
    assert record(world, worked_example())["status"] == "waiting"
    world.master_data(master())
    run_fortnox(world)
    assert record(world, worked_example())["status"] == "posted"


def test_a_rejected_voucher_waits_and_is_retried_once_fixed() -> None:
    world = make_world()
    world.master_data(master())
    world.till_zreport(worked_example())
    world.process_all()
    cmd = world.fx_queue.popleft()
    world.send(
        oc.SyncOutcome,
        data={
            "command_id": cmd.id,
            "command_type": cmd.type,  # type: ignore[attr-defined]
            "target": "fortnox",
            "status": "rejected",
            "error": {"kind": "period_locked", "message": "locked", "fix": "unlock"},
        },
    )
    world.process_all()
    assert record(world, worked_example())["status"] == "waiting"
    world.master_data(master())
    run_fortnox(world)
    assert record(world, worked_example())["status"] == "posted"
    assert len(world.fx_vouchers) == 1


def test_an_older_master_data_refresh_redelivered_does_not_undo_a_newer_one() -> None:
    world = make_world()
    world.master_data(master(accounts=_with(3740, active=False)))
    world.master_data(master())
    world.process_all()
    stale = world.processed[-2]
    world.handle(stale)
    world.till_zreport(worked_example())
    run_fortnox(world)
    assert record(world, worked_example())["status"] == "posted"


# --- start date, disabled flow, manual export --------------------------------------------------


def z_on(day: dt.date, number: int) -> ZReportData:
    return worked_example(z_number=number, business_date=day)


def test_start_date_is_honoured_and_moving_it_earlier_posts_the_waiting_days() -> None:
    world = make_world(z_settings(start_date=dt.date(2025, 3, 14)))
    world.master_data(master())
    world.till_zreport(z_on(dt.date(2025, 3, 13), 1))
    world.till_zreport(z_on(dt.date(2025, 3, 14), 2))
    run_fortnox(world)
    assert record(world, z_on(dt.date(2025, 3, 13), 1))["status"] == "before_start"
    assert [v["key"] for v in world.fx_vouchers] == ["K1:2"]
    said = world.state.get("report", "zreport:K1:1")
    assert said is not None and said["kind"] == "skipped_before_start"
    world.change_settings(
        world.settings.model_copy(update={"zreports": z_settings(start_date=dt.date(2025, 3, 1))})
    )
    run_fortnox(world)
    assert sorted(v["key"] for v in world.fx_vouchers) == ["K1:1", "K1:2"]
    # Posted now: the dashboard no longer says it was not posted.
    assert world.state.get("report", "zreport:K1:1") is None


def test_manual_export_posts_only_what_is_missing_and_honours_the_start_date() -> None:
    world = make_world(z_settings(start_date=dt.date(2025, 3, 12)))
    world.master_data(master())
    world.till_zreport(z_on(dt.date(2025, 3, 12), 1))
    run_fortnox(world)
    assert len(world.fx_vouchers) == 1
    # The flow is switched off; two more days close, and one before the start date arrives late.
    world.change_settings(
        world.settings.model_copy(
            update={"zreports": z_settings(enabled=False, start_date=dt.date(2025, 3, 12))}
        )
    )
    world.till_zreport(z_on(dt.date(2025, 3, 13), 2))
    world.till_zreport(z_on(dt.date(2025, 3, 14), 3))
    world.till_zreport(z_on(dt.date(2025, 3, 11), 4))
    run_fortnox(world)
    assert len(world.fx_vouchers) == 1
    assert record(world, z_on(dt.date(2025, 3, 13), 2))["status"] == "disabled"
    world.send(
        oc.ExportRequested,
        data={"from_date": dt.date(2025, 3, 1), "to_date": dt.date(2025, 3, 13)},
    )
    run_fortnox(world)
    assert sorted(v["key"] for v in world.fx_vouchers) == ["K1:1", "K1:2"]
    assert record(world, z_on(dt.date(2025, 3, 11), 4))["status"] == "before_start"
    assert record(world, z_on(dt.date(2025, 3, 14), 3))["status"] == "disabled"
    world.send(
        oc.ExportRequested,
        data={"from_date": dt.date(2025, 3, 1), "to_date": dt.date(2025, 3, 31)},
    )
    run_fortnox(world)
    assert sorted(v["key"] for v in world.fx_vouchers) == ["K1:1", "K1:2", "K1:3"]
    assert len(voucher_commands(world)) == 3


def test_a_day_with_nothing_to_book_posts_nothing_and_raises_no_error() -> None:
    world = make_world()
    world.master_data(master())
    world.till_zreport(ZReportData(z_number=5, till_id="K1", business_date=DAY))
    run_fortnox(world)
    rec = world.state.get(zreports.KIND, "K1:5")
    assert rec is not None and rec["status"] == "empty" and "error" not in rec
    assert not world.fx_vouchers


# --- random balanced Z-reports -----------------------------------------------------------------

cents = st.integers(min_value=0, max_value=1_000_000).map(lambda c: D(c) / 100)
RATES = (D(25), D(12), D(6), D(0))


@st.composite
def balanced_zreports(draw: st.DrawFn) -> ZReportData:
    """A Z-report whose VAT lines, product groups, tips, gift cards, rounding and payments tie
    out as a real till's do: payments = sales incl. VAT - returns + tips + gift cards sold +
    rounding."""
    rates = draw(st.lists(st.sampled_from(RATES), unique=True, max_size=4))
    vat: list[VatLine] = []
    groups: list[ProductGroupLine] = []
    for rate in rates:
        net = draw(cents)
        returns = draw(cents.filter(lambda r, n=net: r <= n))  # type: ignore[misc]
        vat.append(
            VatLine(
                rate=rate,
                sales_net=net,
                sales_vat=(net * rate / 100).quantize(D("0.01")),
                returns_net=returns,
                returns_vat=(returns * rate / 100).quantize(D("0.01")),
            )
        )
        if draw(st.booleans()):
            # Split the rate's sales over product groups (that then carry the revenue).
            parts = draw(st.integers(1, 3))
            cuts = sorted(
                draw(
                    st.lists(
                        cents.filter(lambda c, n=net: c <= n),
                        min_size=parts - 1,
                        max_size=parts - 1,
                    )
                )
            )  # type: ignore[misc]
            bounds = [D(0), *cuts, net]
            rcuts = sorted(
                draw(
                    st.lists(
                        cents.filter(lambda c, r=returns: c <= r),
                        min_size=parts - 1,
                        max_size=parts - 1,
                    )
                )
            )  # type: ignore[misc]
            rbounds = [D(0), *rcuts, returns]
            for i in range(parts):
                groups.append(
                    ProductGroupLine(
                        group=f"G{i}",
                        vat_rate=rate,
                        net=bounds[i + 1] - bounds[i],
                        returns_net=rbounds[i + 1] - rbounds[i],
                    )
                )
    tips = draw(st.sampled_from((D(0), D(0), D("150.00"), D("12.50"))))
    gift_cards_sold = draw(st.sampled_from((D(0), D(0), D("500.00"))))
    rounding = draw(st.integers(-99, 99).map(lambda c: D(c) / 100))
    due = sum((v.sales_net + v.sales_vat - v.returns_net - v.returns_vat for v in vat), D(0))
    total = due + tips + gift_cards_sold + rounding
    methods = draw(
        st.lists(st.sampled_from(("cash", "card", "swish", "giftcard")), unique=True, min_size=1)
    )
    amounts = [draw(st.integers(-10_000, 1_000_000).map(lambda c: D(c) / 100)) for _ in methods[1:]]
    payments = [PaymentLine(method=m, amount=a) for m, a in zip(methods[1:], amounts, strict=True)]
    payments.insert(0, PaymentLine(method=methods[0], amount=total - sum(amounts, D(0))))
    return ZReportData(
        z_number=draw(st.integers(1, 10_000)),
        till_id="K1",
        business_date=DAY,
        vat=vat,
        payments=payments,
        product_groups=groups,
        tips=tips,
        gift_cards_sold=gift_cards_sold,
        rounding=rounding,
    )


def _full_mapping(z: ZReportData) -> ZReportSettings:
    groups = {g.group: 3010 + int(g.group[1:]) for g in z.product_groups}
    accounts = ACCOUNTS.model_copy(
        update={
            "product_groups": groups,
            "vat_by_rate": {**ACCOUNTS.vat_by_rate, "0": 2650},
        }
    )
    return z_settings(accounts=accounts)


def _full_master(zs: ZReportSettings) -> MasterData:
    numbers = set(ALL_ACCOUNTS) | set(zs.accounts.product_groups.values()) | {2650}
    return master(accounts=[AccountInfo(number=n) for n in sorted(numbers)])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(z=balanced_zreports())
def test_random_balanced_zreports_always_make_a_balanced_voucher(z: ZReportData) -> None:
    note(repr(z))
    zs = _full_mapping(z)
    built = build_voucher(z, zs, _full_master(zs))
    moves = [p.amount for p in z.payments] + [z.tips, z.gift_cards_sold, z.rounding]
    moves += [v.sales_net for v in z.vat] + [v.returns_net for v in z.vat]
    if not any(moves):
        assert built is None
        return
    assert built is not None
    draft, _ = built
    assert len(draft.rows) >= 2
    debit = sum((r.debit for r in draft.rows), D(0))
    credit = sum((r.credit for r in draft.rows), D(0))
    assert debit == credit
    for row in draft.rows:
        assert (row.debit == 0) != (row.credit == 0), row
        assert row.debit >= 0 and row.credit >= 0
        revenue = row.account in zs.accounts.sales_by_vat.values() or row.account in (
            zs.accounts.product_groups.values()
        )
        assert (row.cost_center == "100") == revenue, row
    for rate in {rate_key(v.rate) for v in z.vat}:
        vat_line = next(v for v in z.vat if rate_key(v.rate) == rate)
        booked = sum(
            (r.credit - r.debit for r in draft.rows if r.account == zs.accounts.vat_by_rate[rate]),
            D(0),
        )
        assert booked == vat_line.sales_vat - vat_line.returns_vat


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(z=balanced_zreports(), copies=st.integers(1, 3))
def test_random_zreports_are_posted_once_through_the_reconciler(
    z: ZReportData, copies: int
) -> None:
    zs = _full_mapping(z)
    world = make_world(zs)
    world.master_data(_full_master(zs))
    for _ in range(copies):
        world.till_zreport(z)
    run_fortnox(world)
    world.redeliver(len(world.processed) - 1)
    run_fortnox(world)
    status = record(world, z)["status"]
    assert status in ("posted", "empty"), record(world, z)
    assert len(world.fx_vouchers) == (1 if status == "posted" else 0)
    for voucher in world.fx_vouchers:
        draft = voucher["voucher"]
        assert sum((r.debit for r in draft.rows), D(0)) == sum((r.credit for r in draft.rows), D(0))


def _asks(world: World) -> list[cm.RefreshFortnoxMasterData]:
    return [c for c in world.emitted if isinstance(c, cm.RefreshFortnoxMasterData)]


def test_a_voucher_waiting_on_master_data_asks_for_a_fresh_read_once_per_copy() -> None:
    """A Z-report waits on something the copy of Fortnox's master data lacks: the engine asks
    the session to read the master data again now (not at the next periodic read), once per
    copy. If Fortnox still lacks it the copy does not change and nothing more is asked; once
    Fortnox has it, the fresh copy posts what waits, oldest first."""
    world = make_world()
    world.master_data(master(years=(dt.date(2024, 1, 1), dt.date(2024, 12, 31))))
    world.till_zreport(worked_example())
    world.till_zreport(worked_example(z_number=1235))
    run_fortnox(world)
    [ask] = _asks(world)
    assert "financial year" in ask.data.reason and world.fx_master_reads == 1
    assert voucher_commands(world) == []  # Fortnox has no such year: both wait
    assert record(world, worked_example())["error"]["kind"] == "financial_year_missing"
    # The shop creates the year in Fortnox. A new Z-report finds the same copy: not asked
    # again (that copy was read fresh already) ...
    world.fx_master = master()
    world.till_zreport(worked_example(z_number=1236))
    run_fortnox(world)
    assert len(_asks(world)) == 1 and voucher_commands(world) == []
    # ... and the next read of the master data posts all three.
    world.master_data(master())
    run_fortnox(world)
    assert [c.data.zreport_key for c in voucher_commands(world)] == [
        "K1:1234",
        "K1:1235",
        "K1:1236",
    ]


def test_a_fresh_read_that_finds_what_was_missing_posts_at_once() -> None:
    """Fortnox had the year before the voucher came; only the copy was old: the one fresh read
    the voucher asks for posts it, without waiting for the periodic read."""
    world = make_world()
    world.master_data(master(years=(dt.date(2024, 1, 1), dt.date(2024, 12, 31))))
    world.fx_master = master()  # added in Fortnox since the last read
    world.till_zreport(worked_example())
    run_fortnox(world)
    assert len(_asks(world)) == 1 and world.fx_master_reads == 1
    assert [c.data.zreport_key for c in voucher_commands(world)] == ["K1:1234"]
    assert record(world, worked_example())["status"] == "posted"


def test_a_problem_no_read_can_clear_asks_for_none() -> None:
    """A missing account mapping is the shop's setting, not Fortnox's: no fresh read."""
    accounts = ACCOUNTS.model_copy(update={"tips": None})
    world = make_world(z_settings(accounts=accounts))
    world.master_data(master())
    world.till_zreport(worked_example())
    run_fortnox(world)
    assert record(world, worked_example())["status"] == "waiting"
    assert _asks(world) == []
