"""Outcomes (``sync.outcomes``), control messages (``sync.control``) and dead letters."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import Field, JsonValue

from topics.common import Ident, ShortText
from topics.envelope import Envelope, Model, Source
from topics.errors import ShopError
from topics.names import Topic
from topics.settings import TenantSettings


class Target(StrEnum):
    FORTNOX = "fortnox"
    TILL = "till"


class OutcomeStatus(StrEnum):
    #: Done; or found already done (``result['already'] == 'true'``).
    DONE = "done"
    #: Refused for good (4xx): the command goes to the dead letters with the reason.
    REJECTED = "rejected"
    #: Failed for now (network, 5xx, 429); it will be retried.
    RETRYING = "retrying"
    #: Not attempted: the tenant is paused or the command was discarded by an operator.
    SKIPPED = "skipped"


class OutcomeData(Model):
    command_id: Ident
    command_type: ShortText
    target: Target
    status: OutcomeStatus
    attempt: int = Field(default=1, ge=1)
    result: dict[str, str] = Field(default_factory=dict)
    error: ShopError | None = None


class SyncOutcome(Envelope):
    TOPIC: ClassVar[str] = Topic.SYNC_OUTCOMES
    type: Literal["sync.outcome"] = "sync.outcome"
    source: Literal[Source.KASSASYNC] = Source.KASSASYNC
    data: OutcomeData


# --- control ---------------------------------------------------------------------------------


class ControlMessage(Envelope):
    TOPIC: ClassVar[str] = Topic.SYNC_CONTROL


class TickData(Model):
    pass


class Tick(ControlMessage):
    """Time passes: flush windows that have elapsed by ``occurred_at`` are written out."""

    type: Literal["sync.tick"] = "sync.tick"
    source: Literal[Source.KASSASYNC] = Source.KASSASYNC
    data: TickData = Field(default_factory=TickData)


class SettingsChangedData(Model):
    settings: TenantSettings


class SettingsChanged(ControlMessage):
    type: Literal["sync.settings.changed"] = "sync.settings.changed"
    source: Literal[Source.OPERATOR, Source.KASSASYNC] = Source.OPERATOR
    data: SettingsChangedData


class TenantResumedData(Model):
    reason: ShortText = "resumed by operator"


class TenantResumed(ControlMessage):
    type: Literal["sync.tenant.resumed"] = "sync.tenant.resumed"
    source: Literal[Source.OPERATOR, Source.KASSASYNC] = Source.OPERATOR
    data: TenantResumedData = Field(default_factory=TenantResumedData)


class TenantPausedData(Model):
    error: ShopError


class TenantPaused(ControlMessage):
    type: Literal["sync.tenant.paused"] = "sync.tenant.paused"
    source: Literal[Source.OPERATOR, Source.KASSASYNC] = Source.OPERATOR
    data: TenantPausedData


class ExportRequestedData(Model):
    flow: Literal["zreports"] = "zreports"
    from_date: dt.date
    to_date: dt.date


class ExportRequested(ControlMessage):
    """Manual export: post every Z-report in the range that is not posted yet."""

    type: Literal["sync.export.requested"] = "sync.export.requested"
    source: Literal[Source.OPERATOR] = Source.OPERATOR
    data: ExportRequestedData


class DeadLetterActionData(Model):
    dead_letter_id: Ident
    action: Literal["retry", "discard"]


class DeadLetterAction(ControlMessage):
    type: Literal["sync.deadletter.action"] = "sync.deadletter.action"
    source: Literal[Source.OPERATOR] = Source.OPERATOR
    data: DeadLetterActionData


class CommandActionData(Model):
    command_id: Ident
    action: Literal["retry_now", "cancel"]
    #: Why (``cancel``): the dead letter the command becomes says it to the shop.
    reason: ShortText = "cancelled by operator"


class CommandAction(ControlMessage):
    """An operator's action on a command that is still being retried: attempt it now, or stop
    retrying it (it becomes a dead letter). On Kafka the worker owning the tenant applies it;
    the embedded runtime changes its outbox directly."""

    type: Literal["sync.command.action"] = "sync.command.action"
    source: Literal[Source.OPERATOR] = Source.OPERATOR
    data: CommandActionData


# --- dead letters ----------------------------------------------------------------------------


class DeadLetterData(Model):
    dead_letter_id: Ident
    topic: ShortText
    message_type: ShortText
    message: JsonValue
    error: ShopError


class DeadLetter(Envelope):
    TOPIC: ClassVar[str] = Topic.DEAD_LETTERS
    type: Literal["sync.deadletter"] = "sync.deadletter"
    source: Literal[Source.KASSASYNC] = Source.KASSASYNC
    data: DeadLetterData
