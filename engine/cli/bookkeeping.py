"""Bookkeeping commands: ``kassasync export zreports``, ``kassasync ledger sync|export``."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.cli.util import CliError, Parser, iso_date, settings_of

if TYPE_CHECKING:  # imported where used: ``kassasync --help`` need not load them
    from engine.secrets import SecretBox
    from engine.store.db import Database
    from engine.tenants import TenantDirectory


def _open(args: argparse.Namespace) -> tuple[Database, TenantDirectory, SecretBox]:
    from engine.bootstrap import open_database, secret_box
    from engine.tenants import TenantDirectory

    settings = settings_of(args)
    box = secret_box(settings)
    try:
        db = open_database(settings, create=False)
    except FileNotFoundError as missing:
        raise CliError(f"no engine database at {missing} (use --data or KASSASYNC_DATA)") from None
    return db, TenantDirectory(db, box), box


def _export_zreports(args: argparse.Namespace) -> int:
    from engine.clock import utcnow
    from engine.embedded.edge import Edge
    from engine.ops import SqliteOpsStore
    from topics.outcomes import ExportRequested, ExportRequestedData

    db, directory, _box = _open(args)
    if directory.get(args.tenant) is None:
        print(json.dumps({"error": f"unknown tenant {args.tenant}"}))
        return 2
    start, end = args.from_date, args.to_date
    if end < start:
        print(json.dumps({"error": "--to is before --from"}))
        return 2
    Edge(db).publish(
        [
            ExportRequested(
                id=f"export-{uuid.uuid4().hex}",
                tenant=args.tenant,
                occurred_at=utcnow(),
                data=ExportRequestedData(from_date=start, to_date=end),
            )
        ]
    )
    config = directory.get(args.tenant)
    first_day = None if config is None else config.settings.zreports.start_date
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
            for key, record in SqliteOpsStore(db).records(
                args.tenant, "zr", where={"status": ["before_start"]}
            )
            if start <= _record_day(record) <= end
        ]
    print(json.dumps(out, ensure_ascii=False))
    return 0


def _record_day(record: dict[str, Any]) -> dt.date:
    if "report" in record:
        return dt.date.fromisoformat(record["report"]["business_date"])
    return dt.date.fromisoformat(record["submitted"]["transaction_date"])


async def _ledger(args: argparse.Namespace) -> int:
    from engine.bootstrap import TOKENS
    from engine.embedded.edge import Edge
    from engine.fortnox.tokens import SqliteTokenStore
    from engine.fortnox_factory import open_api
    from engine.ledger import NoSuchYear, export_sie, sync_vouchers
    from engine.ops import progress

    db, directory, box = _open(args)
    config = directory.get(args.tenant)
    if config is None or config.fortnox is None:
        print(json.dumps({"error": f"tenant {args.tenant} has no Fortnox connection"}))
        return 2
    api = await open_api(config, SqliteTokenStore(settings_of(args).data / TOKENS, box))
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
        edge = Edge(db)
        with progress(None, f"ledger sync {args.tenant}") as bar:
            try:
                result = await sync_vouchers(
                    api,
                    args.tenant,
                    edge.publish,
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
    from engine.embedded.edge import Edge
    from engine.sie_import import import_file

    db, directory, _box = _open(args)
    if directory.get(args.tenant) is None:
        print(json.dumps({"error": f"unknown tenant {args.tenant}"}))
        return 2
    report = import_file(
        Edge(db),
        args.tenant,
        Path(args.file),
        ledger_range=args.ledger_range,
        origin=args.origin,
        dimensions=args.dimension,
    )
    print(json.dumps(report.to_dict(), ensure_ascii=False, default=str))
    return 1 if report.errors else 0


DATA_HELP = "the engine's data folder (default $KASSASYNC_DATA or var/kassasync)"


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
    zr.add_argument("--data", default=data, help=DATA_HELP)
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
        metavar="N=costcenter",
        help="book SIE dimension N as a Fortnox cost centre (dimension 1 is); other dimensions "
        "on a row are refused",
    )
    sie_import.add_argument("--data", default=data, help=DATA_HELP)
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
    ledger.add_argument("--data", default=data, help=DATA_HELP)
    ledger.set_defaults(func=lambda args: asyncio.run(_ledger(args)))
