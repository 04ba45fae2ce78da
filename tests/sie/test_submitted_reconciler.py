"""The reconciler for imported vouchers (pure, no I/O): a source voucher is posted once; the
same identity with other content replaces it while it waits and is a conflict once it is
booked; waiting vouchers post in date order; a day before the start date is skipped with its
reason, reported once."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from reconcilers import zreports
from tests.reconcilers.test_zreports import make_world, master, run_fortnox, z_settings
from tests.reconcilers.world import World
from topics import commands as cm
from topics import till as tl

YEAR = 2025


def submitted(number: str, day: dt.date, amount: str = "125.00", **extra: Any) -> dict[str, Any]:
    net = f"{float(amount) * 0.8:.2f}"
    vat = f"{float(amount) - float(net):.2f}"
    return {
        "key": f"v{number}-{day:%Y%m%d}",
        "transaction_date": day,
        "description": f"Dag {number}",
        "rows": [
            {"account": 1910, "amount": amount},
            {"account": 3001, "amount": f"-{net}"},
            {"account": 2611, "amount": f"-{vat}"},
        ],
        "origin": "Kassan / 556000-0001",
        "source_series": "A",
        "source_number": number,
        "registration_date": day,
        "signature": "Anna",
        "file": "bok.si",
        "line": 14,
        "fingerprint": f"fp{amount.replace('.', '')}",
        **extra,
    }


def send(world: World, data: dict[str, Any]) -> None:
    world.send(tl.VoucherSubmitted, data=data)


def creates(world: World) -> list[cm.CreateFortnoxVoucher]:
    unique = {c.id: c for c in world.emitted if isinstance(c, cm.CreateFortnoxVoucher)}
    return list(unique.values())


def test_posted_once_with_the_source_identity_in_comments_and_a_change_is_a_conflict() -> None:
    world = make_world()
    world.master_data(master())
    day = dt.date(YEAR, 1, 15)
    send(world, submitted("25", day))
    run_fortnox(world)
    send(world, submitted("25", day))  # the same voucher again
    run_fortnox(world)
    [create] = creates(world)
    comments = create.data.voucher.comments or ""
    assert comments.startswith("kassasync zreport sie:v25-20250115 | ")
    for part in (
        "källa A 25",
        f"reg {day}",
        "sign Anna",
        "från Kassan / 556000-0001",
        "fil bok.si rad 14",
    ):
        assert part in comments
    send(world, submitted("25", day, amount="126.25"))  # corrected after it was booked
    run_fortnox(world)
    assert len(creates(world)) == 1 and len(world.fx_vouchers) == 1
    report = world.state.get("report", "voucher:sie:v25-20250115")
    assert report is not None and report["kind"] == "conflict"
    assert report["voucher"] == f"A 25 ({day})"


def test_a_change_while_it_waits_replaces_the_waiting_voucher() -> None:
    world = make_world()
    day = dt.date(YEAR, 1, 15)
    send(world, submitted("25", day))
    world.process_all()  # no master data yet: it waits
    send(world, submitted("25", day, amount="126.25"))
    world.process_all()
    world.master_data(master())
    run_fortnox(world)
    [create] = creates(world)
    assert create.data.voucher.rows[0].debit == Decimal("126.25")


def test_waiting_vouchers_post_in_date_order() -> None:
    world = make_world()
    for number, day in (
        ("24", dt.date(YEAR, 6, 20)),
        ("25", dt.date(YEAR, 1, 15)),
        ("3", dt.date(YEAR, 3, 10)),
    ):
        send(world, submitted(number, day))
    world.process_all()
    assert creates(world) == []
    world.master_data(master())
    run_fortnox(world)
    assert [c.data.voucher.transaction_date.month for c in creates(world)] == [1, 3, 6]


def test_a_day_before_the_start_date_is_skipped_with_its_reason_reported_once() -> None:
    world = make_world(z_settings(start_date=dt.date(YEAR, 2, 1)))
    world.master_data(master())
    send(world, submitted("25", dt.date(YEAR, 1, 15)))
    world.process_all()
    record = world.state.get(zreports.KIND, "sie:v25-20250115")
    assert record is not None and record["status"] == "before_start"
    assert f"before the Z-report start date {YEAR}-02-01" in record["reason"]
    first = world.state.get("report", "zreport:sie:v25-20250115")
    assert first is not None and first["kind"] == "skipped_before_start"
    world.advance(60)
    world.master_data(master())  # a refresh retries it: still skipped, not reported again
    world.process_all()
    assert world.state.get("report", "zreport:sie:v25-20250115") == first
    assert creates(world) == []
