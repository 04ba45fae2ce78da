"""Tenants: their configuration (master modes, flows, till endpoint, Fortnox connection), their
ingest keys (stored hashed) and their secrets (stored sealed)."""

from __future__ import annotations

import difflib
import hashlib
import hmac
import json
import secrets
import sqlite3
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.clock import utcnow
from engine.embedded.edge import Edge
from engine.secrets import Secret, SecretBox, SecretDecryptError
from engine.store.db import Database
from topics.common import TenantId
from topics.outcomes import SettingsChanged, SettingsChangedData
from topics.settings import TenantSettings

log = structlog.get_logger("kassasync.tenants")


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


class SettingsVersion(BaseModel):
    """One saved version of a tenant's settings (every change keeps the ones before)."""

    model_config = ConfigDict(frozen=True)

    tenant: TenantId
    version: int
    settings: TenantSettings
    #: Unix time.
    saved_at: float
    #: Who saved it: ``config`` (a configuration file), ``dashboard``, ``cli``, ``restore``...
    source: str
    note: str = ""


class TenantDirectory:
    def __init__(self, db: Database, box: SecretBox) -> None:
        self.db = db
        self.box = box
        self.edge = Edge(db)
        self._cache: dict[str, TenantConfig] = {}
        #: SQLite's data_version when the cache was last known good: another process (the CLI
        #: changing a tenant's settings on the engine's data folder) moves it on, and the cache
        #: is dropped, so the change takes effect without a restart.
        self._seen_version: int | None = None

    def _fresh_cache(self) -> None:
        version = int(self.db.conn.execute("PRAGMA data_version").fetchone()[0])
        if version != self._seen_version:
            self._cache.clear()
            self._seen_version = version

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

    def upsert(
        self,
        config: TenantConfig,
        api_key: str | None = None,
        *,
        source: str = "config",
        note: str = "",
    ) -> str | None:
        """Add or update a tenant; returns the new ingest key when one was created. Settings
        that differ from the tenant's last saved version are kept as a new version (``source``
        and ``note`` say who and why)."""
        existing = self.db.conn.execute(
            "SELECT api_key_hash, config FROM tenants WHERE id = ?", (config.id,)
        ).fetchone()
        if existing is not None:
            try:
                self._open(existing[1])
            except SecretDecryptError:
                raise ConfigError(sealed_with_another_key(config.id)) from None
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
            self._keep_version(conn, config, source, note)
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

    def _keep_version(
        self, conn: sqlite3.Connection, config: TenantConfig, source: str, note: str
    ) -> None:
        text = config.settings.model_dump_json()
        last = conn.execute(
            "SELECT version, settings FROM tenant_settings_versions WHERE tenant = ? "
            "ORDER BY version DESC LIMIT 1",
            (config.id,),
        ).fetchone()
        if last is not None and TenantSettings.model_validate_json(last[1]) == config.settings:
            return
        number = 1 if last is None else int(last[0]) + 1
        conn.execute(
            "INSERT INTO tenant_settings_versions (tenant, version, settings, saved_at, source, "
            "note) VALUES (?, ?, ?, ?, ?, ?)",
            (config.id, number, text, time.time(), source, note[:500]),
        )
        log.info("tenant.settings_version", tenant=config.id, version=number, source=source)

    def versions(self, tenant: str) -> list[SettingsVersion]:
        """The tenant's saved settings, newest first."""
        rows = self.db.conn.execute(
            "SELECT version, settings, saved_at, source, note FROM tenant_settings_versions "
            "WHERE tenant = ? ORDER BY version DESC",
            (tenant,),
        ).fetchall()
        return [
            SettingsVersion(
                tenant=tenant,
                version=int(version),
                settings=TenantSettings.model_validate_json(text),
                saved_at=float(saved_at),
                source=str(source),
                note=str(note),
            )
            for version, text, saved_at, source, note in rows
        ]

    def version(self, tenant: str, number: int) -> SettingsVersion | None:
        return next((v for v in self.versions(tenant) if v.version == number), None)

    def get(self, tenant: str) -> TenantConfig | None:
        self._fresh_cache()
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


CONFIG_DOC = "docs/configuration.md"
_TOP_LEVEL = ("tenants",)


def sealed_with_another_key(tenant: str) -> str:
    """Why a tenant is not saved when this process's key cannot open what is stored for it."""
    return (
        f"tenant {tenant} is stored sealed with another KASSASYNC_SECRET_KEY: this key cannot "
        "open its secrets, and saving it would seal them with this key, where every process "
        "that has the right key could no longer open them. Run with the key the engine uses "
        "(KASSASYNC_SECRET_KEY; during a rotation the old one in KASSASYNC_SECRET_KEY_PREVIOUS)"
    )


class ConfigError(ValueError):
    """A tenant configuration file that cannot be used: the message names the file, the tenant,
    the field and the fix, in one or two lines."""


