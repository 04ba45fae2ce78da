"""Deleting what the engine holds about one tenant (the operator's choice when deactivating).

The tenant's row in ``tenants`` (its configuration and ingest key) and its settings' saved
versions stay, so the shop can be
activated again; everything synced, queued or remembered about it goes: its messages on every
topic (except a topic's single newest message, whose offset must not be reused), its state
records, outbox commands, dead letters, de-duplication memory, Fortnox cursors and wake-up
times.
"""

from __future__ import annotations

import structlog

from engine.store.db import Database

log = structlog.get_logger("kassasync.tenant_data")

#: Tables keyed by tenant besides the topics' tables (``tenants`` and its settings' versions,
#: ``tenant_settings_versions``, are kept on purpose).
_TABLES = (
    "state",
    "outbox",
    "dead_letters",
    "ingest_seen",
    "wake",
    "fx_cursor",
    "fx_seen",
    "fx_seq",
)


def delete_tenant_data(db: Database, tenant: str) -> dict[str, int]:
    """Delete the tenant's data in one transaction; returns rows deleted per table."""
    topic_tables = [
        row[0]
        for row in db.conn.execute(
            "SELECT m.name FROM sqlite_master m WHERE m.type = 'table' AND m.name NOT IN "
            "(SELECT value FROM json_each(?)) AND m.name NOT IN "
            "('tenants', 'tenant_settings_versions') AND EXISTS "
            "(SELECT 1 FROM pragma_table_info(m.name) WHERE name = 'tenant')",
            ('["' + '","'.join(_TABLES) + '"]',),
        )
    ]
    deleted: dict[str, int] = {}
    with db.transaction() as conn:
        for table in _TABLES:
            cursor = conn.execute(f'DELETE FROM "{table}" WHERE tenant = ?', (tenant,))
            if cursor.rowcount:
                deleted[table] = cursor.rowcount
        for table in topic_tables:
            # A topic's offsets are its row ids: deleting its newest row would hand that offset
            # to the next message, which consumers past it would never read. So the newest
            # row stays (even if it is this tenant's); everything before it goes.
            cursor = conn.execute(
                f'DELETE FROM "{table}" WHERE tenant = ? AND "offset" < '
                f'(SELECT MAX("offset") FROM "{table}")',
                (tenant,),
            )
            if cursor.rowcount:
                deleted[table] = cursor.rowcount
    log.warning("tenant.data_deleted", tenant=tenant, rows=sum(deleted.values()))
    return deleted
