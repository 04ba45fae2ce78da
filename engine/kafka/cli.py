"""Subcommands of the Kafka runtime: ``kassasync worker``, ``kassasync kafka init|tenants|ingest``
and ``kassasync replay`` (both runtimes)."""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine import bootstrap
from engine.cli.util import run_until_signal, settings_of

if TYPE_CHECKING:
    import uvicorn
from engine.kafka.config import KafkaConfig, parse_cleanup


def _config(args: argparse.Namespace) -> KafkaConfig:
    """The Kafka configuration of this command line (its settings, ``--cleanup``, ``--tokens``)."""
    tokens = getattr(args, "tokens", None)
    return bootstrap.kafka_config(
        settings_of(args),
        cleanup=parse_cleanup(getattr(args, "cleanup", None)),
        tokens=Path(tokens) if tokens else None,
    )


def _start(text: str) -> str:
    """An argparse type for ``replay --from``: an offset or an ISO time, checked here."""
    from engine.replay import parse_start

    try:
        parse_start(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an offset or an ISO time (2026-11-01T00:00): {text!r}"
        ) from None
    return text


def kafka_options(parser: argparse.ArgumentParser, *, replication: bool = True) -> None:
    """Where the Kafka deployment is: bootstrap, prefix, partitions (and replication)."""
    parser.add_argument(
        "--bootstrap",
        help="Kafka bootstrap HOST:PORT (default $KASSASYNC_KAFKA_BOOTSTRAP or 127.0.0.1:9092)",
    )
    parser.add_argument(
        "--prefix", default=None, help="topic/group prefix (default $KASSASYNC_KAFKA_PREFIX)"
    )
    parser.add_argument(
        "--partitions",
        type=int,
        default=None,
        help="partitions per topic (default $KASSASYNC_KAFKA_PARTITIONS or 8)",
    )
    parser.add_argument(
        "--replication",
        type=int,
        default=None,
        help="replication factor (default $KASSASYNC_KAFKA_REPLICATION or 1)"
        if replication
        else argparse.SUPPRESS,
    )


def _common(parser: argparse.ArgumentParser) -> None:
    kafka_options(parser)
    parser.add_argument(
        "--data",
        default=None,
        help="local folder, the token store's (default $KASSASYNC_DATA or var/kassasync)",
    )


def _cmd_init(args: argparse.Namespace) -> int:
    from engine.kafka.topics import init_topics

    print(json.dumps(init_topics(_config(args)), indent=2))
    return 0


def _cmd_tenants(args: argparse.Namespace) -> int:
    from engine.cli.util import CliError
    from engine.tenants import load_config_file

    if args.action == "add" and not args.config:
        raise CliError("kafka tenants add needs --config FILE")
    configs = load_config_file(Path(args.config)) if args.action == "add" else []
    directory = bootstrap.kafka_tenant_directory(settings_of(args))
    if args.action == "list":
        for tenant in directory.ids():
            print(tenant)
        return 0
    for config in configs:
        print(json.dumps({"tenant": config.id, "api_key": directory.upsert(config)}))
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    from engine.executors.fortnox import SessionTiming
    from engine.kafka.runtime import quiet_faust_logs

    quiet_faust_logs()
    timing = SessionTiming(
        masterdata_seconds=args.masterdata_seconds, idle_seconds=args.idle_seconds
    )
    runtime = bootstrap.kafka_runtime(
        settings_of(args),
        tokens=Path(args.tokens) if args.tokens else None,
        timing=timing,
        executors=not args.no_executors,
        log_notes=not args.no_notes,
        health_port=args.health_port or None,
    )
    return run_until_signal(runtime.run)


def _cmd_ingest(args: argparse.Namespace) -> int:
    import uvicorn

    from engine.gateway import sie_files
    from engine.gateway.ingest import MAX_BODY_BYTES
    from engine.kafka.bookkeeping import KafkaBooks
    from engine.kafka.ingest import EventProducer, SieFileDoor, create_app
    from engine.web.door import Door, DoorSettings, server_config

    settings = settings_of(args)
    config = _config(args)
    producer = EventProducer(config)
    # The till-PC agent's uploads: imported as import-sie --runtime kafka imports, with the
    # read model under --data (as the CLI's).
    uploads = SieFileDoor(KafkaBooks(config, bootstrap.secret_box(settings)))
    app = create_app(bootstrap.kafka_tenant_directory(settings), producer, uploads)
    # The port's limits (docs/operations.md): ingest bodies up to 1 MB, SIE files up to 8 MB,
    # read timeouts.
    door = DoorSettings(
        caps={"/v1/": MAX_BODY_BYTES, sie_files.PATH_PREFIX: sie_files.MAX_FILE_BYTES}
    )
    app.add_middleware(Door, settings=door)
    server = uvicorn.Server(
        server_config(app, host=settings.http_host, port=args.port, settings=door)
    )
    try:
        return run_until_signal(functools.partial(serve_until, server))
    finally:
        producer.close()
        uploads.close()


