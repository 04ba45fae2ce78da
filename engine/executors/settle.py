"""Settling one attempt of a command: what it comes to, decided once for both runtimes.

An executor reports how an attempt ended (``ExecutorPorts.settle``); :func:`settle_command` turns
that into the attempt's number, its ``sync.outcome`` (and whether it goes on the log: a command
retried for a day must not flood it), the dead letter of a refused command, and the facts that
go on the log before the outcome. It does no I/O and reads no clock (the caller passes the time):
the embedded runtime records the result in one SQLite transaction (``engine/embedded/edge.py``),
the Kafka runtime in the command's ``~exec`` marks and on its topics (``engine/kafka/ports.py``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from engine.store.outbox import Pending
from topics.envelope import Envelope
from topics.errors import ShopError
from topics.outcomes import (
    DeadLetter,
    DeadLetterData,
    OutcomeData,
    OutcomeStatus,
    SyncOutcome,
    Target,
)

#: RETRYING outcomes go on the log on these attempts only, then every 16th: a long outage of
#: one till must not flood the outcome log (the runtime's own record has the latest attempt).
LOGGED_RETRIES = frozenset({1, 2, 4, 8})


def outcome_logged(status: OutcomeStatus, attempt: int) -> bool:
    """Whether the outcome of this attempt goes on the log."""
    return status is not OutcomeStatus.RETRYING or attempt in LOGGED_RETRIES or not attempt % 16


@dataclass(frozen=True, slots=True)
class Settlement:
    """What one attempt of a command comes to."""

    pending: Pending
    status: OutcomeStatus
    #: The attempt's number (the first attempt is 1).
    attempt: int
    outcome: SyncOutcome
    #: Whether ``outcome`` goes on the log (see :data:`LOGGED_RETRIES`).
    logged: bool
    #: The refused command as a dead letter (``REJECTED`` only).
    dead_letter: DeadLetter | None
    #: Messages the attempt learnt (Fortnox's answer): on the log before the outcome.
    facts: tuple[Envelope, ...]


def settle_command(
    pending: Pending,
    status: OutcomeStatus,
    *,
    at: dt.datetime,
    attempt: int | None = None,
    result: dict[str, str] | None = None,
    error: ShopError | None = None,
    facts: Sequence[Envelope] = (),
) -> Settlement:
    """Settle the attempt after ``pending.attempts`` (or number ``attempt``, as the runtime's
    own record counts it) that ended with ``status`` at ``at``. A refusal needs its ``error``."""
    if status is OutcomeStatus.REJECTED and error is None:
        raise ValueError(f"command {pending.command_id}: a refusal needs its error")
    number = max(pending.attempts + 1 if attempt is None else attempt, 1)
    target = Target.FORTNOX if pending.target == "fortnox" else Target.TILL
    outcome = SyncOutcome(
        id=f"outcome-{pending.command_id}-{number}",
        tenant=pending.tenant,
        occurred_at=at,
        data=OutcomeData(
            command_id=pending.command_id,
            command_type=pending.type,
            target=target,
            status=status,
            attempt=number,
            result=result or {},
            error=error,
        ),
    )
    dead_letter = None
    if status is OutcomeStatus.REJECTED:
        assert error is not None
        dead_letter = DeadLetter(
            id=f"dl-{pending.command_id}",
            tenant=pending.tenant,
            occurred_at=at,
            data=DeadLetterData(
                dead_letter_id=pending.command_id,
                topic=f"{pending.target}.commands",
                message_type=pending.type,
                message=json.loads(pending.payload),
                error=error,
            ),
        )
    return Settlement(
        pending=pending,
        status=status,
        attempt=number,
        outcome=outcome,
        logged=outcome_logged(status, number),
        dead_letter=dead_letter,
        facts=tuple(facts),
    )


def log_settled(logger: structlog.typing.FilteringBoundLogger, settled: Settlement) -> None:
    """The one log event of a settled attempt, the same on both runtimes."""
    pending, error = settled.pending, settled.outcome.data.error
    logger.info(
        "command.settled",
        tenant=pending.tenant,
        command_id=pending.command_id,
        command_type=pending.type,
        target=pending.target,
        status=settled.status.value,
        attempt=settled.attempt,
        error=error.kind.value if error else None,
        outcome_logged=settled.logged,
    )
