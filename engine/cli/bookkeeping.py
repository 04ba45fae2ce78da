"""Bookkeeping commands: ``kassasync export zreports``, ``kassasync import-sie`` and
``kassasync ledger sync|export``, on the embedded runtime (its database under ``--data``) or on
a Kafka deployment (``--runtime kafka``: messages onto its topics, reports from its read model,
:mod:`engine.kafka.bookkeeping`). The output and exit statuses are the same on both."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from engine.cli.util import CliError, Parser, iso_date, settings_of
from engine.kafka.cli import kafka_options

if TYPE_CHECKING:  # imported where used: ``kassasync --help`` need not load them
    from engine.secrets import SecretBox
    from engine.sie_import import VoucherQueue
    from engine.store.db import Database
    from engine.tenants import TenantConfig, TenantDirectory
    from reconcilers.state import Record
    from topics.envelope import Envelope


class Books(Protocol):
    """What the bookkeeping commands need of a deployment, embedded or Kafka."""

    box: SecretBox
    #: The Fortnox token store the engine uses (SQLite).
    tokens: Path

    def tenant(self, tenant: str) -> TenantConfig | None: ...

    def publish(self, messages: Sequence[Envelope]) -> None:
        """Put operator messages where the engine reads them (acknowledged on return)."""
        ...

    def records(
        self, tenant: str, kind: str, where: dict[str, Sequence[str]]
    ) -> list[tuple[str, Record]]: ...

    def vouchers(self) -> VoucherQueue:
        """Where ``import-sie`` queues a file's vouchers as till events."""
        ...


class EmbeddedBooks:
    """The embedded runtime's database (it must exist: a command never creates an engine)."""

    def __init__(
        self, db: Database, directory: TenantDirectory, box: SecretBox, tokens: Path
    ) -> None:
        self.db, self.directory, self.box, self.tokens = db, directory, box, tokens

    def tenant(self, tenant: str) -> TenantConfig | None:
        return self.directory.get(tenant)

    def publish(self, messages: Sequence[Envelope]) -> None:
        from engine.embedded.edge import Edge

        Edge(self.db).publish(list(messages))

    def records(
        self, tenant: str, kind: str, where: dict[str, Sequence[str]]
    ) -> list[tuple[str, Record]]:
        from engine.ops import SqliteOpsStore

        return SqliteOpsStore(self.db).records(tenant, kind, where=where)

    def vouchers(self) -> VoucherQueue:
        from engine.embedded.edge import Edge
        from engine.sie_import import EdgeVoucherQueue

        return EdgeVoucherQueue(Edge(self.db))


@contextlib.contextmanager
def _books(args: argparse.Namespace) -> Iterator[Books]:
    from engine.bootstrap import TOKENS, open_database, secret_box
    from engine.tenants import TenantDirectory

    settings = settings_of(args)
    box = secret_box(settings)
    if getattr(args, "runtime", "embedded") == "kafka":
        with _kafka_books(args, box) as books:
            yield books
        return
    if getattr(args, "tokens", None):
        raise CliError(
            "--tokens names the Kafka workers' token store (with --runtime kafka); the embedded "
            "engine keeps its own in the data folder (--data)"
        )
    try:
        db = open_database(settings, create=False)
    except FileNotFoundError as missing:
        raise CliError(f"no engine database at {missing} (use --data or KASSASYNC_DATA)") from None
    try:
        yield EmbeddedBooks(db, TenantDirectory(db, box), box, settings.data / TOKENS)
    finally:
        db.close()


@contextlib.contextmanager
def _kafka_books(args: argparse.Namespace, box: SecretBox) -> Iterator[Books]:
    """The Kafka deployment, caught up now; one it cannot reach is one line and exit 2 (as
    ``status --runtime kafka``), at whichever step the broker fails."""
    from kafka.errors import KafkaError

    from engine.kafka.bookkeeping import KafkaBooks
    from engine.kafka.cli import _config

    # The client's own retries would print a line each: the command says it once, below.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    config = _config(args)

    def unreachable(failed: Exception) -> CliError:
        return CliError(
            f"cannot read the Kafka deployment at {config.bootstrap} "
            f"(prefix {config.prefix!r}): {failed} (check --bootstrap and --prefix)"
        )

    books = KafkaBooks(config, box)
    try:
        try:
            books.catch_up()
        except (KafkaError, TimeoutError) as failed:  # the read model's own deadline too
            raise unreachable(failed) from None
        try:
            yield books
        except KafkaError as failed:  # a publish or a read the broker did not answer
            raise unreachable(failed) from None
    finally:
        books.close()


