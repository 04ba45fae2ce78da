"""Delivers commands to till back offices over HTTP, in order per tenant and lane.

``POST {endpoint}`` with the command as JSON, ``Idempotency-Key: <command id>`` and the tenant's
till token as ``Authorization: Bearer``. 2xx = applied (or already applied); 4xx other than
408/409/425/429 = refused for good (dead letter, the next command goes on); anything else =
retried with exponential backoff and jitter, holding back the tenant's later commands of the same
lane (the same article, customer or payment: engine/store/lanes.py) so the till sees those in
order, while the tenant's other lanes go on. A back office that fails two commands in a row is
taken for down and probed one command at a time (engine/executors/breaker.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from collections.abc import Callable

import httpx
import structlog

from engine.executors.breaker import Breaker
from engine.executors.ports import ExecutorPorts
from engine.store.outbox import Pending
from engine.supervision import Supervisor
from engine.tenants import TenantConfig
from topics.errors import ErrorKind, shop_error
from topics.outcomes import OutcomeStatus

log = structlog.get_logger("kassasync.till.delivery")

RETRYABLE_4XX = {408, 409, 425, 429}


class TillDelivery:
    def __init__(
        self,
        edge: ExecutorPorts,
        tenants: Callable[[str], TenantConfig | None],
        http: httpx.AsyncClient,
        supervisor: Supervisor | None = None,
    ) -> None:
        self.edge = edge
        self.tenants = tenants
        self.http = http
        #: Each tenant's delivery runs as the loop ``till:<tenant>``: a crash (a configuration
        #: the secret key cannot open, a database error) is logged, counted and retried with
        #: backoff, and shows on /healthz, instead of ending the tenant's delivery silently.
        self.supervisor = supervisor or Supervisor()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        #: Per tenant: is its back office down as a whole, rather than refusing one command?
        self.breakers: dict[str, Breaker] = {}

    def breaker(self, tenant: str) -> Breaker:
        found = self.breakers.get(tenant)
        if found is None:
            found = self.breakers[tenant] = Breaker()
        return found

    async def run(self, stop: asyncio.Event, poll: float = 0.1) -> None:
        while not stop.is_set():
            for tenant in self.edge.tenants_with_work("till"):
                task = self._tasks.get(tenant)
                if (task is None or task.done()) and not self.breaker(tenant).wait():
                    self._tasks[tenant] = self.supervisor.spawn(
                        f"till:{tenant}",
                        functools.partial(self.deliver_tenant, tenant, stop),
                        stop,
                        kind="till",
                        finite=True,
                    )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=poll)
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def deliver_tenant(self, tenant: str, stop: asyncio.Event) -> None:
        breaker = self.breaker(tenant)
        while not stop.is_set():
            if breaker.wait():
                return  # the back office is down: probe again after the tenant's backoff
            pending = self.edge.head("till", tenant)
            if pending is None:
                return
            wait = pending.next_at - time.time()
            if wait > 0:
                if wait > 1.0:
                    return  # come back on a later sweep
                # Then look again: another lane's command may be due first, or an operator may
                # have cancelled this one meanwhile.
                await asyncio.sleep(wait)
                continue
            await self.deliver(pending)

    async def deliver(self, pending: Pending) -> None:
        with structlog.contextvars.bound_contextvars(
            tenant=pending.tenant, command_id=pending.command_id, message_id=pending.command_id
        ):
            await self._deliver(pending)

    async def _deliver(self, pending: Pending) -> None:
        config = self.tenants(pending.tenant)
        if config is None or not config.till.endpoint:
            error = shop_error(ErrorKind.TILL_UNREACHABLE, detail="no till endpoint configured")
            self.edge.settle(pending, OutcomeStatus.RETRYING, error=error, retry_in=30.0)
            return
        headers = {"Idempotency-Key": pending.command_id, "Content-Type": "application/json"}
        if config.till.token is not None:
            headers["Authorization"] = f"Bearer {config.till.token.reveal()}"
        try:
            response = await self.http.post(
                config.till.endpoint,
                content=pending.payload,
                headers=headers,
                timeout=config.till.timeout_seconds,
            )
        except httpx.HTTPError as failed:
            self._later(pending, f"{type(failed).__name__}")
            return
        status = response.status_code
        if 200 <= status < 300:
            self.breaker(pending.tenant).succeeded()
            self.edge.settle(pending, OutcomeStatus.DONE, result=_result(response))
        elif 400 <= status < 500 and status not in RETRYABLE_4XX:
            self.breaker(pending.tenant).succeeded()  # it answers: refusing one is not down
            error = shop_error(
                ErrorKind.TILL_REFUSED, subject=pending.type, detail=_reason(response)
            )
            self.edge.settle(pending, OutcomeStatus.REJECTED, error=error)
        else:
            self._later(pending, f"HTTP {status}")

    def _later(self, pending: Pending, detail: str) -> None:
        delay = min(60.0, 0.5 * 2.0 ** min(pending.attempts, 7)) * (0.5 + random.random())
        breaker = self.breaker(pending.tenant)
        breaker.failed(delay)
        if breaker.down:
            log.warning(
                "till.down",
                tenant=pending.tenant,
                strikes=breaker.strikes,
                probe_in=round(breaker.wait(), 3),
                detail=detail,
            )
        error = shop_error(ErrorKind.TILL_UNREACHABLE, detail=detail)
        self.edge.settle(pending, OutcomeStatus.RETRYING, error=error, retry_in=delay)


def _result(response: httpx.Response) -> dict[str, str]:
    try:
        body = response.json()
    except ValueError:
        return {}
    result = body.get("result") if isinstance(body, dict) else None
    if not isinstance(result, dict):
        return {}
    return {str(k): str(v) for k, v in result.items()}


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(body, dict) and body.get("error"):
        return str(body["error"])[:300]
    return f"HTTP {response.status_code}"
