"""A till's daily SIE 4I file through `kassasync import-sie`: preflighted, posted once."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.kafka.bookkeeping import KafkaBooks
from engine.sie_import import EdgeVoucherQueue, ImportReport, VoucherQueue, import_file
from sandbox.fortnox.resources.projects import create_project
from tests.scenarios.conftest import Factory
from tests.scenarios.harness import FAST_TIMING, EmbeddedRuntime, ScenarioRuntime
from tests.scenarios.kafka_runtime import KafkaScenarioRuntime

# The Z-report of sie-and-pos.md §1.9 as the till writes it (cp437, CRLF), dated today because
# the demo company has locked last year's books.
FILE = """#FLAGGA 0
#PROGRAM "Kassan" 1.0
#FORMAT PC8
#GEN {day}
#SIETYP 4
#FNAMN "Exempelbutiken AB"
#VER "" "" {day} "Z-dagrapport 1234, kassa K1" {day}
{{
#TRANS 1910 {{}} 2760.00 {day} "Kontant"
#TRANS 1580 {{}} 8150.00 {day} "Kort inkl. dricks"
#TRANS 1930 {{}} 1500.00 {day} "Swish"
#TRANS 2421 {{}} 500.00 {day} "Inlösta presentkort"
#TRANS 3740 {{}} 0.40 {day} "Öresavrundning"
#TRANS 3001 {{1 "100"}} -6400.00 {day} "Försäljning 25%"
#TRANS 3001 {{1 "100"}} 200.00 {day} "Returer 25%"
#TRANS 2611 {{}} -1600.00 {day} "Utg moms 25%"
#TRANS 2611 {{}} 50.00 {day} "Utg moms 25% returer"
#TRANS 3002 {{1 "100"}} -4000.00 {day} "Försäljning 12%"
#TRANS 2621 {{}} -480.00 {day} "Utg moms 12%"
#TRANS 3003 {{1 "100"}} -500.38 {day} "Försäljning 6%"
#TRANS 2631 {{}} -30.02 {day} "Utg moms 6%"
#TRANS 2890 {{}} -150.00 {day} "Dricks, skuld till personal"
}}
"""


def write(path: Path, text: str) -> Path:
    day = dt.date.today().strftime("%Y%m%d")
    path.write_bytes(text.format(day=day).replace("\n", "\r\n").encode("cp437"))
    return path


@contextmanager
def _queue_of(rt: ScenarioRuntime) -> Iterator[VoucherQueue]:
    """Where `kassasync import-sie` queues on this runtime: the embedded engine's log, or the
    Kafka deployment's till.events, with a read model of its own (as the CLI keeps one)."""
    if isinstance(rt, KafkaScenarioRuntime):
        books = KafkaBooks(rt.config, rt.worker.box, rt.data / "cli" / "ops.db")
        try:
            books.catch_up()
            yield books.vouchers()
        finally:
            books.close()
    else:
        assert isinstance(rt, EmbeddedRuntime)
        yield EdgeVoucherQueue(rt.engine.edge)


def _import(rt: ScenarioRuntime, path: Path) -> ImportReport:
    with _queue_of(rt) as queue:
        return import_file(queue, "shop", path)


async def _posted(rt: object) -> list[dict[str, object]]:
    data = await rt.fortnox("financialyears")  # type: ignore[attr-defined]
    return [
        v
        for fy in data["financialyears"]
        for v in fy["vouchers"]
        if "kassasync zreport sie:" in (v.get("Comments") or "")
    ]


async def test_a_4i_file_is_posted_once_however_often_it_is_imported(
    runtime: Factory, tmp_path: Path
) -> None:
    async with runtime() as rt:
        await rt.settle()
        path = write(tmp_path / "Z20250314.SI", FILE)
        first = _import(rt, path)
        assert (first.vouchers, first.accepted) == (1, 1)
        # The till exports the same day again, with another header: still the same voucher.
        again = write(tmp_path / "again.SI", FILE.replace('"Kassan" 1.0', '"Kassan" 1.1'))
        assert _import(rt, again).duplicates == 1
        await rt.settle()
        posted = await _posted(rt)
        assert len(posted) == 1
        rows = posted[0]["VoucherRows"]
        assert len(rows) == 14  # type: ignore[arg-type]
        centers = {r.get("CostCenter") for r in rows if r["Account"] == 3001}  # type: ignore[union-attr,index]
        assert centers == {"100"}


