"""A tenant's settings page: pick from the shop's Fortnox's own lists, see the preflight's
problems with their fixes, save a new version, restore an old one.

* ``GET /tenants/{tenant}/settings`` reads the voucher series (with whether each is manual),
  accounts, cost centres, terms of payment and price lists from the shop's Fortnox (the tenant's
  stored tokens; cached for :data:`LISTS_SECONDS`, ``?reload=1`` reads them again), shows the
  settings in a form, the preflight of the current settings and the saved versions.
* ``POST /tenants/{tenant}/settings`` with ``action=check`` runs the preflight on the posted
  settings and shows them again (nothing saved); ``action=save`` validates them with the
  settings models, runs the preflight and saves them as a new version when it finds no problem
  (or the operator ticked *save anyway*). The running engine applies a saved version at once.
* ``POST /tenants/{tenant}/settings/restore`` makes an old version current again (a new version).
* ``GET /ops/api/tenants/{tenant}/settings``: the same as JSON.

Every POST needs the admin session and passes the same CSRF checks as every dashboard action.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import ValidationError

from engine.clock import utcnow
from engine.fortnox.api import FortnoxApi
from engine.fortnox.errors import FortnoxError
from engine.ops.ports import OpsStore
from engine.tenant_setup import (
    FortnoxLists,
    Problem,
    TillUsage,
    history,
    preflight,
    preflight_days,
    read_lists,
    save,
    till_usage,
)
from engine.tenants import TenantConfig, TenantDirectory
from engine.web.auth import AdminAuth, Session
from engine.web.html import url
from engine.web.pages import read_form
from engine.web.templating import Flash, Frame
from topics.settings import CustomerMaster, StockMode, TenantSettings

log = structlog.get_logger("kassasync.web.settings")

#: How long Fortnox's lists are reused before the page reads them again.
LISTS_SECONDS = 60.0
#: How long the page waits for Fortnox's lists (its client retries a busy Fortnox meanwhile).
LISTS_TIMEOUT_SECONDS = 20.0
#: The VAT rates a Swedish till reports; each gets a row even when it is not mapped yet.
VAT_RATES = ("25", "12", "6", "0")
#: Empty rows offered below the mapped ones, for new payment methods, groups and tills.
SPARE_ROWS = 3

OpenFortnox = Callable[[TenantConfig], Awaitable[FortnoxApi]]

#: The form's single-valued fields: name (the setting's dotted path) and kind.
BOOLS = (
    "customers.enabled",
    "customers.import_fortnox_register",
    "customers.delete_missing",
    "articles.enabled",
    "articles.delete_missing",
    "stock.enabled",
    "zreports.enabled",
    "zreports.includes_invoiced_sales",
    "invoices.enabled",
    "payments.enabled",
    "ledger.enabled",
)
#: Text fields; an empty one clears an optional setting.
TEXTS = (
    "customers.master",
    "articles.price_list",
    "articles.exclusion_marker",
    "stock.mode",
    "zreports.series",
    "zreports.start_date",
    "zreports.cost_center",
    "zreports.description_template",
    "zreports.accounts.tips",
    "zreports.accounts.rounding",
    "zreports.accounts.gift_cards",
    "invoices.start_date",
    "invoices.terms_of_payment",
    "payments.ignore_before",
    "payments.ignore_invoice_below",
    "ledger.years",
    "flush_window_seconds",
)
#: Settings that may be left empty (None).
OPTIONAL = frozenset(
    {
        "zreports.start_date",
        "zreports.cost_center",
        "zreports.accounts.tips",
        "zreports.accounts.rounding",
        "zreports.accounts.gift_cards",
        "invoices.start_date",
        "invoices.terms_of_payment",
        "payments.ignore_before",
    }
)
#: Keyed rows: form prefix -> (setting, label of the key).
ROWS = {
    "pm": ("zreports.accounts.payment_methods", "payment method"),
    "pg": ("zreports.accounts.product_groups", "product group"),
    "cc": ("zreports.cost_centers", "till"),
}


class FormProblem(ValueError):
    """A posted form that cannot become settings (a row without its key, a key twice)."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting


@dataclass
class SettingsForm:
    """The form's values as text, from saved settings or as the operator posted them."""

    values: dict[str, str] = field(default_factory=dict)
    rows: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    #: (rate, sales account, output VAT account)
    vat: list[tuple[str, str, str]] = field(default_factory=list)

    def value(self, name: str) -> str:
        return self.values.get(name, "")

    def on(self, name: str) -> bool:
        return self.values.get(name) == "1"


def _text(value: object) -> str:
    if value is None or value is False:
        return ""
    if value is True:
        return "1"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return str(value)


def _lookup(data: Mapping[str, Any], path: str) -> object:
    node: Any = data
    for part in path.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def form_of(settings: TenantSettings, usage: TillUsage | None = None) -> SettingsForm:
    """The form for saved settings, with a row for every till, payment method, product group
    and VAT rate the till's Z-reports use that has none yet (its account left to pick)."""
    data = settings.model_dump()
    form = SettingsForm()
    used = usage or TillUsage()
    seen = {"pm": used.payment_methods, "pg": used.product_groups, "cc": used.tills}
    for name in (*BOOLS, *TEXTS):
        form.values[name] = _text(_lookup(data, name))
    for prefix, (setting, _) in ROWS.items():
        mapping = _lookup(data, setting)
        assert isinstance(mapping, Mapping)
        rows = [(str(k), _text(v)) for k, v in sorted(mapping.items())]
        rows += [(key, "") for key in seen[prefix] if key not in mapping]
        form.rows[prefix] = rows + [("", "")] * SPARE_ROWS
    accounts = settings.zreports.accounts
    rates = list(VAT_RATES) + sorted(
        (set(accounts.sales_by_vat) | set(accounts.vat_by_rate) | set(used.vat_rates))
        - set(VAT_RATES)
    )
    form.vat = [
        (rate, _text(accounts.sales_by_vat.get(rate)), _text(accounts.vat_by_rate.get(rate)))
        for rate in rates
    ] + [("", "", "")]
    return form


def form_from_post(posted: Mapping[str, str]) -> SettingsForm:
    form = SettingsForm()
    for name in BOOLS:
        form.values[name] = "1" if posted.get(name) else ""
    for name in TEXTS:
        form.values[name] = posted.get(name, "").strip()
    for prefix in ROWS:
        form.rows[prefix] = [
            (
                posted.get(f"{prefix}_key_{i}", "").strip(),
                posted.get(f"{prefix}_val_{i}", "").strip(),
            )
            for i in range(_count(posted, f"{prefix}_rows"))
        ]
    form.vat = [
        (
            posted.get(f"vat_rate_{i}", "").strip(),
            posted.get(f"vat_sales_{i}", "").strip(),
            posted.get(f"vat_output_{i}", "").strip(),
        )
        for i in range(_count(posted, "vat_rows"))
    ]
    return form


def _count(posted: Mapping[str, str], name: str) -> int:
    text = posted.get(name, "0")
    return min(int(text), 200) if text.isdigit() else 0