def _export_zreports(args: argparse.Namespace) -> int:
    with _books(args) as books:
        return _export_zreports_on(books, args)


def _export_zreports_on(books: Books, args: argparse.Namespace) -> int:
    from engine.clock import utcnow
    from topics.outcomes import ExportRequested, ExportRequestedData

    config = books.tenant(args.tenant)
    if config is None:
        print(json.dumps({"error": f"unknown tenant {args.tenant}"}))
        return 2
    start, end = args.from_date, args.to_date
    if end < start:
        print(json.dumps({"error": "--to is before --from"}))
        return 2
    books.publish(
        [
            ExportRequested(
                id=f"export-{uuid.uuid4().hex}",
                tenant=args.tenant,
                occurred_at=utcnow(),
                data=ExportRequestedData(from_date=start, to_date=end),
            )
        ]
    )
    first_day = config.settings.zreports.start_date
    out: dict[str, object] = {
        "tenant": args.tenant,
        "requested": "zreports",
        "from": str(start),
        "to": str(end),
        "note": "only Z-reports not yet posted are posted",
    }
    if first_day is not None and start < first_day:
        last_skipped = min(end, first_day - dt.timedelta(days=1))
        out["not_posted"] = (
            f"{start}..{last_skipped} is before the Z-report start date {first_day}: Z-reports "
            "of those days are not posted (they are booked some other way; move the start date "
            "in the settings to post them)"
        )
        out["skipped"] = [
            {"key": key, "reason": record.get("reason", "before the start date")}
            for key, record in books.records(args.tenant, "zr", {"status": ["before_start"]})
            if start <= _record_day(record) <= end
        ]
    print(json.dumps(out, ensure_ascii=False))
    return 0


def _record_day(record: dict[str, Any]) -> dt.date:
    if "report" in record:
        return dt.date.fromisoformat(record["report"]["business_date"])
    return dt.date.fromisoformat(record["submitted"]["transaction_date"])


def _ledger(args: argparse.Namespace) -> int:
    with _books(args) as books:
        return asyncio.run(_ledger_on(books, args))


async def _ledger_on(books: Books, args: argparse.Namespace) -> int:
    from engine.fortnox.tokens import SqliteTokenStore
    from engine.fortnox_factory import open_api
    from engine.ledger import NoSuchYear, export_sie, sync_vouchers
    from engine.ops import progress

    config = books.tenant(args.tenant)
    if config is None or config.fortnox is None:
        print(json.dumps({"error": f"tenant {args.tenant} has no Fortnox connection"}))
        return 2
    api = await open_api(config, SqliteTokenStore(books.tokens, books.box))
    try:
        if args.action == "export":
            try:
                years = await export_sie(
                    api, Path(args.out), year=args.year, last_years=args.years, checksum=args.ksumma
                )
            except NoSuchYear as missing:
                print(json.dumps({"error": str(missing)}, ensure_ascii=False))
                return 2
            for item in years:
                print(json.dumps(asdict(item), ensure_ascii=False))
            if not years:
                print(json.dumps({"error": "Fortnox has no financial year that has started"}))
                return 2
            return 0
        with progress(None, f"ledger sync {args.tenant}") as bar:
            try:
                result = await sync_vouchers(
                    api,
                    args.tenant,
                    books.publish,
                    year=args.year,
                    last_years=args.years,
                    download_dir=Path(args.download) if args.download else None,
                    on_progress=bar.advance,
                )
            except NoSuchYear as missing:
                print(json.dumps({"error": str(missing)}, ensure_ascii=False))
                return 2
        print(json.dumps(asdict(result) | {"downloaded": len(result.downloaded)}))
        return 0
    finally:
        await api.client.aclose()


def _import_sie(args: argparse.Namespace) -> int:
    with _books(args) as books:
        return _import_sie_on(books, args)


