"""``kassasync import-sie FILE --tenant T``: a till's daily SIE 4I file as vouchers for Fortnox.

The import only **queues**: each accepted ``#VER`` becomes a ``till.voucher.submitted`` event in
the engine's log, and the running engine (``kassasync run``) posts it through the Z-report
checks and ledger. The rules (docs/sie.md, "Importing vouchers"):

* **What is imported.** A transaction file (SIE 4I). A full ledger (4E: balances ``#IB``,
  ``#UB``, ``#PSALDO`` ...) is refused unless the operator names a date range
  (``--ledger-range FROM:TO``): then only the vouchers dated in that range are taken. Types 1-3
  hold balances, not vouchers, and are refused. Input that is not SIE is one error.
* **All or nothing.** When any voucher is refused nothing of the file is queued. Every refusal
  names the file, the line, the voucher (series and number as written) and the value as written.
* **Identity.** A numbered source voucher is identified by its origin (the program that wrote
  the file and the company: ``#PROGRAM`` name and ``#ORGNR``, else ``#FNAMN``; ``--origin``
  overrides it), series, number and date. Importing it again queues nothing; the same identity
  with other content is refused as a conflict, never booked twice. A voucher without series and
  number (a till's Z-report voucher) is identified by its content and its position among equal
  vouchers in the file, as before.
* **Order.** Vouchers are queued in date order (then series and number), so Fortnox numbers
  them in that order.

Where they are queued is a :class:`VoucherQueue`: on the embedded runtime its log through the
ingest door's store (:class:`EdgeVoucherQueue`), on a Kafka deployment ``till.events`` through
the Kafka door's producer (:class:`engine.kafka.bookkeeping.KafkaVoucherQueue`); the messages,
their ids and the checks are the same.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, Protocol

import structlog
from pydantic import ValidationError

from engine.clock import utcnow
from engine.embedded.edge import Edge
from engine.gateway.ingest import Stored, store, validate_batch
from engine.sie import read_sie_file
from engine.sie.model import ObjectRef, SieDocument, SieType, Voucher
from engine.sie.reader import shown
from reconcilers.vouchers import DESCRIPTION_LIMIT, ROW_TEXT_LIMIT
from topics.envelope import Envelope
from topics.till import SubmittedRow, VoucherSubmitted, VoucherSubmittedData

log = structlog.get_logger("kassasync.sie_import")

COST_CENTER_DIMENSION: Final = 1
PROJECT_DIMENSION: Final = 6
TARGETS: Final = ("costcenter", "project")
"""What a SIE dimension can be booked as in Fortnox (``--dimension N=TARGET``)."""
MAX_VOUCHERS: Final = 20_000
"""More vouchers than this in one file is not a till's daily file: refused, read no further."""

