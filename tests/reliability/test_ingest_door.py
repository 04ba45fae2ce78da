"""The ingest door, from outside: what a till (or anyone holding its key) sends over HTTP, and
then the processor running what was accepted, so a poison the door let through would show as a
crash, a dead letter or another tenant's event left behind.

Each test posts to the embedded engine's real HTTP app, drains the processor (and the wake-ups
it asked for), and reads the outcome back through the ops API. The Kafka ingest reads bodies
through the same functions; its own door is in tests/reliability/test_kafka_ingest_door.py.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from engine.clock import skew
from engine.embedded.runtime import EmbeddedEngine
from engine.secrets import SecretBox, generate_key
from engine.store import packing
from engine.tenants import TenantConfig
from reconcilers import stock_ids
from tests.reliability.till_events import (
    HUGE,
    customer,
    event,
    invoice,
    movement,
    now,
    raw_with,
    voucher,
    zreport,
)
from topics.settings import InvoiceSettings, TenantSettings

ADMIN = "ingest-door-admin-token-0123456789"
TENANTS = ("shop-a", "shop-b")


class Door:
    """The embedded engine's HTTP app in-process, with its processor run by hand."""

    def __init__(self, data: Path) -> None:
        self.engine = EmbeddedEngine(data, SecretBox(generate_key()), admin_token=ADMIN)
        self.keys: dict[str, str] = {}
        everything = TenantSettings(invoices=InvoiceSettings(enabled=True))
        for tenant in TENANTS:
            key = self.engine.tenants.upsert(TenantConfig(id=tenant, settings=everything))
            assert key is not None
            self.keys[tenant] = key
        self.http = TestClient(
            self.engine.app, base_url="http://engine", raise_server_exceptions=False
        )

    def post(self, body: bytes | object, tenant: str = "shop-a") -> httpx.Response:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.http.post(
            f"/v1/tenants/{tenant}/events",
            content=raw,
            headers={
                "Authorization": f"Bearer {self.keys[tenant]}",
                "Content-Type": "application/json",
            },
        )

    def drain(self) -> None:
        """Process everything on the log, then every wake-up it asked for (up to a day ahead),
        as the engine's loops would. Raises whatever the processor raises."""
        for _ in range(50):
            processor = self.engine.processor
            while any(processor.lag().values()):
                processor.step()
            if not self.engine.scheduler.due(now() + dt.timedelta(days=1)):
                return
        raise AssertionError("the tenant keeps asking to be woken")

    def record(self, tenant: str, kind: str, key: str) -> dict[str, Any] | None:
        return self.engine.processor.store.get(tenant, kind, key)

    def movement(self, tenant: str, movement_id: str) -> stock_ids.Known | None:
        """The movement as the tenant's stock reconciler applied it, if it did."""
        view = self.engine.processor.store.view(tenant)
        return stock_ids.known(view.get, stock_ids.MOVEMENT_IDS, movement_id)

    def detail(self, tenant: str) -> dict[str, Any]:
        answer = self.http.get(
            f"/ops/api/tenants/{tenant}", headers={"Authorization": f"Bearer {ADMIN}"}
        )
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def dead_letters(self, tenant: str) -> list[dict[str, Any]]:
        answer = self.http.get(
            "/ops/api/deadletters",
            params={"tenant": tenant},
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        assert answer.status_code == 200, answer.text
        letters: list[dict[str, Any]] = answer.json()["dead_letters"]
        return letters

    def on_log(self, tenant: str) -> int:
        row = self.engine.db.conn.execute(
            "SELECT COUNT(*) FROM log_till_events WHERE tenant = ?", (tenant,)
        ).fetchone()
        return int(row[0])

    def other_tenant_still_served(self) -> None:
        """shop-b's next event is accepted and processed: shop-a's input stopped nothing."""
        movement_id = f"b-{uuid.uuid4().hex[:10]}"
        answer = self.post(movement("shop-b", movement_id=movement_id), tenant="shop-b")
        assert answer.status_code == 202, answer.text
        self.drain()
        assert self.movement("shop-b", movement_id) is not None


def problems_of(answer: httpx.Response) -> dict[str, str]:
    """{field: problem} of a refusal."""
    body = answer.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    return {p["field"]: p["problem"] for p in body.get("problems", [])}


@pytest.fixture(scope="module")
def door() -> Iterator[Door]:
    with tempfile.TemporaryDirectory() as folder:
        api = Door(Path(folder))
        yield api
        api.http.close()
        api.engine.db.close()


# -- dates and times -------------------------------------------------------------------------


def test_year_one_is_refused_naming_occurred_at(door: Door) -> None:
    """The issue's poison: answered 202 before, then it stopped every tenant's processing."""
    before = door.on_log("shop-a")
    answer = door.post(movement(occurred_at="0001-01-01T00:00:00+01:00"))
    assert answer.status_code == 422, answer.text
    found = problems_of(answer)
    assert list(found) == ["till.stock.movement.occurred_at"], found
    assert "2000 to 2100" in found["till.stock.movement.occurred_at"]
    assert door.on_log("shop-a") == before
    door.drain()
    door.other_tenant_still_served()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (movement(occurred_at="9999-12-31T23:59:59+00:00"), "occurred_at"),
        (movement(occurred_at="1999-12-31T23:59:59-00:30"), "occurred_at"),
        (customer("C9", "Anna", occurred_at="0001-01-01T00:00:00-14:00"), "occurred_at"),
        (invoice(invoice_date="0001-01-01"), "data.invoice_date"),
        (invoice(due_date="9999-12-31"), "data.due_date"),
        (zreport(business_date="1970-01-01"), "data.business_date"),
        (voucher(transaction_date="2101-01-01"), "data.transaction_date"),
    ],
    ids=["year-9999", "year-1999", "customer-year-1", "invoice", "due", "business", "voucher"],
)
def test_every_till_date_is_bounded(door: Door, body: dict[str, Any], field: str) -> None:
    before = door.on_log("shop-a")
    answer = door.post(body)
    assert answer.status_code == 422, answer.text
    fields = problems_of(answer)
    assert [f for f in fields if f.endswith(field)], fields
    assert door.on_log("shop-a") == before


