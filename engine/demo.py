"""``kassasync demo``: what ``make run`` runs — the embedded engine, the sandbox Fortnox and a
simulated till, all on loopback — optionally for a bounded time, ending with a JSON summary whose
``drift`` counts the customers, articles and stock levels that differ between till and Fortnox."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import secrets
import shutil
import socket
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import httpx
import structlog
from pydantic import SecretStr

from engine.cli.util import CliError, settings_of
from engine.settings import Settings

if TYPE_CHECKING:  # imported where used: ``kassasync --help`` need not load the servers
    import uvicorn

    from engine.embedded.runtime import EmbeddedEngine
    from sandbox.till import TillState

log = structlog.get_logger("kassasync.demo")

TENANT = "demo"
LOG_FILE = "kassasync.log"
DEMO_SETTINGS: dict[str, Any] = {
    "customers": {"master": "fortnox"},
    "articles": {"price_list": "A"},
    "stock": {"enabled": True},
    "zreports": {
        "enabled": True,
        "series": "F",
        "accounts": {
            "payment_methods": {"card": 1580, "cash": 1910, "swish": 1930},
            "sales_by_vat": {"25": 3001, "12": 3002, "6": 3003, "0": 3004},
            "vat_by_rate": {"25": 2611, "12": 2621, "6": 2631},
            "rounding": 3740,
            "tips": 2890,
            "gift_cards": 2421,
        },
    },
    "flush_window_seconds": 1,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=0, help="seconds; 0 = until Ctrl-C")
    parser.add_argument(
        "--json", action="store_true", help="headless: log to stderr, print one JSON summary"
    )
    parser.add_argument(
        "--data",
        dest="demo_data",
        default=None,
        help="data folder (default: a fresh temporary folder; KASSASYNC_DATA is not used, so "
        "the demo never writes into an engine's data)",
    )
    parser.add_argument(
        "--http-port",
        type=int,
        default=8080,
        help="dashboard and ingest port (default 8080; make run PORT=N)",
    )
    parser.add_argument("--rate", type=float, default=6.0, help="till events per second")


_SERVERS: list[asyncio.Task[None]] = []


async def _serve(app: Any, sock: socket.socket) -> uvicorn.Server:
    import uvicorn

    # log_config=None: uvicorn's records go through the JSON log like every other line;
    # date_header=False: the sandbox's Date is its business clock.
    config = uvicorn.Config(
        app, log_level="warning", lifespan="off", date_header=False, log_config=None
    )
    server = uvicorn.Server(config)
    _SERVERS.append(asyncio.create_task(server.serve(sockets=[sock])))
    while not server.started:
        await asyncio.sleep(0.02)
    return server


def run(args: argparse.Namespace) -> int:
    from engine.logging import configure
    from engine.net import port_in_use

    settings = settings_of(args)
    if port_in_use("127.0.0.1", args.http_port):
        raise CliError(
            f"port {args.http_port} is in use (another kassasync or demo?); stop it or pick a "
            f"free port: make run PORT={args.http_port + 1} (kassasync demo --http-port N)"
        )
    data = (
        Path(args.demo_data) if args.demo_data else Path(tempfile.mkdtemp(prefix="kassasync-demo-"))
    )
    data.mkdir(parents=True, exist_ok=True)
    key = settings.secret_key or SecretStr(_generate_key())
    demo_settings = settings.model_copy(update={"data": data, "secret_key": key})
    log_stream: TextIO | None = None
    if not args.json:
        # The terminal keeps the banner; the JSON log goes to a file in the data folder.
        log_stream = (data / LOG_FILE).open("a", encoding="utf-8", buffering=1)
        configure(settings.log_level, stream=log_stream)
    try:
        summary = asyncio.run(demo(args, demo_settings))
    finally:
        if log_stream is not None:
            configure(settings.log_level)
            log_stream.close()
    if args.json:
        print(json.dumps(summary))
    else:
        print(json.dumps(summary, indent=2))
    return 0 if summary["drift"] == 0 or args.duration == 0 else 1


def _generate_key() -> str:
    from engine.secrets import generate_key

    return generate_key()


def _cli_command() -> str:
    """How this terminal runs ``kassasync``: the name when it is on PATH, else the path used."""
    invoked = Path(sys.argv[0])
    found = shutil.which("kassasync")
    if invoked.name == "kassasync":
        if found and Path(found).resolve() == invoked.resolve():
            return "kassasync"
        with contextlib.suppress(ValueError):
            return str(invoked.resolve().relative_to(Path.cwd()))
        return str(invoked)
    return "kassasync" if found else f"{sys.executable} -m engine.cli"


def banner(settings: Settings, *, url: str, admin_token: str, log_file: Path | None) -> str:
    """What ``make run`` leaves on the terminal: how to log in, and how to point the CLI at the
    demo's data."""
    key = settings.secret_key.get_secret_value() if settings.secret_key else ""
    command = _cli_command()
    lines = [
        "",
        "Kassasync demo is running: the embedded engine, a sandbox Fortnox and a simulated till.",
        "",
        f"  1. Open        {url}/login",
        f"  2. Paste       {admin_token}",
        "",
        f"  Data folder    {settings.data}",
        f"  Secret key     {key}",
    ]
    if log_file is not None:
        lines.append(f"  Log (JSON)     {log_file}")
    lines += [
        "",
        "  The CLI on the demo's data, from another terminal:",
        # KASSASYNC_URL: the CLI's actions go through this engine, not another one that may
        # answer on the default port.
        f"    export KASSASYNC_DATA={settings.data} KASSASYNC_SECRET_KEY={key} "
        f"KASSASYNC_ADMIN_TOKEN={admin_token} KASSASYNC_URL={url}",
        f"    {command} status",
        "",
        "  Ctrl-C stops the demo.",
        "",
    ]
    return "\n".join(lines)


