"""How the ``state`` table holds the reconcilers' records: one row per entity, its records
compressed together.

The reconcilers address a tenant's records by ``(kind, key)``. Several kinds describe one entity
under the same key: an article's Fortnox copy (``art.fx``), what the till holds (``art.till``),
what it should hold (``art.want``), its stock (``stock``) and last merge (``stock.merge``) are
all keyed by the article number. Such kinds form a **family** (:data:`FAMILIES`) and share one
row of the table::

    state (tenant, family, key, kinds, value)

``kinds`` is a bitmask of the family's members the row holds (bit *i* for ``FAMILIES[f][i]``),
so a kind's records are found and counted without decoding a row; ``value`` is the members'
records as one JSON object ``{kind: record}``, deflated with a preset dictionary of typical
records (:data:`_DICTIONARY`) behind a format byte. The three copies of an article (in Fortnox,
wanted, sent) and every field name cost a few bytes each instead of their full text, and one
message changes one row instead of up to five in five key ranges.

A kind of no family is a family of its own (``family == kind``, ``kinds == 1``).

**Stored rows depend on this module for ever.** The members of a family keep their positions
(append only), a kind never moves between families, and the dictionary of a format never
changes: a new dictionary is a new format byte, with the old one kept for reading
(``tests/store/test_packing.py`` pins the dictionary's digest).
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from pydantic_core import from_json, to_json

from reconcilers import articles, customers, stock
from reconcilers.state import Record

#: The family of an article's records (keyed by its article number).
ARTICLE_FAMILY = "art"
#: The families: the kinds that describe one entity under one key, in their bit order.
FAMILIES: dict[str, tuple[str, ...]] = {
    ARTICLE_FAMILY: (articles.FX, articles.TILL, articles.WANT, stock.KIND, stock.MERGES),
    "ean": (articles.BARCODE, articles.WAIT, articles.TILL_EAN, articles.TILL_EAN_WAIT),
    "cust": (customers.FX, customers.PENDING),
}
_FAMILY_OF: dict[str, tuple[str, int]] = {
    kind: (family, 1 << bit) for family, kinds in FAMILIES.items() for bit, kind in enumerate(kinds)
}

#: The format byte of rows deflated with :data:`_DICTIONARY` (raw deflate).
FORMAT = 1
_FORMAT_BYTE = bytes((FORMAT,))
#: Inflating takes any window up to 32 KB; rows are deflated with 8 KB (the dictionary and a
#: row fit) and a small hash, which costs a third less to set up per row than the defaults.
_WBITS = -15

#: Typical records, deflate's preset dictionary for :data:`FORMAT` (never change it: rows
#: written with it read with it).
_DICTIONARY = (
    b'{"inv":{"invoice":{"invoice_id":"inv-1","till_customer_id":"C1","invoice_date":"2026-0'
    b'1-01","due_date":null,"currency":"SEK","terms_of_payment":null,"your_reference":null,"'
    b'remarks":null,"rows":[{"article_number":"A000100","description":"Vara","quantity":"1",'
    b'"unit_price":"100.00","vat_rate":"25","discount_percent":"0"}]},"status":"done","order'
    b'":"100"}}'
    b'{"zr":{"report":{"z_number":1,"till_id":"K1","location_code":null,"business_date":"202'
    b'6-01-01","currency":"SEK","vat":[{"rate":"25","sales_net":"0","sales_vat":"0","returns'
    b'_net":"0","returns_vat":"0"}],"payments":[{"method":"card","amount":"0"}],"product_gro'
    b'ups":[],"tips":"0","rounding":"0","gift_cards_sold":"0","receipts":1,"grand_total_net"'
    b':null},"till_ids":["closed-1"],"till_at":"2026-01-01T00:00:00+00:00","status":"posted"'
    b',"voucher":{"series":"F","number":"1","year":"1"}}}'
    b'{"report":{"at":"2026-01-01T00:00:00+00:00","kind":"till_edit_overwritten","changes":{'
    b'"description":"x","price":"0"}}}'
    b'{"cmd":{"command_id":"cmd-1","status":"pending","attempt":0}}'
    b'{"dirty":{"since":"2026-01-01T00:00:00+00:00"}}'
    b'{"cust.till":{"number":"KC1","fields":{"name":"Kund 100 AB","organisation_number":"556'
    b'000-0100","email":"kund100@example.se","phone":"08-100100","address1":"Storgatan 10","'
    b'address2":null,"zip_code":"111 22","city":"Stockholm","country_code":"SE","type":"COMP'
    b'ANY","active":true},"till_ids":["upserted-1"],"till_at":"2026-01-01T00:00:00+00:00","a'
    b'ttempt":0}}'
    b'{"cust.fx":{"till_id":"C1","fx_seq":1,"fx_ids":["changed-1"],"fx_at":"2026-01-01T00:00'
    b':00+00:00","seen":"customers-1","fields":{"name":"Kund 100 AB","organisation_number":"'
    b'556000-0100","email":"kund100@example.se","phone":"08-100100","address1":"Storgatan 10'
    b'","address2":null,"zip_code":"111 22","city":"Stockholm","country_code":"SE","type":"C'
    b'OMPANY","active":true},"deleted":false}}'
    b'{"stock.mv":{"article":"A000100","delta":"-1","on":"2026-01-01"}}'
    b'{"barcode":{"holder":"A000100"},"till.ean":{"articles":["A000100"]}}'
    b'{"art.fx":{"fx_seq":1,"fx_ids":["changed-1"],"fx_at":"2026-01-01T00:00:00.000000+00:00'
    b'","seen":"articles-1","article":{"article_number":"A000100","description":"Artikel 100'
    b' svart","ean":"7300000001000","active":true,"stock_goods":true,"quantity_in_stock":"12'
    b'","unit":"st","vat":"25","price":"149.00","price_list":"A"},"prices":{"A":"149.00"},"d'
    b'eleted":null},"art.till":{"eans":["7300000001000"],"inflight":[],"sent":{"article_numb'
    b'er":"A000100","description":"Artikel 100 svart","ean":"7300000001000","price":"149.00"'
    b',"vat":"25","unit":"st","stock_goods":true,"active":true}},"art.want":{"in_till":true,'
    b'"reason":"fortnox","article":{"article_number":"A000100","description":"Artikel 100 sv'
    b'art","ean":"7300000001000","price":"149.00","vat":"25","unit":"st","stock_goods":true,'
    b'"active":true},"ean_held":"7300000001000","ean_waiting":null},"stock":{"base":"0","til'
    b'l":"0","fx":"0","to_fx":"0","to_till":"0","till_since":"0","fx_since":"0","fx_inflight'
    b'":null,"till_inflight":null,"last_written":null,"fx_seq":1,"blocked_fx":null,"blocked_'
    b'till":null},"stock.merge":{"at":"2026-01-01T00:00:00.000000+00:00","base":"0","till":"'
    b'0","fortnox":"0","new":"0"}}'
)


#: A compressor that has read the dictionary: each row is deflated by a copy of it.
_PRIMED = zlib.compressobj(6, zlib.DEFLATED, -13, 6, zlib.Z_DEFAULT_STRATEGY, _DICTIONARY)


def family_of(kind: str) -> tuple[str, int]:
    """The family a kind's records are stored in, and its bit there."""
    found = _FAMILY_OF.get(kind)
    if found is not None:
        return found
    if kind in FAMILIES:
        raise ValueError(f"{kind!r} names a family of state records, not a kind")
    return kind, 1