def test_the_edges_of_the_range_are_processed(door: Door) -> None:
    """The first moment of 2000 in UTC+14 is 1999 in UTC, and 2100 is far ahead: accepted
    times the processor converts and adds flush windows to without trouble. Today such an event
    is older than the redelivery window and refused with that reason; with the engine's clock
    at the start of 2000 it is inside the window and accepted."""
    first = movement(occurred_at="2000-01-01T00:00:00+14:00")
    refused = door.post(first)
    assert refused.status_code == 422, refused.text
    assert "redelivery window" in problems_of(refused)["occurred_at"]
    then = dt.datetime(2000, 1, 1, 9, 0, tzinfo=dt.UTC)
    previous = skew(then - dt.datetime.now(dt.UTC))
    try:
        answer = door.post(first)
    finally:
        skew(previous)
    assert answer.status_code == 202, answer.text
    door.drain()
    assert door.dead_letters("shop-a") == []
    assert door.movement("shop-a", first["data"]["movement_id"]) is not None
    door.other_tenant_still_served()


def test_at_most_five_minutes_ahead_of_the_engine(door: Door) -> None:
    ahead = movement(occurred_at=(now() + dt.timedelta(minutes=6)).isoformat())
    answer = door.post(ahead)
    assert answer.status_code == 422
    assert "5 minutes" in problems_of(answer)["occurred_at"]
    nearly = movement(occurred_at=(now() + dt.timedelta(minutes=4)).isoformat())
    assert door.post(nearly).status_code == 202
    door.drain()
    assert door.dead_letters("shop-a") == []


