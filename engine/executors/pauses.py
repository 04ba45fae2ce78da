"""Pausing a tenant from an I/O edge (an expired Fortnox login, say), the same in both runtimes.

The pause itself is a ``sync.tenant.paused`` message: it takes effect when the reconciler has
applied it. Until then the edge remembers that it asked, so the tenant's session stops at once and
the pause is asked for only once; once the tenant's status says paused — or resumed since — that
memory is dropped.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import structlog

from engine.clock import utcnow
from topics.errors import ShopError
from topics.outcomes import TenantPaused

log = structlog.get_logger("kassasync.pauses")


class Pauses:
    def __init__(
        self,
        status: Callable[[str], dict[str, Any] | None],
        send: Callable[[TenantPaused], None],
    ) -> None:
        self._status = status
        self._send = send
        self._asked: dict[str, tuple[dt.datetime, ShopError]] = {}

    def paused(self, tenant: str) -> ShopError | None:
        record = self._status(tenant) or {}
        if record.get("paused"):
            error = record.get("error")
            return None if error is None else ShopError.model_validate(error)
        asked = self._asked.get(tenant)
        if asked is None:
            return None
        since, error = asked
        if record.get("at") and dt.datetime.fromisoformat(record["at"]) >= since:
            del self._asked[tenant]  # paused and resumed since
            return None
        return error

    def pause(self, tenant: str, error: ShopError) -> None:
        if self.paused(tenant) is not None:
            return
        now = utcnow()
        self._asked[tenant] = (now, error)
        self._send(
            TenantPaused(
                id=f"pause-{uuid.uuid4().hex}",
                tenant=tenant,
                occurred_at=now,
                source="kassasync",
                data={"error": error},
            )
        )
        log.warning("tenant.paused", tenant=tenant, kind=error.kind.value, message=error.message)
