"""``kassasync tenants settings TENANT``: a tenant's settings beside its Fortnox's own lists.

With no options it reads the voucher series (with whether each is manual), accounts, cost
centres, terms of payment and price lists from the shop's Fortnox (with the tenant's stored
tokens), and prints the settings, the lists and every problem the preflight finds. ``--set
KEY=VALUE`` (repeatable) proposes changes: they are validated by the settings models, checked
by the same preflight, and saved as a new version unless a problem is found (``--force`` saves
anyway, ``--dry-run`` never saves). ``--versions`` lists the saved versions and what each
changed; ``--restore N`` makes version N current again (as a new version). A running engine on
the same data folder applies a saved change without a restart.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from engine.cli.util import CliError, settings_of
from engine.clock import utcnow
from engine.fortnox.errors import FortnoxError
from engine.ops import SqliteOpsStore
from engine.secrets import SecretBox
from engine.tenant_setup import (
    FortnoxLists,
    Problem,
    SettingPathError,
    history,
    preflight,
    preflight_days,
    read_lists,
    save,
    till_usage,
    with_changes,
)
from engine.tenants import TenantConfig, TenantDirectory
from topics.settings import TenantSettings


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="settings: change a setting, e.g. zreports.series=A or "
        "zreports.accounts.payment_methods.card=1580 (an empty value removes it); repeatable",
    )
    parser.add_argument(
        "--note", default="", help="settings: why the change is made (kept with the version)"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="settings: check the changes, save nothing"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="settings: save although the preflight finds problems (Z-reports wait for a fix)",
    )
    parser.add_argument("--versions", action="store_true", help="settings: list the saved versions")
    parser.add_argument(
        "--restore", type=int, default=None, metavar="N", help="settings: make version N current"
    )


def cmd_settings(args: argparse.Namespace) -> int:
    from engine.bootstrap import open_database, secret_box

    if not args.tenant:
        raise CliError("tenants settings needs the tenant, e.g. kassasync tenants settings shop-1")
    if getattr(args, "runtime", "embedded") == "kafka":
        raise CliError(
            "tenants settings works on the embedded engine's data folder; a Kafka deployment's "
            "settings change in its tenants file (kassasync kafka tenants add --config FILE)"
        )
    settings = settings_of(args)
    box = secret_box(settings)
    try:
        db = open_database(settings, create=False)
    except FileNotFoundError as missing:
        raise CliError(f"no engine database at {missing} (use --data or KASSASYNC_DATA)") from None
    directory = TenantDirectory(db, box)
    config = directory.get(args.tenant)
    if config is None:
        raise CliError(f"no tenant {args.tenant!r} (kassasync tenants list shows them)")
    if args.versions:
        return _versions(directory, config, as_json=args.json)
    proposed = config.settings
    if args.restore is not None:
        if args.assignments:
            raise CliError("give either --restore or --set, not both")
        found = directory.version(config.id, args.restore)
        if found is None:
            raise CliError(f"tenant {config.id} has no settings version {args.restore}")
        proposed = found.settings
    elif args.assignments:
        try:
            proposed = with_changes(config.settings, args.assignments)
        except SettingPathError as bad:
            raise CliError(str(bad)) from None
        except ValidationError as invalid:
            first = invalid.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "settings"
            raise CliError(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None
    today = utcnow().date()
    lists, unread = asyncio.run(_lists(config, settings.data, box, proposed, today))
    usage = till_usage(SqliteOpsStore(db), config.id)
    problems = preflight(proposed, lists, today, usage=usage) if lists is not None else []
    changing = args.restore is not None or bool(args.assignments)
    saved: int | None = None
    if changing and not args.dry_run and (args.force or (lists is not None and not problems)):
        source = "restore" if args.restore is not None else "cli"
        note = args.note or (f"restored version {args.restore}" if args.restore else "")
        saved = save(directory, config, proposed, source=source, note=note)
    if args.json:
        print(
            json.dumps(
                {
                    "tenant": config.id,
                    "settings": proposed.model_dump(mode="json"),
                    "lists": lists.model_dump(mode="json", exclude={"master"}) if lists else None,
                    "fortnox_error": unread,
                    "problems": [p.as_dict() for p in problems],
                    "saved_version": saved,
                },
                ensure_ascii=False,
                indent=2,
            )
        )
    else:
        _print(config, proposed, lists, unread, problems)
        if changing:
            if saved is not None:
                print(f"\nSaved as version {saved}; the engine applies it without a restart.")
            elif args.dry_run:
                print("\nNot saved (--dry-run).")
            else:
                why = "Fortnox's lists could not be read" if lists is None else "problems found"
                print(f"\nNot saved: {why}. Fix them, or save anyway with --force.")
    if changing and saved is None and not args.dry_run:
        return 1
    return 0


async def _lists(
    config: TenantConfig, data: Path, box: SecretBox, settings: TenantSettings, today: dt.date
) -> tuple[FortnoxLists | None, str | None]:
    """Fortnox's lists for the tenant (None and the reason when they cannot be read)."""
    from engine.bootstrap import TOKENS
    from engine.fortnox.tokens import SqliteTokenStore
    from engine.fortnox_factory import open_api

    if config.fortnox is None:
        return None, f"tenant {config.id} has no Fortnox connection configured"
    days = preflight_days(settings, today)
    try:
        api = await open_api(config, SqliteTokenStore(data / TOKENS, box))
    except (ValueError, FortnoxError) as failed:
        return None, _text(failed)
    try:
        async with api:
            return await read_lists(api, today, also=days), None
    except FortnoxError as failed:
        return None, _text(failed)


