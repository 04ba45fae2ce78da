"""The one processing step: parse → admit → reconcile → check, for one log record.

Both runtimes and replay call :func:`process`; a runtime only reads its log, calls it for each
record, and commits what the returned :class:`Step` says. Nothing here does I/O.

Whatever goes wrong with one message — a payload that does not parse, a tenant that differs from
its key, a reconciler that raises anything at all, a wake-up time that cannot be expressed in UTC,
a command that cannot be serialised — makes that message a dead letter with its reason; the step
never raises for it. Only faults of the machine (the store cannot be read, the disk is full, memory
is exhausted) propagate: they are not the message's fault, so the runtime's batch rolls back and
its supervisor retries the same records once the fault is gone.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import logging
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import structlog

from reconcilers.dispatch import reconcile
from reconcilers.state import Note, Record, StateView
from topics import registry
from topics.envelope import Envelope
from topics.errors import ErrorKind, ShopError, shop_error
from topics.names import Topic

log = structlog.get_logger("kassasync.core")

#: Faults of the machine rather than of the message: never a dead letter, always retried.
INFRASTRUCTURE: tuple[type[BaseException], ...] = (sqlite3.Error, OSError, MemoryError)

#: The longest reason kept in a dead letter (a hostile payload can make a huge error text).
MAX_REASON = 2_000

Puts = dict[tuple[str, str], Record | None]

#: A topic by its name (an enum's lookup by value costs a microsecond, once per command).
_TOPIC: dict[str, Topic] = {topic.value: topic for topic in Topic}


class Outcome(enum.Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class Inbound:
    """One record as a runtime's log holds it."""

    topic: Topic
    #: The tenant the log files it under (its key): a message must agree with it.
    tenant: str
    #: Where it sits in the log, unique per runtime (``"till.events:42"``); names its dead letter.
    position: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Emitted:
    """A command the decision emitted, serialised once for the log and the outbox."""

    command: Envelope
    topic: Topic
    payload: bytes

    @property
    def id(self) -> str:
        return self.command.id

    @property
    def type(self) -> str:
        return str(self.command.type)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Admitted:
    """A runtime's bookkeeping for a message it accepts (committed even when it dead-letters)."""

    puts: Puts = field(default_factory=dict)


#: A runtime's admission rule: ``None`` means the message was seen before (a duplicate).
Admission = Callable[[StateView, Topic, Envelope], Admitted | None]


def admit_all(state: StateView, topic: Topic, message: Envelope) -> Admitted:
    """The admission of a log that can hold no duplicates (de-duplicated at its door)."""
    return Admitted()


@dataclass(slots=True)
class Step:
    """What one record comes to: what to commit, or why it is a dead letter."""

    inbound: Inbound
    outcome: Outcome
    message_type: str
    message: Envelope | None = None
    #: The runtime's own bookkeeping from admission (applied for APPLIED and DEAD).
    admitted: Puts = field(default_factory=dict)
    #: The reconciler's state changes (APPLIED only).
    puts: Puts = field(default_factory=dict)
    commands: list[Emitted] = field(default_factory=list)
    #: The tenant's next wake-up time, in UTC (APPLIED only).
    wake_at: dt.datetime | None = None
    notes: list[Note] = field(default_factory=list)
    error: ShopError | None = None

    @property
    def tenant(self) -> str:
        return self.inbound.tenant


def process(
    state: StateView,
    inbound: Inbound,
    admit: Admission = admit_all,
    *,
    report: bool = True,
) -> Step:
    """Turn one log record into what to commit. Raises only for :data:`INFRASTRUCTURE` faults.

    ``report=False`` (replay) computes the same step without logging a dead letter again.
    """
    message: Envelope | None = None
    admitted: Puts = {}
    try:
        message = registry.parse(inbound.payload)
        if message.tenant != inbound.tenant:
            raise ValueError(
                f"message tenant {message.tenant!r} differs from its key {inbound.tenant!r}"
            )
        admission = admit(state, inbound.topic, message)
        if admission is None:
            return Step(inbound, Outcome.DUPLICATE, _type_of(message, inbound), message)
        admitted = admission.puts
        decision = reconcile(state, message)
        commands = [
            Emitted(command, _TOPIC[command.TOPIC], registry.dump(command))
            for command in decision.commands
        ]
        wake_at = None if decision.wake_at is None else decision.wake_at.astimezone(dt.UTC)
    except INFRASTRUCTURE:
        raise
    except Exception as failed:  # any fault of one message is its dead letter
        return dead_letter(inbound, failed, message, admitted, report=report)
    return Step(
        inbound,
        Outcome.APPLIED,
        _type_of(message, inbound),
        message,
        admitted=admitted,
        puts=decision.puts,
        commands=commands,
        wake_at=wake_at,
        notes=decision.notes,
    )


def dead_letter(
    inbound: Inbound,
    failed: BaseException,
    message: Envelope | None = None,
    admitted: Puts | None = None,
    *,
    report: bool = True,
) -> Step:
    """The step of a record that cannot be applied: its reason, logged at error."""
    reason = f"{type(failed).__name__}: {failed}"
    if len(reason) > MAX_REASON:
        reason = reason[:MAX_REASON] + f"… ({len(reason) - MAX_REASON} more characters)"
    error = shop_error(ErrorKind.INVALID_INPUT, detail=reason)
    step = Step(
        inbound,
        Outcome.DEAD,
        _type_of(message, inbound),
        message,
        admitted=dict(admitted or {}),
        error=error,
    )
    if not report:
        return step
    log.error(
        "message.dead_lettered",
        tenant=inbound.tenant,
        topic=inbound.topic.value,
        position=inbound.position,
        message_id=None if message is None else message.id,
        message_type=step.message_type,
        error=reason,
    )
    return step


#: A note's level (``reconcilers.state.Note.level``) as the logging module counts them.
_LEVELS = {"info": logging.INFO, "warning": logging.WARNING}


def log_decisions(logger: structlog.typing.FilteringBoundLogger, notes: Iterable[Note]) -> None:
    """Log the decisions a step explains, each at the level the reconciler gave it."""
    for note in notes:
        logger.log(_LEVELS[note.level], note.event, **note.fields)


def _type_of(message: Envelope | None, inbound: Inbound) -> str:
    if message is not None:
        return str(message.type)  # type: ignore[attr-defined]
    try:
        found = json.loads(inbound.payload)
    except (ValueError, RecursionError):
        return "?"
    kind = found.get("type") if isinstance(found, dict) else None
    return kind[:100] if isinstance(kind, str) else "?"