async def serve_until(server: uvicorn.Server, stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set (SIGINT, SIGTERM) or the server ends; a clean exit, status 0.

    uvicorn takes the signal itself while it serves, shuts down gracefully and then raises the
    signal again for the handler it found, which is ``run_until_signal``'s: it sets ``stop``.
    """
    serving = asyncio.create_task(server.serve())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({serving, stopped}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    stopped.cancel()
    await serving


def _cmd_ops(args: argparse.Namespace) -> int:
    """The Kafka deployment's dashboard, ops API and /metrics over a read model of its topics."""
    import uvicorn

    from engine.kafka.ops import KafkaOps, create_ops_app
    from engine.web.auth import resolve_admin_token
    from engine.web.door import DoorSettings, server_config

    logging.getLogger("kafka").setLevel(logging.WARNING)  # the client's chatter, not ours
    settings = settings_of(args)
    host = settings.http_host
    kafka = KafkaOps(_config(args))
    given = settings.admin_token.get_secret_value() if settings.admin_token else None
    token, generated = resolve_admin_token(given)
    app = create_ops_app(kafka, token)

    async def serve(stop: asyncio.Event) -> None:
        # The dashboard's limits (create_ops_app mounts the door; here its timeouts).
        config = server_config(app, host=host, port=args.port, settings=DoorSettings())
        server = uvicorn.Server(config)
        following = asyncio.create_task(kafka.follow(stop))
        if generated:
            where = f"http://{host}:{args.port}/"
            print(json.dumps({"dashboard": where, "admin_token": token}), flush=True)
        await serve_until(server, stop)
        stop.set()
        await following

    try:
        return run_until_signal(serve)
    finally:
        kafka.close()


def _cmd_replay(args: argparse.Namespace) -> int:
    from engine.replay import main_replay

    return main_replay(args)


def register(sub: Any) -> None:
    """Add the Kafka runtime's subcommands to ``kassasync``'s parser."""
    worker = sub.add_parser("worker", help="run a Kafka worker (faust) for the owned tenants")
    _common(worker)
    worker.add_argument("--tokens", default=None, help="Fortnox token store (shared SQLite)")
    worker.add_argument(
        "--masterdata-seconds",
        type=float,
        default=300.0,
        help="full re-read of Fortnox's registers every this many seconds (default 300)",
    )
    worker.add_argument(
        "--idle-seconds",
        type=float,
        default=0.25,
        help="a Fortnox session's nap when it has nothing to do (default 0.25)",
    )
    worker.add_argument(
        "--no-executors", action="store_true", help="reconcile only (benchmarks, replicas)"
    )
    worker.add_argument("--no-notes", action="store_true", help="do not log decision notes")
    worker.add_argument(
        "--health-port",
        type=int,
        default=0,
        help="serve GET /healthz on 127.0.0.1:PORT (503 naming the loop and cause when unhealthy)",
    )
    worker.set_defaults(func=_cmd_worker)

    kafka = sub.add_parser("kafka", help="Kafka runtime: topics, tenants, ingest API, ops")
    kafka_sub = kafka.add_subparsers(dest="kafka_command", required=True)
    init = kafka_sub.add_parser("init", help="create every topic of topics/names.py")
    _common(init)
    init.add_argument(
        "--cleanup", action="append", help="TOPIC=POLICY, e.g. sync.outcomes=compact,delete"
    )
    init.set_defaults(func=_cmd_init)
    tenants = kafka_sub.add_parser("tenants", help="tenants in the kassasync.tenants topic")
    _common(tenants)
    tenants.add_argument("action", choices=["add", "list"], help="add or list")
    tenants.add_argument(
        "--config", help="add: YAML file with tenants: [...] (docs/configuration.md)"
    )
    tenants.set_defaults(func=_cmd_tenants)
    ingest = kafka_sub.add_parser(
        "ingest",
        help="serve the till ingest API and the till-PC agent's SIE upload door onto till.events",
    )
    _common(ingest)
    ingest.add_argument(
        "--host",
        dest="http_host",
        default=None,
        help="address to bind (default $KASSASYNC_HTTP_HOST or 127.0.0.1)",
    )
    ingest.add_argument("--port", type=int, default=8080, help="port to bind (default 8080)")
    ingest.set_defaults(func=_cmd_ingest)

    ops = kafka_sub.add_parser(
        "ops", help="serve the dashboard, ops API and /metrics of a Kafka deployment"
    )
    _common(ops)
    ops.add_argument(
        "--host",
        dest="http_host",
        default=None,
        help="address to bind (default $KASSASYNC_HTTP_HOST or 127.0.0.1)",
    )
    ops.add_argument("--port", type=int, default=8081, help="port to bind (default 8081)")
    ops.set_defaults(func=_cmd_ops)

    replay = sub.add_parser("replay", help="rebuild a tenant's state from the log; show the diff")
    _common(replay)
    replay.add_argument(
        "--runtime",
        choices=["embedded", "kafka"],
        default="embedded",
        help="whose log to replay (default embedded)",
    )
    replay.add_argument("--tenant", required=True, help="the tenant to replay")
    replay.add_argument(
        "--from",
        dest="start",
        default="0",
        type=_start,
        help="an offset (embedded: log offset; kafka: partition offset) or an ISO time",
    )
    replay.add_argument("--dry-run", action="store_true", help="show the diff, change nothing")
    replay.add_argument("--json", action="store_true", help="print one JSON object")
    replay.set_defaults(func=_cmd_replay)
