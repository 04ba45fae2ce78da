"""``kassasync status``, ``kassasync deadletters``, ``kassasync commands``,
``kassasync tenants`` and ``kassasync store``.

Reads (status, lists) open the engine's database directly: WAL lets them read while the engine
runs. Actions (retry, discard, pause, resume) go through the running engine's ops API when one
answers (``--url``, ``KASSASYNC_URL``, else http://127.0.0.1:8080) with
``KASSASYNC_ADMIN_TOKEN``, so the engine appends them itself; with no engine running they are
written to the database directly (``--offline`` forces that).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import quote

import httpx
from rich.console import Console
from rich.table import Table

from engine.cli.settings import add_options as settings_options
from engine.cli.settings import cmd_settings
from engine.cli.util import CliError, Parser, execute, settings_of
from engine.kafka.cli import kafka_options
from engine.ops import (
    FLOW_TITLES,
    FLOWS,
    ActionResult,
    DeadLetterRow,
    EmbeddedProbe,
    Light,
    Ops,
    OpsError,
    PendingCommand,
    SqliteOpsStore,
    TenantSummary,
    age_text,
    progress,
)
from engine.settings import DEFAULT_URL
from engine.store.db import Database
from engine.web.auth import ADMIN_TOKEN_ENV

URL_ENV = "KASSASYNC_URL"
DATA_HELP = "the engine's data folder (default $KASSASYNC_DATA or var/kassasync)"

_STYLE = {Light.GREEN: "green", Light.AMBER: "dark_orange", Light.RED: "red", Light.OFF: "grey50"}


def register(sub: argparse._SubParsersAction[Parser]) -> None:
    """Add ``status``, ``deadletters``, ``commands``, ``tenants`` and ``store`` to the command
    line."""

    def data_option(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--data", default=None, help=DATA_HELP)
        parser.add_argument(
            "--runtime",
            choices=["embedded", "kafka"],
            default="embedded",
            help="the deployment to read and act on (kafka: its topics, via a local read model)",
        )
        kafka_options(parser, replication=False)

    def action_options(parser: argparse.ArgumentParser) -> None:
        data_option(parser)
        parser.add_argument(
            "--url", default=None, help=f"the running engine (default ${URL_ENV} or {DEFAULT_URL})"
        )
        parser.add_argument(
            "--offline", action="store_true", help="write to the database, not via the engine"
        )

    status = sub.add_parser("status", help="status lights per tenant and flow")
    data_option(status)
    status.add_argument("--tenant", help="one tenant only")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.set_defaults(func=cmd_status)

    letters = sub.add_parser("deadletters", help="list, retry or discard dead letters")
    action_options(letters)
    letters.add_argument(
        "action", choices=["list", "retry", "discard"], help="list, retry or discard"
    )
    letters.add_argument("id", nargs="?", help="one dead letter (else all open ones of --tenant)")
    letters.add_argument("--tenant", help="only this tenant's dead letters")
    letters.add_argument("--all", action="store_true", help="every tenant's open dead letters")
    letters.add_argument(
        "--status",
        default="open",
        choices=["open", "retried", "discarded"],
        help="list: which dead letters (default open)",
    )
    letters.add_argument("--json", action="store_true", help="print JSON")
    letters.set_defaults(func=cmd_deadletters)

    commands = sub.add_parser(
        "commands", help="list commands being retried; retry one now or cancel it"
    )
    action_options(commands)
    commands.add_argument("action", choices=["list", "retry", "cancel"], help="what to do")
    commands.add_argument("id", nargs="?", help="the command (for retry and cancel)")
    commands.add_argument("--tenant", help="only this tenant's commands (list)")
    commands.add_argument("--reason", default=None, help="why (cancel)")
    commands.add_argument("--json", action="store_true", help="print JSON")
    commands.set_defaults(func=cmd_commands)

    tenants = sub.add_parser(
        "tenants", help="add, list, pause or resume tenants, or set one up from its Fortnox"
    )
    action_options(tenants)
    tenants.add_argument(
        "action", choices=["add", "list", "pause", "resume", "settings"], help="what to do"
    )
    tenants.add_argument("tenant", nargs="?", help="the tenant to pause, resume or set up")
    tenants.add_argument(
        "--config", help="add: YAML file with tenants: [...] (docs/configuration.md)"
    )
    tenants.add_argument("--reason", default=None, help="why (pause, resume)")
    tenants.add_argument("--json", action="store_true", help="print JSON")
    settings_options(tenants)
    tenants.set_defaults(func=cmd_tenants)

    store = sub.add_parser(
        "store", help="what takes room in the embedded store: tables, state families, free pages"
    )
    store.add_argument("--data", default=None, help=DATA_HELP)
    store.add_argument("--json", action="store_true", help="print JSON")
    store.set_defaults(func=cmd_store)


# --- plumbing ---------------------------------------------------------------------------------


def _database(args: argparse.Namespace) -> Database:
    from engine.bootstrap import open_database

    try:
        return open_database(settings_of(args), create=False)
    except FileNotFoundError as missing:
        raise CliError(
            f"no engine database at {missing} (use --data or KASSASYNC_DATA; "
            "make run prints the demo's)"
        ) from None


def open_ops(args: argparse.Namespace) -> Ops:
    if getattr(args, "runtime", "embedded") == "kafka":
        return _kafka_ops(args)
    db = _database(args)
    return Ops(SqliteOpsStore(db), EmbeddedProbe(db, running=False))


def _kafka_ops(args: argparse.Namespace) -> Ops:
    """The Kafka deployment's ops over a read model caught up now (kept under ``--data``)."""
    import atexit

    from kafka.errors import KafkaError

    from engine.kafka.cli import _config
    from engine.kafka.ops import KafkaOps

    config = _config(args)
    try:
        kafka = KafkaOps(config)
        atexit.register(kafka.close)
        kafka.catch_up()
    except (KafkaError, TimeoutError) as failed:
        raise CliError(
            f"cannot read the Kafka deployment at {config.bootstrap} "
            f"(prefix {config.prefix!r}): {failed} (check --bootstrap and --prefix)"
        ) from None
    return kafka.ops


