"""Operations: a read model over the sync state and the operator's actions.

What the dashboard, ``/metrics`` and the ``kassasync`` ops commands show comes from here, and so
do the actions an operator takes (resume or pause a tenant, retry or discard a dead letter).

Two protocols keep it runtime-agnostic:

* :class:`OpsStore` reads the state records, poll cursors, outbox and dead letters, and performs
  the few writes an action needs (append a control message, requeue or discard an outbox
  command, mark a dead letter). :class:`SqliteOpsStore` implements it over the embedded
  runtime's database; the Kafka runtime implements it over its tables and topics.
* :class:`RuntimeProbe` reports what only a running runtime knows: consumer lag (per partition
  when it has partitions), throughput, worker assignment and the Fortnox request budget.

:class:`Ops` derives everything else (status lights, drift, the pages' views) the same way for
both, as plain functions of what those two report.

Modules: ``errors``, ``records``, ``documents``, ``flows``, ``ports``, ``status``,
``sqlite``, ``probe``, ``progress``, ``service``."""

from __future__ import annotations

from engine.ops.documents import DocKind, DocumentStatus, Phase
from engine.ops.errors import Conflict, NotFound, OpsError
from engine.ops.flows import (
    AMBER_PENDING_SECONDS,
    COMMAND_TOPICS,
    COUNTED_KINDS,
    FLOW_TITLES,
    FLOWS,
    POLLED_BY,
    RED_PENDING_SECONDS,
    RETRY_FLOWS,
    STALE_POLL_SECONDS,
    flow_of,
    topic_of,
)
from engine.ops.ports import OpsStore, RuntimeProbe
from engine.ops.probe import EmbeddedProbe, Throughput
from engine.ops.progress import ProgressHandle, progress
from engine.ops.records import (
    ActionResult,
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
from engine.ops.service import Ops
from engine.ops.sqlite import SqliteOpsStore
from engine.ops.status import (
    LIGHT_FILTERS,
    DeadLetterPage,
    DeadLetterView,
    FlowFacts,
    FlowStatus,
    Light,
    OverviewPage,
    SystemView,
    TenantDetail,
    TenantSummary,
    age_text,
    judge_flow,
    money,
    worst,
)

__all__ = [
    "AMBER_PENDING_SECONDS",
    "COMMAND_TOPICS",
    "COUNTED_KINDS",
    "FLOWS",
    "FLOW_TITLES",
    "LIGHT_FILTERS",
    "POLLED_BY",
    "RED_PENDING_SECONDS",
    "RETRY_FLOWS",
    "STALE_POLL_SECONDS",
    "ActionResult",
    "Budget",
    "Conflict",
    "Cursor",
    "DeadLetterPage",
    "DeadLetterRow",
    "DeadLetterView",
    "DocKind",
    "DocumentStatus",
    "Drift",
    "EmbeddedProbe",
    "FlowFacts",
    "FlowStatus",
    "Light",
    "NotFound",
    "Ops",
    "OpsError",
    "OpsStore",
    "OverviewPage",
    "PendingCommand",
    "PendingGroup",
    "Phase",
    "ProgressHandle",
    "RuntimeProbe",
    "SqliteOpsStore",
    "SystemView",
    "TenantDetail",
    "TenantRef",
    "TenantSummary",
    "Throughput",
    "TopicLag",
    "WorkerAssignment",
    "age_text",
    "flow_of",
    "judge_flow",
    "money",
    "progress",
    "topic_of",
    "worst",
]
