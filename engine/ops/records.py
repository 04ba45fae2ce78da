"""The typed records the operator surface reads and shows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from engine.ops.flows import COMMAND_TOPICS, flow_of
from topics import registry
from topics.errors import ShopError
from topics.names import Topic


@dataclass(frozen=True, slots=True)
class TenantRef:
    id: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    id: str
    tenant: str
    topic: str
    type: str
    status: str
    created_at: float
    resolved_at: float | None
    error: ShopError
    payload: bytes

    @property
    def flow(self) -> str | None:
        return flow_of(self.type)

    @property
    def is_command(self) -> bool:
        return self.topic in COMMAND_TOPICS

    def message(self) -> Any:
        try:
            return json.loads(self.payload)
        except ValueError:
            return self.payload.decode("utf-8", "replace")

    def unreadable(self) -> str | None:
        """Why the parked message cannot go on its topic again (None: it can): a payload the
        contract refuses (a year-1 date, an unknown type) would only be parked again."""
        try:
            Topic(self.topic)
            registry.parse(self.payload)
        except (ValidationError, ValueError) as bad:
            return f"{type(bad).__name__}: {str(bad).splitlines()[0][:200]}"
        return None


@dataclass(frozen=True, slots=True)
class PendingGroup:
    """Pending outbox commands of one tenant, target and command type."""

    tenant: str
    target: str
    type: str
    count: int
    oldest: float


@dataclass(frozen=True, slots=True)
class PendingCommand:
    command_id: str
    tenant: str
    target: str
    type: str
    attempts: int
    created_at: float
    next_at: float
    last_error: str | None
    #: Which of the tenant's commands it holds back (engine/store/lanes.py).
    lane: str = ""


@dataclass(frozen=True, slots=True)
class Cursor:
    """A Fortnox poll stream's position (``fx_cursor``)."""

    resource: str
    since: str | None
    seen: int
    last_ok: float | None
    full_sync_at: float | None


@dataclass(frozen=True, slots=True)
class Drift:
    """A cheap proxy for drift between till and Fortnox: work not yet settled.

    ``unsettled_stock``: articles whose stock merge still owes a delta to one side or has a
    write in flight. ``unsent_articles``: articles the till should have (or have in a newer
    version) that were not sent yet.
    """

    unsettled_stock: int
    unsent_articles: int
    stock_samples: tuple[str, ...] = ()
    article_samples: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return self.unsettled_stock + self.unsent_articles


@dataclass(frozen=True, slots=True)
class TopicLag:
    topic: str
    partition: int | None
    end: int
    committed: int

    @property
    def lag(self) -> int:
        return max(0, self.end - self.committed)


@dataclass(frozen=True, slots=True)
class WorkerAssignment:
    worker: str
    partitions: tuple[int, ...] | None
    tenants: int | None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Budget:
    """Fortnox request budget of one (client id, tenant): its limiter's sliding window."""

    client_id: str
    tenant: str
    in_window: int
    limit: int
    window_seconds: float
    acquired: int
    waited: int
    mean_wait: float
    max_wait: float
    penalties: int
    waiting_now: int

    @property
    def used(self) -> float:
        return self.in_window / self.limit if self.limit else 0.0


@dataclass(frozen=True, slots=True)
class ActionResult:
    action: str
    tenant: str
    dead_letter_id: str | None
    message_id: str
    requeued: bool = False
    replayed: bool = False
    #: Nothing was done because nothing was left to do (a retry of a problem fixed since).
    noop: bool = False
    #: What happened, in words for the operator ("" when the action name says it all).
    note: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "action": self.action,
            "tenant": self.tenant,
            "dead_letter_id": self.dead_letter_id,
            "message_id": self.message_id,
            "requeued": self.requeued,
            "replayed": self.replayed,
            "noop": self.noop,
            "note": self.note,
        }