class EngineApi:
    """The running engine's ops API."""

    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def post(self, path: str, body: dict[str, str] | None = None) -> ActionResult:
        answer = self.http.post(path, json=body or {})
        if answer.status_code == 401:
            raise CliError(f"the engine refused the admin token ({ADMIN_TOKEN_ENV})")
        data = answer.json()
        if answer.status_code >= 400:
            raise OpsError(str(data.get("error", answer.text)))
        return ActionResult(
            action=data["action"],
            tenant=data["tenant"],
            dead_letter_id=data.get("dead_letter_id"),
            message_id=data["message_id"],
            requeued=bool(data.get("requeued")),
            replayed=bool(data.get("replayed")),
        )


def engine_api(args: argparse.Namespace, err: Console) -> EngineApi | None:
    """The running engine to send actions to, or None to write to the database."""
    if args.offline or (getattr(args, "runtime", "embedded") == "kafka" and not args.url):
        return None  # Kafka: actions are published as messages for the owning worker
    settings = settings_of(args)
    explicit = settings.url
    url = settings.engine_url
    try:
        # 503 is a running engine that reports a problem: actions still go through it.
        alive = httpx.get(url.rstrip("/") + "/healthz", timeout=2).status_code in (200, 503)
    except httpx.HTTPError:
        alive = False
    if not alive:
        if explicit:
            raise CliError(f"no engine answers at {url}")
        return None
    token = settings.admin_token.get_secret_value().strip() if settings.admin_token else ""
    if not token:
        raise CliError(
            f"an engine runs at {url}; set {ADMIN_TOKEN_ENV} to act through it "
            "(or stop it and use --offline)"
        )
    err.print(f"via the running engine at {url}", style="dim")
    return EngineApi(url, token)


def _actions(
    args: argparse.Namespace, err: Console
) -> tuple[Callable[[str], ActionResult], Callable[[str], ActionResult]]:
    """(retry, discard) through the engine or on the database."""
    api = engine_api(args, err)
    if api is not None:
        return (
            lambda i: api.post(f"/ops/api/deadletters/{quote(i, safe='')}/retry"),
            lambda i: api.post(f"/ops/api/deadletters/{quote(i, safe='')}/discard"),
        )
    ops = open_ops(args)
    return ops.retry, ops.discard


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


# --- status -----------------------------------------------------------------------------------


def status_table(summaries: Sequence[TenantSummary], now: float) -> Table:
    table = Table(title="Kassasync tenants", title_justify="left")
    table.add_column("Tenant", style="bold")
    for flow in FLOWS:
        table.add_column(FLOW_TITLES[flow])
    table.add_column("Dead letters", justify="right")
    table.add_column("Outbox", justify="right")
    for s in summaries:
        name = s.tenant + (f"\n[dim]{s.name}[/dim]" if s.name else "")
        if s.paused is not None:
            name += "\n[red]paused[/red]"
        cells = [f"[{_STYLE[f.light]}]● {f.light.value}[/]" for f in s.flows]
        oldest = "" if s.oldest_pending is None else f"\n[dim]{age_text(now - s.oldest_pending)}[/]"
        table.add_row(name, *cells, str(s.dead_letters), f"{s.pending}{oldest}")
    return table


