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
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from engine.embedded.processor import Processor
from engine.store.compact import payload_of
from engine.store.db import Database, log_table
from topics.envelope import Envelope
from topics.fortnox import FortnoxStockWritten, StockWrittenData
from topics.names import RECONCILED_TOPICS
from topics.outcomes import OutcomeData, OutcomeStatus, SyncOutcome, Target, Tick


def _result(command: dict[str, Any], counter: int) -> dict[str, str]:
    ctype = command["type"]
    if ctype == "fortnox.customer.create":
        return {"customer_number": str(command["data"]["customer_number"])}
    if ctype == "fortnox.order.create":
        return {"document_number": str(counter), "already": "false"}
    if ctype == "fortnox.voucher.create":
        return {"series": "F", "number": str(counter), "year": "2"}
    return {}


@dataclass
class Settler:
    """Settles commands as executors that answer at once would."""

    db: Database
    processor: Processor
    #: The outbox sequence number settled up to: each pass reads only what was queued since.
    outbox_seq: int = 0
    #: Per tenant, the last Fortnox observation number handed out (above the generator's).
    fx_seq: dict[str, int] = field(default_factory=dict)
    ticks: int = 0

    def settle_pending(self) -> int:
        """Append the outcomes (and stock facts) of every command queued since the last call;
        returns how many."""
        rows = self.db.conn.execute(
            "SELECT seq, command_id, tenant, target, type, payload FROM outbox "
            "WHERE seq > ? AND status = 'pending' ORDER BY seq",
            (self.outbox_seq,),
        ).fetchall()
        if not rows:
            return 0
        self.outbox_seq = int(rows[-1][0])
        messages = [self._settled(*row[:5], payload_of(bytes(row[5]))) for row in rows]
        with self.db.transaction() as conn:
            self.processor.log.append_many([m for pair in messages for m in pair])
            conn.executemany(
                "UPDATE outbox SET status = 'done', attempts = 1 WHERE seq = ?",
                [(r[0],) for r in rows],
            )
        return len(rows)

    def _settled(
        self, seq: int, command_id: str, tenant: str, target: str, ctype: str, payload: bytes
    ) -> list[Envelope]:
        """The outcome of one command (after the stock fact, for a stock write)."""
        messages: list[Envelope] = []
        command = json.loads(payload)
        at = dt.datetime.fromisoformat(command["occurred_at"].replace("Z", "+00:00"))
        at += dt.timedelta(milliseconds=50)
        if ctype == "fortnox.stock.apply":
            number = command["data"]["article_number"]
            level = self.processor.store.get(tenant, "stock", number) or {}
            read = Decimal(str(level.get("fx", "0")))
            delta = Decimal(str(command["data"]["delta"]))
            self.fx_seq[tenant] = self.fx_seq.get(tenant, 10**9) + 1
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
                        seq=self.fx_seq[tenant],
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
        return messages

    def tick_due(self) -> int:
        """What the tick scheduler does once time has reached every wake-up: a tick per
        tenant, at its own wake-up time (so each flush happens when its window ends)."""
        rows = self.db.conn.execute("SELECT tenant, at FROM wake").fetchall()
        if not rows:
            return 0
        ticks: list[Envelope] = []
        for tenant, at in rows:
            self.ticks += 1
            ticks.append(
                Tick(
                    id=f"tick-{tenant}-{self.ticks}",
                    tenant=tenant,
                    occurred_at=dt.datetime.fromisoformat(at) + dt.timedelta(milliseconds=1),
                )
            )
        with self.db.transaction() as conn:
            self.processor.log.append_many(ticks)
            conn.executemany("DELETE FROM wake WHERE tenant = ? AND at <= ?", rows)
        return len(rows)

    def drain(self, rounds: int = 50) -> int:
        """Process everything on the log, settle what it queued and tick what it left waiting,
        until nothing is left or ``rounds`` rounds have passed (an entity that waits, e.g. for
        a barcode to be freed, re-arms its wake-up at every tick: the next chunk's ticks carry
        it on, as a running engine's would); returns the commands settled."""
        settled = 0
        for _ in range(rounds):
            while self.processor.step(limit=1000).processed:
                continue
            now_settled = self.settle_pending()
            settled += now_settled
            ticked = self.tick_due()
            if not now_settled and not ticked:
                break
        return settled


def record(
    db: Database, append: Any, inputs: Iterable[tuple[str, str, bytes]], chunk: int = 2000
) -> dict[str, int]:
    """Append ``inputs`` chunk by chunk (``append(db, chunk)``), processing each chunk and
    settling its commands before the next (executors that answer at once)."""
    settler = Settler(db, Processor(db, log_notes=False))
    counts = {"inputs": 0, "settled": 0}
    batch: list[tuple[str, str, bytes]] = []
    for item in inputs:
        batch.append(item)
        if len(batch) >= chunk:
            counts["inputs"] += append(db, batch)
            counts["settled"] += settler.drain()
            batch = []
    if batch:
        counts["inputs"] += append(db, batch)
        counts["settled"] += settler.drain()
    return {**counts, "ticks": settler.ticks}


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
