"""The Kafka runtime is a whole product (issue 12): ``kassasync import-sie``, ``export zreports``
and ``ledger sync|export`` run against a Kafka deployment with ``--runtime kafka``, typed as a
user types them (the installed command, in a subprocess), with the embedded runtime's output and
exit statuses: messages go onto the deployment's topics for the owning worker, what is reported
comes from a read model of its topics. An unreachable deployment is one line and exit 2."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from engine.kafka.bookkeeping import KafkaBooks, queued_ids
from engine.kafka.config import KafkaConfig
from engine.kafka.topics import partition_for
from engine.secrets import KEY_ENV, SecretBox
from tests.kafka.harness import KafkaHarness, World, running
from tests.ops.commands import Result, Shell, free_port, user_env
from tests.scenarios.harness import merged
from topics.names import Topic
from topics.settings import TenantSettings

pytestmark = pytest.mark.slow

TENANT = "shop-a"

# A till's daily Z-report (unnumbered: known by its content) and a numbered source voucher.
SIE_4I = """#FLAGGA 0
#PROGRAM "Kassan" 1.0
#FORMAT PC8
#GEN {day}
#SIETYP 4
#FNAMN "Exempelbutiken AB"
#VER "" "" {day} "Z-dagrapport 1234, kassa K1" {day}
{{
#TRANS 1910 {{}} 2760.00 {day} "Kontant"
#TRANS 1580 {{}} 8150.00 {day} "Kort"
#TRANS 1930 {{}} 1500.00 {day} "Swish"
#TRANS 3001 {{}} -9932.00 {day} "Försäljning 25%"
#TRANS 2611 {{}} -2483.00 {day} "Utg moms 25%"
#TRANS 3740 {{}} 5.00 {day} "Öresavrundning"
}}
#VER A 7 {day} "Kassadifferens" {day}
{{
#TRANS 1910 {{}} -{amount} {day} "Kassa"
#TRANS 3740 {{}} {amount} {day} "Differens"
}}
"""


def sie_file(path: Path, amount: str = "12.00") -> Path:
    day = dt.date.today().strftime("%Y%m%d")
    text = SIE_4I.format(day=day, amount=amount).replace("\n", "\r\n")
    path.write_bytes(text.encode("cp437"))
    return path


def ok(result: Result, code: int = 0) -> Result:
    assert result.code == code, str(result)
    assert "Traceback" not in result.err, str(result)
    return result


def one_json(result: Result) -> dict[str, Any]:
    lines = result.out.strip().splitlines()
    assert len(lines) == 1, str(result)
    value = json.loads(lines[0])
    assert isinstance(value, dict)
    return value


def control_messages(config: KafkaConfig, tenant: str, kind: str) -> list[dict[str, Any]]:
    """The tenant's messages of type ``kind`` on its partition of ``sync.control``."""
    return _messages(config, Topic.SYNC_CONTROL, tenant, kind)


def _messages(config: KafkaConfig, topic: Topic, tenant: str, kind: str) -> list[dict[str, Any]]:
    tp = TopicPartition(config.topic(topic), partition_for(tenant, config.partitions))
    consumer = KafkaConsumer(bootstrap_servers=config.bootstrap, enable_auto_commit=False)
    try:
        consumer.assign([tp])
        end = consumer.end_offsets([tp])[tp]
        consumer.seek_to_beginning(tp)
        found: list[dict[str, Any]] = []
        while consumer.position(tp) < end:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    message = json.loads(record.value)
                    if message.get("type") == kind and message.get("tenant") == tenant:
                        found.append(message)
        return found
    finally:
        consumer.close()


