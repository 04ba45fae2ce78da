"""The two ports that keep the operator surface runtime-agnostic: what a store of the
sync state answers (:class:`OpsStore`) and what a running runtime knows (:class:`RuntimeProbe`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from engine.ops.records import (
    Budget,
    Cursor,
    DeadLetterRow,
    Drift,
    PendingCommand,
    PendingGroup,
    TenantRef,
    TopicLag,
    WorkerAssignment,
)
from reconcilers.state import Record
from topics.envelope import Envelope


class OpsStore(Protocol):
    """Reads and the few writes the operator's actions need, over one runtime's store."""

    def tenants(self) -> list[TenantRef]: ...

    def record(self, tenant: str, kind: str, key: str) -> Record | None: ...

    def records(
        self,
        tenant: str,
        kind: str,
        *,
        where: Mapping[str, Sequence[str | int | bool]] | None = None,
        limit: int | None = None,
    ) -> list[tuple[str, Record]]:
        """Records of a kind; ``where`` keeps those whose top-level field has one of the values."""

    def kind_counts(self, tenant: str) -> dict[str, int]: ...

    def cursors(self, tenant: str) -> list[Cursor]: ...

    def drift(self, tenant: str, samples: int = 10) -> Drift: ...

    def pending(self, tenant: str | None = None) -> list[PendingGroup]: ...

    def oldest_pending(self, tenant: str) -> PendingCommand | None: ...

    def dead_letters(
        self, *, tenant: str | None = None, status: str = "open", limit: int | None = None
    ) -> list[DeadLetterRow]: ...

    def dead_letter(self, dead_letter_id: str) -> DeadLetterRow | None: ...

    def open_dead_letters(self) -> dict[str, dict[str, int]]:
        """Open dead letters: tenant -> message or command type -> count."""

    def settled_since(self, since: float) -> dict[str, int]:
        """Commands settled as done after ``since`` (Unix time), per tenant."""

    # -- writes ---------------------------------------------------------------------------

    def atomic(self) -> AbstractContextManager[Any]:
        """The writes inside commit together."""

    def append(self, message: Envelope) -> None: ...

    def requeue(self, command_id: str) -> bool:
        """A dead outbox command becomes pending again (False if there is none)."""

    def discard(self, command_id: str) -> bool: ...

    def resolve_dead_letter(self, dead_letter_id: str, status: str) -> bool: ...

    def replay(self, row: DeadLetterRow) -> bool:
        """Append a dead-lettered message to its topic again (False if it cannot be parsed)."""

    # -- commands still being retried ------------------------------------------------------

    def retrying(self, tenant: str | None = None, limit: int | None = None) -> list[PendingCommand]:
        """Pending commands that failed at least once, oldest first."""

    def command(self, command_id: str) -> tuple[PendingCommand, str] | None:
        """(a command of the outbox, its status), whatever the status."""

    def retry_command_now(self, command_id: str) -> bool:
        """A pending command is due at once (False if it is not pending)."""

    def cancel_command(self, command_id: str, reason: str) -> bool:
        """Settle a command waiting for its retry as refused by the operator (it becomes a dead
        letter); False if it is not waiting for a retry (an executor may be attempting it)."""


class RuntimeProbe(Protocol):
    """What a running runtime knows about itself."""

    @property
    def name(self) -> str: ...

    def lag(self) -> list[TopicLag]: ...

    def throughput(self) -> dict[str, float]:
        """Messages per second reconciled over the last minute, by topic."""

    def workers(self) -> list[WorkerAssignment]: ...

    def budgets(self) -> list[Budget]: ...