async def test_a_4i_voucher_on_an_inactive_account_waits_with_the_shops_error(
    runtime: Factory, tmp_path: Path
) -> None:
    async with runtime() as rt:
        await rt.settle()
        year = next(
            fy["Id"]
            for fy in (await rt.fortnox("financialyears"))["financialyears"]
            if fy["FromDate"].startswith(str(dt.date.today().year))
        )
        await rt.admin(
            "POST",
            f"/financialyears/{year}/accounts",
            json={"Number": 3999, "Description": "Gammal", "Active": False},
        )
        text = FILE.replace("#TRANS 3740 {{}} 0.40", "#TRANS 3999 {{}} 0.40")
        result = _import(rt, write(tmp_path / "bad.SI", text))
        assert result.accepted == 1
        await rt.settle()
        waiting = [r for k, r in rt.records("zr") if k.startswith("sie:")]
        assert waiting and waiting[0]["status"] == "waiting"
        assert waiting[0]["error"]["kind"] == "account_inactive"
        assert "3999" in waiting[0]["error"]["message"]


def test_an_unbalanced_file_is_refused_with_the_line_and_nothing_stored(tmp_path: Path) -> None:
    from engine.embedded.edge import Edge
    from engine.store.db import Database
    from topics.names import Topic

    edge = Edge(Database(tmp_path / "k.db"))
    text = FILE.replace("#TRANS 2890 {{}} -150.00", "#TRANS 2890 {{}} -149.00")
    result = import_file(EdgeVoucherQueue(edge), "shop", write(tmp_path / "unbalanced.SI", text))
    assert result.errors and result.errors[0].line == 7
    assert edge.log.count(Topic.TILL_EVENTS) == 0


async def test_an_imported_day_before_the_start_date_is_not_posted(
    runtime: Factory, tmp_path: Path
) -> None:
    tomorrow = dt.date.today() + dt.timedelta(days=1)
    async with runtime({"zreports": {"start_date": tomorrow.isoformat()}}) as rt:
        await rt.settle()
        _import(rt, write(tmp_path / "early.SI", FILE))
        await rt.settle()
        records = [r for k, r in rt.records("zr") if k.startswith("sie:")]
        assert [r["status"] for r in records] == ["before_start"]
        assert await _posted(rt) == []


async def test_a_voucher_on_a_project_added_since_the_last_read_does_not_wait_for_the_next(
    runtime: Factory, tmp_path: Path
) -> None:
    """The engine's copy of Fortnox's master data is minutes old, and the shop has added a
    project in Fortnox since. A voucher on that project does not wait for the next periodic
    read (ten minutes here, no topics feed to announce the project): the engine reads the
    master data again at once, finds the project and posts the voucher. (Before, it waited
    up to five minutes saying the project was missing in Fortnox.)"""
    slow = dataclasses.replace(FAST_TIMING, masterdata_seconds=600, feed_masterdata_seconds=600)
    async with runtime(timing=slow, feed=False) as rt:
        await rt.settle()
        create_project(rt.seeded.tenant, {"ProjectNumber": "P7", "Description": "Julmarknad"})
        text = FILE.replace('3001 {{1 "100"}} -6400.00', '3001 {{1 "100" 6 "P7"}} -6400.00')
        assert _import(rt, write(tmp_path / "P7.SI", text)).accepted == 1
        # Not rt.settle(): it asks for fresh master data itself.
        posted: list[dict[str, object]] = []
        for _ in range(150):
            posted = await _posted(rt)
            if posted:
                break
            await asyncio.sleep(0.1)
        [voucher] = posted
        projects = {r.get("Project") for r in voucher["VoucherRows"]}  # type: ignore[union-attr,attr-defined]
        assert "P7" in projects
        # The read was asked for this copy of the master data (once per copy).
        asked = rt.state("md", "asked")
        assert asked is not None and asked["command_id"].startswith("masterdata:")