# -- numbers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "literal", "field"),
    [
        (movement(delta="@"), HUGE, "data.delta"),
        (movement(delta="@"), "-" + HUGE, "data.delta"),
        (movement(delta="@"), "1e-999999", "data.delta"),
        (movement(delta="@"), "1e999999", "data.delta"),
        (movement(delta="@"), '"1e-999999"', "data.delta"),
        (movement(delta="@"), '"-12345678901.1234567890"', "data.delta"),
        (movement(delta="@"), '"-1.0000001"', "data.delta"),
        (movement(delta="@"), '"-' + HUGE + '"', "data.delta"),
        (movement(id="@"), HUGE, "id"),
        (movement(version="@"), HUGE, "version"),
        (movement(version="@"), "1001", "version"),
        (zreport(z_number="@"), HUGE, "data.z_number"),
        (zreport(receipts="@"), "10000000000000", "data.receipts"),
        (
            invoice(rows="@"),
            json.dumps(
                [
                    {
                        "description": "x",
                        "quantity": "1",
                        "unit_price": "1.00",
                        "vat_rate": "1e-999999",
                    }
                ]
            ),
            "data.rows.0.vat_rate",
        ),
        (
            invoice(rows="@"),
            json.dumps(
                [
                    {
                        "description": "x",
                        "quantity": "1",
                        "unit_price": "1.00",
                        "vat_rate": "12",
                        "discount_percent": "1e-999999",
                    }
                ]
            ),
            "data.rows.0.discount_percent",
        ),
        (zreport(tips="@"), '"1e-999999"', "data.tips"),
    ],
    ids=[
        "int-5000-digits",
        "negative-int-5000",
        "number-1e-999999",
        "number-1e999999",
        "string-1e-999999",
        "21-digits",
        "7-decimals",
        "string-5000-digits",
        "id",
        "version",
        "version-1001",
        "z-number",
        "receipts",
        "vat-rate",
        "discount",
        "money",
    ],
)
def test_numbers_are_bounded_at_the_door(
    door: Door, body: dict[str, Any], literal: str, field: str
) -> None:
    before = door.on_log("shop-a")
    size = door.engine.data_dir.joinpath("kassasync.db").stat().st_size
    answer = door.post(raw_with(body, "@", literal))
    assert answer.status_code == 422, answer.text
    fields = problems_of(answer)
    assert [f for f in fields if f.endswith(field)], fields
    assert door.on_log("shop-a") == before
    # The 4.8 KB request grew the database by 20 MB.
    grown = door.engine.data_dir.joinpath("kassasync.db").stat().st_size - size
    assert grown < 100_000


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_numbers_json_does_not_have(door: Door, literal: str) -> None:
    answer = door.post(raw_with(movement(delta="@"), "@", literal))
    assert answer.status_code == 400, answer.text


def test_a_huge_number_anywhere_in_the_body(door: Door) -> None:
    assert door.post(HUGE.encode()).status_code == 422
    answer = door.post(('{"events": [' + HUGE + "]}").encode())
    assert answer.status_code == 422
    assert problems_of(answer) == {"(event)": "must be an object"}


# -- contradictions the contract names -------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"delta": "0"}, "delta is 0"),
        ({"delta": "-0.000"}, "delta is 0"),
        ({"delta": "2", "reason": "sale"}, "negative for reason 'sale'"),
        ({"delta": "1", "reason": "waste"}, "negative for reason 'waste'"),
        ({"delta": "-1", "reason": "delivery"}, "positive for reason 'delivery'"),
        ({"delta": "-1", "reason": "return"}, "positive for reason 'return'"),
    ],
)
def test_contradictory_movements_are_refused(door: Door, data: dict[str, Any], words: str) -> None:
    answer = door.post(movement(**data))
    assert answer.status_code == 422, answer.text
    assert words in problems_of(answer)["till.stock.movement.data"]