_ACCOUNT_RE: Final = re.compile(r"[1-9][0-9]{3}")
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f]")
_CENT: Final = Decimal("0.01")
_SHORT: Final = 200
_IDENT: Final = 100
_PROJECT_LENGTH: Final = 20


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why (part of) a file is not imported: where, which voucher, which value as written."""

    file: str
    line: int
    message: str
    voucher: str | None = None
    value: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class ImportReport:
    """What ``import-sie`` prints (one JSON line)."""

    file: str
    tenant: str
    encoding: str | None = None
    sie_type: str | None = None
    origin: str | None = None
    vouchers: int = 0
    accepted: int = 0
    duplicates: int = 0
    errors: list[Refusal] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "file": self.file,
            "tenant": self.tenant,
            "encoding": self.encoding,
            "sie_type": self.sie_type,
            "origin": self.origin,
        }
        if self.errors:
            out["errors"] = [e.to_dict() for e in self.errors]
            out["queued"] = 0
        else:
            out.update(vouchers=self.vouchers, accepted=self.accepted, duplicates=self.duplicates)
        if self.warnings:
            out["warnings"] = self.warnings
        if self.note:
            out["note"] = self.note
        return out


class VoucherQueue(Protocol):
    """Where a runtime keeps the till events of a tenant: what was received, and a door in."""

    def received(self, tenant: str, prefix: str) -> set[str]:
        """The ids starting with ``prefix`` of this tenant's till events received so far
        (queued, whether or not the engine has processed them yet)."""
        ...

    def enqueue(self, tenant: str, events: list[Envelope]) -> Stored:
        """Store checked events not received before, all or nothing as the runtime's door does;
        ``conflicts`` names an id received meanwhile with other content (nothing stored)."""
        ...


class EdgeVoucherQueue:
    """The embedded runtime's log, through its ingest door's store (``ingest_seen``)."""

    def __init__(self, edge: Edge) -> None:
        self.edge = edge

    def received(self, tenant: str, prefix: str) -> set[str]:
        rows = self.edge.db.conn.execute(
            "SELECT msg_id FROM ingest_seen WHERE tenant = ? AND msg_id >= ? AND msg_id < ?",
            (tenant, prefix, prefix + "\uffff"),
        ).fetchall()
        return {str(r[0]) for r in rows}

    def enqueue(self, tenant: str, events: list[Envelope]) -> Stored:
        return store(self.edge, tenant, events)


def voucher_name(voucher: Voucher) -> str:
    """``A 12`` as the file writes it (``"" ""`` when the voucher has no series and number)."""
    return f"{voucher.series or chr(34) * 2} {voucher.number or chr(34) * 2}"


def file_origin(document: SieDocument) -> str:
    """The books a file comes from: the writing program and the company."""
    company = document.company.orgnr or document.company.name or "?"
    return f"{document.header.program or '?'} / {company}"[:_SHORT]


def identity_key(origin: str, voucher: Voucher) -> str:
    raw = json.dumps([origin, voucher.series, voucher.number, voucher.date.isoformat()])
    return "v" + hashlib.blake2b(raw.encode(), digest_size=10).hexdigest()


def _legacy_row(account: str, amount: Decimal, objects: tuple[ObjectRef, ...], text: str) -> Any:
    # The row as the first import wrote it: its fingerprint keys unnumbered vouchers, so a file
    # imported before this version is still recognised.
    row: dict[str, Any] = {
        "account": int(account) if account.isdigit() else account,
        "amount": str(amount),
    }
    for ref in objects:
        if ref.dimension == COST_CENTER_DIMENSION:
            row["cost_center"] = ref.number
        elif ref.dimension == PROJECT_DIMENSION:  # refused before projects were imported
            row["project"] = ref.number
    if text:
        row["text"] = text[:200]
    return row


def content_fingerprint(voucher: Voucher) -> str:
    rows = [_legacy_row(r.account, r.amount, r.objects, r.text) for r in voucher.trans_rows]
    raw = json.dumps([voucher.date.isoformat(), voucher.text, rows], sort_keys=True)
    return hashlib.blake2b(raw.encode(), digest_size=10).hexdigest()


def _clean(text: str, limit: int) -> str:
    return _CONTROL_RE.sub(" ", text)[:limit]


class _Refuser:
    def __init__(self, file: str) -> None:
        self.file = file
        self.found: list[Refusal] = []

    def __call__(
        self, line: int, message: str, voucher: Voucher | None = None, value: str | None = None
    ) -> None:
        self.found.append(
            Refusal(
                self.file,
                line,
                message,
                None if voucher is None else voucher_name(voucher),
                value,
            )
        )


def _check_text(refuse: _Refuser, line: int, voucher: Voucher, what: str, text: str) -> None:
    if "\ufffd" in text:
        refuse(
            line,
            f"the {what} holds U+FFFD, a letter lost before the file was written; "
            "correct the text in the till and export the file again",
            voucher,
            text[:60],
        )


def _rows(
    voucher: Voucher, refuse: _Refuser, dimensions: dict[int, str]
) -> list[SubmittedRow] | None:
    rows: list[SubmittedRow] = []
    ok = True
    for row in voucher.trans_rows:
        if _ACCOUNT_RE.fullmatch(row.account) is None:
            refuse(
                row.line,
                "account is not a Fortnox account number (four digits, 1000-9999)",
                voucher,
                row.account[:40],
            )
            ok = False
        if row.amount != row.amount.quantize(_CENT):
            refuse(row.line, "amount has more than 2 decimals", voucher, str(row.amount))
            ok = False
        _check_text(refuse, row.line, voucher, "row text", row.text)
        booked: dict[str, str] = {}
        for ref in row.objects:
            target = dimensions.get(ref.dimension)
            if target is None:
                refuse(
                    row.line,
                    f"dimension {ref.dimension} has no place in Fortnox here: cost centres are "
                    "dimension 1 and projects dimension 6; book it as one of them with "
                    f"--dimension {ref.dimension}=costcenter or "
                    f"--dimension {ref.dimension}=project, or remove it in the till",
                    voucher,
                    shown(ref.number),
                )
                ok = False
            elif not ref.number or len(ref.number) > _IDENT or _CONTROL_RE.search(ref.number):
                refuse(row.line, f"object of dimension {ref.dimension}", voucher, shown(ref.number))
                ok = False
            elif booked.get(target, ref.number) != ref.number:
                what = "cost centres" if target == "costcenter" else "projects"
                refuse(
                    row.line,
                    f"two {what} on one row ({booked[target]} and dimension {ref.dimension}'s): "
                    "Fortnox takes one",
                    voucher,
                    shown(ref.number),
                )
                ok = False
            elif target == "project" and len(ref.number) > _PROJECT_LENGTH:
                refuse(
                    row.line,
                    f"a Fortnox project number has at most {_PROJECT_LENGTH} characters",
                    voucher,
                    shown(ref.number),
                )
                ok = False
            else:
                booked[target] = ref.number
        if ok and row.amount:
            rows.append(
                SubmittedRow(
                    account=int(row.account),
                    amount=row.amount,
                    cost_center=booked.get("costcenter"),
                    project=booked.get("project"),
                    text=_clean(row.text, _SHORT) or None,
                )
            )
    if not ok:
        return None
    if len(rows) < 2:
        refuse(voucher.line, "voucher has fewer than two rows with an amount", voucher)
        return None
    return rows


def _date_range(text: str) -> tuple[dt.date, dt.date]:
    start, sep, end = text.partition(":")
    if not sep:
        raise ValueError("--ledger-range is FROM:TO, e.g. 2025-01-01:2025-01-31")
    first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    if last < first:
        raise ValueError("--ledger-range ends before it starts")
    return first, last


def parse_dimensions(specs: list[str]) -> dict[int, str]:
    """``--dimension 7=costcenter`` or ``--dimension 20=project`` settings on top of SIE's own
    1 (cost centre) and 6 (project). Any other dimension on a row is refused, never dropped."""
    mapping = {COST_CENTER_DIMENSION: "costcenter", PROJECT_DIMENSION: "project"}
    for spec in specs:
        number, sep, target = spec.partition("=")
        if not sep or not number.isdigit() or target not in TARGETS:
            raise ValueError(f"--dimension {spec!r}: write NUMBER=costcenter or NUMBER=project")
        mapping[int(number)] = target
    return mapping


def _cut_in_fortnox(vouchers: list[Voucher]) -> list[str]:
    """The texts Fortnox cannot hold whole: they are posted cut to its limits (a voucher's text
    200 characters, a row's 100; a row without a text of its own takes the voucher's), and the
    import says so rather than cutting in silence."""
    said: list[str] = []
    for voucher in vouchers:
        name = f"{voucher.series} {voucher.number}".strip() or "without a number"
        if len(voucher.text) > DESCRIPTION_LIMIT:
            said.append(
                f"line {voucher.line}, voucher {name}: its text ({len(voucher.text)} characters) "
                f"is cut to {DESCRIPTION_LIMIT} characters in Fortnox"
            )
        long_rows = [r for r in voucher.trans_rows if len(r.text or voucher.text) > ROW_TEXT_LIMIT]
        if long_rows:
            said.append(
                f"line {voucher.line}, voucher {name}: {len(long_rows)} row text(s) longer than "
                f"{ROW_TEXT_LIMIT} characters are cut to {ROW_TEXT_LIMIT} in Fortnox"
            )
    return said


def import_file(
    queue: VoucherQueue,
    tenant: str,
    path: Path,
    *,
    ledger_range: str | None = None,
    origin: str | None = None,
    dimensions: list[str] | None = None,
) -> ImportReport:
    """Read, check and queue; nothing is queued when the file or any voucher is refused."""
    report = ImportReport(file=str(path), tenant=tenant)
    refuse = _Refuser(path.name)
    try:
        span = _date_range(ledger_range) if ledger_range else None
        mapping = parse_dimensions(dimensions or [])
    except ValueError as bad:
        report.errors = [Refusal(path.name, 0, str(bad))]
        return report
    collected: list[Voucher] = []

    def keep(voucher: Voucher) -> None:
        if len(collected) <= MAX_VOUCHERS:
            collected.append(voucher)

    try:
        document = read_sie_file(path, on_voucher=keep)
    except OSError as exc:
        report.errors = [Refusal(str(path), 0, f"cannot read the file: {exc.strerror or exc}")]
        return report
    report.encoding, report.sie_type = document.encoding, document.sie_type.value
    report.origin = origin or file_origin(document)
    report.warnings = [  # how the text was read; the file's other departures are in sie check
        f"line {w.line}: {w.message}"
        for w in document.warnings
        if "encoded as" in w.message or "byte order mark" in w.message
    ]
    if document.errors:
        report.errors = [Refusal(path.name, e.line, e.message) for e in document.errors]
        return report
    if len(collected) > MAX_VOUCHERS:
        refuse(0, f"more than {MAX_VOUCHERS} vouchers: this is not a till's daily file")
    elif document.sie_type is SieType.TYPE_4E and span is None:
        first = document.balances[0] if document.balances else None
        refuse(
            0 if first is None else first.line,
            f"this is a full ledger (SIE 4E, {len(collected)} vouchers and balances such as "
            f"#{first.kind if first else 'IB'}); import-sie posts a till's transaction files "
            "(SIE 4I). To post some of its vouchers on purpose, name their dates: "
            "--ledger-range FROM:TO",
        )
    elif document.sie_type.number < 4:
        refuse(
            0,
            f"SIE type {document.sie_type} holds balances, not vouchers to post; "
            "import-sie posts a till's transaction files (SIE 4I)",
        )
    if refuse.found:
        report.errors = refuse.found
        return report
    if span is not None:
        collected = [v for v in collected if span[0] <= v.date <= span[1]]
        if not collected:
            refuse(0, f"no voucher is dated {span[0]} to {span[1]}")
    queued = _events(tenant, path.name, report.origin, collected, refuse, mapping)
    received = queue.received(tenant, "sie-") if not refuse.found else set()
    if not refuse.found:
        _conflicts(received, queued, refuse)
    if refuse.found:
        report.errors = refuse.found
        log.info("sie_import.refused", tenant=tenant, file=path.name, refusals=len(refuse.found))
        return report
    # An id seen before is the same voucher with the same content (the id holds both; a changed
    # one was refused above): a duplicate, though the file's name or header may differ.
    fresh = [q.event for q in queued if q.legacy_id not in received and q.event.id not in received]
    # A voucher of any date: an import is not a redelivery (its ids are kept for ever).
    parsed, problems = validate_batch(
        tenant, [e.model_dump(mode="json") for e in fresh], window=False
    )
    if problems:  # the checks above should leave none; never a pydantic path for the operator
        report.errors = [
            Refusal(path.name, 0, f"{p.get('field')}: {p.get('problem')}") for p in problems
        ]
        return report
    stored = queue.enqueue(tenant, parsed)
    if stored.conflicts:  # _conflicts above refuses these first; a race with another import
        report.errors = [
            Refusal(path.name, 0, f"message {c.id} was queued before with other content")
            for c in stored.conflicts
        ]
        return report
    accepted, duplicates = stored.accepted, stored.duplicates
    report.warnings += _cut_in_fortnox(collected)
    report.vouchers = len(queued)
    report.accepted, report.duplicates = accepted, duplicates + len(queued) - len(fresh)
    report.note = "queued only: the running engine (kassasync run) posts them to Fortnox"
    log.info(
        "sie_import.queued",
        tenant=tenant,
        file=path.name,
        vouchers=len(queued),
        accepted=accepted,
        duplicates=report.duplicates,
    )
    return report


def _sort_key(voucher: Voucher) -> tuple[dt.date, str, int, str, int]:
    number = voucher.number
    return (
        voucher.date,
        voucher.series,
        int(number) if number.isdigit() else -1,
        number,
        voucher.line,
    )


def _events(
    tenant: str,
    file: str,
    origin: str,
    vouchers: list[Voucher],
    refuse: _Refuser,
    mapping: dict[int, str],
) -> list[_Queued]:
    """One event per voucher, in date order, with the id the first import gave it (if any)."""
    queued: list[_Queued] = []
    equal: Counter[str] = Counter()
    identities: dict[str, Voucher] = {}
    for voucher in vouchers:  # file order decides the position among equal vouchers
        fingerprint = content_fingerprint(voucher)
        equal[fingerprint] += 1
        position = equal[fingerprint]
        if not voucher.is_balanced:
            refuse(
                voucher.line,
                f"voucher does not balance: its #TRANS rows sum to {voucher.balance}",
                voucher,
                str(voucher.balance),
            )
            continue
        _check_text(refuse, voucher.line, voucher, "voucher text", voucher.text)
        rows = _rows(voucher, refuse, mapping)
        if rows is None:
            continue
        numbered = bool(voucher.series or voucher.number)
        if numbered:
            key = identity_key(origin, voucher)
            twin = identities.get(key)
            if twin is not None:
                refuse(
                    voucher.line,
                    f"the same voucher (series, number and date) is also on line {twin.line}",
                    voucher,
                )
                continue
            identities[key] = voucher
            event_id = f"sie-{key}-{fingerprint}"
        else:
            key = f"{fingerprint}:{position}"
            event_id = f"sie-{key}"
        for what, value in (("series", voucher.series), ("number", voucher.number)):
            if len(value) > _IDENT or _CONTROL_RE.search(value):
                refuse(voucher.line, f"voucher {what}", voucher, shown(value))
        try:
            data = VoucherSubmittedData(
                key=key,
                transaction_date=voucher.date,
                description=_clean(voucher.text, _SHORT).strip()
                or f"SIE {voucher.date.isoformat()}",
                rows=rows,
                origin=origin,
                source_series=voucher.series or None,
                source_number=voucher.number or None,
                registration_date=voucher.reg_date,
                signature=_clean(voucher.sign, _SHORT) or None,
                file=_clean(unicodedata.normalize("NFC", file), _SHORT),
                line=voucher.line or None,
                fingerprint=fingerprint,
            )
        except ValidationError as invalid:
            for problem in invalid.errors():
                where = ".".join(str(p) for p in problem["loc"])
                refuse(voucher.line, f"{where}: {problem['msg']}", voucher)
            continue
        event = VoucherSubmitted(
            id=event_id, tenant=tenant, occurred_at=_occurred_at(voucher), source="till", data=data
        )
        queued.append(
            _Queued(voucher, event, f"sie-{fingerprint}:{position}" if numbered else None)
        )
    return sorted(queued, key=lambda q: _sort_key(q.voucher))


@dataclass(frozen=True, slots=True)
class _Queued:
    voucher: Voucher
    event: VoucherSubmitted
    #: The id the first version of the import gave a numbered voucher (by content).
    legacy_id: str | None


def _conflicts(received: set[str], queued: list[_Queued], refuse: _Refuser) -> None:
    """A numbered voucher imported before with other content is a conflict: refused."""
    for item in queued:
        key, voucher = item.event.data.key, item.voucher
        if not key.startswith("v"):
            continue
        prefix = f"sie-{key}-"
        earlier = [i for i in received if i.startswith(prefix) and i != item.event.id]
        if earlier:
            refuse(
                voucher.line,
                f"voucher dated {voucher.date} was imported before with other content; Fortnox "
                "vouchers are never changed: book the correction as a new voucher in the till",
                voucher,
            )


def _occurred_at(voucher: Voucher) -> dt.datetime:
    """The start of the voucher's day (UTC), or now if that is still ahead: the same voucher
    imported again is the same event (an id with other content is refused as a conflict)."""
    return min(dt.datetime.combine(voucher.date, dt.time(), tzinfo=dt.UTC), utcnow())
