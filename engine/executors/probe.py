"""An operator's retry of one command is a probe, in both runtimes.

A target taken for down (its :class:`~engine.executors.breaker.Breaker`) holds back the tenant's
commands until the end of the failed command's backoff. An operator who says "retry now" wants
that command tried now, so the retry closes the breaker of its target and wakes the executor;
if the target is still down, the command fails again and the breaker opens again.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from engine.executors.fortnox import FortnoxSession
from engine.executors.till import TillDelivery

log = structlog.get_logger("kassasync.executors")


def probe_now(
    target: str,
    tenant: str,
    sessions: Mapping[str, FortnoxSession],
    delivery: TillDelivery | None,
) -> None:
    """Let ``tenant``'s ``target`` ("fortnox" or "till") be tried at once."""
    if target == "till":
        if delivery is not None:
            delivery.breaker(tenant).succeeded()
        log.info("command.probe_now", tenant=tenant, target=target)
        return
    session = sessions.get(tenant)
    if session is not None:
        session.breaker.succeeded()
        session.wakeup.set()
    log.info("command.probe_now", tenant=tenant, target=target, session=session is not None)
