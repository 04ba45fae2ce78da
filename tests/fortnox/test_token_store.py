from __future__ import annotations

import sqlite3
from pathlib import Path

from engine.fortnox.tokens import AppCredentials, SqliteTokenStore, TokenSet
from engine.secrets import Secret, SecretBox


def tokens(n: int) -> TokenSet:
    return TokenSet(
        client_id="c",
        access_token=Secret(f"access-{n}"),
        refresh_token=Secret(f"refresh-{n}"),
        expires_at=100.0 + n,
        fortnox_tenant_id=7,
    )


async def test_tokens_are_encrypted_at_rest(tmp_path: Path, box: SecretBox) -> None:
    path = tmp_path / "t.sqlite"
    store = SqliteTokenStore(path, box)
    await store.save("shop-1", tokens(1))
    await store.save_app(AppCredentials(client_id="c", client_secret=Secret("cs-value")))
    # Every byte on disk: the database and, if SQLite has not checkpointed it away, its WAL.
    wal = tmp_path / "t.sqlite-wal"
    raw = path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    for value in (b"access-1", b"refresh-1", b"cs-value"):
        assert value not in raw
    loaded = await store.load("shop-1")
    assert loaded == tokens(1)
    app = await store.load_app("c")
    assert app is not None and app.client_secret.reveal() == "cs-value"
    assert await store.tenants() == ["shop-1"]


async def test_ciphertext_moved_to_another_tenant_does_not_open(
    tmp_path: Path, box: SecretBox
) -> None:
    path = tmp_path / "t.sqlite"
    store = SqliteTokenStore(path, box)
    await store.save("a", tokens(1))
    await store.save("b", tokens(2))
    db = sqlite3.connect(path)
    db.execute(
        "UPDATE fortnox_tokens SET access_token = "
        "(SELECT access_token FROM fortnox_tokens WHERE tenant = 'a') WHERE tenant = 'b'"
    )
    db.commit()
    db.close()
    try:
        await store.load("b")
    except ValueError as exc:
        assert "access" not in str(exc)
    else:
        raise AssertionError("a swapped ciphertext must not open")


async def test_lease_excludes_others_until_released_or_expired(
    tmp_path: Path, box: SecretBox
) -> None:
    now = [1000.0]
    store = SqliteTokenStore(tmp_path / "t.sqlite", box, clock=lambda: now[0])
    other = SqliteTokenStore(tmp_path / "t.sqlite", box, clock=lambda: now[0])
    assert await store.acquire_lease("shop-1", "p1", ttl=30)
    assert not await other.acquire_lease("shop-1", "p2", ttl=30)
    assert await other.acquire_lease("shop-2", "p2", ttl=30)
    assert await store.acquire_lease("shop-1", "p1", ttl=30)  # re-entrant / extend
    await other.release_lease("shop-1", "p2")  # not the owner: no effect
    assert not await other.acquire_lease("shop-1", "p2", ttl=30)
    now[0] += 31
    assert await other.acquire_lease("shop-1", "p2", ttl=30)
    await other.release_lease("shop-1", "p2")
    assert await store.acquire_lease("shop-1", "p1", ttl=30)


async def test_mark_login_expired_only_if_unchanged(tmp_path: Path, box: SecretBox) -> None:
    store = SqliteTokenStore(tmp_path / "t.sqlite", box)
    await store.save("shop-1", tokens(1))
    await store.save("shop-1", tokens(2))
    assert not await store.mark_login_expired("shop-1", Secret("refresh-1"))
    loaded = await store.load("shop-1")
    assert loaded is not None and not loaded.login_expired
    assert await store.mark_login_expired("shop-1", Secret("refresh-2"))
    loaded = await store.load("shop-1")
    assert loaded is not None and loaded.login_expired
    await store.save("shop-1", tokens(3))  # reconnect clears the flag
    loaded = await store.load("shop-1")
    assert loaded is not None and not loaded.login_expired
