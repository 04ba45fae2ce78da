"""What a reconciler has at hand while it handles one message."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any, TypeVar

from reconcilers.state import Record, Txn
from topics.commands import Command
from topics.envelope import Envelope, Model
from topics.settings import TenantSettings

C = TypeVar("C", bound=Command)

TENANT = "tenant"
DIRTY = "dirty"

_settings_cache: dict[tuple[str, int], TenantSettings] = {}
_DEFAULT_SETTINGS = TenantSettings()


def command_id(cause: str, suffix: str) -> str:
    """A command id that is the same every time the same message is handled (replays too)."""
    digest = hashlib.blake2b(cause.encode(), digest_size=8).hexdigest()
    return f"{suffix[:80]}@{digest}"


class Ctx:
    """The message being handled, the tenant's settings, and the transaction to write to."""

    __slots__ = ("_settings", "msg", "now", "tenant", "txn")

    def __init__(self, txn: Txn, msg: Envelope) -> None:
        self.txn = txn
        self.msg = msg
        self.tenant = msg.tenant
        self.now: dt.datetime = msg.occurred_at
        self._settings: TenantSettings | None = None

    # -- settings -------------------------------------------------------------------------------

    @property
    def settings(self) -> TenantSettings:
        if self._settings is None:
            record = self.txn.get(TENANT, "settings")
            if record is None:
                self._settings = _DEFAULT_SETTINGS
            else:
                key = (self.tenant, int(record["rev"]))
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
        self.txn.put(TENANT, "settings", {"rev": rev, "settings": settings.model_dump(mode="json")})
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

    # -- flush windows --------------------------------------------------------------------------

    def mark_dirty(self, flow: str, key: str) -> None:
        """Remember that ``flow``'s entity ``key`` must be written out at the next flush."""
        dirty_key = f"{flow}:{key}"
        if self.txn.get(DIRTY, dirty_key) is None:
            self.txn.put(DIRTY, dirty_key, {"since": self.now.isoformat()})
        window = dt.timedelta(seconds=float(self.settings.flush_window_seconds))
        self.txn.wake(self.now + window)

    def note(self, event: str, **fields: Any) -> None:
        self.txn.note(event, tenant=self.tenant, message_id=self.msg.id, **fields)

    def report(self, key: str, record: Record) -> None:
        """Keep the latest report about ``key`` (overwritten edits, conflicts) for the dashboard."""
        self.txn.put("report", key, {"at": self.now.isoformat(), **record})
