"""Building a Z-report's voucher and checking it against Fortnox's rules (pure)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from topics.commands import VoucherDraft, VoucherRow
from topics.errors import ErrorKind, ShopError, shop_error
from topics.fortnox import CostCenterSetting, MasterData, YearMasterData
from topics.settings import ZReportSettings
from topics.till import ZReportData

ZERO = Decimal(0)
DESCRIPTION_LIMIT = 200
ROW_TEXT_LIMIT = 100


class PreflightError(Exception):
    def __init__(self, error: ShopError) -> None:
        super().__init__(error.message)
        self.error = error


def rate_key(rate: Decimal) -> str:
    """How a VAT rate is written in the account mapping: ``25``, ``12``, ``6``, ``0``, ``12.5``."""
    text = format(rate.normalize(), "f")
    return text


def zreport_key(z: ZReportData) -> str:
    return f"{z.till_id}:{z.z_number}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class _Line:
    account: int
    amount: Decimal  # positive = debit, negative = credit
    text: str
    result_row: bool
    #: A cost centre of the row's own (SIE object lists); else the voucher's rule applies.
    cost_center: str | None = None
    #: A Fortnox project of the row's own (SIE dimension 6).
    project: str | None = None


def _account(mapping: dict[str, int], key: str, subject: str) -> int:
    account = mapping.get(key)
    if account is None:
        raise PreflightError(shop_error(ErrorKind.ACCOUNT_MAPPING_MISSING, subject=subject))
    return account


def _lines(z: ZReportData, settings: ZReportSettings) -> list[_Line]:
    """The voucher's lines in the order of the worked example: payments, rounding, sales and
    output VAT per rate, then gift cards sold and tips. Only sales and returns are result rows
    (they get the cost centre)."""
    accounts = settings.accounts
    lines: list[_Line] = []
    for pay in z.payments:
        if pay.amount:
            account = _account(accounts.payment_methods, pay.method, f"payment method {pay.method}")
            lines.append(_Line(account, pay.amount, pay.method, False))
    if z.rounding:
        lines.append(
            _Line(_extra(accounts.rounding, "rounding"), -z.rounding, "Öresavrundning", False)
        )
    groups_by_rate: dict[str, list[tuple[str, Decimal, Decimal]]] = defaultdict(list)
    for group in z.product_groups:
        groups_by_rate[rate_key(group.vat_rate)].append((group.group, group.net, group.returns_net))

    def group_lines(key: str) -> None:
        for name, net, returns in groups_by_rate[key]:
            account = _account(accounts.product_groups, name, f"product group {name}")
            if net:
                lines.append(_Line(account, -net, f"Försäljning {name} {key}%", True))
            if returns:
                lines.append(_Line(account, returns, f"Returer {name} {key}%", True))

    for vat in z.vat:
        key = rate_key(vat.rate)
        if groups_by_rate.get(key):
            group_lines(key)
        elif vat.sales_net or vat.returns_net:
            account = _account(accounts.sales_by_vat, key, f"sales at {key}% VAT")
            if vat.sales_net:
                lines.append(_Line(account, -vat.sales_net, f"Försäljning {key}%", True))
            if vat.returns_net:
                lines.append(_Line(account, vat.returns_net, f"Returer {key}%", True))
        if vat.sales_vat or vat.returns_vat:
            account = _account(accounts.vat_by_rate, key, f"output VAT at {key}%")
            if vat.sales_vat:
                lines.append(_Line(account, -vat.sales_vat, f"Utg moms {key}%", False))
            if vat.returns_vat:
                lines.append(_Line(account, vat.returns_vat, f"Utg moms {key}% returer", False))
    # Product-group sales at a rate the VAT split does not list: book them without VAT lines.
    for key in sorted(set(groups_by_rate) - {rate_key(v.rate) for v in z.vat}):
        group_lines(key)
    if z.gift_cards_sold:
        account = _extra(accounts.gift_cards, "gift cards sold")
        lines.append(_Line(account, -z.gift_cards_sold, "Sålda presentkort", False))
    if z.tips:
        lines.append(_Line(_extra(accounts.tips, "tips"), -z.tips, "Dricks", False))
    return lines


def _extra(account: int | None, subject: str) -> int:
    if account is None:
        raise PreflightError(shop_error(ErrorKind.ACCOUNT_MAPPING_MISSING, subject=subject))
    return account


def cost_center_for(z: ZReportData, settings: ZReportSettings) -> str | None:
    for code in (z.till_id, z.location_code):
        if code is not None and code in settings.cost_centers:
            return settings.cost_centers[code]
    if z.location_code is not None:
        # As in the till back offices: the location's code is the Fortnox cost centre code.
        return z.location_code
    return settings.cost_center


def year_for(master: MasterData, date: dt.date) -> YearMasterData | None:
    for year in master.years:
        if year.year.from_date <= date <= year.year.to_date:
            return year
    return None


def build_voucher(
    z: ZReportData, settings: ZReportSettings, master: MasterData | None
) -> tuple[VoucherDraft, int] | None:
    """The voucher for a Z-report and its financial year id; None for a day with nothing to
    book (no sales, no payments); raises :class:`PreflightError` when Fortnox would refuse it."""
    lines = _lines(z, settings)
    if not lines:
        return None
    description = settings.description_template.format(
        z_number=z.z_number, till_id=z.till_id, date=z.business_date.isoformat()
    )
    return checked_draft(
        lines,
        day=z.business_date,
        series=settings.series,
        description=description,
        comments=f"kassasync zreport {zreport_key(z)}",
        master=master,
        cost_center=cost_center_for(z, settings),
        subject=f"Z-report {z.z_number} (till {z.till_id}, {z.business_date})",
        holder=f"till {z.till_id}",
    )


def checked_draft(
    lines: list[_Line],
    *,
    day: dt.date,
    series: str,
    description: str,
    comments: str,
    master: MasterData | None,
    cost_center: str | None,
    subject: str,
    holder: str,
) -> tuple[VoucherDraft, int]:
    """Fortnox's voucher rules, checked before posting: balance, financial year, locked period,
    manual series, accounts that exist and are active, cost centres that exist, are active and
    are given where an account makes them mandatory. Raises :class:`PreflightError` with the
    first problem :func:`_check_rules` finds."""
    debit = sum((ln.amount for ln in lines if ln.amount > 0), ZERO)
    credit = -sum((ln.amount for ln in lines if ln.amount < 0), ZERO)
    if debit != credit or len(lines) < 2:
        raise PreflightError(
            shop_error(ErrorKind.VOUCHER_UNBALANCED, subject=subject, debit=debit, credit=credit)
        )
    checked = _check_rules(
        lines, day=day, series=series, master=master, cost_center=cost_center, holder=holder
    )
    if checked.problems:
        raise PreflightError(checked.problems[0])
    year_id = checked.year_id
    settings_by_account = checked.settings_by_account
    rows: list[VoucherRow] = []
    for line in lines:
        setting = settings_by_account.get(line.account, CostCenterSetting.ALLOWED)
        wants_center = line.result_row or setting is CostCenterSetting.MANDATORY
        allowed = setting is not CostCenterSetting.NOTALLOWED
        row_center = line.cost_center or (cost_center if wants_center else None)
        row_center = row_center if allowed else None
        rows.append(
            VoucherRow(
                account=line.account,
                debit=line.amount if line.amount > 0 else ZERO,
                credit=-line.amount if line.amount < 0 else ZERO,
                cost_center=row_center,
                description=_clip(line.text, ROW_TEXT_LIMIT),
                project=line.project,
            )
        )
    draft = VoucherDraft(
        series=series,
        transaction_date=day,
        description=_clip(description, DESCRIPTION_LIMIT),
        comments=comments,
        rows=rows,
    )
    return draft, year_id


@dataclass(frozen=True, slots=True)
class _Checked:
    year_id: int
    settings_by_account: dict[int, CostCenterSetting]
    problems: list[ShopError]


def _check_rules(
    lines: list[_Line],
    *,
    day: dt.date,
    series: str,
    master: MasterData | None,
    cost_center: str | None,
    holder: str,
) -> _Checked:
    """Every rule but the balance, in the order the voucher flow reports them (it reports the
    first): financial year (nothing else can be checked without one), locked period, series,
    each line's account, the cost centres used, the projects used, then cost centres an account
    makes mandatory."""
    problems: list[ShopError] = []
    year_id = 0
    settings_by_account: dict[int, CostCenterSetting] = {}
    if master is not None:
        year = year_for(master, day)
        if year is None:
            return _Checked(0, {}, [shop_error(ErrorKind.FINANCIAL_YEAR_MISSING, date=day)])
        year_id = year.year.id
        if master.locked_until is not None and day <= master.locked_until:
            problems.append(shop_error(ErrorKind.PERIOD_LOCKED, date=day))
        found = {s.code: s for s in year.series}.get(series)
        if found is None:
            problems.append(shop_error(ErrorKind.SERIES_MISSING, series=series))
        elif not found.manual:
            problems.append(shop_error(ErrorKind.SERIES_NOT_MANUAL, series=series))
        accounts = {a.number: a for a in year.accounts}
        for line in lines:
            info = accounts.get(line.account)
            if info is None:
                problems.append(shop_error(ErrorKind.ACCOUNT_MISSING, account=line.account))
            elif not info.active:
                problems.append(shop_error(ErrorKind.ACCOUNT_INACTIVE, account=line.account))
            else:
                settings_by_account[line.account] = info.cost_center_settings
        centers = {c.code: c for c in master.cost_centers}
        used = {cost_center} | {ln.cost_center for ln in lines}
        for code in sorted(c for c in used if c is not None):
            center = centers.get(code)
            if center is None:
                problems.append(shop_error(ErrorKind.COST_CENTER_MISSING, cost_center=code))
            elif not center.active:
                problems.append(shop_error(ErrorKind.COST_CENTER_INACTIVE, cost_center=code))
        known = None if master.projects is None else {p.number for p in master.projects}
        for number in sorted({ln.project for ln in lines if ln.project is not None}):
            if known is None or number not in known:
                detail = "" if known is not None else " (or Kassasync may not read projects)"
                problems.append(
                    shop_error(ErrorKind.PROJECT_MISSING, project=number, detail=detail)
                )
    for line in lines:
        setting = settings_by_account.get(line.account, CostCenterSetting.ALLOWED)
        if setting is CostCenterSetting.MANDATORY and (line.cost_center or cost_center) is None:
            problems.append(
                shop_error(ErrorKind.COST_CENTER_REQUIRED, account=line.account, subject=holder)
            )
    return _Checked(year_id, settings_by_account, _distinct(problems))


def _distinct(problems: list[ShopError]) -> list[ShopError]:
    seen: set[tuple[str, str]] = set()
    out: list[ShopError] = []
    for problem in problems:
        key = (problem.kind.value, problem.message)
        if key not in seen:
            seen.add(key)
            out.append(problem)
    return out


@dataclass(frozen=True, slots=True)
class SettingsProblem:
    """A problem the Z-report flow would hit with these settings: the shop-facing error and the
    setting it concerns (``zreports.series``, ``zreports.accounts.payment_methods.card``...)."""

    setting: str
    error: ShopError


def settings_problems(
    settings: ZReportSettings,
    master: MasterData,
    day: dt.date,
    tills: Iterable[str] = (),
) -> list[SettingsProblem]:
    """The Z-report flow's preflight (:func:`_check_rules`, the rules :func:`checked_draft`
    applies to every Z-report) run on the settings themselves, as if a Z-report dated ``day``
    used every mapped account: every problem, not only the first, each with the setting it
    concerns. Run once for the tenant's own cost centre and once per till of ``tills`` and of
    ``settings.cost_centers``. Mappings a till's Z-report needs but the settings lack cannot be
    known without the report; :meth:`TenantSettings.warnings` names the obvious ones."""
    accounts = settings.accounts
    probe: list[tuple[str, _Line]] = []

    def add(setting: str, account: int | None, *, result_row: bool) -> None:
        if account is not None:
            probe.append((setting, _Line(account, Decimal(1), setting, result_row)))

    for method, account in sorted(accounts.payment_methods.items()):
        add(f"zreports.accounts.payment_methods.{method}", account, result_row=False)
    for rate, account in sorted(accounts.sales_by_vat.items()):
        add(f"zreports.accounts.sales_by_vat.{rate}", account, result_row=True)
    for rate, account in sorted(accounts.vat_by_rate.items()):
        add(f"zreports.accounts.vat_by_rate.{rate}", account, result_row=False)
    for group, account in sorted(accounts.product_groups.items()):
        add(f"zreports.accounts.product_groups.{group}", account, result_row=True)
    add("zreports.accounts.tips", accounts.tips, result_row=False)
    add("zreports.accounts.rounding", accounts.rounding, result_row=False)
    add("zreports.accounts.gift_cards", accounts.gift_cards, result_row=False)
    lines = [line for _, line in probe]
    holders: list[tuple[str, str, str | None]] = [
        ("zreports.cost_center", "every till", settings.cost_center)
    ]
    for till in sorted(set(tills) | set(settings.cost_centers)):
        code = settings.cost_centers.get(till, settings.cost_center)
        holders.append((f"zreports.cost_centers.{till}", f"till {till}", code))
    found: list[SettingsProblem] = []
    seen: set[tuple[str, str]] = set()
    for setting, holder, code in holders:
        checked = _check_rules(
            lines, day=day, series=settings.series, master=master, cost_center=code, holder=holder
        )
        for error in checked.problems:
            key = (error.kind.value, error.message)
            if key in seen:
                continue
            seen.add(key)
            found.append(SettingsProblem(_setting_of(error, probe, setting), error))
    return found


def _setting_of(error: ShopError, probe: list[tuple[str, _Line]], holder: str) -> str:
    kind = error.kind
    if kind in (ErrorKind.SERIES_MISSING, ErrorKind.SERIES_NOT_MANUAL):
        return "zreports.series"
    if kind in (ErrorKind.FINANCIAL_YEAR_MISSING, ErrorKind.PERIOD_LOCKED):
        return "zreports.start_date"
    if kind in (
        ErrorKind.COST_CENTER_MISSING,
        ErrorKind.COST_CENTER_INACTIVE,
        ErrorKind.COST_CENTER_REQUIRED,
    ):
        return holder
    for setting, line in probe:
        if f" {line.account} " in f" {error.message} ":
            return setting
    return "zreports"