def test_corrections_take_either_sign(door: Door) -> None:
    for delta in ("3", "-2"):
        for reason in ("correction", "other"):
            assert door.post(movement(delta=delta, reason=reason)).status_code == 202
    door.drain()
    assert door.dead_letters("shop-a") == []


def test_due_date_before_invoice_date(door: Door) -> None:
    answer = door.post(invoice(invoice_date="2026-03-14", due_date="2026-03-13"))
    assert answer.status_code == 422
    assert "due_date is before invoice_date" in problems_of(answer)["till.invoice.created.data"]


def test_an_unknown_type_is_reported_on_type(door: Door) -> None:
    answer = door.post(event("shop-a", "till.stock.moved", {"article_number": "1"}))
    assert answer.status_code == 422
    found = problems_of(answer)
    assert list(found) == ["type"], found
    assert "'till.stock.moved' is not a message type" in found["type"]
    assert "till.voucher.submitted" in found["type"]
    missing = movement()
    del missing["type"]
    assert problems_of(door.post(missing)) == {"type": "is missing: every message names its type"}


# -- same id, other content ------------------------------------------------------------------


def test_a_known_id_with_other_content_is_409_and_stored_nowhere(door: Door) -> None:
    first = movement(id="conflict-1", article_number="2001")
    assert door.post(first).status_code == 202
    before = door.on_log("shop-a")
    changed = {**first, "data": {**first["data"], "delta": "-5"}}
    answer = door.post(changed)
    assert answer.status_code == 409, answer.text
    body = answer.json()
    assert "'conflict-1'" in body["error"]
    assert body["problems"] == [
        {"index": 0, "field": "id", "problem": body["problems"][0]["problem"]}
    ]
    assert "conflict-1" in body["problems"][0]["problem"]
    # In a batch: the new event beside the conflicting one is not stored either.
    fresh = movement(id="conflict-fresh", article_number="2001")
    answer = door.post({"events": [fresh, changed]})
    assert answer.status_code == 409
    assert answer.json()["problems"][0]["index"] == 1
    assert door.on_log("shop-a") == before
    # The identical resend stays an idempotent duplicate, also with the same instant written
    # in another time zone, and in a batch with a new event.
    assert door.post(first).json() == {"accepted": 0, "duplicates": 1}
    moved = dt.datetime.fromisoformat(first["occurred_at"]).astimezone(
        dt.timezone(dt.timedelta(hours=2))
    )
    assert door.post({**first, "occurred_at": moved.isoformat()}).status_code == 200
    answer = door.post({"events": [first, fresh]})
    assert (answer.status_code, answer.json()) == (202, {"accepted": 1, "duplicates": 1})
    door.drain()
    level = door.record("shop-a", "stock", "2001")
    assert level is not None and Decimal(level["till"]) == -2  # -1 twice, never -5


# -- a reused movement id --------------------------------------------------------------------


def test_a_reused_movement_id_in_one_batch_is_422(door: Door) -> None:
    one = movement(movement_id="R-batch", delta="-1")
    other = movement(movement_id="R-batch", delta="-3")
    answer = door.post({"events": [one, other]})
    assert answer.status_code == 422
    assert answer.json()["problems"] == [
        {
            "index": 1,
            "field": "data.movement_id",
            "problem": "is used by event 0 of this batch for another movement",
        }
    ]


