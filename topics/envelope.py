"""The envelope every message carries."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from topics.common import Ident, TenantId


class Source(StrEnum):
    TILL = "till"
    FORTNOX = "fortnox"
    KASSASYNC = "kassasync"
    OPERATOR = "operator"


class Model(BaseModel):
    """Base of every payload model: strict about unknown fields, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class Envelope(Model):
    """Fields shared by every message; ``type`` and ``data`` are set by each message class."""

    id: Ident = Field(description="Unique message id, chosen by the sender; redelivery keeps it.")
    tenant: TenantId = Field(description="The shop (tenant) the message belongs to.")
    version: int = Field(default=1, ge=1, description="Schema version of this message type.")
    occurred_at: AwareDatetime = Field(
        description="When it happened at the source (ISO 8601 with a time zone)."
    )
    source: Source

    TOPIC: ClassVar[str]

    @property
    def when(self) -> datetime:
        return self.occurred_at
