"""Per-document status: every Z-report, invoice (a Fortnox order) and payment of a tenant with
its state, its Fortnox number and whether an operator can run it again; and when a dead letter
about a document is stale because the document is done by now.

Pure functions of the state records (``zr``, ``inv``, ``pay``) and of what the outbox says about
the documents' commands: no I/O here, the :class:`~engine.ops.service.Ops` reads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from pydantic import ValidationError

from reconcilers.state import Record
from topics.errors import ShopError


class DocKind(StrEnum):
    ZREPORT = "zreport"
    INVOICE = "invoice"
    PAYMENT = "payment"

    @property
    def record_kind(self) -> str:
        return {DocKind.ZREPORT: "zr", DocKind.INVOICE: "inv", DocKind.PAYMENT: "pay"}[self]

    @property
    def label(self) -> str:
        return {
            DocKind.ZREPORT: "Z-report",
            DocKind.INVOICE: "Invoice",
            DocKind.PAYMENT: "Payment",
        }[self]


#: The flow (``cmd.flow``) of each kind's commands.
FLOW_OF_KIND: dict[DocKind, str] = {
    DocKind.ZREPORT: "zreports",
    DocKind.INVOICE: "invoices",
    DocKind.PAYMENT: "payments",
}
KIND_OF_FLOW: dict[str, DocKind] = {flow: kind for kind, flow in FLOW_OF_KIND.items()}


class Phase(StrEnum):
    """Where a document stands, for the operator."""

    DONE = "done"
    FAILED = "failed"
    WAITING = "waiting"
    WORKING = "working"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class DocumentStatus:
    kind: DocKind
    key: str
    #: The business date (Z-report), invoice date or payment date.
    date: str
    #: The flow's own status word (posted, waiting, rejected, delivered…).
    state: str
    phase: Phase
    #: Its number in Fortnox ("voucher A 12 (2026)", "order 1234", "payment 55 of invoice 1001").
    fortnox: str
    #: Why it waits, was skipped or failed, in words ("" when done).
    detail: str
    error: ShopError | None
    #: The command that carries it now (None before one was made).
    command_id: str | None
    #: The open dead letter of that command, if any.
    dead_letter: str | None

    @property
    def can_rerun(self) -> bool:
        if self.phase is Phase.FAILED:
            return True
        return self.kind is DocKind.ZREPORT and self.phase is Phase.WAITING


def _error(value: object) -> ShopError | None:
    if not isinstance(value, dict):
        return None
    try:
        return ShopError.model_validate(value)
    except ValidationError:
        return None


def voucher_text(voucher: object) -> str:
    if not isinstance(voucher, dict) or not voucher.get("number"):
        return ""
    series = voucher.get("series") or ""
    year = f" ({voucher['year']})" if voucher.get("year") else ""
    return f"voucher {series} {voucher['number']}{year}".replace("  ", " ")


def zreport(key: str, record: Record, dead: Mapping[str, str]) -> DocumentStatus:
    state = str(record.get("status", ""))
    error = _error(record.get("error"))
    command = record.get("command_id")
    report = record.get("report") if isinstance(record.get("report"), dict) else {}
    date = str((report or {}).get("business_date", ""))
    letter = dead.get(str(command)) if command else None
    if state == "posted":
        phase, detail = Phase.DONE, ""
    elif state == "posting":
        phase, detail = (
            (Phase.FAILED, "its command is a dead letter")
            if letter
            else (
                Phase.WORKING,
                "being posted",
            )
        )
    elif error is not None or letter:
        phase, detail = Phase.FAILED, error.message if error else "its command is a dead letter"
    elif state in ("disabled", "before_start"):
        phase = Phase.SKIPPED
        detail = str(record.get("reason") or "Z-reports are turned off")
    else:
        phase, detail = Phase.WAITING, str(record.get("waiting_for") or "not posted yet")
    return DocumentStatus(
        DocKind.ZREPORT,
        key,
        date,
        state,
        phase,
        voucher_text(record.get("voucher")),
        detail,
        error,
        None if command is None else str(command),
        letter,
    )


def invoice(key: str, record: Record, dead: Mapping[str, str]) -> DocumentStatus:
    state = str(record.get("status", ""))
    error = _error(record.get("error"))
    command = record.get("command_id")
    data = record.get("invoice") if isinstance(record.get("invoice"), dict) else {}
    date = str((data or {}).get("invoice_date", ""))
    letter = dead.get(str(command)) if command and state != "done" else None
    order = record.get("order")
    if state == "done":
        phase, detail = Phase.DONE, ""
    elif state == "rejected" or error is not None or letter:
        phase = Phase.FAILED
        detail = error.message if error else "its command is a dead letter"
    elif state == "posting":
        phase, detail = Phase.WORKING, "the order is being created"
    elif state in ("disabled", "before_start"):
        phase = Phase.SKIPPED
        detail = "invoices are turned off" if state == "disabled" else "before the start date"
    else:
        phase, detail = Phase.WAITING, str(record.get("waiting_for") or "not sent yet")
    return DocumentStatus(
        DocKind.INVOICE,
        key,
        date,
        state,
        phase,
        f"order {order}" if order else "",
        detail,
        error,
        None if command is None else str(command),
        letter,
    )


def payment(
    key: str, record: Record, dead: Mapping[str, str], command_status: str | None
) -> DocumentStatus:
    """``command_status``: the outbox status of the command that handed it over (pending, done,
    dead, discarded; None if there is none)."""
    state = str(record.get("status", ""))
    data = record.get("payment") if isinstance(record.get("payment"), dict) else {}
    date = str((data or {}).get("payment_date", ""))
    command = record.get("delivered")
    letter = dead.get(str(command)) if command else None
    invoice_number = (data or {}).get("invoice_number") or record.get("invoice_number")
    fortnox = f"payment {key}" + (f" of invoice {invoice_number}" if invoice_number else "")
    error: ShopError | None = None
    if state == "deleted":
        phase, detail = Phase.DONE, "deleted in Fortnox (removed from the till)"
    elif state in ("disabled", "skipped"):
        phase = Phase.SKIPPED
        detail = str(record.get("skipped") or "payments are turned off")
    elif letter or command_status == "dead":
        phase, detail = Phase.FAILED, "the till refused it (see its dead letter)"
    elif command_status == "pending":
        phase, detail = Phase.WORKING, "on its way to the till"
    elif command_status == "discarded":
        phase, detail = Phase.SKIPPED, "its dead letter was discarded"
    else:
        phase, detail = Phase.DONE, ""
    return DocumentStatus(
        DocKind.PAYMENT,
        key,
        date,
        state,
        phase,
        fortnox,
        detail,
        error,
        None if command is None else str(command),
        letter,
    )


def fixed_since(
    kind: DocKind, key: str, record: Record | None, dead_command: str, command_status: str | None
) -> str | None:
    """Why a dead letter about this document is stale (the document is done by now, by a later
    command), or None while its problem stands. ``command_status``: the outbox status of the
    command that carries the document now (payments)."""
    if record is None:
        return None
    state = record.get("status")
    title = f"{kind.label} {key}"
    if kind is DocKind.ZREPORT and state == "posted" and record.get("command_id") != dead_command:
        number = voucher_text(record.get("voucher"))
        return f"{title} was posted since" + (f" as {number}" if number else "")
    if kind is DocKind.INVOICE and state == "done" and record.get("command_id") != dead_command:
        order = record.get("order")
        return f"{title} reached Fortnox since" + (f" as order {order}" if order else "")
    if kind is DocKind.PAYMENT:
        if state == "deleted":
            return f"{title} was deleted in Fortnox since (and removed from the till)"
        delivered = record.get("delivered")
        if delivered and delivered != dead_command and command_status == "done":
            return f"a later version of {title.lower()} reached the till since"
    return None
