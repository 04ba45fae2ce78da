"""What a reconciler has at hand while it handles one message."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any, TypeVar

from reconcilers.events import InternalEvent
from reconcilers.state import DIRTY, Record, Txn
from topics.commands import Command
from topics.envelope import Envelope, Model
from topics.settings import TenantSettings

C = TypeVar("C", bound=Command)

TENANT = "tenant"
#: How many message ids a record remembers per channel to recognise redeliveries.
RECENT_IDS = 8

#: Parsed settings by the digest of their JSON: a pure memo (same text, same settings), so it
#: cannot leak one store's settings into another that happens to be at the same revision.
_settings_cache: dict[str, TenantSettings] = {}
_DEFAULT_SETTINGS = TenantSettings()


def settings_digest(raw: Any) -> str:
    text = json.dumps(raw, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def command_id(cause: str, suffix: str) -> str:
    """A command id that is the same every time the same message is handled (replays too)."""
    digest = hashlib.blake2b(cause.encode(), digest_size=8).hexdigest()
    return f"{suffix[:80]}@{digest}"


class Refused(ValueError):
    """A message that contradicts what was applied before and cannot be applied: the processing
    core (``engine/core/process.py``) dead-letters it with this reason, as it does any exception
    a reconciler raises, and the state is left as it was."""


class Ctx:
    """The message being handled, the tenant's settings, and the transaction to write to."""

    __slots__ = ("_settings", "msg", "now", "raised", "tenant", "txn")

    def __init__(self, txn: Txn, msg: Envelope) -> None:
        self.txn = txn
        self.msg = msg
        self.tenant = msg.tenant
        self.now: dt.datetime = msg.occurred_at
        self._settings: TenantSettings | None = None
        #: Internal events for other flows, routed by the dispatcher after this handler.
        self.raised: list[InternalEvent] = []

    def raise_event(self, event: InternalEvent) -> None:
        self.raised.append(event)

    # -- settings -------------------------------------------------------------------------------

    @property
    def settings(self) -> TenantSettings:
        if self._settings is None:
            record = self.txn.get(TENANT, "settings")
            if record is None:
                self._settings = _DEFAULT_SETTINGS
            else:
                key = record.get("digest") or settings_digest(record["settings"])
                cached = _settings_cache.get(key)
                if cached is None:
                    cached = TenantSettings.model_validate(record["settings"])
                    if len(_settings_cache) > 10_000:
                        _settings_cache.clear()
                    _settings_cache[key] = cached
                self._settings = cached
        return self._settings

    def set_settings(self, settings: TenantSettings) -> None:
        record = self.txn.get(TENANT, "settings")
        rev = 1 if record is None else int(record["rev"]) + 1
        raw = settings.model_dump(mode="json")
        self.txn.put(
            TENANT, "settings", {"rev": rev, "settings": raw, "digest": settings_digest(raw)}
        )
        self._settings = settings

    # -- commands -------------------------------------------------------------------------------

    def command(self, cls: type[C], suffix: str, data: Model) -> C:
        """Build and emit a command caused by the current message."""
        cmd = cls.model_validate(
            {
                "id": command_id(self.msg.id, suffix),
                "tenant": self.tenant,
                "occurred_at": self.now,
                "caused_by": self.msg.id,
                "data": data,
            }
        )
        self.txn.emit(cmd)
        return cmd

    # -- flushes ---------------------------------------------------------------------------------

    def mark_dirty(self, flow: str, key: str) -> None:
        """Remember that ``flow``'s entity ``key`` must be written out at the next flush: with
        no flush window (the default) the tick the scheduler appends once this message's batch
        is committed, else the first tick after the tenant's window. Changes before that tick
        coalesce, and so do changes while a write of the entity is in flight (each flow has
        one write in flight per entity and sends what accumulated when it settles)."""
        dirty_key = f"{flow}:{key}"
        if self.txn.get(DIRTY, dirty_key) is None:
            self.txn.put(DIRTY, dirty_key, {"since": self.now.isoformat()})
        window = dt.timedelta(seconds=float(self.settings.flush_window_seconds))
        self.txn.wake(self.now + window)

    def note(self, event: str, **fields: Any) -> None:
        self.txn.note(event, tenant=self.tenant, message_id=self.msg.id, **fields)

    def warn(self, event: str, **fields: Any) -> None:
        """A note at warning: something a shop or a till vendor must look at."""
        self.txn.warn(event, tenant=self.tenant, message_id=self.msg.id, **fields)

    # -- redeliveries and stale messages --------------------------------------------------------

    def is_repeat(self, record: Record, channel: str, seq: int | None = None) -> bool:
        """True if the message being handled must not be applied to ``record`` again.

        A message is a repeat on ``channel`` when it was already applied (redelivery keeps the
        id) or when it is older than the last one applied: by ``seq`` (the tenant's one sequence
        of Fortnox reads and writes) when the message has one, else by ``occurred_at``.
        """
        if seq is not None:
            last = record.get(f"{channel}_seq")
            if last is not None and seq <= int(last):
                return True
        if self.msg.id in record.get(f"{channel}_ids", ()):
            return True
        if seq is None:
            at = record.get(f"{channel}_at")
            if at is not None and self.now < dt.datetime.fromisoformat(at):
                return True
        return False

    def stamp(self, record: Record, channel: str, seq: int | None = None) -> None:
        """Record in ``record`` that the message being handled was applied on ``channel``."""
        if seq is not None:
            last = record.get(f"{channel}_seq")
            record[f"{channel}_seq"] = seq if last is None else max(seq, int(last))
        record[f"{channel}_ids"] = [*record.get(f"{channel}_ids", ()), self.msg.id][-RECENT_IDS:]
        at = record.get(f"{channel}_at")
        if at is None or self.now > dt.datetime.fromisoformat(at):
            record[f"{channel}_at"] = self.now.isoformat()

    def report(self, key: str, record: Record) -> None:
        """Keep the latest report about ``key`` (overwritten edits, conflicts) for the dashboard."""
        self.txn.put("report", key, {"at": self.now.isoformat(), **record})
