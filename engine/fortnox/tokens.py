"""Tokens, app credentials, and where they are kept.

:class:`TokenStore` is the protocol the auth code needs: tokens per tenant, the app's client
secret, and a *refresh lease* so that only one process at a time refreshes a tenant's tokens.
:class:`SqliteTokenStore` implements it on one SQLite file shared by every worker process on a
host: tokens and client secrets are sealed with :mod:`engine.secrets`, and the lease is a row
(owner, expiry) changed only inside ``BEGIN IMMEDIATE`` transactions, so two processes can never
both believe they hold it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from engine.secrets import Secret, SecretBox


class GrantKind(StrEnum):
    AUTHORIZATION_CODE = "authorization_code"  # user consent; single-use rotating refresh token
    SERVICE = "service"  # service account; new tokens by client credentials + TenantId


class Ended(StrEnum):
    """Why a tenant's Fortnox login stopped working (shown to the operator differently)."""

    EXPIRED = "expired"  # the refresh token lapsed: not used for 45 days
    REVOKED = "revoked"  # Fortnox refused a younger refresh token, or a service account


#: Fortnox's refresh tokens live 45 days from when they were issued (and are single-use).
REFRESH_TOKEN_SECONDS = 45 * 24 * 3600.0


class AppCredentials(BaseModel):
    """A Fortnox app (integration): client id and client secret."""

    model_config = ConfigDict(frozen=True)

    client_id: str
    client_secret: Secret


class TokenSet(BaseModel):
    """A tenant's tokens. The ``repr`` shows no token values."""

    model_config = ConfigDict(frozen=True)

    client_id: str
    access_token: Secret
    refresh_token: Secret | None = None
    expires_at: float
    scope: str = ""
    kind: GrantKind = GrantKind.AUTHORIZATION_CODE
    fortnox_tenant_id: int | None = None
    login_expired: bool = False
    #: When these tokens were issued (the refresh token's 45 days run from then); 0 = unknown.
    issued_at: float = 0.0
    #: Why the login stopped working, once ``login_expired`` is set.
    ended: Ended | None = None

    def expires_within(self, seconds: float, now: float) -> bool:
        return self.expires_at - seconds <= now

    def refresh_expires_at(self) -> float | None:
        """When the refresh token lapses (None: a service account, or no refresh token)."""
        if self.kind is GrantKind.SERVICE or self.refresh_token is None or not self.issued_at:
            return None
        return self.issued_at + REFRESH_TOKEN_SECONDS


def jwt_claims(token: Secret | str) -> dict[str, Any]:
    """The claims of a JWT, read without verifying the signature (Fortnox's key is private)."""
    raw = token.reveal() if isinstance(token, Secret) else token
    parts = raw.split(".")
    if len(parts) != 3:
        return {}
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def tenant_id_from_token(token: Secret | str) -> int | None:
    value = jwt_claims(token).get("tenantId")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