def test_a_reused_movement_id_later_is_dead_lettered_with_the_reason(door: Door) -> None:
    """The ingest does not read reconciled state, so only the reconciler can tell: the message
    becomes a dead letter naming the movement id, the level is untouched, and the next
    messages (this tenant's and another's) go on."""
    article = "3001"
    assert door.post(movement(movement_id="R-77", article_number=article)).status_code == 202
    door.drain()
    assert (
        door.post(movement(movement_id="R-77", article_number=article, delta="-4")).status_code
        == 202
    )
    door.drain()
    letters = [d for d in door.dead_letters("shop-a") if d["type"] == "till.stock.movement"]
    assert len(letters) == 1, letters
    detail = letters[0]["error"]["message"]
    assert "movement_id 'R-77'" in detail and "-4" in detail, detail
    level = door.record("shop-a", "stock", article)
    assert level is not None and Decimal(level["till"]) == -1
    # The same movement under a new message id is the one movement: applied once, no letter.
    assert door.post(movement(movement_id="R-77", article_number=article)).status_code == 202
    door.drain()
    assert len(door.dead_letters("shop-a")) == 1
    level = door.record("shop-a", "stock", article)
    assert level is not None and Decimal(level["till"]) == -1
    door.other_tenant_still_served()
    # The dashboard's tenant page lists it.
    assert [d["id"] for d in door.detail("shop-a")["dead_letters"]] == [letters[0]["id"]]


# -- till customer edits: the till's order, not the clocks ----------------------------------


def test_an_edit_stamped_ahead_does_not_hide_the_real_latest(door: Door) -> None:
    """The issue's case: an edit stamped 4 minutes ahead (accepted), then the real latest edit
    stamped now. Both with and without the till's sequence, the latest edit wins."""
    ahead = (now() + dt.timedelta(minutes=4)).isoformat()
    for till_id, sequences in (("C-seq", (1, 2, 3)), ("C-plain", (None, None, None))):
        first, second, third = sequences
        assert door.post(customer(till_id, "v1", first)).status_code == 202
        assert door.post(customer(till_id, "v2", second, occurred_at=ahead)).status_code == 202
        assert door.post(customer(till_id, "v3", third)).status_code == 202
        door.drain()
        rec = door.record("shop-a", "cust.till", till_id)
        assert rec is not None and rec["fields"]["name"] == "v3", (till_id, rec)


def test_an_older_edit_is_recorded_and_reported(door: Door) -> None:
    assert door.post(customer("C-old", "new", 7)).status_code == 202
    stale = customer("C-old", "old", 5)
    assert door.post(stale).status_code == 202
    door.drain()
    rec = door.record("shop-a", "cust.till", "C-old")
    assert rec is not None and rec["fields"]["name"] == "new"
    assert stale["id"] in rec["till_ids"]
    reports = {key: r for key, r in door.detail("shop-a")["reports"]}
    report = reports["customer:C-old:order"]
    assert report["kind"] == "till_edit_out_of_order"
    assert (report["sequence"], report["applied_sequence"]) == (5, 7)
    assert report["message_id"] == stale["id"]


# -- anything at all: never a 5xx, and what is accepted is processed -------------------------

HOSTILE_NUMBERS = st.sampled_from(
    [
        HUGE,
        "-" + HUGE,
        "1e-999999",
        "1e999999",
        "-0",
        "0.0",
        "1E+20",
        "1e-7",
        "123456789012345678901",
    ]
)
HOSTILE_TIMES = st.datetimes(
    min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)
).map(lambda d: d.isoformat()) | st.builds(
    lambda d, minutes: d.replace(tzinfo=dt.timezone(dt.timedelta(minutes=minutes))).isoformat(),
    st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)),
    st.integers(min_value=-1439, max_value=1439),
)
HOSTILE_DATES = st.dates().map(lambda d: d.isoformat())
DECIMAL_TEXT = st.decimals(allow_nan=True, allow_infinity=True).map(str)
VALUES = (
    HOSTILE_NUMBERS.map(lambda n: ("raw", n))
    | HOSTILE_TIMES.map(lambda t: ("json", t))
    | HOSTILE_DATES.map(lambda t: ("json", t))
    | DECIMAL_TEXT.map(lambda t: ("json", t))
    | st.integers().map(lambda n: ("raw", str(n)))
    | st.text(max_size=30).map(lambda t: ("json", t))
)
TEMPLATES = {
    "movement": (movement, ["delta", "movement_id", "article_number"]),
    "invoice": (invoice, ["invoice_date", "due_date", "till_customer_id"]),
    "zreport": (zreport, ["z_number", "business_date", "receipts", "tips", "rounding"]),
    "voucher": (voucher, ["transaction_date", "key"]),
    "customer": (lambda: customer("C-hostile", "Anna", 1), ["sequence", "till_customer_id"]),
}


