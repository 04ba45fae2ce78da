"""A separate OS process that refreshes a tenant's tokens (used by the cross-process race test).

Usage: python -m tests.fortnox.refresh_worker BASE_URL DB_PATH CLIENT_ID CLIENT_SECRET OWNER
It reads the stored tokens, writes DB_PATH.ready-OWNER, waits for DB_PATH.go, then asks for
a refresh of the token Fortnox rejected, and prints the SHA-256 of the access token it got.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import time

from engine.fortnox.auth import OAuthClient, TokenManager
from engine.fortnox.tokens import AppCredentials, SqliteTokenStore
from engine.secrets import Secret


async def main(base_url: str, db: str, client_id: str, secret: str, owner: str) -> None:
    store = SqliteTokenStore(db)
    app = AppCredentials(client_id=client_id, client_secret=Secret(secret))
    manager = TokenManager(store, OAuthClient(app, base_url=base_url), owner=owner, lease_poll=0.01)
    current = await store.load("shop-1")
    assert current is not None
    with open(f"{db}.ready-{owner}", "w") as ready:
        ready.write("ready")
    while not os.path.exists(db + ".go"):
        time.sleep(0.005)
    token = await manager.refresh("shop-1", rejected=current.access_token)
    print(hashlib.sha256(token.reveal().encode()).hexdigest(), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