def _import_sie_on(books: Books, args: argparse.Namespace) -> int:
    from engine.sie_import import import_file

    if books.tenant(args.tenant) is None:
        print(json.dumps({"error": f"unknown tenant {args.tenant}"}))
        return 2
    report = import_file(
        books.vouchers(),
        args.tenant,
        Path(args.file),
        ledger_range=args.ledger_range,
        origin=args.origin,
        dimensions=args.dimension,
    )
    print(json.dumps(report.to_dict(), ensure_ascii=False, default=str))
    return 1 if report.errors else 0


DATA_HELP = (
    "the engine's data folder (default $KASSASYNC_DATA or var/kassasync); with --runtime kafka "
    "the folder of the local read model"
)


def _where(parser: argparse.ArgumentParser, data: str | None) -> None:
    """``--data`` and the deployment: the embedded engine's, or a Kafka deployment's."""
    parser.add_argument("--data", default=data, help=DATA_HELP)
    parser.add_argument(
        "--runtime",
        choices=["embedded", "kafka"],
        default="embedded",
        help="the deployment (kafka: messages onto its topics, reports from a local read model)",
    )
    kafka_options(parser, replication=False)


def register(sub: argparse._SubParsersAction[Parser], data: str | None) -> None:
    export = sub.add_parser("export", help="manual exports")
    export_sub = export.add_subparsers(dest="export_what", required=True)
    zr = export_sub.add_parser(
        "zreports", help="post every Z-report in a date range that is not posted yet"
    )
    zr.add_argument("--tenant", required=True, help="the tenant")
    zr.add_argument(
        "--from", dest="from_date", type=iso_date, required=True, help="first day, YYYY-MM-DD"
    )
    zr.add_argument(
        "--to", dest="to_date", type=iso_date, required=True, help="last day, YYYY-MM-DD"
    )
    _where(zr, data)
    zr.set_defaults(func=_export_zreports)

    sie_import = sub.add_parser(
        "import-sie",
        help="queue a till's daily SIE 4I file as vouchers; `kassasync run` posts them",
        description="Check a SIE 4I transaction file and queue its vouchers for Fortnox. This "
        "only queues: the running engine (kassasync run) posts them, each once, in date order. "
        "A full ledger (4E), a type 1-3 file or anything else is refused, and so is the whole "
        "file when one voucher is refused (each refusal names file, line, voucher and value). "
        "See docs/sie.md.",
    )
    sie_import.add_argument("file", help="the SIE 4I file")
    sie_import.add_argument("--tenant", required=True, help="the tenant whose file it is")
    sie_import.add_argument(
        "--ledger-range",
        metavar="FROM:TO",
        help="take the vouchers dated FROM to TO (YYYY-MM-DD) out of a full ledger (SIE 4E)",
    )
    sie_import.add_argument(
        "--origin", help="the books the file comes from (default: its #PROGRAM and #ORGNR)"
    )
    sie_import.add_argument(
        "--dimension",
        action="append",
        default=[],
        metavar="N=costcenter|N=project",
        help="book SIE dimension N as a Fortnox cost centre (dimension 1 is) or project "
        "(dimension 6 is); other dimensions on a row are refused",
    )
    _where(sie_import, data)
    sie_import.set_defaults(func=_import_sie)

    ledger = sub.add_parser("ledger", help="Fortnox's vouchers and general ledger to the till")
    ledger.add_argument(
        "action",
        choices=["sync", "export"],
        help="sync: vouchers to the till; export: SIE 4 files per year",
    )
    ledger.add_argument("--tenant", required=True, help="the tenant")
    ledger.add_argument(
        "--year",
        type=int,
        help="the financial year containing YEAR-01-01, else the one starting in YEAR",
    )
    ledger.add_argument(
        "--ksumma", action="store_true", help="export: end the file with a #KSUMMA checksum"
    )
    ledger.add_argument("--years", type=int, default=2, help="how many recent years (default 2)")
    ledger.add_argument("--out", default="ledger", help="folder for export's SIE files")
    ledger.add_argument("--download", help="sync: also save attached documents in this folder")
    _where(ledger, data)
    ledger.add_argument(
        "--tokens",
        default=None,
        help="kafka: the Fortnox token store the workers share (default DATA/tokens.db)",
    )
    ledger.set_defaults(func=_ledger)