@st.composite
def hostile_event(draw: st.DrawFn) -> bytes:
    build, fields = TEMPLATES[draw(st.sampled_from(sorted(TEMPLATES)))]
    body = build()
    where = draw(st.sampled_from([*fields, "occurred_at", "version"]))
    how, value = draw(VALUES)
    if where in ("occurred_at", "version"):
        body[where] = "@"
    else:
        body["data"][where] = "@"
    return raw_with(body, "@", value if how == "raw" else json.dumps(value))


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(raw=hostile_event())
def test_hostile_values_never_5xx_and_never_stop_processing(door: Door, raw: bytes) -> None:
    letters = len(door.dead_letters("shop-a"))
    answer = door.post(raw)
    assert answer.status_code in (202, 400, 422), (answer.status_code, answer.text[:300])
    if answer.status_code != 202:
        problems_of(answer)
    # What the door accepted, the processor handles: no crash, no dead letter.
    door.drain()
    assert len(door.dead_letters("shop-a")) == letters, door.dead_letters("shop-a")[-1]
    door.other_tenant_still_served()


def test_a_movement_recorded_in_the_old_layout_is_still_a_duplicate_after_the_upgrade(
    tmp_path: Path,
) -> None:
    """A store written before movement ids were kept by day: a till resending a movement it
    recorded then (under a new message id) is told nothing new happened, and the same id with
    another delta is refused with its reason, over HTTP; the old record is moved, not kept."""
    fresh = Door(tmp_path)
    try:
        today = now().date().isoformat()
        table = packing.StateTable(fresh.engine.db.conn)
        with fresh.engine.db.transaction():
            table.put(
                "shop-a", "stock.mv", "mv-old", {"article": "7001", "delta": "-1", "on": today}
            )
            table.put("shop-a", "stock.ids", "last", {"day": today})
        again = fresh.post(movement(article_number="7001", movement_id="mv-old", delta="-1"))
        assert again.status_code == 202, again.text
        fresh.drain()
        assert fresh.dead_letters("shop-a") == []
        assert fresh.record("shop-a", "stock", "7001") is None  # nothing applied twice
        assert fresh.movement("shop-a", "mv-old") == stock_ids.Known("7001", "-1")
        assert table.row("shop-a", "stock.mv", "mv-old") is None
        reused = fresh.post(movement(article_number="7001", movement_id="mv-old", delta="-2"))
        assert reused.status_code == 202, reused.text
        fresh.drain()
        [letter] = fresh.dead_letters("shop-a")
        assert "movement_id 'mv-old' was applied before as delta -1" in json.dumps(letter)
    finally:
        fresh.http.close()
        fresh.engine.db.close()


def stock_count(count_id: str, quantity: str, article: str = "1001") -> dict[str, object]:
    return event(
        "shop-a",
        "till.stock.counted",
        {
            "article_number": article,
            "count_id": count_id,
            "quantity": quantity,
            "last_applied_command_id": None,
        },
    )


def test_a_reused_count_id_in_one_batch_is_422_as_a_movement_id_is(tmp_path: Path) -> None:
    """Two counts of one batch with the same ``count_id`` and other quantities are refused like
    a reused ``movement_id`` in one batch (docs/contract.md: 422, nothing stored); they were
    accepted, and the second dead-lettered by the reconciler."""
    door = Door(tmp_path)
    answer = door.post({"events": [stock_count("C-batch", "10"), stock_count("C-batch", "11")]})
    assert answer.status_code == 422, answer.text
    [problem] = answer.json()["problems"]
    assert problem["index"] == 1 and problem["field"] == "data.count_id", problem
    assert door.on_log("shop-a") == 0
    door.http.close()
    door.engine.db.close()