def _text(failed: Exception) -> str:
    if isinstance(failed, FortnoxError):
        error = failed.shop_error()
        return f"{error.message} Fix: {error.fix}"
    return str(failed)


def _print(
    config: TenantConfig,
    settings: TenantSettings,
    lists: FortnoxLists | None,
    unread: str | None,
    problems: Sequence[Problem],
) -> None:
    z = settings.zreports
    a = z.accounts
    print(f"Tenant {config.id}" + (f" ({config.name})" if config.name else ""))
    print(f"  Z-reports: {'on' if z.enabled else 'off'}, series {z.series}, start {z.start_date}")
    for title, mapping in (
        ("payment methods", a.payment_methods),
        ("sales by VAT rate", a.sales_by_vat),
        ("output VAT by rate", a.vat_by_rate),
        ("product groups", a.product_groups),
        ("cost centre per till", z.cost_centers),
    ):
        shown = ", ".join(f"{k}={v}" for k, v in sorted(mapping.items())) or "-"
        print(f"    {title}: {shown}")
    print(f"    tips={a.tips} rounding={a.rounding} gift cards={a.gift_cards}")
    print(f"    cost centre: {z.cost_center}")
    print(
        f"  Invoices: {'on' if settings.invoices.enabled else 'off'}, "
        f"terms {settings.invoices.terms_of_payment}, start {settings.invoices.start_date}"
    )
    print(
        f"  Articles: price list {settings.articles.price_list}, customers' master "
        f"{settings.customers.master.value}, stock {settings.stock.mode.value}"
    )
    if lists is None:
        print(f"\nFortnox's lists could not be read: {unread}")
        print("The preflight did not run.")
        return
    year = lists.financial_year
    print(f"\nFrom Fortnox (financial year {year.from_date} - {year.to_date}):" if year else "")
    print(
        "  voucher series: "
        + ", ".join(
            f"{s.code} {s.description} ({'manual' if s.manual else 'NOT manual'})"
            for s in lists.series
        )
    )
    print(f"  accounts: {len(lists.accounts)} ({sum(a.active for a in lists.accounts)} active)")
    print(
        "  cost centres: "
        + (
            ", ".join(
                f"{c.code} {c.description}" + ("" if c.active else " (inactive)")
                for c in lists.cost_centers
            )
            or "-"
        )
    )
    print(
        "  terms of payment: "
        + (", ".join(f"{t.code} {t.description}" for t in lists.terms_of_payment) or "-")
    )
    print(
        "  price lists: "
        + (", ".join(f"{p.code} {p.description}" for p in lists.price_lists) or "-")
    )
    if not problems:
        print("\nPreflight: no problems.")
        return
    print(f"\nPreflight: {len(problems)} problem(s)")
    for number, problem in enumerate(problems, start=1):
        print(f"  {number}. [{problem.setting}] {problem.message}")
        if problem.fix:
            print(f"     Fix: {problem.fix}")
        if problem.here:
            print(f"     {problem.here}")
        if problem.reports:
            print(f"     {problem.reports}")


def _versions(directory: TenantDirectory, config: TenantConfig, *, as_json: bool) -> int:
    versions = directory.versions(config.id)
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "version": v.version,
                        "saved_at": v.saved_at,
                        "source": v.source,
                        "note": v.note,
                        "changes": [
                            {"setting": c.setting, "before": c.before, "after": c.after}
                            for c in changed
                        ],
                    }
                    for v, changed in history(versions)
                ],
                ensure_ascii=False,
                indent=2,
            )
        )
        return 0
    if not versions:
        print(f"Tenant {config.id} has no saved settings versions yet.")
        return 0
    for version, changed in history(versions):
        when = dt.datetime.fromtimestamp(version.saved_at, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        note = f" — {version.note}" if version.note else ""
        current = " (current)" if version is versions[0] else ""
        print(f"version {version.version}{current}: {when}, by {version.source}{note}")
        for change in changed[:20]:
            print(f"    {change.setting}: {change.before} -> {change.after}")
        if len(changed) > 20:
            print(f"    ... and {len(changed) - 20} more")
    return 0