def settings_of_form(form: SettingsForm, base: TenantSettings) -> TenantSettings:
    """The settings the form holds, laid over ``base`` (what the form does not show stays);
    raises :class:`FormProblem` or pydantic's ValidationError."""
    data: dict[str, Any] = base.model_dump(mode="json")

    def put(path: str, value: object) -> None:
        *parents, last = path.split(".")
        node = data
        for part in parents:
            node = node[part]
        node[last] = value

    for name in BOOLS:
        put(name, form.on(name))
    for name in TEXTS:
        text = form.value(name)
        put(name, None if (name in OPTIONAL and not text) else text)
    for prefix, (setting, label) in ROWS.items():
        mapping: dict[str, str] = {}
        for key, value in form.rows.get(prefix, []):
            if not key and not value:
                continue
            if not key:
                raise FormProblem(setting, f"a row has {value} but no {label}: name the {label}")
            if key in mapping:
                raise FormProblem(setting, f"{label} {key!r} is there twice: keep one row")
            if value:
                mapping[key] = value
        put(setting, mapping)
    sales: dict[str, str] = {}
    output: dict[str, str] = {}
    for rate, sales_account, vat_account in form.vat:
        if not rate and (sales_account or vat_account):
            raise FormProblem("zreports.accounts.sales_by_vat", "a VAT row has no rate")
        if rate in sales or rate in output:
            raise FormProblem("zreports.accounts.sales_by_vat", f"VAT rate {rate} is there twice")
        if sales_account:
            sales[rate] = sales_account
        if vat_account:
            output[rate] = vat_account
    put("zreports.accounts.sales_by_vat", sales)
    put("zreports.accounts.vat_by_rate", output)
    return TenantSettings.model_validate(data)


def problem_of(invalid: ValidationError) -> str:
    first = invalid.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "settings"
    more = f" (and {len(invalid.errors()) - 1} more)" if len(invalid.errors()) > 1 else ""
    return f"{where}: {first['msg'].removeprefix('Value error, ')}{more}"


@dataclass(frozen=True, slots=True)
class Option:
    value: str
    label: str


def _options(
    items: list[tuple[str, str]], current: str, *, blank: str | None = None
) -> list[Option]:
    """Fortnox's entries, the current value kept (marked) when Fortnox does not have it."""
    out = [Option("", blank)] if blank is not None else []
    out += [Option(value, label) for value, label in items]
    if current and current not in {value for value, _ in items}:
        out.append(Option(current, f"{current} — not in Fortnox"))
    return out


@dataclass
class Choices:
    """The select boxes' options and the accounts' suggestions, for one form."""

    series: list[Option]
    cost_centers: list[Option]
    till_cost_centers: list[Option]
    terms: list[Option]
    price_lists: list[Option]
    accounts: list[Option]
    masters: list[Option]
    stock_modes: list[Option]


def choices_for(form: SettingsForm, lists: FortnoxLists | None) -> Choices:
    series = [
        (s.code, f"{s.code} — {s.description} ({'manual' if s.manual else 'not manual'})")
        for s in (lists.series if lists else [])
    ]
    centers = [
        (c.code, f"{c.code} — {c.description}" + ("" if c.active else " (inactive)"))
        for c in (lists.cost_centers if lists else [])
    ]
    terms = [
        (t.code, f"{t.code} — {t.description}") for t in (lists.terms_of_payment if lists else [])
    ]
    prices = [(p.code, f"{p.code} — {p.description}") for p in (lists.price_lists if lists else [])]
    till_values = {value for _, value in form.rows.get("cc", []) if value}
    till_centers = _options(centers, "", blank="(the shop's cost centre)")
    till_centers += [
        Option(v, f"{v} — not in Fortnox") for v in sorted(till_values - {c for c, _ in centers})
    ]
    return Choices(
        series=_options(series, form.value("zreports.series")),
        cost_centers=_options(centers, form.value("zreports.cost_center"), blank="(none)"),
        till_cost_centers=till_centers,
        terms=_options(terms, form.value("invoices.terms_of_payment"), blank="(the customer's)"),
        price_lists=_options(prices, form.value("articles.price_list")),
        accounts=[
            Option(str(a.number), a.description)
            for a in (lists.accounts if lists else [])
            if a.active
        ],
        masters=[Option(m.value, m.value) for m in CustomerMaster],
        stock_modes=[Option(m.value, m.value.replace("_", " ")) for m in StockMode],
    )


