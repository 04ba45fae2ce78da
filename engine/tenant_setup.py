"""Setting a tenant up from its Fortnox's own lists: the lists (voucher series with their
*manual* flag, accounts, cost centres, terms of payment, price lists), the preflight of proposed
settings against them, and saving a new version of the settings.

The dashboard's settings page (:mod:`engine.web.settings_page`) and ``kassasync tenants settings``
(:mod:`engine.cli.settings`) both use this module. The preflight is the Z-report flow's own
(:func:`reconcilers.vouchers.settings_problems`, the rules every Z-report's voucher is checked
against before it is posted), plus the checks of the other flows' Fortnox codes (terms of
payment, price list). Saving goes through :meth:`TenantDirectory.upsert`, which keeps every
version and appends ``sync.settings.changed``: the running engine applies it without a restart.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict, Field

from engine.fortnox.api import FortnoxApi
from engine.fortnox.paging import iterate_raw
from engine.ops.ports import OpsStore
from engine.tenants import SettingsVersion, TenantConfig, TenantDirectory
from reconcilers.vouchers import PreflightError, build_voucher, rate_key, settings_problems
from topics import fortnox as fx
from topics.errors import ErrorKind, ShopError, shop_error
from topics.settings import TenantSettings
from topics.till import ZReportData

log = structlog.get_logger("kassasync.tenant_setup")


class Choice(BaseModel):
    """One entry of a Fortnox list (a cost centre, terms of payment, a price list)."""

    model_config = ConfigDict(frozen=True)

    code: str
    description: str = ""
    active: bool = True


class SeriesChoice(Choice):
    #: Fortnox's *Manuell kontering*: only a manual series takes vouchers from the API.
    manual: bool = False


class AccountChoice(BaseModel):
    model_config = ConfigDict(frozen=True)

    number: int
    description: str = ""
    active: bool = True
    cost_center_settings: fx.CostCenterSetting = fx.CostCenterSetting.ALLOWED


class FortnoxLists(BaseModel):
    """What the shop's Fortnox offers to pick from, for the financial year of ``day``."""

    day: dt.date
    #: Unix time of the reading.
    read_at: float
    financial_year: fx.FinancialYear | None = None
    series: list[SeriesChoice] = Field(default_factory=list)
    accounts: list[AccountChoice] = Field(default_factory=list)
    cost_centers: list[Choice] = Field(default_factory=list)
    terms_of_payment: list[Choice] = Field(default_factory=list)
    price_lists: list[Choice] = Field(default_factory=list)
    #: The same lists as the Z-report flow's preflight reads them (every year asked for).
    master: fx.MasterData = Field(default_factory=fx.MasterData)

    def manual_series(self) -> list[str]:
        return [s.code for s in self.series if s.manual]

    def active_cost_centers(self) -> list[str]:
        return [c.code for c in self.cost_centers if c.active]