def what_was_admitted(config: KafkaConfig, path: Path) -> tuple[set[str], int | None, set[str]]:
    """From a fresh read model: the admitted SIE ids, the consumed offset of ``till.events`` and
    the tenant's SIE ids on ``till.events`` after it."""
    books = KafkaBooks(config, SecretBox.from_env(), path)
    try:
        books.catch_up()
        rows = books.ops.db.conn.execute(
            "SELECT msg_id FROM kafka_seen WHERE tenant = ? AND msg_id LIKE 'sie-%'", (TENANT,)
        ).fetchall()
        row = books.ops.db.conn.execute(
            'SELECT "offset" FROM kafka_consumed WHERE tenant = ? AND topic = ?',
            (TENANT, str(Topic.TILL_EVENTS)),
        ).fetchone()
        consumed = None if row is None else int(row[0])
        tail = queued_ids(config, TENANT, "sie-", consumed)
        return {str(r[0]) for r in rows}, consumed, tail
    finally:
        books.close()


async def test_import_sie_export_zreports_and_ledger_as_typed_against_kafka(
    tmp_path: Path, bootstrap: str, prefix: str, secret_key: str
) -> None:
    today = dt.date.today()
    tomorrow = today + dt.timedelta(days=1)
    world = await World([TENANT]).start()
    config = KafkaConfig(bootstrap=bootstrap, prefix=prefix, data_dir=tmp_path / "kafka")
    harness = KafkaHarness(config, SecretBox.from_env())
    shell = Shell(tmp_path, user_env(**{KEY_ENV: secret_key}))
    # The operator's machine: its own folder for the read model; the workers' token store.
    where = f"--runtime kafka --bootstrap {bootstrap} --prefix {prefix} --data cli"

    async def run(line: str) -> Result:
        return await asyncio.to_thread(shell.run, f"{line} {where}")

    try:
        async with running(harness):
            # Z-reports start tomorrow (today's is not posted); the ledger goes to the till.
            base = world.config(TENANT)
            settings = merged(
                base.settings.model_dump(mode="json"),
                {"ledger": {"enabled": True}, "zreports": {"start_date": tomorrow.isoformat()}},
            )
            await harness.add_tenant(
                base.model_copy(update={"settings": TenantSettings.model_validate(settings)})
            )
            sie_file(tmp_path / "Z.SI")

            # import-sie: queued; at once again (not processed yet): duplicates, nothing queued.
            first = one_json(ok(await run(f"kassasync import-sie Z.SI --tenant {TENANT}")))
            assert (first["vouchers"], first["accepted"], first["duplicates"]) == (2, 2, 0)
            assert first["note"].startswith("queued only")
            again = one_json(ok(await run(f"kassasync import-sie Z.SI --tenant {TENANT}")))
            assert (again["accepted"], again["duplicates"]) == (0, 2)
            await harness.wait_quiet()
            # Processed by the worker: still duplicates (its ~seen ids, through the read model).
            later = one_json(ok(await run(f"kassasync import-sie Z.SI --tenant {TENANT}")))
            assert (later["accepted"], later["duplicates"]) == (0, 2)
            # ... because the read model holds what the worker admitted: its ~seen ids and the
            # offset it consumed, after which nothing of the tenant is left on till.events.
            admitted, consumed, tail = await asyncio.to_thread(
                what_was_admitted, config, tmp_path / "check" / "ops.db"
            )
            assert len(admitted) == 2 and all(i.startswith("sie-") for i in admitted)
            assert consumed is not None and tail == set()
            records = {
                key: value
                for (kind, key), value in harness.state(TENANT).items()
                if kind == "zr" and key.startswith("sie:")
            }
            assert [r["status"] for r in records.values()] == ["before_start", "before_start"]

            # The numbered voucher A 7 with other content: refused, nothing queued, exit 1.
            sie_file(tmp_path / "changed.SI", amount="13.00")
            changed = one_json(
                ok(await run(f"kassasync import-sie changed.SI --tenant {TENANT}"), 1)
            )
            assert changed["queued"] == 0
            assert [e["voucher"] for e in changed["errors"]] == ["A 7"]
            assert "imported before with other content" in changed["errors"][0]["message"]
            unknown = one_json(ok(await run("kassasync import-sie Z.SI --tenant nobody"), 2))
            assert unknown == {"error": "unknown tenant nobody"}

            # export zreports: the request goes to the worker; the skipped days are reported.
            line = f"kassasync export zreports --tenant {TENANT} --from {today} --to {today}"
            export = one_json(ok(await run(line)))
            assert export["requested"] == "zreports" and export["from"] == str(today)
            assert f"before the Z-report start date {tomorrow}" in export["not_posted"]
            assert sorted(s["key"] for s in export["skipped"]) == sorted(records)
            requested = await asyncio.to_thread(
                control_messages, config, TENANT, "sync.export.requested"
            )
            assert [(m["data"]["from_date"], m["data"]["to_date"]) for m in requested] == [
                (str(today), str(today))
            ]
            backwards = (
                f"kassasync export zreports --tenant {TENANT} --from {today} --to 2020-01-01"
            )
            assert one_json(ok(await run(backwards), 2)) == {"error": "--to is before --from"}

            # ledger sync: Fortnox's vouchers onto fortnox.changes; the worker hands each to
            # the till once. The CLI uses the token store the workers share (--tokens).
            tokens = f"--tokens {config.tokens}"
            synced = one_json(ok(await run(f"kassasync ledger sync --tenant {TENANT} {tokens}")))
            assert synced["vouchers"] > 0 and synced["downloaded"] == 0
            await harness.wait_quiet()
            assert len(world.tills[TENANT].ledger) == synced["vouchers"]
            nothing = await run(f"kassasync ledger sync --tenant {TENANT} --year 1990 {tokens}")
            assert "no financial year in Fortnox" in one_json(ok(nothing, 2))["error"]

            # ledger export: one readable SIE 4 file per year.
            out = tmp_path / "books"
            exported = ok(
                await run(f"kassasync ledger export --tenant {TENANT} --out {out} {tokens}")
            )
            years = [json.loads(line) for line in exported.out.strip().splitlines()]
            assert len(years) == 2
            assert all(Path(y["path"]).is_file() and y["unbalanced"] == 0 for y in years)
            no_fortnox = one_json(ok(await run("kassasync ledger export --tenant nobody"), 2))
            assert no_fortnox == {"error": "tenant nobody has no Fortnox connection"}
    finally:
        await world.stop()