def members(family: str) -> tuple[str, ...]:
    """The kinds a family's rows may hold."""
    return FAMILIES.get(family, (family,))


def kinds_of(family: str, mask: int) -> list[str]:
    """The kinds a row's ``kinds`` bitmask names."""
    return [kind for bit, kind in enumerate(members(family)) if mask >> bit & 1]


def pack(family: str, records: Mapping[str, Record]) -> tuple[int, bytes]:
    """A row's ``kinds`` and ``value`` for ``records`` (kind -> record)."""
    mask = 0
    for kind in records:
        found, bit = _FAMILY_OF.get(kind) or family_of(kind)
        if found != family:
            raise ValueError(f"kind {kind!r} is stored in family {found!r}, not {family!r}")
        mask |= bit
    deflate = _PRIMED.copy()
    body = deflate.compress(to_json(records)) + deflate.flush()
    return mask, _FORMAT_BYTE + body


class Unpacked(NamedTuple):
    """A row's records (kind -> record) and the length of their JSON (what memory counts)."""

    records: dict[str, Record]
    size: int


def inflate(value: bytes) -> bytes:
    """A row's records as the JSON text its ``value`` holds."""
    blob = bytes(value)
    if not blob or blob[0] != FORMAT:
        raise ValueError(f"not a state row of a known format: {blob[:1]!r}")
    inflater = zlib.decompressobj(_WBITS, _DICTIONARY)
    return inflater.decompress(blob[1:]) + inflater.flush()