@dataclass
class ListsCache:
    """Fortnox's lists per tenant, reused for :data:`LISTS_SECONDS`."""

    seconds: float = LISTS_SECONDS
    entries: dict[tuple[str, tuple[dt.date, ...]], FortnoxLists] = field(default_factory=dict)

    def get(self, tenant: str, days: tuple[dt.date, ...]) -> FortnoxLists | None:
        found = self.entries.get((tenant, days))
        if found is None or time.time() - found.read_at > self.seconds:
            return None
        return found

    def put(self, tenant: str, days: tuple[dt.date, ...], lists: FortnoxLists) -> None:
        self.entries = {k: v for k, v in self.entries.items() if k[0] != tenant}
        self.entries[(tenant, days)] = lists


def router(
    auth: AdminAuth,
    frame: Frame,
    tenants: TenantDirectory,
    open_fortnox: OpenFortnox,
    store: OpsStore,
    *,
    today: Callable[[], dt.date] = lambda: utcnow().date(),
) -> APIRouter:
    routes = APIRouter(include_in_schema=False)
    cache = ListsCache()

    def session(request: Request) -> Session:
        return auth.require(request)

    async def lists_for(
        config: TenantConfig, settings: TenantSettings, *, reload: bool = False
    ) -> tuple[FortnoxLists | None, str | None]:
        """Fortnox's lists (or None and why they could not be read)."""
        day = today()
        days = tuple(preflight_days(settings, day))
        cached = None if reload else cache.get(config.id, days)
        if cached is not None:
            return cached, None
        if config.fortnox is None:
            return None, "This tenant has no Fortnox connection configured."
        try:
            async with asyncio.timeout(LISTS_TIMEOUT_SECONDS):
                async with await open_fortnox(config) as api:
                    lists = await read_lists(api, day, also=days)
        except TimeoutError:
            log.warning("settings.lists_timeout", tenant=config.id)
            return None, (
                f"Fortnox did not answer within {LISTS_TIMEOUT_SECONDS:g} seconds. "
                "How to fix: try again in a moment (read them again)."
            )
        except FortnoxError as failed:
            error = failed.shop_error()
            log.warning("settings.lists_unread", tenant=config.id, kind=error.kind.value)
            return None, f"{error.message} How to fix: {error.fix}"
        except ValueError as failed:
            log.warning("settings.lists_unread", tenant=config.id, error=str(failed))
            return None, str(failed)
        cache.put(config.id, days, lists)
        return lists, None

    async def show(
        request: Request,
        who: Session,
        config: TenantConfig,
        *,
        form: SettingsForm,
        proposed: TenantSettings | None,
        flash: Flash | None = None,
        invalid: str = "",
        status: int = 200,
        reload: bool = False,
    ) -> Response:
        basis = proposed or config.settings
        lists, unread = await lists_for(config, basis, reload=reload)
        usage = till_usage(store, config.id)
        problems = (
            preflight(basis, lists, today(), usage=usage)
            if lists is not None and not invalid
            else []
        )
        versions = tenants.versions(config.id)
        return frame.respond(
            request,
            "settings.html",
            csrf=auth.csrf_token(who),
            flash=flash,
            status=status,
            tenant=config.id,
            name=config.name,
            form=form,
            choices=choices_for(form, lists),
            account_names={
                str(a.number): a.description for a in (lists.accounts if lists else []) if a.active
            },
            lists=lists,
            unread=unread,
            invalid=invalid,
            checked=proposed is not None,
            problems=problems,
            history=history(versions),
            current_version=versions[0].version if versions else None,
            action=f"/tenants/{url(config.id)}/settings",
        )

    def tenant_or_404(tenant: str) -> TenantConfig | None:
        return tenants.get(tenant)

    @routes.get("/tenants/{tenant}/settings")
    async def page(request: Request, tenant: str, who: Session = Depends(session)) -> Response:
        config = tenant_or_404(tenant)
        if config is None:
            return frame.respond(
                request,
                "message.html",
                csrf=auth.csrf_token(who),
                status=404,
                heading="No such tenant",
                text=f"There is no tenant {tenant!r}.",
                link="/",
                link_text="Overview",
            )
        saved = request.query_params.get("saved", "")
        flash = None
        if saved.isdigit():
            flash = Flash(
                f"Saved as version {saved}. The engine uses it from now on (no restart); "
                "Z-reports that waited are tried again with it."
            )
        return await show(
            request,
            who,
            config,
            form=form_of(config.settings, till_usage(store, config.id)),
            proposed=None,
            flash=flash,
            reload=request.query_params.get("reload") == "1",
        )

    @routes.post("/tenants/{tenant}/settings")
    async def submit(request: Request, tenant: str, who: Session = Depends(session)) -> Response:
        posted = await read_form(request)
        auth.check_post(request, who, posted)
        config = tenant_or_404(tenant)
        if config is None:
            return RedirectResponse("/", status_code=303)
        form = form_from_post(posted)
        try:
            proposed = settings_of_form(form, config.settings)
        except FormProblem as bad:
            return await show(
                request, who, config, form=form, proposed=None, invalid=str(bad), status=400
            )
        except ValidationError as invalid:
            return await show(
                request,
                who,
                config,
                form=form,
                proposed=None,
                invalid=problem_of(invalid),
                status=400,
            )
        if posted.get("action") != "save":
            log.info("settings.checked", tenant=tenant)
            return await show(request, who, config, form=form, proposed=proposed)
        lists, unread = await lists_for(config, proposed)
        problems: list[Problem] = (
            preflight(proposed, lists, today(), usage=till_usage(store, config.id)) if lists else []
        )
        anyway = posted.get("accept_problems") == "1"
        if (lists is None or problems) and not anyway:
            why = (
                f"Fortnox's lists could not be read ({unread})"
                if lists is None
                else f"the preflight found {len(problems)} problem(s)"
            )
            log.info("settings.not_saved", tenant=tenant, problems=len(problems))
            return await show(
                request,
                who,
                config,
                form=form,
                proposed=proposed,
                flash=Flash(
                    f"Not saved: {why}. Fix them, or tick 'Save anyway' (Z-reports then wait "
                    "until they are fixed).",
                    error=True,
                ),
                status=409,
            )
        number = save(
            tenants, config, proposed, source="dashboard", note=posted.get("note", "")[:500]
        )
        return RedirectResponse(f"/tenants/{url(tenant)}/settings?saved={number}", status_code=303)

    @routes.post("/tenants/{tenant}/settings/restore")
    async def restore(request: Request, tenant: str, who: Session = Depends(session)) -> Response:
        posted = await read_form(request)
        auth.check_post(request, who, posted)
        config = tenant_or_404(tenant)
        text = posted.get("version", "")
        found = tenants.version(tenant, int(text)) if config and text.isdigit() else None
        if config is None or found is None:
            return RedirectResponse(f"/tenants/{url(tenant)}/settings", status_code=303)
        number = save(
            tenants, config, found.settings, source="restore", note=f"restored version {text}"
        )
        return RedirectResponse(f"/tenants/{url(tenant)}/settings?saved={number}", status_code=303)

    @routes.get("/ops/api/tenants/{tenant}/settings")
    async def settings_api(tenant: str, who: Session = Depends(session)) -> JSONResponse:
        config = tenant_or_404(tenant)
        if config is None:
            return JSONResponse({"error": f"no tenant {tenant!r}"}, status_code=404)
        lists, unread = await lists_for(config, config.settings)
        usage = till_usage(store, tenant)
        problems = (
            preflight(config.settings, lists, today(), usage=usage) if lists is not None else []
        )
        return JSONResponse(
            {
                "tenant": tenant,
                "settings": config.settings.model_dump(mode="json"),
                "lists": lists.model_dump(mode="json", exclude={"master"}) if lists else None,
                "fortnox_error": unread,
                "problems": [p.as_dict() for p in problems],
                "versions": [
                    {
                        "version": v.version,
                        "saved_at": v.saved_at,
                        "source": v.source,
                        "note": v.note,
                        "changes": [c.setting for c in changed],
                    }
                    for v, changed in history(tenants.versions(tenant))
                ],
            }
        )

    return routes