class TokenStore(Protocol):
    async def load(self, tenant: str) -> TokenSet | None: ...

    async def save(self, tenant: str, tokens: TokenSet) -> None: ...

    async def delete(self, tenant: str) -> None: ...

    async def tenants(self) -> list[str]: ...

    async def mark_login_expired(
        self, tenant: str, refresh_token: Secret | None, ended: Ended = Ended.EXPIRED
    ) -> bool:
        """Flag the tenant as needing a new consent, unless its tokens changed meanwhile.

        Returns False when the stored refresh token is no longer ``refresh_token`` (another
        process rotated it, so the login is not expired after all).
        """
        ...

    async def acquire_lease(self, tenant: str, owner: str, ttl: float) -> bool:
        """Take (or extend) the tenant's refresh lease; False if someone else holds it."""
        ...

    async def release_lease(self, tenant: str, owner: str) -> None: ...

    async def save_app(self, app: AppCredentials) -> None: ...

    async def load_app(self, client_id: str) -> AppCredentials | None: ...

    async def set_deactivated(self, tenant: str, deactivated: bool) -> None:
        """Record that the operator deactivated (or activated again) the tenant's connection."""
        ...

    async def deactivated(self, tenant: str) -> bool: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS fortnox_apps (
    client_id TEXT PRIMARY KEY,
    client_secret TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS fortnox_tokens (
    tenant TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    access_token TEXT NOT NULL,
    refresh_token TEXT,
    expires_at REAL NOT NULL,
    scope TEXT NOT NULL DEFAULT '',
    fortnox_tenant_id INTEGER,
    login_expired INTEGER NOT NULL DEFAULT 0,
    generation INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS fortnox_deactivated (
    tenant TEXT PRIMARY KEY,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS fortnox_refresh_leases (
    tenant TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at REAL NOT NULL
);
"""


class SqliteTokenStore:
    """:class:`TokenStore` on a SQLite file (safe to share between processes on one host)."""

    def __init__(
        self,
        path: str | Path,
        box: SecretBox | None = None,
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout: float = 30.0,
    ) -> None:
        self.path = str(path)
        self._box = box or SecretBox.from_env()
        self._clock = clock
        self._busy_timeout = busy_timeout
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            columns = {r[1] for r in db.execute("PRAGMA table_info(fortnox_tokens)")}
            for column, kind in (("issued_at", "REAL NOT NULL DEFAULT 0"), ("ended", "TEXT")):
                if column not in columns:  # a store written before these columns existed
                    db.execute(f"ALTER TABLE fortnox_tokens ADD COLUMN {column} {kind}")

    def __repr__(self) -> str:
        return f"SqliteTokenStore({self.path!r})"

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None)
        db.row_factory = sqlite3.Row
        return db

    @contextmanager
    def _immediate(self) -> Iterator[sqlite3.Connection]:
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    # --- tokens -----------------------------------------------------------------------------

    def _load(self, tenant: str) -> TokenSet | None:
        db = self._connect()
        try:
            row = db.execute("SELECT * FROM fortnox_tokens WHERE tenant = ?", (tenant,)).fetchone()
        finally:
            db.close()
        if row is None:
            return None
        refresh = row["refresh_token"]
        return TokenSet(
            client_id=row["client_id"],
            kind=GrantKind(row["kind"]),
            access_token=self._box.open(row["access_token"], f"{tenant}:access_token"),
            refresh_token=(self._box.open(refresh, f"{tenant}:refresh_token") if refresh else None),
            expires_at=row["expires_at"],
            scope=row["scope"],
            fortnox_tenant_id=row["fortnox_tenant_id"],
            login_expired=bool(row["login_expired"]),
            issued_at=row["issued_at"],
            ended=Ended(row["ended"]) if row["ended"] else None,
        )

    def _save(self, tenant: str, tokens: TokenSet) -> None:
        sealed_access = self._box.seal(tokens.access_token, f"{tenant}:access_token")
        sealed_refresh = (
            self._box.seal(tokens.refresh_token, f"{tenant}:refresh_token")
            if tokens.refresh_token
            else None
        )
        with self._immediate() as db:
            db.execute(
                """
                INSERT INTO fortnox_tokens (tenant, client_id, kind, access_token, refresh_token,
                    expires_at, scope, fortnox_tenant_id, login_expired, generation, updated_at,
                    issued_at, ended)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)
                ON CONFLICT(tenant) DO UPDATE SET
                    client_id = excluded.client_id, kind = excluded.kind,
                    access_token = excluded.access_token, refresh_token = excluded.refresh_token,
                    expires_at = excluded.expires_at, scope = excluded.scope,
                    fortnox_tenant_id = excluded.fortnox_tenant_id,
                    login_expired = excluded.login_expired,
                    generation = fortnox_tokens.generation + 1,
                    updated_at = excluded.updated_at, issued_at = excluded.issued_at,
                    ended = excluded.ended
                """,
                (
                    tenant,
                    tokens.client_id,
                    tokens.kind.value,
                    sealed_access,
                    sealed_refresh,
                    tokens.expires_at,
                    tokens.scope,
                    tokens.fortnox_tenant_id,
                    int(tokens.login_expired),
                    self._clock(),
                    tokens.issued_at,
                    tokens.ended.value if tokens.ended else None,
                ),
            )

    def _mark_login_expired(self, tenant: str, refresh_token: Secret | None, ended: Ended) -> bool:
        with self._immediate() as db:
            row = db.execute(
                "SELECT refresh_token FROM fortnox_tokens WHERE tenant = ?", (tenant,)
            ).fetchone()
            if row is None:
                return True
            stored = row["refresh_token"]
            current = self._box.open(stored, f"{tenant}:refresh_token") if stored else None
            if current != refresh_token:
                return False
            db.execute(
                "UPDATE fortnox_tokens SET login_expired = 1, ended = ? WHERE tenant = ?",
                (ended.value, tenant),
            )
            return True

    async def load(self, tenant: str) -> TokenSet | None:
        return await asyncio.to_thread(self._load, tenant)

    async def save(self, tenant: str, tokens: TokenSet) -> None:
        await asyncio.to_thread(self._save, tenant, tokens)

    async def mark_login_expired(
        self, tenant: str, refresh_token: Secret | None, ended: Ended = Ended.EXPIRED
    ) -> bool:
        return await asyncio.to_thread(self._mark_login_expired, tenant, refresh_token, ended)

    async def delete(self, tenant: str) -> None:
        def _delete() -> None:
            with self._immediate() as db:
                db.execute("DELETE FROM fortnox_tokens WHERE tenant = ?", (tenant,))
                db.execute("DELETE FROM fortnox_refresh_leases WHERE tenant = ?", (tenant,))

        await asyncio.to_thread(_delete)

    async def tenants(self) -> list[str]:
        def _tenants() -> list[str]:
            db = self._connect()
            try:
                rows = db.execute("SELECT tenant FROM fortnox_tokens ORDER BY tenant").fetchall()
            finally:
                db.close()
            return [r["tenant"] for r in rows]

        return await asyncio.to_thread(_tenants)

    # --- the refresh lease ----------------------------------------------------------------

    def _acquire_lease(self, tenant: str, owner: str, ttl: float) -> bool:
        now = self._clock()
        with self._immediate() as db:
            row = db.execute(
                "SELECT owner, expires_at FROM fortnox_refresh_leases WHERE tenant = ?", (tenant,)
            ).fetchone()
            if row is not None and row["owner"] != owner and row["expires_at"] > now:
                return False
            db.execute(
                """
                INSERT INTO fortnox_refresh_leases (tenant, owner, expires_at) VALUES (?, ?, ?)
                ON CONFLICT(tenant) DO UPDATE SET owner = excluded.owner,
                    expires_at = excluded.expires_at
                """,
                (tenant, owner, now + ttl),
            )
            return True

    def _release_lease(self, tenant: str, owner: str) -> None:
        with self._immediate() as db:
            db.execute(
                "DELETE FROM fortnox_refresh_leases WHERE tenant = ? AND owner = ?",
                (tenant, owner),
            )

    async def acquire_lease(self, tenant: str, owner: str, ttl: float) -> bool:
        return await asyncio.to_thread(self._acquire_lease, tenant, owner, ttl)

    async def release_lease(self, tenant: str, owner: str) -> None:
        await asyncio.to_thread(self._release_lease, tenant, owner)

    # --- app credentials --------------------------------------------------------------------

    async def save_app(self, app: AppCredentials) -> None:
        sealed = self._box.seal(app.client_secret, f"app:{app.client_id}")

        def _save() -> None:
            with self._immediate() as db:
                db.execute(
                    """
                    INSERT INTO fortnox_apps (client_id, client_secret, updated_at)
                    VALUES (?, ?, ?)
                    ON CONFLICT(client_id) DO UPDATE SET client_secret = excluded.client_secret,
                        updated_at = excluded.updated_at
                    """,
                    (app.client_id, sealed, self._clock()),
                )

        await asyncio.to_thread(_save)

    async def load_app(self, client_id: str) -> AppCredentials | None:
        def _load() -> AppCredentials | None:
            db = self._connect()
            try:
                row = db.execute(
                    "SELECT client_secret FROM fortnox_apps WHERE client_id = ?", (client_id,)
                ).fetchone()
            finally:
                db.close()
            if row is None:
                return None
            secret = self._box.open(row["client_secret"], f"app:{client_id}")
            return AppCredentials(client_id=client_id, client_secret=secret)

        return await asyncio.to_thread(_load)

    # --- deactivation ---------------------------------------------------------------------

    async def set_deactivated(self, tenant: str, deactivated: bool) -> None:
        def _set() -> None:
            with self._immediate() as db:
                if deactivated:
                    db.execute(
                        "INSERT OR REPLACE INTO fortnox_deactivated (tenant, at) VALUES (?, ?)",
                        (tenant, self._clock()),
                    )
                else:
                    db.execute("DELETE FROM fortnox_deactivated WHERE tenant = ?", (tenant,))

        await asyncio.to_thread(_set)

    async def deactivated(self, tenant: str) -> bool:
        def _get() -> bool:
            db = self._connect()
            try:
                row = db.execute(
                    "SELECT 1 FROM fortnox_deactivated WHERE tenant = ?", (tenant,)
                ).fetchone()
            finally:
                db.close()
            return row is not None

        return await asyncio.to_thread(_get)


class MemoryTokenStore:
    """In-process :class:`TokenStore` (tests, single-process tools). Same semantics as SQLite."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._tokens: dict[str, TokenSet] = {}
        self._leases: dict[str, tuple[str, float]] = {}
        self._apps: dict[str, AppCredentials] = {}
        self._deactivated: set[str] = set()
        self._clock = clock
        self.saves: list[tuple[str, TokenSet]] = []

    async def load(self, tenant: str) -> TokenSet | None:
        return self._tokens.get(tenant)

    async def save(self, tenant: str, tokens: TokenSet) -> None:
        self._tokens[tenant] = tokens
        self.saves.append((tenant, tokens))

    async def delete(self, tenant: str) -> None:
        self._tokens.pop(tenant, None)
        self._leases.pop(tenant, None)

    async def tenants(self) -> list[str]:
        return sorted(self._tokens)

    async def mark_login_expired(
        self, tenant: str, refresh_token: Secret | None, ended: Ended = Ended.EXPIRED
    ) -> bool:
        current = self._tokens.get(tenant)
        if current is None:
            return True
        if current.refresh_token != refresh_token:
            return False
        self._tokens[tenant] = current.model_copy(update={"login_expired": True, "ended": ended})
        return True

    async def acquire_lease(self, tenant: str, owner: str, ttl: float) -> bool:
        now = self._clock()
        held = self._leases.get(tenant)
        if held is not None and held[0] != owner and held[1] > now:
            return False
        self._leases[tenant] = (owner, now + ttl)
        return True

    async def release_lease(self, tenant: str, owner: str) -> None:
        if self._leases.get(tenant, ("", 0.0))[0] == owner:
            del self._leases[tenant]

    async def save_app(self, app: AppCredentials) -> None:
        self._apps[app.client_id] = app

    async def load_app(self, client_id: str) -> AppCredentials | None:
        return self._apps.get(client_id)

    async def set_deactivated(self, tenant: str, deactivated: bool) -> None:
        if deactivated:
            self._deactivated.add(tenant)
        else:
            self._deactivated.discard(tenant)

    async def deactivated(self, tenant: str) -> bool:
        return tenant in self._deactivated
