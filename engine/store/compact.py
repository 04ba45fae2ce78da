"""How the topic logs' rows and the outbox's commands are kept on disk (issue 15).

A log row written by this version keeps its envelope *packed* in its ``payload`` column, and its
``type``, ``msg_id`` and ``at`` columns empty: the envelope repeats all three (its ``type``, its
``id``, its ``occurred_at``), so they are packed with it, where they cost a few bytes instead of
some 80 a row. A packed blob is::

    byte 0     FORMAT (1)
    bytes 1..  raw deflate (RFC 1951; an 8 KB window) with DICTIONARY preset, of
               type NUL msg_id NUL at NUL envelope

``DICTIONARY`` holds one typical row of each message type (made once by
``scripts/log_dictionary.py``): the field names, types and values every envelope repeats are
found there, so a row of 250-400 bytes packs to 40-110. Stored rows depend on it for ever: it
never changes (``tests/engine/test_compact.py`` pins its digest); a better one would be a new
format byte, read alongside this one.

An outbox row keeps its command packed the same way (the same bytes the command's log row
holds); its columns stay as they are (its queries use them).

A row written before (a JSON envelope, which starts with ``{``; a delivered command's empty
payload; anything whose first byte is not a known format) is read as it is, with its columns:
:func:`unpack` returns None for it. Readers see exactly the envelope bytes that were written,
whichever way the row was stored.
"""

from __future__ import annotations

import zlib

#: The first byte of a packed blob (JSON starts with ``{``, 0x7B).
FORMAT = 1
#: Raw deflate (negative: no zlib header or checksum) with an 8 KB window: the dictionary fits
#: in it, and a compressor of that size is set up in a few microseconds.
WBITS = -13
LEVEL = 6
_SEP = b"\x00"
_HEADER = bytes((FORMAT,))

