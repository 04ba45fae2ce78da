"""How the preset dictionary of ``engine/store/compact.py`` was made (kept for the record: the
dictionary in the code is a fixed literal and never changes, since rows on disk depend on it; a
new dictionary would be a new format byte next to the old one).

It takes one typical row of each message type from a store's logs (the middle row of the type
for one tenant, packed as ``engine.store.compact`` packs a row: type, id and time, then the
envelope), puts the rarest types first and the most frequent last (deflate reaches the end of
its window with the shortest distances), neutralises the tenant id and prints a Python literal.

    python -m bench.retention              # any store with a few days of traffic will do
    python scripts/log_dictionary.py PATH/TO/kassasync.db [--tenant t00000] [--max 8192]
"""

from __future__ import annotations

import argparse
import sqlite3
from collections import Counter

TOPICS = (
    "log_sync_control",
    "log_till_commands",
    "log_fortnox_commands",
    "log_sync_outcomes",
    "log_fortnox_changes",
    "log_till_events",
)


def samples(path: str, tenant: str) -> list[tuple[int, bytes]]:
    conn = sqlite3.connect(path)
    out: list[tuple[int, bytes]] = []
    for table in TOPICS:
        rows = conn.execute(
            f'SELECT type, msg_id, at, payload FROM {table} WHERE tenant = ? ORDER BY "offset"',
            (tenant,),
        ).fetchall()
        by_type: dict[str, list[bytes]] = {}
        counts: Counter[str] = Counter()
        for kind, msg_id, at, payload in rows:
            if not bytes(payload).startswith(b"{"):
                continue  # already packed
            counts[kind] += 1
            packed = f"{kind}\x00{msg_id}\x00{at}\x00".encode() + bytes(payload)
            by_type.setdefault(kind, []).append(packed.replace(tenant.encode(), b"shop-1"))
        for kind, n in counts.items():
            chosen = by_type[kind]
            out.append((n, chosen[len(chosen) // 2]))
    return sorted(out, key=lambda item: item[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("store")
    parser.add_argument("--tenant", default="t00000")
    parser.add_argument("--max", type=int, default=8192)
    args = parser.parse_args()
    parts = [row for _, row in samples(args.store, args.tenant)]
    dictionary = b"".join(parts)[-args.max :]
    print("DICTIONARY = (")
    for start in range(0, len(dictionary), 72):
        print(f"    {dictionary[start : start + 72]!r}")
    print(")")


if __name__ == "__main__":
    main()