async def read_lists(
    api: FortnoxApi, day: dt.date, *, also: Iterable[dt.date] = ()
) -> FortnoxLists:
    """Read the lists from the tenant's Fortnox: accounts and series of the financial year of
    ``day`` (and, for the preflight, of the years of ``also``: a start date in the past)."""
    bk = api.bookkeeping
    years = [y for y in await bk.financial_years() if y.id and y.from_date and y.to_date]
    wanted = [day, *also]
    year_data: list[fx.YearMasterData] = []
    shown: fx.FinancialYear | None = None
    accounts: list[AccountChoice] = []
    series: list[SeriesChoice] = []
    for year in years:
        assert year.id is not None and year.from_date is not None and year.to_date is not None
        if not any(year.contains(d) for d in wanted):
            continue
        these_accounts = [
            AccountChoice(
                number=int(raw["Number"]),
                description=str(raw.get("Description") or ""),
                active=raw.get("Active", True) not in (False, "false"),
                cost_center_settings=raw.get("CostCenterSettings") or "ALLOWED",
            )
            async for raw in iterate_raw(
                api.client, "/3/accounts", "Accounts", {"financialyear": str(year.id)}
            )
        ]
        these_series = [
            SeriesChoice(code=s.code, description=s.description or "", manual=bool(s.manual))
            for s in await bk.voucher_series(year.id)
            if s.code
        ]
        info = fx.FinancialYear(id=year.id, from_date=year.from_date, to_date=year.to_date)
        year_data.append(
            fx.YearMasterData(
                year=info,
                accounts=[
                    fx.AccountInfo(
                        number=a.number,
                        active=a.active,
                        cost_center_settings=a.cost_center_settings,
                    )
                    for a in these_accounts
                ],
                series=[fx.SeriesInfo(code=s.code, manual=s.manual) for s in these_series],
            )
        )
        if year.contains(day):
            shown, accounts, series = info, these_accounts, these_series
    centers = [
        Choice(code=c.code, description=c.description or "", active=c.active is not False)
        for c in await bk.cost_centers()
        if c.code
    ]
    terms = [
        Choice(code=t.code, description=t.description or "")
        for t in await api.settings.terms_of_payments()
        if t.code
    ]
    prices = [
        Choice(code=p.code, description=p.description or "")
        for p in await api.prices.price_lists()
        if p.code
    ]
    locked = await bk.locked_period()
    lists = FortnoxLists(
        day=day,
        read_at=time.time(),
        financial_year=shown,
        series=sorted(series, key=lambda s: s.code),
        accounts=sorted(accounts, key=lambda a: a.number),
        cost_centers=centers,
        terms_of_payment=terms,
        price_lists=prices,
        master=fx.MasterData(
            years=year_data,
            cost_centers=[fx.CostCenterInfo(code=c.code, active=c.active) for c in centers],
            locked_until=locked.end_date,
            terms_of_payment=[t.code for t in terms],
        ),
    )
    log.info(
        "tenant_setup.lists_read",
        tenant=api.tenant,
        series=len(lists.series),
        accounts=len(lists.accounts),
        cost_centers=len(centers),
        years=len(year_data),
    )
    return lists


#: How many of the till's latest Z-reports (besides every one that waits) the preflight runs on.
RECENT_REPORTS = 30


@dataclass(frozen=True, slots=True)
class SeenReport:
    """A Z-report the engine has for the tenant: its key, status and report."""

    key: str
    status: str
    report: ZReportData


@dataclass(frozen=True, slots=True)
class TillUsage:
    """What the till's Z-reports use: the tills (and location codes), payment methods, VAT
    rates and product groups the settings need accounts and cost centres for."""

    reports: tuple[SeenReport, ...] = ()

    @property
    def tills(self) -> list[str]:
        return sorted({r.report.till_id for r in self.reports})

    @property
    def payment_methods(self) -> list[str]:
        return sorted({p.method for r in self.reports for p in r.report.payments if p.amount})

    @property
    def vat_rates(self) -> list[str]:
        return sorted({rate_key(v.rate) for r in self.reports for v in r.report.vat})

    @property
    def product_groups(self) -> list[str]:
        return sorted({g.group for r in self.reports for g in r.report.product_groups})


def till_usage(store: OpsStore, tenant: str, *, recent: int = RECENT_REPORTS) -> TillUsage:
    """Every Z-report that waits, and the ``recent`` latest others (by business date)."""
    waiting: list[SeenReport] = []
    others: list[SeenReport] = []
    for key, record in store.records(tenant, "zr"):
        payload = record.get("report")
        if not isinstance(payload, dict):
            continue  # a voucher the till booked itself (SIE 4I): its own flow
        try:
            report = ZReportData.model_validate(payload)
        except ValueError:
            log.warning("tenant_setup.report_unreadable", tenant=tenant, key=key)
            continue
        seen = SeenReport(key, str(record.get("status", "")), report)
        (waiting if seen.status == "waiting" else others).append(seen)
    others.sort(key=lambda r: (r.report.business_date, r.key), reverse=True)
    return TillUsage(tuple(waiting + others[:recent]))