DICTIONARY = (  # fmt: skip
    b'","sync_pass":"customers-000000","count":150}}till.zreport.closed\x00closed'
    b'-shop-1-d4-30532\x002026-11-23T20:17:50.655334+00:00\x00{"id":"closed-shop-1-d'
    b'4-30532","tenant":"shop-1","version":1,"occurred_at":"2026-11-23T20:17:5'
    b'0.655334Z","source":"till","type":"till.zreport.closed","data":{"z_numbe'
    b'r":2,"till_id":"K1","location_code":null,"business_date":"2026-11-21","c'
    b'urrency":"SEK","vat":[{"rate":"25","sales_net":"8000.00","sales_vat":"20'
    b'00.00","returns_net":"0","returns_vat":"0"}],"payments":[{"method":"card'
    b'","amount":"7000.00"},{"method":"cash","amount":"3000.00"}],"product_gro'
    b'ups":[],"tips":"0","rounding":"0","gift_cards_sold":"0","receipts":120,"'
    b'grand_total_net":null}}fortnox.customer.create\x00customer.create:C21:0@7b7'
    b'f4cc3cae390eb\x002026-11-20T15:22:45.391872+00:00\x00{"id":"customer.create:C2'
    b'1:0@7b7f4cc3cae390eb","tenant":"shop-1","version":1,"occurred_at":"2026-'
    b'11-20T15:22:45.391872Z","source":"kassasync","caused_by":"tick-shop-1-d1'
    b'-4724","type":"fortnox.customer.create","data":{"till_customer_id":"C21"'
    b',"customer_number":"KC21","customer":{"name":"Kund 10021 AB","organisati'
    b'on_number":"5510021-0021","email":"kund10021@example.se","phone":"0470-0'
    b'10021","address1":"Storgatan 32","address2":null,"zip_code":"352 30","ci'
    b'ty":"V\xc3\xa4xj\xc3\xb6","country_code":"SE","type":"COMPANY","active":true}}}fortn'
    b"ox.order.create\x00invoice:inv-shop-1-d4-28801@2a6daebeb5eb81f5\x002026-11-23T"
    b'17:02:50.877781+00:00\x00{"id":"invoice:inv-shop-1-d4-28801@2a6daebeb5eb81f'
    b'5","tenant":"shop-1","version":1,"occurred_at":"2026-11-23T17:02:50.8777'
    b'81Z","source":"kassasync","caused_by":"created-shop-1-d4-28802","type":"'
    b'fortnox.order.create","data":{"invoice_id":"inv-shop-1-d4-28801","extern'
    b'al_reference":"KS-inv-shop-1-d4-28801","customer_number":"KC24","order_d'
    b'ate":"2026-11-20","delivery_date":null,"currency":"SEK","terms_of_paymen'
    b't":null,"your_reference":null,"remarks":null,"rows":[{"article_number":"'
    b'A000006","description":"Vara","quantity":"4","price":"100.00","vat":"25"'
    b',"discount_percent":"0"},{"article_number":"A000140","description":"Vara'
    b'","quantity":"3","price":"100.00","vat":"25","discount_percent":"0"},{"a'
    b'rticle_number":"A000376","description":"Vara","quantity":"5","price":"10'
    b'0.00","vat":"25","discount_percent":"0"}]}}till.invoice.created\x00created-'
    b'shop-1-d4-28802\x002026-11-23T17:02:50.877781+00:00\x00{"id":"created-shop-1-d'
    b'4-28802","tenant":"shop-1","version":1,"occurred_at":"2026-11-23T17:02:5'
    b'0.877781Z","source":"till","type":"till.invoice.created","data":{"invoic'
    b'e_id":"inv-shop-1-d4-28801","till_customer_id":"C24","invoice_date":"202'
    b'6-11-20","due_date":null,"currency":"SEK","terms_of_payment":null,"your_'
    b'reference":null,"remarks":null,"rows":[{"article_number":"A000006","desc'
    b'ription":"Vara","quantity":"4","unit_price":"100.00","vat_rate":"25","di'
    b'scount_percent":"0"},{"article_number":"A000140","description":"Vara","q'
    b'uantity":"3","unit_price":"100.00","vat_rate":"25","discount_percent":"0'
    b'"},{"article_number":"A000376","description":"Vara","quantity":"5","unit'
    b'_price":"100.00","vat_rate":"25","discount_percent":"0"}]}}till.article.'
    b'edited\x00edited-shop-1-d4-27693\x002026-11-23T14:58:02.521754+00:00\x00{"id":"ed'
    b'ited-shop-1-d4-27693","tenant":"shop-1","version":1,"occurred_at":"2026-'
    b'11-23T14:58:02.521754Z","source":"till","type":"till.article.edited","da'
    b'ta":{"article_number":"A000793","changes":{"description":"\xc3\x84ndrad 793","'
    b'ean":null,"price":"10.00","vat":null,"unit":null}}}till.customer.upsert\x00'
    b"customer.till:fortnox-31@70541feca0bb24d9\x002026-11-20T09:41:38.899392+00:"
    b'00\x00{"id":"customer.till:fortnox-31@70541feca0bb24d9","tenant":"shop-1","'
    b'version":1,"occurred_at":"2026-11-20T09:41:38.899392Z","source":"kassasy'
    b'nc","caused_by":"tick-shop-1-d1-969","type":"till.customer.upsert","data'
    b'":{"till_customer_id":"fortnox-31","fortnox_customer_number":"31","custo'
    b'mer":{"name":"Kund 31 AB","organisation_number":"550031-0031","email":"k'
    b'und31@example.se","phone":"0470-000031","address1":"Storgatan 32","addre'
    b'ss2":null,"zip_code":"352 30","city":"V\xc3\xa4xj\xc3\xb6","country_code":"SE","type'
    b'":"COMPANY","active":true}}}fortnox.customer.changed\x00changed-shop-1-d1-8'
    b'79\x002026-11-20T09:27:32.010048+00:00\x00{"id":"changed-shop-1-d1-879","tenan'
    b't":"shop-1","version":1,"occurred_at":"2026-11-20T09:27:32.010048Z","sou'
    b'rce":"fortnox","type":"fortnox.customer.changed","data":{"customer_numbe'
    b'r":"76","customer":{"name":"Kund 76 AB","organisation_number":"550076-00'
    b'76","email":"kund76@example.se","phone":"0470-000076","address1":"Storga'
    b'tan 77","address2":null,"zip_code":"352 30","city":"V\xc3\xa4xj\xc3\xb6","country_co'
    b'de":"SE","type":"COMPANY","active":true},"observed":{"via":"full_sync","'
    b'seq":876,"sync_pass":"customers-000000"}}}till.customer.upserted\x00upserte'
    b'd-shop-1-d4-27304\x002026-11-23T14:13:48.578603+00:00\x00{"id":"upserted-shop-'
    b'1-d4-27304","tenant":"shop-1","version":1,"occurred_at":"2026-11-23T14:1'
    b'3:48.578603Z","source":"till","type":"till.customer.upserted","data":{"t'
    b'ill_customer_id":"C21","customer":{"name":"Kund 10021 AB","organisation_'
    b'number":"5510021-0021","email":"kund10021@example.se","phone":"0470-0100'
    b'21","address1":"Storgatan 32","address2":null,"zip_code":"352 30","city"'
    b':"V\xc3\xa4xj\xc3\xb6","country_code":"SE","type":"COMPANY","active":true},"sequence'
    b'":null}}till.stock.adjust\x00stock.till:A000451@70541feca0bb24d9\x002026-11-20'
    b'T09:41:38.899392+00:00\x00{"id":"stock.till:A000451@70541feca0bb24d9","tena'
    b'nt":"shop-1","version":1,"occurred_at":"2026-11-20T09:41:38.899392Z","so'
    b'urce":"kassasync","caused_by":"tick-shop-1-d1-969","type":"till.stock.ad'
    b'just","data":{"article_number":"A000451","delta":"82","expected_level":"'
    b'81"}}sync.tick\x00tick-shop-1-1010\x002026-11-23T13:50:59.998633+00:00\x00{"id":"'
    b'tick-shop-1-1010","tenant":"shop-1","version":1,"occurred_at":"2026-11-2'
    b'3T13:50:59.998633Z","source":"kassasync","type":"sync.tick","data":{}}fo'
    b"rtnox.article.changed\x00changed-shop-1-d3-19413\x002026-11-22T13:32:29.073030"
    b'+00:00\x00{"id":"changed-shop-1-d3-19413","tenant":"shop-1","version":1,"oc'
    b'curred_at":"2026-11-22T13:32:29.073030Z","source":"fortnox","type":"fort'
    b'nox.article.changed","data":{"article":{"article_number":"A000602","desc'
    b'ription":"Artikel 602 bl\xc3\xa5","ean":"7300000006020","active":true,"stock_g'
    b'oods":true,"quantity_in_stock":"34","unit":"st","vat":"25","price":"186.'
    b'38","price_list":"A"},"observed":{"via":"poll","seq":3851,"sync_pass":nu'
    b"ll}}}till.article.upsert\x00article.upsert:A000739@6869f02f33c5b68c\x002026-11"
    b'-22T13:48:53.399363+00:00\x00{"id":"article.upsert:A000739@6869f02f33c5b68c'
    b'","tenant":"shop-1","version":1,"occurred_at":"2026-11-22T13:48:53.39936'
    b'3Z","source":"kassasync","caused_by":"tick-shop-1-d3-19560","type":"till'
    b'.article.upsert","data":{"article":{"article_number":"A000739","descript'
    b'ion":"Artikel 739 r\xc3\xb6d","ean":"7300000007393","price":"376.28","vat":"25'
    b'","unit":"st","stock_goods":true,"active":true}}}fortnox.stock.apply\x00sto'
    b'ck.fx:A000337@b8c8ef3398849722\x002026-11-23T14:04:15.426561+00:00\x00{"id":"s'
    b'tock.fx:A000337@b8c8ef3398849722","tenant":"shop-1","version":1,"occurre'
    b'd_at":"2026-11-23T14:04:15.426561Z","source":"kassasync","caused_by":"ti'
    b'ck-shop-1-d4-27215","type":"fortnox.stock.apply","data":{"article_number'
    b'":"A000337","delta":"6"}}fortnox.stock.written\x00written-stock.fx:A000337@'
    b'b8c8ef3398849722\x002026-11-23T14:04:15.476561+00:00\x00{"id":"written-stock.f'
    b'x:A000337@b8c8ef3398849722","tenant":"shop-1","version":1,"occurred_at":'
    b'"2026-11-23T14:04:15.476561Z","source":"fortnox","type":"fortnox.stock.w'
    b'ritten","data":{"article_number":"A000337","command_id":"stock.fx:A00033'
    b'7@b8c8ef3398849722","read":"-6","written":"0","seq":1000008785,"overlap"'
    b':null,"watch":null}}sync.outcome\x00outcome-stock.fx:A000758@50c15e1d4bd390'
    b'a6-1\x002026-11-23T09:46:07.911600+00:00\x00{"id":"outcome-stock.fx:A000758@50'
    b'c15e1d4bd390a6-1","tenant":"shop-1","version":1,"occurred_at":"2026-11-2'
    b'3T09:46:07.911600Z","source":"kassasync","type":"sync.outcome","data":{"'
    b'command_id":"stock.fx:A000758@50c15e1d4bd390a6","command_type":"fortnox.'
    b'stock.apply","target":"fortnox","status":"done","attempt":1,"result":{},'
    b'"error":null}}till.stock.movement\x00movement-shop-1-d4-27146\x002026-11-23T13'
    b':56:34.412962+00:00\x00{"id":"movement-shop-1-d4-27146","tenant":"shop-1","'
    b'version":1,"occurred_at":"2026-11-23T13:56:34.412962Z","source":"till","'
    b'type":"till.stock.movement","data":{"article_number":"A000453","movement'
    b'_id":"mv-shop-1-d4-27145","delta":"-1","reason":"sale"}}'
)