def cmd_status(args: argparse.Namespace) -> int:
    ops = open_ops(args)
    summaries = [s for s in ops.overview() if args.tenant in (None, s.tenant)]
    if args.tenant and not summaries:
        raise CliError(f"no tenant {args.tenant!r}")
    if args.json:
        from engine.web.api import summary_json

        _print_json({"tenants": [summary_json(s) for s in summaries]})
    else:
        console = Console()
        console.print(status_table(summaries, ops.clock()))
        for s in summaries:
            if s.paused is not None:
                console.print(f"[red]{s.tenant} is paused:[/red] {s.paused.message}")
                console.print(f"  [dim]fix:[/dim] {s.paused.fix}")
            for flow in s.flows:
                if flow.light in (Light.AMBER, Light.RED):
                    reasons = "; ".join(flow.reasons)
                    console.print(f"  {s.tenant} {flow.title}: [{_STYLE[flow.light]}]{reasons}[/]")
    return 2 if any(s.light is Light.RED for s in summaries) else 0


# --- dead letters -----------------------------------------------------------------------------


def letters_table(rows: Sequence[DeadLetterRow], now: float) -> Table:
    table = Table(title="Dead letters", title_justify="left")
    table.add_column("Id", overflow="fold")
    table.add_column("Tenant", no_wrap=True)
    table.add_column("Type", no_wrap=True)
    table.add_column("Age", no_wrap=True)
    table.add_column("Error", overflow="fold")
    for row in rows:
        table.add_row(
            row.id, row.tenant, row.type, age_text(now - row.created_at), row.error.message
        )
    return table


def cmd_deadletters(args: argparse.Namespace) -> int:
    err = Console(stderr=True)
    if args.action == "list":
        ops = open_ops(args)
        rows = ops.dead_letters(tenant=args.tenant, status=args.status)
        if args.json:
            from engine.web.api import dead_letter_json

            _print_json({"dead_letters": [dead_letter_json(r) for r in rows]})
        else:
            Console().print(letters_table(rows, ops.clock()))
        return 0
    if args.id is None and args.tenant is None and not args.all:
        raise CliError(f"give a dead letter id, --tenant or --all to {args.action}")
    if args.id is not None:
        ids = [args.id]
    else:
        ids = [r.id for r in open_ops(args).dead_letters(tenant=args.tenant, status="open")]
    retry, discard = _actions(args, err)
    act = retry if args.action == "retry" else discard
    results: list[dict[str, object]] = []
    failures = 0
    with progress(len(ids), f"{args.action} dead letters", enabled=len(ids) > 1) as bar:
        for dead_letter_id in ids:
            try:
                results.append(act(dead_letter_id).as_dict())
            except OpsError as failed:
                failures += 1
                err.print(f"[red]{dead_letter_id}: {failed}[/red]")
            bar.advance()
    if args.json:
        _print_json({"results": results})
    else:
        for result in results:
            if result["noop"]:  # nothing was done: the note says why
                print(f"{result['dead_letter_id']}: {result['note']}")
                continue
            how = " (command requeued)" if result["requeued"] else ""
            how += " (message appended again)" if result["replayed"] else ""
            print(f"{result['dead_letter_id']}: {args.action} done{how}")
        if not ids:
            print("no open dead letters")
    return 1 if failures else 0


# --- commands being retried -------------------------------------------------------------------


def commands_table(rows: Sequence[PendingCommand], now: float) -> Table:
    table = Table(title="Commands being retried", title_justify="left")
    table.add_column("Id", overflow="fold")
    table.add_column("Tenant", no_wrap=True)
    table.add_column("Type", no_wrap=True)
    table.add_column("Lane", overflow="fold")
    table.add_column("Attempts", justify="right")
    table.add_column("Next", no_wrap=True)
    table.add_column("Last error", overflow="fold")
    for row in rows:
        due = "now" if row.next_at <= now else f"in {age_text(row.next_at - now)}"
        table.add_row(
            row.command_id,
            row.tenant,
            row.type,
            row.lane,
            str(row.attempts),
            due,
            row.last_error or "",
        )
    return table


def cmd_commands(args: argparse.Namespace) -> int:
    err = Console(stderr=True)
    if args.action == "list":
        ops = open_ops(args)
        rows = ops.retrying(args.tenant)
        if args.json:
            from engine.web.api import jsonable

            _print_json({"commands": [jsonable(r) for r in rows]})
        elif rows:
            Console().print(commands_table(rows, ops.clock()))
        else:
            print("no command is waiting for a retry")
        return 0
    if args.id is None:
        raise SystemExit(f"kassasync: name the command to {args.action}")
    reason = args.reason or "cancelled by operator"
    api = engine_api(args, err)
    path = f"/ops/api/commands/{quote(args.id, safe='')}/{args.action}"
    try:
        if api is not None:
            result = api.post(path, {"reason": reason} if args.action == "cancel" else None)
        elif args.action == "retry":
            result = open_ops(args).retry_command(args.id)
        else:
            result = open_ops(args).cancel_command(args.id, reason)
    except OpsError as failed:
        err.print(f"[red]{args.id}: {failed}[/red]")
        return 1
    if args.json:
        _print_json(result.as_dict())
    elif args.action == "retry":
        print(f"{args.id}: will be attempted at once")
    else:
        print(f"{args.id}: cancelled; it is now a dead letter (kassasync deadletters list)")
    return 0


