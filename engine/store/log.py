"""The durable log: one table per topic, with a global sequence so one consumer can read several
topics in the order the messages arrived (what one Kafka partition per tenant gives the Kafka
runtime)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from engine.store import compact
from engine.store.db import Database, log_table
from topics import registry
from topics.envelope import Envelope
from topics.names import Topic
from topics.registry import Packed, filing

#: A topic by its name (an enum's lookup by value costs more than the rest of a row).
_TOPIC = {topic.value: topic for topic in Topic}
_INSERT = "INSERT INTO {} (seq, tenant, type, msg_id, at, payload) VALUES (?, ?, ?, ?, ?, ?)"


def stored_row(
    seq: int, tenant: str, type_: str, msg_id: str, at: str, payload: bytes
) -> tuple[int, str, str, str, str, bytes]:
    """The row a log table keeps of a message (engine/store/compact.py): its type, id and time
    packed with its envelope, their columns empty."""
    if compact.packable(type_, msg_id, at):
        return (seq, tenant, "", "", "", compact.pack(type_, msg_id, at, payload))
    return (seq, tenant, type_, msg_id, at, payload)


@dataclass(frozen=True, slots=True)
class LogRecord:
    topic: Topic
    offset: int
    seq: int
    tenant: str
    type: str
    msg_id: str
    at: str
    payload: bytes

    def message(self) -> Envelope:
        return registry.parse(self.payload)


class Log:
    def __init__(self, db: Database) -> None:
        self.db = db
        with db.transaction() as conn:
            # The global sequence lives in the database: every writer (this process's processor,
            # edges and tenant directory, or another process) draws from the same counter.
            conn.execute(
                "INSERT OR IGNORE INTO meta (name, value) VALUES ('seq', ?)",
                (str(self._max_seq()),),
            )

    def _max_seq(self) -> int:
        highest = 0
        for topic in Topic:
            row = self.db.conn.execute(f"SELECT MAX(seq) FROM {log_table(topic)}").fetchone()
            if row and row[0] is not None:
                highest = max(highest, int(row[0]))
        return highest

    def _next_seq(self) -> int:
        row = self.db.conn.execute(
            "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE name = 'seq' RETURNING value"
        ).fetchone()
        return int(row[0])

    def append(self, message: Envelope) -> int:
        """Append ``message`` to its topic; returns its offset. Joins an open transaction."""
        return self.append_raw(Topic(message.TOPIC), message, registry.dump(message))

    def append_many(self, messages: Sequence[Envelope | Packed]) -> list[bytes]:
        """Append ``messages`` in order, drawing their sequence numbers in one statement. Joins
        an open transaction. Returns what each row keeps in its ``payload`` column (the outbox
        keeps a command's the same, engine/store/outbox.py)."""
        if not messages:
            return []
        stored: list[bytes] = []
        with self.db.transaction() as conn:
            row = conn.execute(
                "UPDATE meta SET value = CAST(value AS INTEGER) + ? WHERE name = 'seq' "
                "RETURNING value",
                (len(messages),),
            ).fetchone()
            seq = int(row[0]) - len(messages)
            rows: dict[Topic, list[tuple[object, ...]]] = {}
            for message in messages:
                seq += 1
                topic, tenant, type_, msg_id, at, payload = filing(message)
                filed = stored_row(seq, tenant, type_, msg_id, at, payload)
                rows.setdefault(topic, []).append(filed)
                stored.append(filed[5])
            for topic, batch in rows.items():
                conn.executemany(_INSERT.format(log_table(topic)), batch)
        return stored

    def append_raw(self, topic: Topic, message: Envelope, payload: bytes) -> int:
        with self.db.transaction() as conn:
            seq = self._next_seq()
            cur = conn.execute(
                _INSERT.format(log_table(topic)),
                stored_row(
                    seq,
                    message.tenant,
                    message.type,  # type: ignore[attr-defined]
                    message.id,
                    message.occurred_at.isoformat(),
                    payload,
                ),
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

    def read(
        self,
        topics: Iterable[Topic],
        after: dict[Topic, int],
        limit: int,
        tenant: str | None = None,
    ) -> list[LogRecord]:
        """Records after the given offsets, merged across ``topics`` in arrival order.

        Offsets and sequence numbers rise together within a topic (both are drawn in the
        append's transaction), so each topic's part starts at the sequence number of its first
        unread record: SQLite walks the ``seq`` index from there instead of from the beginning.
        """
        parts: list[str] = []
        params: list[object] = []
        for topic in topics:
            table = log_table(topic)
            start = after.get(topic, 0)
            where = (
                f'seq >= (SELECT seq FROM {table} WHERE "offset" > ? ORDER BY "offset" LIMIT 1)'
                ' AND "offset" > ?'
            )
            params += [start, start]
            if tenant is not None:
                where += " AND tenant = ?"
                params.append(tenant)
            parts.append(
                f"SELECT '{topic.value}', \"offset\", seq, tenant, type, msg_id, at, payload "
                f"FROM {table} WHERE {where}"
            )
        sql = " UNION ALL ".join(parts) + " ORDER BY seq LIMIT ?"
        params.append(limit)
        return [record(r) for r in self.db.conn.execute(sql, params).fetchall()]

    def end_offsets(self) -> dict[Topic, int]:
        out: dict[Topic, int] = {}
        for topic in Topic:
            row = self.db.conn.execute(f'SELECT MAX("offset") FROM {log_table(topic)}').fetchone()
            out[topic] = int(row[0] or 0)
        return out

    def count(self, topic: Topic, tenant: str | None = None) -> int:
        if tenant is None:
            row = self.db.conn.execute(f"SELECT COUNT(*) FROM {log_table(topic)}").fetchone()
        else:
            row = self.db.conn.execute(
                f"SELECT COUNT(*) FROM {log_table(topic)} WHERE tenant = ?", (tenant,)
            ).fetchone()
        return int(row[0])


def record(r: Sequence[Any]) -> LogRecord:
    """A log row (topic, offset, seq, tenant, type, msg_id, at, payload) as it was appended,
    packed or not."""
    blob = bytes(r[7])
    found = compact.unpack(blob)
    if found is None:  # written before rows were packed
        return LogRecord(_TOPIC[r[0]], r[1], r[2], r[3], r[4], r[5], r[6], blob)
    return LogRecord(_TOPIC[r[0]], r[1], r[2], r[3], *found)


def effects_consumer(consumer: str) -> str:
    """The offsets a consumer's effects (commands, wake-ups, dead letters) were written for,
    ahead of its own while its state is written behind (engine/embedded/processor.py)."""
    return f"{consumer}~effects"


class Offsets:
    """Committed consumer offsets (written in the same transaction as what they cover)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def handled(self, consumer: str) -> dict[Topic, int]:
        """What ``consumer`` has handled: its effects' offsets where they are ahead of the
        offsets its written state covers (the rest is run again after a crash, effects not)."""
        done = self.get(consumer)
        for topic, offset in self.get(effects_consumer(consumer)).items():
            done[topic] = max(done.get(topic, 0), offset)
        return done

    def get(self, consumer: str) -> dict[Topic, int]:
        rows = self.db.conn.execute(
            'SELECT topic, "offset" FROM offsets WHERE consumer = ?', (consumer,)
        ).fetchall()
        return {Topic(t): int(o) for t, o in rows}

    def commit(self, consumer: str, offsets: dict[Topic, int]) -> None:
        with self.db.transaction() as conn:
            conn.executemany(
                'INSERT INTO offsets (consumer, topic, "offset") VALUES (?, ?, ?) '
                'ON CONFLICT (consumer, topic) DO UPDATE SET "offset" = excluded."offset"',
                [(consumer, t.value, o) for t, o in offsets.items()],
            )