@dataclass(frozen=True, slots=True)
class Problem:
    """A problem the proposed settings would meet, with the fix in Fortnox (``fix``, ``link``)
    and, where there is one, the fix in these settings (``here``)."""

    #: The setting it concerns, as a dotted path (``zreports.series``).
    setting: str
    kind: str
    message: str
    fix: str
    link: str | None = None
    here: str = ""
    #: The till's Z-reports that wait (or would wait) for it, when there are some.
    reports: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "setting": self.setting,
            "kind": self.kind,
            "message": self.message,
            "fix": self.fix,
            "link": self.link,
            "here": self.here,
            "reports": self.reports,
        }


def preflight_days(settings: TenantSettings, today: dt.date) -> list[dt.date]:
    """The days a Z-report could be posted for: today, and the start date when it lies in the
    past (the days since then are posted too) or ahead (nothing is posted before it)."""
    start = settings.zreports.start_date
    return [today] if start is None or start == today else sorted({today, start})


def preflight(
    settings: TenantSettings,
    lists: FortnoxLists,
    today: dt.date,
    *,
    usage: TillUsage | None = None,
) -> list[Problem]:
    """Every problem the settings would meet in Fortnox, the Z-report flow's preflight first:
    on the settings themselves (every mapped account, for every till), then on the till's own
    Z-reports (``usage``: each that waits, as the flow would post it now, and the latest others
    for a payment method, VAT rate or product group the settings have no account for)."""
    found: list[Problem] = []
    at: dict[tuple[str, str], int] = {}

    def add(problem: Problem) -> None:
        key = (problem.kind, problem.message)
        if key not in at:
            at[key] = len(found)
            found.append(problem)
        elif problem.reports and not found[at[key]].reports:
            # The settings' own problem, which the till's Z-reports meet too: say which.
            found[at[key]] = dataclasses.replace(found[at[key]], reports=problem.reports)

    for warning in settings.warnings():
        setting = "zreports.accounts.payment_methods" if "payment method" in warning else "invoices"
        add(Problem(setting=setting, kind="settings_warning", message=warning, fix=""))
    z = settings.zreports
    till = usage or TillUsage()
    for day in preflight_days(settings, today):
        for item in settings_problems(z, lists.master, day, till.tills):
            add(
                Problem(
                    setting=item.setting,
                    kind=item.error.kind.value,
                    message=item.error.message,
                    fix=item.error.fix,
                    link=item.error.link,
                    here=_here(item.error.kind, lists),
                )
            )
    for problem in report_problems(settings, lists, till):
        add(problem)
    terms = settings.invoices.terms_of_payment
    if terms is not None and terms not in {t.code for t in lists.terms_of_payment}:
        error = shop_error(ErrorKind.TERMS_OF_PAYMENT_MISSING, code=terms)
        add(
            Problem(
                setting="invoices.terms_of_payment",
                kind=error.kind.value,
                message=error.message,
                fix=error.fix,
                link=error.link,
                here=_one_of("terms of payment", [t.code for t in lists.terms_of_payment]),
            )
        )
    price_list = settings.articles.price_list
    if price_list not in {p.code for p in lists.price_lists}:
        add(
            Problem(
                setting="articles.price_list",
                kind="price_list_missing",
                message=f'Price list "{price_list}" does not exist in Fortnox.',
                fix="Add it in Fortnox under Register > Prislistor, or choose another one.",
                link="https://apps.fortnox.se/settings/invoicing/pricelists",
                here=_one_of("a price list", [p.code for p in lists.price_lists]),
            )
        )
    log.info("tenant_setup.preflight", problems=len(found), kinds=[p.kind for p in found])
    return found


