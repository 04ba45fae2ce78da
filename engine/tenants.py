"""Tenants: their configuration (master modes, flows, till endpoint, Fortnox connection), their
ingest keys (stored hashed) and their secrets (stored sealed)."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from engine.clock import utcnow
from engine.embedded.edge import Edge
from engine.secrets import Secret, SecretBox
from engine.store.db import Database
from topics.common import TenantId
from topics.outcomes import SettingsChanged, SettingsChangedData
from topics.settings import TenantSettings


class TillConnection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Where commands are POSTed (the till back office's Kassasync endpoint); none = no delivery.
    endpoint: str | None = None
    #: Sent to the till as ``Authorization: Bearer`` so it knows the call is Kassasync's.
    token: Secret | None = None
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)


class FortnoxConnection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: None: the installation's Fortnox app's (``KASSASYNC_FORTNOX_API_BASE`` /
    #: ``_AUTH_BASE``), which default to ``https://api.fortnox.se`` / ``https://apps.fortnox.se``.
    api_base: str | None = None
    auth_base: str | None = None
    topics_url: str | None = None
    #: The Fortnox app's credentials; leave both out to use the installation's app
    #: (``KASSASYNC_FORTNOX_CLIENT_ID`` / ``KASSASYNC_FORTNOX_CLIENT_SECRET``), configured once.
    client_id: str | None = None
    client_secret: Secret | None = None
    #: Service account (client credentials): Fortnox's TenantId of the company.
    fortnox_tenant_id: int | None = None
    poll_seconds: float = Field(default=30.0, gt=0)
    #: The window of the server's rate limit of 25 requests: Fortnox's is 5 s. A
    #: Fortnox-compatible server with a shorter one (the sandbox's ``--rate-window``) says so.
    rate_window_seconds: float = Field(default=5.0, gt=0)

    @classmethod
    def at(
        cls,
        base_url: str,
        credentials: Mapping[str, Any],
        *,
        poll_seconds: float = 30.0,
        feed: bool = False,
        rate_window_seconds: float = 5.0,
    ) -> FortnoxConnection:
        """A Fortnox-compatible server with the API, OAuth and (``feed``) the topics feed at
        one base URL, as the sandbox serves them; ``credentials`` of a service account:
        ``client_id``, ``client_secret``, ``tenant_id``."""
        return cls(
            api_base=base_url,
            auth_base=base_url,
            topics_url=base_url.replace("http://", "ws://", 1) + "/topics-v1" if feed else None,
            client_id=str(credentials["client_id"]),
            client_secret=str(credentials["client_secret"]),
            fortnox_tenant_id=int(credentials["tenant_id"]),
            poll_seconds=poll_seconds,
            rate_window_seconds=rate_window_seconds,
        )


class TenantConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: TenantId
    name: str = ""
    settings: TenantSettings = Field(default_factory=TenantSettings)
    till: TillConnection = Field(default_factory=TillConnection)
    fortnox: FortnoxConnection | None = None


def hash_key(key: str) -> str:
    return "sha256$" + hashlib.sha256(key.encode()).hexdigest()


def new_api_key(tenant: str) -> str:
    return f"ks_{tenant}_{secrets.token_urlsafe(24)}"


class TenantDirectory:
    def __init__(self, db: Database, box: SecretBox) -> None:
        self.db = db
        self.box = box
        self.edge = Edge(db)
        self._cache: dict[str, TenantConfig] = {}

    def _seal(self, config: TenantConfig) -> str:
        data = config.model_dump(mode="json")
        if config.till.token is not None:
            data["till"]["token"] = self.box.seal(config.till.token, f"{config.id}:till")
        if config.fortnox is not None and config.fortnox.client_secret is not None:
            data["fortnox"]["client_secret"] = self.box.seal(
                config.fortnox.client_secret, f"{config.id}:fortnox"
            )
        return json.dumps(data)

    def _open(self, text: str) -> TenantConfig:
        data = json.loads(text)
        tenant = data["id"]
        if data["till"].get("token"):
            data["till"]["token"] = self.box.open(data["till"]["token"], f"{tenant}:till").reveal()
        if data.get("fortnox") and data["fortnox"].get("client_secret"):
            data["fortnox"]["client_secret"] = self.box.open(
                data["fortnox"]["client_secret"], f"{tenant}:fortnox"
            ).reveal()
        return TenantConfig.model_validate(data)

    def upsert(self, config: TenantConfig, api_key: str | None = None) -> str | None:
        """Add or update a tenant; returns the new ingest key when one was created."""
        existing = self.db.conn.execute(
            "SELECT api_key_hash FROM tenants WHERE id = ?", (config.id,)
        ).fetchone()
        created_key: str | None = None
        if existing is None:
            created_key = api_key or new_api_key(config.id)
            key_hash = hash_key(created_key)
        else:
            key_hash = hash_key(api_key) if api_key else existing[0]
            created_key = api_key
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO tenants (id, api_key_hash, config, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET api_key_hash = excluded.api_key_hash, "
                "config = excluded.config",
                (config.id, key_hash, self._seal(config), time.time()),
            )
            self.edge.log.append(
                SettingsChanged(
                    id=f"settings-{uuid.uuid4().hex}",
                    tenant=config.id,
                    occurred_at=utcnow(),
                    source="operator",
                    data=SettingsChangedData(settings=config.settings),
                )
            )
        self._cache[config.id] = config
        return created_key

    def get(self, tenant: str) -> TenantConfig | None:
        cached = self._cache.get(tenant)
        if cached is not None:
            return cached
        row = self.db.conn.execute("SELECT config FROM tenants WHERE id = ?", (tenant,)).fetchone()
        if row is None:
            return None
        config = self._open(row[0])
        self._cache[tenant] = config
        return config

    def ids(self) -> list[str]:
        return [r[0] for r in self.db.conn.execute("SELECT id FROM tenants ORDER BY id")]

    def verify_key(self, tenant: str, key: str) -> bool:
        row = self.db.conn.execute(
            "SELECT api_key_hash FROM tenants WHERE id = ?", (tenant,)
        ).fetchone()
        # Compare even when the tenant is unknown, so timing does not tell which tenants exist.
        expected = row[0] if row else hash_key("no such tenant " + secrets.token_hex(8))
        return hmac.compare_digest(expected, hash_key(key)) and row is not None

    def rotate_key(self, tenant: str) -> str:
        key = new_api_key(tenant)
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE tenants SET api_key_hash = ? WHERE id = ?", (hash_key(key), tenant)
            )
        return key


def load_config_file(path: Path) -> list[TenantConfig]:
    """A YAML (or JSON) file with ``tenants: [...]``; secrets may be given as ``env:NAME``."""
    import os

    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    out: list[TenantConfig] = []
    for item in data.get("tenants", []):
        for section, field in (("till", "token"), ("fortnox", "client_secret")):
            value = (item.get(section) or {}).get(field)
            if isinstance(value, str) and value.startswith("env:"):
                item[section][field] = os.environ[value[4:]]
        out.append(TenantConfig.model_validate(item))
    return out
