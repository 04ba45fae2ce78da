"""What the executors need from a runtime.

The embedded runtime's ``Edge`` provides it on SQLite; the Kafka runtime provides it on topics
and changelogged tables. The executors (Fortnox sessions, till delivery) are the same code in
both."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from engine.store.outbox import Pending
from topics.envelope import Envelope
from topics.errors import ShopError
from topics.outcomes import OutcomeStatus
from topics.registry import Packed


@dataclass(frozen=True, slots=True)
class CursorUpdate:
    """A poll stream's new position, saved together with the changes it produced."""

    tenant: str
    resource: str
    cursor: str
    full_sync: bool


class ExecutorPorts(Protocol):
    def head(self, target: str, tenant: str) -> Pending | None:
        """The oldest undelivered command of a tenant for a target."""

    def tenants_with_work(self, target: str) -> list[str]: ...

    def settle(
        self,
        pending: Pending,
        status: OutcomeStatus,
        *,
        result: dict[str, str] | None = None,
        error: ShopError | None = None,
        facts: list[Envelope] | None = None,
        retry_in: float = 0.0,
    ) -> None:
        """Facts, outcome and the command's new status, atomically."""

    def next_fx_seq(self, tenant: str, count: int = 1) -> int:
        """The first of ``count`` consecutive Fortnox observation numbers of ``tenant``, each
        above every number handed out before."""

    def publish(
        self,
        messages: Sequence[Envelope | Packed],
        *,
        cursor: CursorUpdate | None = None,
        fingerprint: tuple[str, str, str, str] | None = None,
    ) -> None:
        """Append messages; with ``cursor``/``fingerprint`` saved in the same commit."""

    def cursor(self, tenant: str, resource: str) -> tuple[str | None, float | None]:
        """(cursor JSON, time of the last full sync) of a poll stream."""

    def fingerprint(self, tenant: str, resource: str, key: str) -> str | None: ...

    def remember_intent(self, command_id: str, intent: dict[str, Any]) -> None: ...

    def intent(self, pending: Pending) -> dict[str, Any] | None: ...

    def paused(self, tenant: str) -> ShopError | None: ...

    def pause(self, tenant: str, error: ShopError) -> None: ...
