"""``kassasync connect TENANT``: connect a shop to Fortnox from the command line.

* ``kassasync connect TENANT`` runs the consent on this machine (browser and callback on
  127.0.0.1), for a single-machine install;
* ``--link`` prints the consent link for the dashboard's callback (``KASSASYNC_PUBLIC_URL``), to
  send to the shop's Fortnox administrator;
* ``--add`` adds the shop first, with no Fortnox tokens (prints its ingest key);
* ``--status`` prints the connection's state (not connected, connected, login expired, consent
  revoked, deactivated).

It works on the engine's data folder, like ``kassasync tenants add``; a running engine picks the
new tokens up by itself and the tenant resumes when it was waiting for the consent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import webbrowser
from pathlib import Path

from pydantic import ValidationError

from engine.fortnox.connect import DEFAULT_PORT, connect_here
from engine.fortnox.errors import ConsentError, FortnoxError
from engine.fortnox.onboarding import (
    PUBLIC_URL_ENV,
    FortnoxApp,
    Onboarding,
    public_url_from_env,
)
from engine.fortnox.tokens import SqliteTokenStore
from engine.fortnox_factory import NoFortnoxApp, resolve_connection
from engine.ops import EmbeddedProbe, Ops, SqliteOpsStore
from engine.secrets import SecretBox
from engine.store.db import Database
from engine.tenants import FortnoxConnection, TenantConfig, TenantDirectory, TillConnection
from engine.web.connect import NewShop, problem_text, resume_if_waiting_for_consent


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], default_data: str | None
) -> None:
    parser = sub.add_parser(
        "connect",
        help="connect a shop to Fortnox (consent on this machine, or a link to send)",
        description=(__doc__ or "").replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("tenant", help="the tenant (shop) id")
    parser.add_argument("--data", default=default_data, help="the engine's data folder")
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--link",
        action="store_true",
        help=f"print the consent link for the dashboard's callback (needs {PUBLIC_URL_ENV})",
    )
    what.add_argument("--status", action="store_true", help="print the connection's state")
    parser.add_argument("--add", action="store_true", help="add the shop first (no tokens)")
    parser.add_argument("--name", default="", help="the shop's name (with --add)")
    parser.add_argument("--till-endpoint", default=None, help="the till's URL (with --add)")
    parser.add_argument(
        "--service-account",
        action="store_true",
        help="ask for a Fortnox service account (client credentials with the TenantId)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"local callback port (http://127.0.0.1:PORT/callback; default {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--no-browser", action="store_true", help="print the address instead of opening it"
    )
    parser.set_defaults(func=run)


def _fail(text: str) -> int:
    print(f"kassasync connect: {text}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    data = Path(args.data)
    box = SecretBox.from_env()
    if args.add:
        data.mkdir(parents=True, exist_ok=True)
    elif not (data / "kassasync.db").exists():
        return _fail(f"no engine database at {data} (use --data, or --add to add the shop)")
    db = Database(data / "kassasync.db")
    tenants = TenantDirectory(db, box)
    if args.add:
        try:
            shop = NewShop(id=args.tenant, name=args.name, till_endpoint=args.till_endpoint)
        except ValidationError as bad:
            return _fail(problem_text(bad))
        if tenants.get(shop.id) is not None:
            return _fail(f"tenant {shop.id} exists already")
        key = tenants.upsert(
            TenantConfig(
                id=shop.id,
                name=shop.name,
                till=TillConnection(endpoint=shop.till_endpoint),
                fortnox=FortnoxConnection(),
            )
        )
        print(json.dumps({"tenant": shop.id, "api_key": key, "connection": "not_connected"}))
    config = tenants.get(args.tenant)
    if config is None:
        return _fail(f"no tenant {args.tenant!r} (add it with --add)")
    app = _app(config)
    if app is None:
        return _fail(
            "no Fortnox app configured: set KASSASYNC_FORTNOX_CLIENT_ID and "
            "KASSASYNC_FORTNOX_CLIENT_SECRET"
        )
    store = SqliteTokenStore(data / "tokens.db", box)
    ops = Ops(SqliteOpsStore(db), EmbeddedProbe(db, running=False))

    async def connected(tenant: str) -> None:
        resume_if_waiting_for_consent(ops, tenant)

    onboarding = Onboarding(
        app, store, box, public_url=public_url_from_env(), on_connected=connected
    )
    service = True if args.service_account else None
    try:
        if args.status:
            status = asyncio.run(onboarding.status(config.id))
            print(json.dumps(status.as_dict()))
            return 0
        if args.link:
            print(onboarding.link(config.id, config.settings, service_account=service))
            return 0
        done = asyncio.run(
            connect_here(
                onboarding,
                config.id,
                config.settings,
                service_account=service,
                port=args.port,
                open_browser=None if args.no_browser else webbrowser.open,
            )
        )
    except (ConsentError, FortnoxError) as failed:
        return _fail(failed.message)
    print(
        json.dumps(
            {
                "tenant": done.tenant,
                "connection": "connected",
                "kind": done.tokens.kind.value,
                "fortnox_tenant_id": done.tokens.fortnox_tenant_id,
                "scope": done.tokens.scope,
            }
        )
    )
    return 0


def _app(config: TenantConfig) -> FortnoxApp | None:
    """The tenant's own app if its configuration names one, else the installation's."""
    if config.fortnox is None:
        return FortnoxApp.from_env()
    try:
        return resolve_connection(config.fortnox, None).app
    except NoFortnoxApp:
        return None