def load_config_file(path: Path, environ: Mapping[str, str] | None = None) -> list[TenantConfig]:
    """A YAML (or JSON) file with ``tenants: [...]``; secrets may be given as ``env:NAME``.

    Every tenant is checked before any is returned: a mistake is a :class:`ConfigError`."""
    import os

    env = os.environ if environ is None else environ
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{name}: no such file") from None
    except (OSError, UnicodeDecodeError) as unreadable:
        raise ConfigError(f"{name}: cannot read it ({unreadable})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as bad:
        raise ConfigError(_yaml_problem(name, bad)) from None
    if data is None:
        raise ConfigError(
            f"{name}: the file is empty\n  fix: start it with `tenants:` and list the tenants "
            f"below it (see {CONFIG_DOC})"
        )
    if not isinstance(data, dict):
        raise ConfigError(
            f"{name}: the file holds a {_kind(data)}, not `tenants: [...]`\n"
            f"  fix: start it with `tenants:` and list the tenants below it (see {CONFIG_DOC})"
        )
    unknown = [str(k) for k in data if k not in _TOP_LEVEL]
    if unknown:
        raise ConfigError(
            f"{name}: unknown top-level key {unknown[0]!r}\n  fix: "
            + _suggest(unknown[0], _TOP_LEVEL, "the file's only key is `tenants:`")
        )
    items = data.get("tenants")
    if not isinstance(items, list) or not items:
        raise ConfigError(
            f"{name}: `tenants:` must be a list with at least one tenant (found "
            f"{_kind(items)})\n  fix: one `- id: shop-1` entry per tenant (see {CONFIG_DOC})"
        )
    out: list[TenantConfig] = []
    seen: set[str] = set()
    for number, item in enumerate(items, start=1):
        tenant = _tenant_label(item, number)
        if not isinstance(item, dict):
            raise ConfigError(
                f"{name}: {tenant} is a {_kind(item)}, not a mapping\n"
                f"  fix: write it as `- id: shop-1` with its settings indented below"
            )
        for section, field in (("till", "token"), ("fortnox", "client_secret")):
            part = item.get(section)
            value = part.get(field) if isinstance(part, dict) else None
            if isinstance(part, dict) and isinstance(value, str) and value.startswith("env:"):
                variable = value[4:]
                if not env.get(variable):
                    raise ConfigError(
                        f"{name}: {tenant}, field {section}.{field}: the environment variable "
                        f"{variable} is not set\n  fix: export {variable} before running "
                        f"the command (or write the value instead of env:{variable})"
                    )
                part[field] = env[variable]
        try:
            config = TenantConfig.model_validate(item)
        except ValidationError as invalid:
            raise ConfigError(_validation_problem(name, tenant, invalid)) from None
        if config.id in seen:
            raise ConfigError(f"{name}: {tenant} appears twice\n  fix: give each tenant its own id")
        seen.add(config.id)
        out.append(config)
    return out


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return f"{type(value).__name__} {value!r}"


def _tenant_label(item: object, number: int) -> str:
    if isinstance(item, dict) and isinstance(item.get("id"), str | int):
        return f"tenant {str(item['id'])!r}"
    return f"tenant #{number}"


def _yaml_problem(name: str, bad: yaml.YAMLError) -> str:
    mark = getattr(bad, "problem_mark", None)
    where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(bad, "problem", None) or str(bad).splitlines()[0]
    return (
        f"{name}{where}: not valid YAML ({problem})\n  fix: check the indentation (spaces, "
        "not tabs) and the colons around that line"
    )


def _suggest(key: str, known: Sequence[str], otherwise: str) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return otherwise


def _model_at(loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The model whose fields the location ``loc`` (of a TenantConfig error) names."""
    model: type[BaseModel] = TenantConfig
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        inner = _model_in(field.annotation)
        if inner is None:
            return None
        model = inner
    return model


def _model_in(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _validation_problem(name: str, tenant: str, invalid: ValidationError) -> str:
    errors = invalid.errors()
    first = errors[0]
    loc = [p for p in first["loc"]]
    field = ".".join(str(p) for p in loc) or "(the tenant)"
    kind = first["type"]
    message = str(first["msg"]).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        key = str(loc[-1])
        parent = _model_at(loc[:-1])
        known = sorted(parent.model_fields) if parent is not None else []
        where = ".".join(str(p) for p in loc[:-1])
        problem = f"unknown key {key!r}" + (f" in {where}" if where else "")
        fix = _suggest(key, known, f"the keys here are: {', '.join(known)}")
    elif kind == "missing":
        problem = f"field {field} is missing"
        section = ".".join(str(p) for p in loc[:-1])
        fix = f"add `{loc[-1]}: ...`" + (f" under `{section}:`" if section else " to the tenant")
    elif kind in ("enum", "literal_error"):
        problem = f"field {field}: {first.get('input')!r} is not allowed"
        fix = f"write {first.get('ctx', {}).get('expected', 'one of the documented values')}"
    else:
        got = first.get("input")
        shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
        problem = f"field {field}: {message}{shown}"
        fix = f"see {CONFIG_DOC} for what {field} takes"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{name}: {tenant}, {problem}{more}\n  fix: {fix}"