def test_an_unreachable_kafka_deployment_is_one_line_and_exit_2(
    tmp_path: Path, secret_key: str
) -> None:
    """Seen from outside: nothing listens at --bootstrap; each command says so in one line."""
    shell = Shell(tmp_path, user_env(**{KEY_ENV: secret_key}))
    sie_file(tmp_path / "Z.SI")
    nowhere = f"127.0.0.1:{free_port()}"
    where = f"--runtime kafka --bootstrap {nowhere} --data cli"
    results = shell.run_all(
        f"kassasync import-sie Z.SI --tenant shop-a {where}",
        f"kassasync export zreports --tenant shop-a --from 2026-01-01 --to 2026-01-31 {where}",
        f"kassasync ledger sync --tenant shop-a {where}",
    )
    for result in results:
        assert result.code == 2, str(result)
        assert result.out == "", str(result)
        [line] = result.err.strip().splitlines()
        assert line.startswith(f"kassasync: cannot read the Kafka deployment at {nowhere}"), line
        assert line.endswith("(check --bootstrap and --prefix)"), line


def test_the_workers_token_store_is_named_only_for_a_kafka_deployment(
    tmp_path: Path, secret_key: str
) -> None:
    """``--tokens`` on the embedded runtime would be silently ignored: it is refused instead."""
    shell = Shell(tmp_path, user_env(**{KEY_ENV: secret_key}))
    refused = shell.run("kassasync ledger sync --tenant shop-a --tokens shared/tokens.db")
    assert refused.code == 2 and refused.out == "", str(refused)
    [line] = refused.err.strip().splitlines()
    assert line.startswith("kassasync: --tokens names the Kafka workers' token store"), line