def report_problems(
    settings: TenantSettings, lists: FortnoxLists, usage: TillUsage
) -> list[Problem]:
    """The Z-report flow's preflight (:func:`reconcilers.vouchers.build_voucher`) on the till's
    own Z-reports with these settings: a waiting report's first problem, as the flow would meet
    it now; for the others only a missing mapping (their days may be booked and locked by now).
    Reports before the start date are left out, as the flow leaves them."""
    z = settings.zreports
    found: dict[tuple[str, str], tuple[ShopError, list[SeenReport]]] = {}
    for seen in usage.reports:
        if z.start_date is not None and seen.report.business_date < z.start_date:
            continue
        waiting = seen.status == "waiting"
        try:
            build_voucher(seen.report, z, lists.master if waiting else None)
        except PreflightError as failed:
            error = failed.error
            if not waiting and error.kind is not ErrorKind.ACCOUNT_MAPPING_MISSING:
                continue
            entry = found.setdefault((error.kind.value, error.message), (error, []))
            entry[1].append(seen)
    out: list[Problem] = []
    for error, reports in found.values():
        first = reports[0].report
        which = f"Z-report {first.z_number} (till {first.till_id}, {first.business_date})"
        more = f" and {len(reports) - 1} more" if len(reports) > 1 else ""
        state = "waits" if reports[0].status == "waiting" else "would wait"
        out.append(
            Problem(
                setting=_mapping_setting(error),
                kind=error.kind.value,
                message=error.message,
                fix=error.fix,
                link=error.link,
                here=_here(error.kind, lists),
                reports=f"{which}{more} {state} for it.",
            )
        )
    return out


_SUBJECTS = (
    ("payment method ", "zreports.accounts.payment_methods."),
    ("product group ", "zreports.accounts.product_groups."),
    ("sales at ", "zreports.accounts.sales_by_vat."),
    ("output VAT at ", "zreports.accounts.vat_by_rate."),
)


def _mapping_setting(error: ShopError) -> str:
    """The setting a Z-report's problem concerns (``zreports.accounts.payment_methods.swish``)."""
    if error.kind is not ErrorKind.ACCOUNT_MAPPING_MISSING:
        return {
            ErrorKind.SERIES_MISSING: "zreports.series",
            ErrorKind.SERIES_NOT_MANUAL: "zreports.series",
            ErrorKind.PERIOD_LOCKED: "zreports.start_date",
            ErrorKind.FINANCIAL_YEAR_MISSING: "zreports.start_date",
        }.get(error.kind, "zreports")
    subject = error.message.partition(" for ")[2].rstrip(".")
    for prefix, setting in _SUBJECTS:
        if subject.startswith(prefix):
            return setting + subject.removeprefix(prefix).removesuffix("% VAT").removesuffix("%")
    for name in ("tips", "rounding", "gift cards sold"):
        if subject == name:
            return "zreports.accounts." + {"gift cards sold": "gift_cards"}.get(name, name)
    return "zreports.accounts"


def _one_of(what: str, codes: Sequence[str]) -> str:
    if not codes:
        return ""
    return f"Or choose {what} Fortnox has here: {', '.join(codes)}."


def _here(kind: ErrorKind, lists: FortnoxLists) -> str:
    if kind in (ErrorKind.SERIES_MISSING, ErrorKind.SERIES_NOT_MANUAL):
        return _one_of("a manual series", lists.manual_series())
    if kind in (ErrorKind.ACCOUNT_MISSING, ErrorKind.ACCOUNT_INACTIVE):
        return "Or choose an active account from Fortnox's chart of accounts here."
    if kind in (
        ErrorKind.COST_CENTER_MISSING,
        ErrorKind.COST_CENTER_INACTIVE,
        ErrorKind.COST_CENTER_REQUIRED,
    ):
        return _one_of("an active cost centre", lists.active_cost_centers())
    if kind in (ErrorKind.PERIOD_LOCKED, ErrorKind.FINANCIAL_YEAR_MISSING):
        return "Or set the Z-reports' start date to a day Fortnox takes vouchers for."
    if kind is ErrorKind.ACCOUNT_MAPPING_MISSING:
        return "Choose the account on this page."
    return ""