async def demo(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from engine import bootstrap
    from engine.executors.fortnox import SessionTiming
    from engine.net import loopback_listener
    from engine.tenants import FortnoxConnection, TenantConfig, TillConnection
    from sandbox.fortnox.app import create_app as create_sandbox
    from sandbox.fortnox.seed import seed_demo
    from sandbox.fortnox.state import SandboxState
    from sandbox.till import TillActivity, TillState
    from sandbox.till import create_app as create_till
    from topics.settings import TenantSettings

    sandbox_state = SandboxState()
    seeded = seed_demo(sandbox_state, client_id="kassasync-demo")
    sandbox_sock, till_sock = loopback_listener(), loopback_listener()
    sandbox_url = f"http://127.0.0.1:{sandbox_sock.getsockname()[1]}"
    till_token = secrets.token_urlsafe(16)
    till = TillState(tenant=TENANT, token=till_token)
    servers = [
        await _serve(create_sandbox(sandbox_state), sandbox_sock),
        await _serve(create_till(till), till_sock),
    ]
    engine = bootstrap.embedded_engine(
        settings.model_copy(update={"http_host": "127.0.0.1"}),
        http_port=args.http_port,
        timing=SessionTiming(poll_seconds=2, masterdata_seconds=30, idle_seconds=0.1),
    )
    engine.announce_admin_token = False  # the banner shows it, with the dashboard's address
    credentials = seeded.credentials(sandbox_url)
    api_key = engine.tenants.upsert(
        TenantConfig(
            id=TENANT,
            name="Exempelbutiken AB",
            settings=TenantSettings.model_validate(DEMO_SETTINGS),
            till=TillConnection(
                endpoint=f"http://127.0.0.1:{till_sock.getsockname()[1]}/kassasync/commands",
                token=till_token,
            ),
            fortnox=FortnoxConnection.at(sandbox_url, credentials, poll_seconds=2),
        )
    )
    assert api_key is not None
    log.info(
        "demo.started",
        data=str(settings.data),
        sandbox=sandbox_url,
        dashboard=f"http://127.0.0.1:{args.http_port}/login",
    )
    stop_engine, stop_activity = asyncio.Event(), asyncio.Event()
    engine_task = asyncio.create_task(engine.run(stop_engine))
    if not args.json:
        await _until_serving(engine, engine_task)
        print(
            banner(
                settings,
                url=f"http://127.0.0.1:{args.http_port}",
                admin_token=engine.admin_token,
                log_file=settings.data / LOG_FILE,
            ),
            flush=True,
        )
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=30) as http:
        activity = TillActivity(
            till,
            f"http://127.0.0.1:{args.http_port}/v1/tenants/{TENANT}/events",
            api_key,
            http,
        )
        await _wait_for_till_articles(till, stop_engine, 60)
        tasks = [
            asyncio.create_task(activity.run(stop_activity, rate=args.rate)),
            asyncio.create_task(_webshop(http, sandbox_url, seeded.tenant.id, stop_activity)),
        ]
        if args.duration > 0:
            active = max(1.0, args.duration * 0.6 - (time.monotonic() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_engine.wait(), timeout=active)
        else:
            await _until_interrupted()
            if not args.json:
                print(
                    "Stopping: the till and the webshop stop selling, the engine finishes what "
                    "they started (up to a minute), then the summary.",
                    flush=True,
                )
        stop_activity.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        deadline = started + max(args.duration, 30.0) + 60.0
        await _quiesce(engine, deadline)
        drift = await _drift(http, sandbox_url, seeded.tenant.id, till, engine)
    stop_engine.set()
    await engine_task
    for server in servers:
        server.should_exit = True
    return {
        "events_in": engine.counters.events_in,
        "till_events_sent": activity.sent,
        "commands_out": engine.counters.commands_out,
        "errors": engine.edge.dead.count_open(),
        "drift": sum(drift.values()),
        "drift_detail": drift,
        "seconds": round(time.monotonic() - started, 1),
    }


async def _until_serving(engine: EmbeddedEngine, task: asyncio.Task[None]) -> None:
    """Until the dashboard answers (or the engine stopped: its error is raised here)."""
    while not (engine.server is not None and engine.server.started):
        if task.done():
            task.result()
            raise CliError("the engine stopped before its dashboard was up (see the log)")
        await asyncio.sleep(0.05)
    # uvicorn gave its loggers their own plain-text handlers on the terminal: send their
    # records to the JSON log instead, so nothing writes below the banner.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


async def _until_interrupted() -> None:
    import signal

    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    await done.wait()


async def _wait_for_till_articles(till: TillState, stop: asyncio.Event, seconds: float) -> None:
    end = time.monotonic() + seconds
    while not till.articles and time.monotonic() < end and not stop.is_set():
        await asyncio.sleep(0.2)


async def _webshop(http: httpx.AsyncClient, base: str, tenant_id: int, stop: asyncio.Event) -> None:
    """Meanwhile, a webshop sells from Fortnox's stock now and then."""
    import random

    rng = random.Random(11)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=3.0)
        if stop.is_set():
            return
        state = (await http.get(f"{base}/_sandbox/tenants/{tenant_id}?registers=articles")).json()
        stock = [
            a["ArticleNumber"]
            for a in state["articles"]
            if a.get("StockGoods") and float(a.get("QuantityInStock") or 0) > 2
        ]
        if stock:
            await http.post(
                f"{base}/_sandbox/tenants/{tenant_id}/webshop-sale",
                json={"article": rng.choice(sorted(stock)), "quantity": 1},
            )