def unpack(value: bytes) -> Unpacked:
    """A row's records from its ``value``."""
    text = inflate(value)
    records: Any = from_json(text)
    return Unpacked(records, len(text))


# -- the table -------------------------------------------------------------------------------


class StateTable:
    """The ``state`` table of a database, read and written record by record (the tools', the
    operators' and the Kafka read model's way; the processor's store writes whole rows)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def row(self, tenant: str, family: str, key: str) -> Unpacked | None:
        found = self.conn.execute(
            "SELECT value FROM state WHERE tenant = ? AND family = ? AND key = ?",
            (tenant, family, key),
        ).fetchone()
        return None if found is None else unpack(found[0])

    def get(self, tenant: str, kind: str, key: str) -> Record | None:
        family, _ = family_of(kind)
        row = self.row(tenant, family, key)
        return None if row is None else row.records.get(kind)

    def scan(
        self, tenant: str, kind: str, *, holding: Sequence[bytes] = ()
    ) -> Iterator[tuple[str, Record]]:
        """Every record of ``kind``, in key order. ``holding``: only from rows whose JSON holds
        one of these texts (decoding the rest is skipped: a caller looking for a field equal
        to a string passes the string's JSON, which any such row holds, and checks the field)."""
        family, bit = family_of(kind)
        rows = self.conn.execute(
            "SELECT key, value FROM state WHERE tenant = ? AND family = ? AND kinds & ? "
            "ORDER BY key",
            (tenant, family, bit),
        )
        for key, value in rows:
            text = inflate(value)
            if holding and not any(needle in text for needle in holding):
                continue
            records: Any = from_json(text)
            yield str(key), records[kind]

    def rows(self, tenant: str, family: str) -> Iterator[tuple[str, dict[str, Record]]]:
        """Every row of a family: its key and records (kind -> record), in key order."""
        rows = self.conn.execute(
            "SELECT key, value FROM state WHERE tenant = ? AND family = ? ORDER BY key",
            (tenant, family),
        )
        for key, value in rows:
            yield str(key), unpack(value).records

    def counts(self, tenant: str) -> dict[str, int]:
        """How many records of each kind the tenant has (no row decoded)."""
        counts: dict[str, int] = {}
        rows = self.conn.execute(
            "SELECT family, kinds, COUNT(*) FROM state WHERE tenant = ? GROUP BY family, kinds",
            (tenant,),
        )
        for family, mask, n in rows:
            for kind in kinds_of(str(family), int(mask)):
                counts[kind] = counts.get(kind, 0) + int(n)
        return counts

    def records(self, tenant: str) -> dict[tuple[str, str], Record]:
        """Every record of the tenant."""
        found: dict[tuple[str, str], Record] = {}
        for key, value in self.conn.execute(
            "SELECT key, value FROM state WHERE tenant = ?", (tenant,)
        ):
            for kind, record in unpack(value).records.items():
                found[(kind, str(key))] = record
        return found

    def tenants(self) -> list[str]:
        rows = self.conn.execute("SELECT DISTINCT tenant FROM state ORDER BY tenant")
        return [str(r[0]) for r in rows]

    def put(self, tenant: str, kind: str, key: str, record: Record | None) -> None:
        """Put (``None``: delete) one record, keeping the others of its row."""
        edits = RowEdits(self)
        edits.put(tenant, kind, key, record)
        edits.flush()

    def write(self, rows: Iterable[tuple[str, str, str, Mapping[str, Record]]]) -> None:
        """Replace whole rows: ``(tenant, family, key, {kind: record})``; no records, no row."""
        upserts: list[tuple[str, str, str, int, bytes]] = []
        deletes: list[tuple[str, str, str]] = []
        for tenant, family, key, records in rows:
            if records:
                upserts.append((tenant, family, key, *pack(family, records)))
            else:
                deletes.append((tenant, family, key))
        if upserts:
            self.conn.executemany(
                "INSERT INTO state (tenant, family, key, kinds, value) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (tenant, family, key) DO UPDATE SET kinds = excluded.kinds, "
                "value = excluded.value",
                upserts,
            )
        if deletes:
            self.conn.executemany(
                "DELETE FROM state WHERE tenant = ? AND family = ? AND key = ?", deletes
            )


class RowEdits:
    """Record-by-record changes to a :class:`StateTable`, each row read once and written once
    by :meth:`flush` however many of its records changed (the Kafka read model gathers a poll's
    changes so)."""

    def __init__(self, table: StateTable) -> None:
        self.table = table
        self._rows: dict[tuple[str, str, str], dict[str, Record]] = {}

    def put(self, tenant: str, kind: str, key: str, record: Record | None) -> None:
        """Put (``None``: delete) one record."""
        family, _ = family_of(kind)
        where = (tenant, family, key)
        records = self._rows.get(where)
        if records is None:
            row = self.table.row(tenant, family, key)
            records = self._rows[where] = {} if row is None else row.records
        if record is None:
            records.pop(kind, None)
        else:
            records[kind] = record

    def flush(self) -> None:
        """Write the rows changed since the last flush, in key order."""
        self.table.write([(*where, records) for where, records in sorted(self._rows.items())])
        self._rows.clear()


#: The table's definition (engine/store/db.py creates it, and moves a database of the layout
#: before families to it with :func:`migrate`).
DDL = """CREATE TABLE IF NOT EXISTS state (
    tenant TEXT NOT NULL, family TEXT NOT NULL, key TEXT NOT NULL, kinds INTEGER NOT NULL,
    value BLOB NOT NULL, PRIMARY KEY (tenant, family, key)) WITHOUT ROWID"""


def migrate(conn: sqlite3.Connection) -> int:
    """Move a ``state`` table of one row per record (``tenant, kind, key, value`` JSON text)
    to rows per entity; returns the records moved (0: nothing to move). Inside the caller's
    transaction."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(state)")}
    if "kind" not in columns:
        return 0
    conn.execute("ALTER TABLE state RENAME TO state_by_record")
    conn.execute(DDL)
    table = StateTable(conn)
    moved = 0
    group: dict[str, Record] = {}
    at: tuple[str, str, str] | None = None
    rows = conn.execute("SELECT tenant, kind, key, value FROM state_by_record").fetchall()
    ordered = sorted(((t, *family_of(k)[:1], key, k, v) for t, k, key, v in rows))
    batch: list[tuple[str, str, str, Mapping[str, Record]]] = []
    for tenant, family, key, kind, value in ordered:
        if at != (tenant, family, key):
            if at is not None:
                batch.append((*at, group))
            at, group = (tenant, family, key), {}
        group[kind] = from_json(str(value))
        moved += 1
    if at is not None:
        batch.append((*at, group))
    table.write(batch)
    conn.execute("DROP TABLE state_by_record")
    return moved