# --- tenants ----------------------------------------------------------------------------------


def cmd_tenants(args: argparse.Namespace) -> int:
    if args.action == "add":
        return _tenants_add(args)
    if args.action == "settings":
        return cmd_settings(args)
    if args.action == "list":
        ops = open_ops(args)
        summaries = ops.overview()
        if args.json:
            _print_json(
                [
                    {"tenant": s.tenant, "name": s.name, "paused": s.paused is not None}
                    for s in summaries
                ]
            )
        else:
            for s in summaries:
                print(s.tenant)
        return 0
    if not args.tenant:
        raise CliError(f"name the tenant to {args.action}")
    err = Console(stderr=True)
    api = engine_api(args, err)
    try:
        if args.action == "pause":
            reason = args.reason or "maintenance"
            result = (
                api.post(
                    f"/ops/api/tenants/{quote(args.tenant, safe='')}/pause", {"reason": reason}
                )
                if api is not None
                else open_ops(args).pause(args.tenant, reason)
            )
        else:
            reason = args.reason or "resumed by operator"
            result = (
                api.post(
                    f"/ops/api/tenants/{quote(args.tenant, safe='')}/resume", {"reason": reason}
                )
                if api is not None
                else open_ops(args).resume(args.tenant, reason)
            )
    except OpsError as failed:
        err.print(f"[red]{failed}[/red]")
        return 1
    print(json.dumps(result.as_dict()) if args.json else f"{args.tenant}: {args.action}d")
    return 0


def _tenants_add(args: argparse.Namespace) -> int:
    from engine.bootstrap import tenant_directory
    from engine.tenants import load_config_file

    if not args.config:
        raise CliError("tenants add needs --config FILE")
    configs = load_config_file(Path(args.config))  # every tenant checked before one is added
    directory = tenant_directory(settings_of(args))
    for config in configs:
        key = directory.upsert(config)
        print(json.dumps({"tenant": config.id, "api_key": key}))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """For ``python -m engine.cli.ops``: the same commands without the rest of the CLI."""
    parser = Parser(prog="kassasync")
    parser.add_argument("--log-level", dest="main_log_level", default=None, help="log level")
    register(parser.add_subparsers(dest="command", required=True))
    return execute(parser, argv)


if __name__ == "__main__":
    sys.exit(main())


# --- the store's footprint --------------------------------------------------------------------


def _size(n: int | None) -> str:
    """``n`` bytes for people: ``812 B``, ``3.4 KB``, ``1.5 MB``, ``2.6 GB``."""
    if n is None:
        return "?"
    if n < 1024:
        return f"{n:,} B"
    size, unit = n / 1024, "KB"
    for bigger in ("MB", "GB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{size:,.1f} {unit}"


def cmd_store(args: argparse.Namespace) -> int:
    from engine.bootstrap import database_path
    from engine.store.footprint import NotAStore, footprint

    path = database_path(settings_of(args))
    if not path.exists():
        raise CliError(f"no engine database at {path} (use --data or KASSASYNC_DATA)")
    try:
        found = footprint(path)
    except NotAStore as wrong:
        raise CliError(str(wrong)) from None
    if args.json:
        _print_json(
            {
                "path": str(found.path),
                "file_bytes": found.file_bytes,
                "wal_bytes": found.wal_bytes,
                "free_bytes": found.free_bytes,
                "tables": [
                    {"name": t.name, "rows": t.rows, "bytes": t.bytes, "what": t.what}
                    for t in found.tables
                ],
                "state": [
                    {"family": f.family, "rows": f.rows, "value_bytes": f.value_bytes}
                    for f in found.state
                ],
            }
        )
        return 0
    console = Console()
    console.print(
        f"{found.path}: {_size(found.file_bytes)}, WAL {_size(found.wal_bytes)}, "
        f"free pages {_size(found.free_bytes)} (reused by new rows)"
    )
    table = Table("Table", "Rows", "Bytes (with indexes)", "Holds")
    for t in found.tables:
        if t.rows:
            table.add_row(t.name, f"{t.rows:,}", _size(t.bytes), t.what)
    console.print(table)
    families = Table("State family", "Rows", "Bytes (compressed values)")
    for f in found.state:
        families.add_row(f.family, f"{f.rows:,}", _size(f.value_bytes))
    console.print(families)
    console.print(
        "[dim]How long each is kept: docs/operations.md, Retention "
        "(KASSASYNC_LOG_KEEP_DAYS for the logs).[/dim]"
    )
    return 0