#: Deflate's memory level for packing: a smaller hash table than the default 8, so that copying
#: the primed compressor costs less (the blobs are the same size: they are a few hundred bytes).
MEM_LEVEL = 6
#: A compressor with the dictionary already loaded: each blob starts from a copy of it (copying
#: costs about half of loading the dictionary again).
_PRIMED = zlib.compressobj(
    LEVEL, zlib.DEFLATED, WBITS, MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY, DICTIONARY
)
_inflater = zlib.decompressobj

#: What a packed blob holds: a log row's type, message id and time, and its envelope as it was
#: written (a plain tuple: one is made for every row read).
Unpacked = tuple[str, str, str, bytes]


def packable(type_: str, msg_id: str, at: str) -> bool:
    """Whether the three can be packed (none holds the separator). A message id never does
    (``topics.common.Ident``); a row that would is kept the old way, with its columns."""
    return "\x00" not in type_ and "\x00" not in msg_id and "\x00" not in at


def pack(type_: str, msg_id: str, at: str, payload: bytes) -> bytes:
    """The packed blob of a row (see :func:`packable`)."""
    compressor = _PRIMED.copy()
    head = f"{type_}\x00{msg_id}\x00{at}\x00".encode()
    return _HEADER + compressor.compress(head + payload) + compressor.flush()


def unpack(blob: bytes) -> Unpacked | None:
    """(type, msg_id, at, envelope) of a packed blob; None for a blob written before (it is the
    envelope itself, and the row's columns hold the rest)."""
    if not blob or blob[0] != FORMAT:
        return None
    inflater = _inflater(WBITS, DICTIONARY)
    raw = inflater.decompress(blob[1:])
    if not inflater.eof or inflater.unused_data:
        raise ValueError("a packed row is cut short or has bytes after its deflate stream")
    type_, msg_id, at, payload = raw.split(_SEP, 3)
    return type_.decode(), msg_id.decode(), at.decode(), payload


def payload_of(blob: bytes) -> bytes:
    """The envelope a row's ``payload`` column holds, packed or not."""
    found = unpack(blob)
    return blob if found is None else found[3]
