"""Topic names and their settings. Every message is keyed by tenant, so one tenant's messages
keep their order on every topic and one consumer owns a tenant at a time."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Topic(StrEnum):
    TILL_EVENTS = "till.events"
    FORTNOX_CHANGES = "fortnox.changes"
    FORTNOX_COMMANDS = "fortnox.commands"
    TILL_COMMANDS = "till.commands"
    SYNC_OUTCOMES = "sync.outcomes"
    SYNC_CONTROL = "sync.control"
    DEAD_LETTERS = "sync.deadletters"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    topic: Topic
    description: str
    cleanup_policy: str = "delete"
    retention_ms: int = 30 * 24 * 3600 * 1000
    #: The reconcilers consume this topic.
    reconciled: bool = True


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(
        Topic.TILL_EVENTS,
        "Changes reported by tills: customers, articles, stock, invoices, Z-reports.",
    ),
    TopicSpec(
        Topic.FORTNOX_CHANGES,
        "Changes observed in Fortnox by pollers and the topics "
        "feed, and the results of Kassasync's own stock writes.",
    ),
    TopicSpec(Topic.FORTNOX_COMMANDS, "Writes Kassasync wants done in Fortnox.", reconciled=False),
    TopicSpec(
        Topic.TILL_COMMANDS, "Commands Kassasync sends to a till's back office.", reconciled=False
    ),
    TopicSpec(Topic.SYNC_OUTCOMES, "What happened to every command: done, rejected, retried."),
    TopicSpec(Topic.SYNC_CONTROL, "Ticks, tenant settings and operator actions."),
    TopicSpec(
        Topic.DEAD_LETTERS,
        "Messages and commands that could not be processed, with the reason.",
        reconciled=False,
    ),
)

RECONCILED_TOPICS: tuple[Topic, ...] = tuple(t.topic for t in TOPICS if t.reconciled)


def message_key(tenant: str) -> bytes:
    """The partitioning key of every message: the tenant id."""
    return tenant.encode()
