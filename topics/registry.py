"""Every message type, one parser for all of them, and JSON Schema export."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter, ValidationError

from topics import commands, fortnox, outcomes, till
from topics.common import MAX_DIGITS, OversizedNumber
from topics.envelope import Envelope
from topics.names import Topic

TILL_EVENTS: tuple[type[Envelope], ...] = (
    till.CustomerUpserted,
    till.CustomerDeleted,
    till.ArticleEdited,
    till.StockMovement,
    till.StockCounted,
    till.InvoiceCreated,
    till.ZReportClosed,
    till.VoucherSubmitted,
)
FORTNOX_CHANGES: tuple[type[Envelope], ...] = (
    fortnox.FortnoxCustomerChanged,
    fortnox.FortnoxCustomerDeleted,
    fortnox.FortnoxArticleChanged,
    fortnox.FortnoxArticleDeleted,
    fortnox.FortnoxSyncCompleted,
    fortnox.FortnoxStockWritten,
    fortnox.FortnoxStockOverlapFound,
    fortnox.FortnoxStockChecked,
    fortnox.FortnoxStockWatchStarted,
    fortnox.FortnoxPaymentChanged,
    fortnox.FortnoxPaymentDeleted,
    fortnox.FortnoxMasterDataRefreshed,
    fortnox.FortnoxVoucherChanged,
    fortnox.FortnoxRecordUnreadable,
)
FORTNOX_COMMANDS: tuple[type[Envelope], ...] = (
    commands.CreateFortnoxCustomer,
    commands.UpdateFortnoxCustomer,
    commands.DeactivateFortnoxCustomer,
    commands.ApplyFortnoxStock,
    commands.CreateFortnoxVoucher,
    commands.CreateFortnoxOrder,
    commands.RefreshFortnoxMasterData,
)
TILL_COMMANDS: tuple[type[Envelope], ...] = (
    commands.UpsertTillCustomer,
    commands.DeleteTillCustomer,
    commands.UpsertTillArticle,
    commands.RemoveTillArticle,
    commands.AdjustTillStock,
    commands.RegisterTillPayment,
    commands.RemoveTillPayment,
    commands.SendTillLedgerVoucher,
)
CONTROL: tuple[type[Envelope], ...] = (
    outcomes.Tick,
    outcomes.SettingsChanged,
    outcomes.TenantResumed,
    outcomes.TenantPaused,
    outcomes.ExportRequested,
    outcomes.DeadLetterAction,
    outcomes.CommandAction,
)
OTHER: tuple[type[Envelope], ...] = (outcomes.SyncOutcome, outcomes.DeadLetter)

ALL: tuple[type[Envelope], ...] = (
    TILL_EVENTS + FORTNOX_CHANGES + FORTNOX_COMMANDS + TILL_COMMANDS + CONTROL + OTHER
)


def _type_name(model: type[Envelope]) -> str:
    default = model.model_fields["type"].default
    assert isinstance(default, str)
    return default


BY_TYPE: dict[str, type[Envelope]] = {_type_name(m): m for m in ALL}

TillEventUnion = Annotated[Union[*TILL_EVENTS], Field(discriminator="type")]  # type: ignore[valid-type]
MessageUnion = Annotated[Union[*ALL], Field(discriminator="type")]  # type: ignore[valid-type]

_any_message: TypeAdapter[Any] = TypeAdapter(MessageUnion)
_till_event: TypeAdapter[Any] = TypeAdapter(TillEventUnion)


def type_name(model: type[Envelope]) -> str:
    return _type_name(model)


def parse(raw: bytes | str) -> Envelope:
    """Parse and validate any message from JSON. Raises pydantic's ValidationError."""
    message = _any_message.validate_json(raw)
    assert isinstance(message, Envelope)
    return message


def parse_obj(obj: object) -> Envelope:
    message = _any_message.validate_python(obj)
    assert isinstance(message, Envelope)
    return message


def parse_till_event(obj: object) -> Envelope:
    """Validate what a till sent: only till events are accepted from a till."""
    message = _till_event.validate_python(obj)
    assert isinstance(message, Envelope)
    return message


def dump(message: Envelope) -> bytes:
    return message.model_dump_json().encode()


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, Decimal):
        if value.is_zero():
            return "0"  # -0 and 0E+5 are 0
        return format(value.normalize(), "f") if value.is_finite() else str(value)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, dt.date | Enum):
        return str(value.value if isinstance(value, Enum) else value.isoformat())
    return value