# --- changing settings -------------------------------------------------------------------------


def save(
    tenants: TenantDirectory,
    config: TenantConfig,
    settings: TenantSettings,
    *,
    source: str,
    note: str = "",
) -> int:
    """Store ``settings`` as the tenant's new version; returns its number. The running engine
    applies it at once: the Z-reports that wait are tried again with it."""
    tenants.upsert(config.model_copy(update={"settings": settings}), source=source, note=note)
    versions = tenants.versions(config.id)
    number = versions[0].version if versions else 0
    log.info("tenant_setup.saved", tenant=config.id, version=number, source=source)
    return number


def flatten(value: object, prefix: str = "") -> dict[str, object]:
    """A settings dump as ``{"zreports.series": "F", ...}`` (mappings flattened too)."""
    if isinstance(value, Mapping):
        out: dict[str, object] = {}
        for key, inner in value.items():
            out.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        if not value and prefix:
            out[prefix] = {}
        return out
    return {prefix: value}


@dataclass(frozen=True, slots=True)
class Change:
    setting: str
    before: object
    after: object


def changes(before: TenantSettings | None, after: TenantSettings) -> list[Change]:
    """What ``after`` changes against ``before`` (every set value when there is no before)."""
    old = flatten(before.model_dump(mode="json")) if before is not None else {}
    new = flatten(after.model_dump(mode="json"))
    return [
        Change(key, old.get(key), new.get(key))
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key) and not (key not in new and old.get(key) == {})
    ]


def history(versions: Sequence[SettingsVersion]) -> list[tuple[SettingsVersion, list[Change]]]:
    """Versions newest first, each with its changes against the one before."""
    out: list[tuple[SettingsVersion, list[Change]]] = []
    for index, version in enumerate(versions):
        before = versions[index + 1].settings if index + 1 < len(versions) else None
        out.append((version, changes(before, version.settings)))
    return out


class SettingPathError(ValueError):
    """``--set`` names a setting that does not exist or gives no value."""


def with_changes(settings: TenantSettings, assignments: Iterable[str]) -> TenantSettings:
    """``settings`` with ``KEY=VALUE`` assignments (``zreports.series=A``,
    ``zreports.accounts.payment_methods.card=1580``; an empty value removes a mapping entry or
    clears an optional setting), validated by the settings models (pydantic's ValidationError)."""
    data: dict[str, Any] = settings.model_dump(mode="json")
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SettingPathError(f"{assignment!r}: write KEY=VALUE, e.g. zreports.series=A")
        parts = key.split(".")
        node: Any = data
        for depth, part in enumerate(parts[:-1]):
            if not isinstance(node, dict) or part not in node:
                raise SettingPathError(_unknown(".".join(parts[: depth + 1])))
            node = node[part]
        last = parts[-1]
        if not isinstance(node, dict):
            raise SettingPathError(_unknown(key))
        mapping = _is_mapping(parts[:-1])
        if not mapping and last not in node:
            raise SettingPathError(_unknown(key))
        if value.strip() == "":
            if mapping:
                node.pop(last, None)
            else:
                node[last] = None
        else:
            node[last] = value.strip()
    return TenantSettings.model_validate(data)


_MAPPINGS = frozenset(
    {
        "zreports.accounts.payment_methods",
        "zreports.accounts.sales_by_vat",
        "zreports.accounts.vat_by_rate",
        "zreports.accounts.product_groups",
        "zreports.cost_centers",
    }
)


def _is_mapping(parts: Sequence[str]) -> bool:
    return ".".join(parts) in _MAPPINGS


def _unknown(key: str) -> str:
    return f"there is no setting {key!r} (see docs/configuration.md for the settings' names)"