async def _quiesce(engine: EmbeddedEngine, deadline: float) -> None:
    """Wait until nothing is pending and two polls in a row brought nothing new."""
    quiet_rounds = 0
    while time.monotonic() < deadline and quiet_rounds < 3:
        await asyncio.sleep(2.5)
        for session in engine.sessions.values():
            session.request_poll()
        await asyncio.sleep(1.0)
        quiet_rounds = quiet_rounds + 1 if engine.quiet() else 0


async def _drift(
    http: httpx.AsyncClient, base: str, tenant_id: int, till: TillState, engine: EmbeddedEngine
) -> dict[str, int]:
    state = (
        await http.get(f"{base}/_sandbox/tenants/{tenant_id}?registers=articles,customers")
    ).json()
    store = engine.processor.store
    drift = {"articles": 0, "stock": 0, "customers": 0}
    for article in state["articles"]:
        number = article["ArticleNumber"]
        want = store.get(TENANT, "art.want", number) or {}
        held = till.articles.get(number)
        if want.get("in_till"):
            expected = want["article"]
            if (
                held is None
                or held.get("description") != article.get("Description")
                or (held.get("ean") or None) != (article.get("EAN") or None)
            ):
                drift["articles"] += 1
            if article.get("StockGoods") and held is not None:
                fortnox_qty = Decimal(str(article.get("QuantityInStock") or 0))
                if till.stock.get(number, Decimal(0)) != fortnox_qty:
                    drift["stock"] += 1
            del expected
        elif held is not None:
            drift["articles"] += 1
    numbers = {c["CustomerNumber"]: c for c in state["customers"]}
    for till_id, customer in till.customers.items():
        number = customer.get("fortnox_number") or (
            store.get(TENANT, "cust.till", till_id) or {}
        ).get("number")
        fortnox = numbers.get(number or "")
        if fortnox is None or fortnox.get("Name") != customer.get("name"):
            drift["customers"] += 1
    return drift