def fingerprint(message: Envelope) -> str:
    """A digest of ``message``'s content by value: two messages have the same fingerprint
    exactly when they are equal (``"-2"`` and ``-2.0``, one instant in two time zones). For a
    runtime that keeps only a digest of each message id it admitted (the Kafka worker), to tell
    a resend from a changed message under a known id."""
    text = json.dumps(
        _canonical(message.model_dump(mode="python")), sort_keys=True, separators=(",", ":")
    )
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def same_message(stored: bytes, message: Envelope) -> bool:
    """True if ``stored`` (a payload on a log) is ``message`` again: compared as parsed
    messages, by value (``"-2"`` and ``-2.0``, one instant in two time zones, and a payload
    stored before the contract added an optional field are the same). A payload that no longer
    parses is not the same message."""
    try:
        return parse(stored) == message
    except ValueError:  # pydantic's ValidationError is a ValueError
        return False


@dataclass(frozen=True, slots=True)
class Packed:
    """A message serialized ahead of its append, with what a log needs to file it. A full pass
    packs each page while the next one is on its way, and holds 100,000 of these instead of
    100,000 object graphs for the garbage collector to walk."""

    topic: Topic
    tenant: str
    type: str
    id: str
    occurred_at: str
    payload: bytes


def filing(
    message: Envelope | Packed, payload: bytes | None = None
) -> tuple[Topic, str, str, str, str, bytes]:
    """(topic, tenant, type, id, occurred_at, payload): what a log files ``message`` under. A
    plain tuple: the processor's appends go through here, one per message. ``payload``: the
    message already serialised (not serialised again)."""
    if isinstance(message, Packed):
        return (
            message.topic,
            message.tenant,
            message.type,
            message.id,
            message.occurred_at,
            message.payload,
        )
    return (
        Topic(message.TOPIC),
        message.tenant,
        message.type,  # type: ignore[attr-defined]
        message.id,
        message.occurred_at.isoformat(),
        dump(message) if payload is None else payload,
    )


def pack(message: Envelope | Packed, payload: bytes | None = None) -> Packed:
    """``message`` ready to append (``payload``: as :func:`filing`)."""
    return message if isinstance(message, Packed) else Packed(*filing(message, payload))


def topic_and_type(message: Envelope | Packed) -> tuple[str, str]:
    if isinstance(message, Packed):
        return str(message.topic), message.type
    return str(message.TOPIC), str(getattr(message, "type", "unknown"))


#: Pydantic's errors for a ``type`` that names no message (or is missing): they carry no field.
_TAG_ERRORS = frozenset({"union_tag_invalid", "union_tag_not_found"})


def describe_errors(error: ValidationError) -> list[dict[str, str]]:
    """Validation errors as a list of {'field', 'problem'} a till developer can act on."""
    out: list[dict[str, str]] = []
    for item in error.errors(include_url=False):
        loc = ".".join(str(p) for p in item.get("loc", ()))
        problem = str(item.get("msg", "invalid"))
        if item.get("type") in _TAG_ERRORS and not loc:
            loc = "type"
            found = item.get("input")
            tag = found.get("type") if isinstance(found, dict) else None
            expected = (item.get("ctx") or {}).get("expected_tags")
            problem = (
                "is missing: every message names its type"
                if tag is None
                else f"{str(tag)[:100]!r} is not a message type this topic takes"
                + (f" (expected one of: {expected})" if expected else "")
            )
        elif isinstance(item.get("input"), OversizedNumber):
            problem = (
                f"is a number with more than {MAX_DIGITS} significant digits or an exponent out "
                "of range"
            )
        out.append({"field": loc or "(message)", "problem": problem})
    return out


def export_schemas(out_dir: Path) -> list[Path]:
    """Write one JSON Schema file per message type, plus an index; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    index: dict[str, dict[str, str]] = {}
    for model in ALL:
        name = _type_name(model)
        schema = model.model_json_schema(mode="validation")
        schema["$id"] = f"https://kassasync.dev/schemas/{name}.json"
        schema["x-topic"] = str(model.TOPIC)
        path = out_dir / f"{name}.json"
        path.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
        index[name] = {"topic": str(model.TOPIC), "file": path.name}
    idx = out_dir / "index.json"
    idx.write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    written.append(idx)
    return written
