"""Recording a realistic log: generated inputs, processed live, with every command's outcome
appended as instant executors would append it.

A real log holds more than the till's and Fortnox's messages: every command the reconcilers
emit comes back as ``sync.outcome`` (and a stock write in Fortnox also as
``fortnox.stock.written``). Without them entities stay in flight and every tick re-flushes the
whole dirty set, which is not what a replay of a real log does. ``record`` runs the processor over
the inputs and, after each batch, settles every command the batch emitted: DONE, with the result
the executor would report, in the order emitted.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from engine.embedded.processor import Processor
from engine.store.db import Database, log_table
from topics import registry
from topics.envelope import Envelope
from topics.fortnox import FortnoxStockWritten, StockWrittenData
from topics.names import RECONCILED_TOPICS, Topic
from topics.outcomes import OutcomeData, OutcomeStatus, SyncOutcome, Target, Tick

RESULTS: dict[str, dict[str, str]] = {
    "fortnox.voucher.create": {"series": "F", "number": "1", "year": "2"},
}


def _result(command: dict[str, Any], counter: int) -> dict[str, str]:
    ctype = command["type"]
    if ctype == "fortnox.customer.create":
        return {"customer_number": str(command["data"]["customer_number"])}
    if ctype == "fortnox.order.create":
        return {"document_number": str(counter), "already": "false"}
    if ctype == "fortnox.voucher.create":
        return {"series": "F", "number": str(counter), "year": "2"}
    return {}


def settle_pending(db: Database, processor: Processor, seq_fx: dict[str, int]) -> int:
    """Append the outcomes (and stock facts) of every command queued since the last call (all
    of them are pending: earlier ones were settled); returns how many."""
    after = seq_fx.get("", 0)
    rows = db.conn.execute(
        "SELECT seq, command_id, tenant, target, type, payload, created_at FROM outbox "
        "WHERE seq > ? AND status = 'pending' ORDER BY seq",
        (after,),
    ).fetchall()
    if not rows:
        return 0
    seq_fx[""] = int(rows[-1][0])
    messages: list[Envelope] = []
    for seq, command_id, tenant, target, ctype, payload, _created in rows:
        command = json.loads(payload)
        at = dt.datetime.fromisoformat(command["occurred_at"].replace("Z", "+00:00"))
        at += dt.timedelta(milliseconds=50)
        if ctype == "fortnox.stock.apply":
            number = command["data"]["article_number"]
            level = processor.store.get(tenant, "stock", number) or {}
            read = Decimal(str(level.get("fx", "0")))
            delta = Decimal(str(command["data"]["delta"]))
            seq_fx[tenant] = seq_fx.get(tenant, 10**9) + 1
            messages.append(
                FortnoxStockWritten(
                    id=f"written-{command_id}",
                    tenant=tenant,
                    occurred_at=at,
                    data=StockWrittenData(
                        article_number=number,
                        command_id=command_id,
                        read=read,
                        written=read + delta,
                        seq=seq_fx[tenant],
                    ),
                )
            )
        messages.append(
            SyncOutcome(
                id=f"outcome-{command_id}-1",
                tenant=tenant,
                occurred_at=at,
                data=OutcomeData(
                    command_id=command_id,
                    command_type=ctype,
                    target=Target(target),
                    status=OutcomeStatus.DONE,
                    attempt=1,
                    result=_result(command, int(seq)),
                ),
            )
        )
    with db.transaction() as conn:
        for message in messages:
            processor.log.append_raw(Topic(str(message.TOPIC)), message, registry.dump(message))
        conn.executemany(
            "UPDATE outbox SET status = 'done', attempts = 1 WHERE seq = ?",
            [(r[0],) for r in rows],
        )
    return len(rows)


def tick_due(db: Database, processor: Processor, counts: dict[str, int]) -> int:
    """What the tick scheduler does once time has reached every wake-up: a tick per tenant."""
    rows = db.conn.execute("SELECT tenant, at FROM wake").fetchall()
    if not rows:
        return 0
    with db.transaction() as conn:
        for tenant, at in rows:
            counts["ticks"] = counts.get("ticks", 0) + 1
            tick = Tick(
                id=f"tick-{tenant}-{counts['ticks']}",
                tenant=tenant,
                occurred_at=dt.datetime.fromisoformat(at) + dt.timedelta(milliseconds=1),
            )
            processor.log.append_raw(Topic.SYNC_CONTROL, tick, registry.dump(tick))
            conn.execute("DELETE FROM wake WHERE tenant = ? AND at <= ?", (tenant, at))
    return len(rows)


def record(
    db: Database, append: Any, inputs: Iterable[tuple[str, str, bytes]], chunk: int = 2000
) -> dict[str, int]:
    """Append ``inputs`` chunk by chunk (``append(db, chunk)``), processing each chunk and
    settling its commands before the next (executors that answer at once)."""
    processor = Processor(db, log_notes=False)
    seq_fx: dict[str, int] = {}
    batch: list[tuple[str, str, bytes]] = []
    counts = {"inputs": 0, "settled": 0}

    def drain() -> None:
        for _ in range(50):
            while processor.step(limit=1000).processed:
                pass
            settled = settle_pending(db, processor, seq_fx)
            counts["settled"] += settled
            ticks = tick_due(db, processor, counts)
            if not settled and not ticks:
                return

    for item in inputs:
        batch.append(item)
        if len(batch) >= chunk:
            append(db, batch)
            counts["inputs"] += len(batch)
            batch = []
            drain()
    if batch:
        append(db, batch)
        counts["inputs"] += len(batch)
        drain()
    return counts


def copy_reconciled_log(source: Database, target: Database) -> int:
    """The reconciled topics' rows of ``source``'s log into ``target``'s (same seq, in order)."""
    total = 0
    for topic in RECONCILED_TOPICS:
        table = log_table(topic)
        rows = source.conn.execute(
            f'SELECT seq, tenant, type, msg_id, at, payload FROM {table} ORDER BY "offset"'
        ).fetchall()
        with target.transaction() as conn:
            conn.executemany(
                f"INSERT INTO {table} (seq, tenant, type, msg_id, at, payload) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
        total += len(rows)
    top = source.conn.execute("SELECT value FROM meta WHERE name = 'seq'").fetchone()[0]
    with target.transaction() as conn:
        conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('seq', ?)", (str(top),))
    return total
