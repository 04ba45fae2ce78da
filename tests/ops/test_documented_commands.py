"""Every ``kassasync`` command line of the README and docs/*.md, run as a user types it: the
installed command, in a subprocess, in a fresh folder, with only the variables a user would set.

One operator's session walks the embedded runtime's commands in the order a person would use
them (sandbox, tenants, the engine, status, dead letters, exports, the ledger, replay); the Kafka
runtime's commands need a broker (without ``KASSASYNC_KAFKA_BOOTSTRAP`` they fail with
instructions); the headless demo runs on its own. Where a documented line names a port (8080,
9000, 8400), the session uses a free one instead: this machine runs other engines, and the line
is otherwise typed as written.
A documented line no test runs fails :func:`test_every_documented_command_is_run`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from engine.demo import DEMO_SETTINGS
from engine.secrets import generate_key
from tests.ops.commands import (
    RefusingTill,
    Result,
    Shell,
    documented_lines,
    free_port,
    user_env,
    wait_until,
)
from tests.scenarios.kafka_runtime import kafka_bootstrap

#: The documented lines each test below runs (the Kafka ones when a broker is given).
SESSION = {
    "kassasync schema --out schemas/",
    "kassasync sandbox --port 9000 --seed demo",
    "kassasync sandbox --port 8400 --seed demo",
    "kassasync tenants add --config tenants.yaml",
    "kassasync run --data var/kassasync --http-port 8080",
    "kassasync tenants list|pause|resume",
    "kassasync tenants list [--json]",
    'kassasync tenants pause T --reason "…"',
    'kassasync tenants resume T [--reason "…"]',
    'kassasync tenants settings T [--set KEY=VALUE]... [--note "…"] [--dry-run | --force] [--json]',
    "kassasync tenants settings T --versions | --restore N",
    "kassasync status",
    "kassasync status [--tenant T] [--json]",
    "kassasync store [--json]",
    "kassasync store",
    "kassasync deadletters list|retry|discard",
    "kassasync deadletters list [--tenant T] [--status open|retried|discarded] [--json]",
    "kassasync deadletters retry ID | --tenant T | --all",
    "kassasync deadletters discard ID | --tenant T | --all",
    "kassasync commands list [--tenant T] [--json]",
    "kassasync commands retry ID",
    'kassasync commands cancel ID [--reason "…"]',
    "kassasync export zreports --tenant T --from D --to D",
    "kassasync import-sie FILE --tenant T",
    "kassasync sie check FILE...",
    "kassasync ledger sync|export --tenant T [--year Y]",
    "kassasync ledger export --tenant T [--year Y | --years N] [--ksumma] [--out DIR]",
    "kassasync import-sie FILE --tenant T [--ledger-range FROM:TO] [--origin NAME] "
    "[--dimension N=costcenter|N=project]",
    "kassasync agent watch DIR --url URL --tenant T --key-file FILE",
    "kassasync connect T [--add] [--link|--status]",
    "kassasync connect T [--add [--name N] [--till-endpoint URL]] [--link | --status]",
    "kassasync replay --tenant T --from OFFSET_OR_TIME [--dry-run]",
}
DEMO = {"kassasync demo --duration 30 --json"}
KAFKA = {
    "kassasync kafka init | kassasync worker",
    "kassasync kafka init [--partitions 8] [--replication 1] "
    "[--cleanup sync.outcomes=compact,delete]",
    "kassasync kafka tenants add --config tenants.yaml",
    "kassasync worker [--tokens /shared/tokens.db]",
    "kassasync kafka ingest --host 0.0.0.0 --port 8080",
    "kassasync replay --runtime kafka --tenant shop-1 "
    "[--from 1200 | --from 2026-11-01T00:00] [--dry-run]",
}

# A till's daily SIE 4I file (the Z-report of sie-and-pos.md §1.9), dated today.
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
"""


def test_every_documented_command_is_run() -> None:
    documented = documented_lines()
    missing = {
        line: where for line, where in documented.items() if line not in SESSION | DEMO | KAFKA
    }
    assert not missing, f"documented commands no test runs: {missing}"
    gone = (SESSION | DEMO | KAFKA) - set(documented)
    assert not gone, f"commands the tests run that the docs no longer show: {gone}"


def ok(result: Result, code: int = 0) -> Result:
    assert result.code == code, str(result)
    assert "Traceback" not in result.err, str(result)
    return result


@pytest.mark.slow
def test_an_operators_session_runs_every_documented_embedded_command(tmp_path: Path) -> None:
    key, token = generate_key(), secrets.token_urlsafe(24)
    shell = Shell(tmp_path, user_env(KASSASYNC_SECRET_KEY=key, DEMO_TILL_TOKEN="till-token-demo"))
    ran: set[str] = set()

    # Message schemas for a till vendor.
    schema = ok(shell.run("kassasync schema --out schemas/"))
    assert schema.json()["written"] > 10 and len(list((tmp_path / "schemas").iterdir())) > 10
    ran.add("kassasync schema --out schemas/")

    sandbox_port, other_port, engine_port = free_port(), free_port(), free_port()
    with (
        shell.background(f"kassasync sandbox --port {sandbox_port} --seed demo") as sandbox,
        shell.background(f"kassasync sandbox --port {other_port} --seed demo") as other,
        RefusingTill() as till,
    ):
        credentials = _json_line(sandbox.wait_for_output(r"^\{.*\}\n"))
        assert credentials["base_url"] == f"http://127.0.0.1:{sandbox_port}"
        other_url = str(_json_line(other.wait_for_output(r"^\{.*\}\n"))["base_url"])
        assert other_url == f"http://127.0.0.1:{other_port}"
        # The line comes first, the server a moment later: Ctrl-C once it answers.
        wait_until(lambda: _serving(other_url), seconds=60)
        assert other.stop() == 0, str(other)
        ran |= {
            "kassasync sandbox --port 9000 --seed demo",
            "kassasync sandbox --port 8400 --seed demo",
        }

        _tenants_file(tmp_path / "tenants.yaml", credentials, till.url)
        added = ok(shell.run("kassasync tenants add --config tenants.yaml")).json()
        assert added["tenant"] == "demo" and added["api_key"].startswith("ks_demo_")
        ran.add("kassasync tenants add --config tenants.yaml")

        engine_url = f"http://127.0.0.1:{engine_port}"
        shell.env |= {"KASSASYNC_ADMIN_TOKEN": token, "KASSASYNC_URL": engine_url}
        with shell.background(
            f"kassasync run --data var/kassasync --http-port {engine_port}"
        ) as engine:
            wait_until(lambda: _healthy(engine_url), seconds=60)
            ran.add("kassasync run --data var/kassasync --http-port 8080")
            ran |= _status_and_tenants(shell)
            ran |= _dead_letters(shell)
            ran |= _commands(shell)
            ran |= _bookkeeping(shell, tmp_path)
            ran |= _agent(shell, tmp_path, engine_url, str(added["api_key"]))
            ran |= _connect(shell, credentials, engine_url)
            ran |= _settings(shell, engine_url, token)
            # The engine is stopped once it is quiet (its log processed, its outbox empty, three
            # reads in a row a second apart): the replay below then has the history the live
            # state was built from. (Stopping Fortnox first would leave retries in flight.)
            quiet = [0]

            def settled() -> bool:
                quiet[0] = quiet[0] + 1 if _quiet(engine_url) else 0
                return quiet[0] >= 3

            wait_until(settled, seconds=90, every=1.0)
            assert engine.stop() == 0, str(engine)
        assert sandbox.stop() == 0, str(sandbox)

    # Replay, with the engine stopped: the history rebuilds the live state exactly.
    for line in (
        "kassasync replay --tenant demo --from 0 --dry-run",
        "kassasync replay --tenant demo --from 2026-01-01T00:00",
    ):
        shown = ok(shell.run(line))
        assert re.search(r"tenant demo: \d+ messages replayed .* 0 differences", shown.out), str(
            shown
        )
    # KASSASYNC_DATA is honoured: elsewhere, pointed at the data, replay finds the same.
    elsewhere = Shell(
        tmp_path / "schemas", shell.env | {"KASSASYNC_DATA": str(tmp_path / "var/kassasync")}
    )
    assert "0 differences" in ok(elsewhere.run("kassasync replay --tenant demo --from 0")).out
    ran.add("kassasync replay --tenant T --from OFFSET_OR_TIME [--dry-run]")

    assert ran == SESSION, SESSION - ran


def _json_line(found: re.Match[str]) -> dict[str, object]:
    value = yaml.safe_load(found.group(0))
    assert isinstance(value, dict)
    return value


def _serving(url: str) -> bool:
    try:
        httpx.get(url + "/", timeout=2)
    except httpx.HTTPError:
        return False
    return True


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _quiet(url: str) -> bool:
    """Nothing left on the engine's log to process and nothing in its outbox (``/metrics``)."""
    text = httpx.get(url + "/metrics", timeout=5, follow_redirects=True).text
    found = re.findall(
        r"^kassasync_(?:consumer_lag_messages|outbox_depth)\{[^}]*\} ([0-9.e+]+)$", text, re.M
    )
    return bool(found) and all(float(value) == 0 for value in found)


def _tenants_file(path: Path, credentials: dict[str, object], till_url: str) -> None:
    base = str(credentials["base_url"])
    tenant = {
        "id": "demo",
        "name": "Exempelbutiken AB",
        "settings": DEMO_SETTINGS | {"ledger": {"enabled": True}},
        "till": {"endpoint": till_url, "token": "env:DEMO_TILL_TOKEN"},  # Shell's env has it
        "fortnox": {
            "api_base": base,
            "auth_base": base,
            "client_id": credentials["client_id"],
            "client_secret": credentials["client_secret"],
            "fortnox_tenant_id": credentials["tenant_id"],
            "poll_seconds": 2,
            "rate_window_seconds": 5,
        },
    }
    path.write_text(yaml.safe_dump({"tenants": [tenant]}, sort_keys=False), encoding="utf-8")


def _status_and_tenants(shell: Shell) -> set[str]:
    listed, as_list = shell.run_all("kassasync tenants list", "kassasync tenants list --json")
    assert ok(listed).out.split() == ["demo"]
    assert ok(as_list).json()[0]["tenant"] == "demo"

    paused = ok(shell.run('kassasync tenants pause demo --reason "new owner"'))
    assert "demo: paused" in paused.out and "via the running engine" in paused.err
    shown = shell.run("kassasync status --tenant demo --json")
    [summary] = shown.json()["tenants"]
    assert summary["paused"] is not None and "new owner" in str(summary["paused"]), str(shown)
    resumed = ok(shell.run('kassasync tenants resume demo --reason "sorted"'))
    assert "demo: resumed" in resumed.out

    table, as_json = shell.run_all("kassasync status", "kassasync status --json")
    assert table.code in (0, 2) and "demo" in table.out and "Customers" in table.out, str(table)
    lights = [t["light"] for t in as_json.json()["tenants"]]
    assert as_json.code == (2 if "red" in lights else 0), str(as_json)

    room, room_json = shell.run_all("kassasync store", "kassasync store --json")
    assert "outbox" in ok(room).out and "State family" in room.out, str(room)
    tables = {t["name"]: t["rows"] for t in ok(room_json).json()["tables"]}
    assert tables["tenants"] == 1 and tables["state"] > 0, str(room_json)
    return {
        "kassasync store [--json]",
        "kassasync store",
        "kassasync tenants list|pause|resume",
        "kassasync tenants list [--json]",
        'kassasync tenants pause T --reason "…"',
        'kassasync tenants resume T [--reason "…"]',
        "kassasync status",
        "kassasync status [--tenant T] [--json]",
    }


def _open_letters(shell: Shell) -> list[dict[str, object]]:
    letters = ok(shell.run("kassasync deadletters list --tenant demo --status open --json"))
    found: list[dict[str, object]] = letters.json()["dead_letters"]
    return found


def _dead_letters(shell: Shell) -> set[str]:
    # The till refuses every command: the articles Fortnox has become dead letters.
    letters = wait_until(lambda: _open_letters(shell), seconds=60)
    first = str(letters[0]["id"])
    table, retried = shell.run_all(
        "kassasync deadletters list", f"kassasync deadletters retry {first}"
    )
    assert "till." in ok(table).out and "refuses everything" in table.out, str(table)
    assert f"{first}: retry done" in ok(retried).out
    listed = ok(shell.run("kassasync deadletters list --status retried --json"))
    assert first in {d["id"] for d in listed.json()["dead_letters"]}
    ok(shell.run("kassasync deadletters retry --tenant demo"))
    ok(shell.run("kassasync deadletters retry --all"))
    wait_until(lambda: _open_letters(shell), seconds=60)  # refused again
    second = str(_open_letters(shell)[0]["id"])
    assert f"{second}: discard done" in ok(shell.run(f"kassasync deadletters discard {second}")).out
    ok(shell.run("kassasync deadletters discard --tenant demo"))
    ok(shell.run("kassasync deadletters discard --all"))
    discarded = ok(shell.run("kassasync deadletters list --status discarded --json"))
    assert second in {d["id"] for d in discarded.json()["dead_letters"]}
    return {
        "kassasync deadletters list|retry|discard",
        "kassasync deadletters list [--tenant T] [--status open|retried|discarded] [--json]",
        "kassasync deadletters retry ID | --tenant T | --all",
        "kassasync deadletters discard ID | --tenant T | --all",
    }


def _commands(shell: Shell) -> set[str]:
    """The commands being retried, through the running engine (the refusing till makes dead
    letters, not retries: tests/reliability/test_head_of_line.py has a till that answers 5xx)."""
    listed = ok(shell.run("kassasync commands list --tenant demo --json")).json()
    assert isinstance(listed["commands"], list)
    assert all(c["tenant"] == "demo" and c["attempts"] >= 1 for c in listed["commands"])
    retried = ok(shell.run("kassasync commands retry no-such-command"), code=1)
    assert "no command 'no-such-command'" in retried.err, str(retried)
    cancelled = ok(
        shell.run('kassasync commands cancel no-such-command --reason "paid by hand"'), code=1
    )
    assert "no command 'no-such-command'" in cancelled.err, str(cancelled)
    return {
        "kassasync commands list [--tenant T] [--json]",
        "kassasync commands retry ID",
        'kassasync commands cancel ID [--reason "…"]',
    }


def _bookkeeping(shell: Shell, folder: Path) -> set[str]:
    today = dt.date.today()
    exported = ok(
        shell.run(
            f"kassasync export zreports --tenant demo --from {today.replace(day=1)} --to {today}"
        )
    ).json()
    assert exported["requested"] == "zreports" and exported["to"] == str(today)

    day = today.strftime("%Y%m%d")
    sie = folder / f"Z{day}.SI"
    sie.write_bytes(SIE_4I.format(day=day).replace("\n", "\r\n").encode("cp437"))
    imported, checked = shell.run_all(
        f"kassasync import-sie {sie.name} --tenant demo",
        f"kassasync sie check {sie.name} schemas/../{sie.name}",
    )
    assert (ok(imported).json()["vouchers"], imported.json()["accepted"]) == (1, 1), imported
    assert len(ok(checked).json_lines()) == 2

    synced = ok(shell.run(f"kassasync ledger sync --tenant demo --year {today.year}")).json()
    assert {"vouchers", "downloaded"} <= set(synced), synced
    years = ok(shell.run(f"kassasync ledger export --tenant demo --year {today.year}"))
    [year] = years.json_lines()
    assert Path(folder / str(year["path"])).exists() or Path(str(year["path"])).exists(), year
    # The same day from another till, with its own origin and dimension 1 as the cost centre.
    other = folder / f"K2-{day}.SI"
    other.write_bytes(
        SIE_4I.format(day=day)
        .replace("kassa K1", "kassa K2")
        .replace("#TRANS 3001 {}", '#TRANS 3001 {1 "100"}')
        .replace("\n", "\r\n")
        .encode("cp437")
    )
    second = ok(
        shell.run(
            f"kassasync import-sie {other.name} --tenant demo --origin 'Kassan K2' "
            "--dimension 1=costcenter"
        )
    ).json()
    assert (second["vouchers"], second["accepted"]) == (1, 1), second
    exported = ok(
        shell.run("kassasync ledger export --tenant demo --years 1 --ksumma --out sie-export")
    )
    assert len(exported.json_lines()) == 1 and any((folder / "sie-export").iterdir())
    return {
        "kassasync ledger export --tenant T [--year Y | --years N] [--ksumma] [--out DIR]",
        "kassasync import-sie FILE --tenant T [--ledger-range FROM:TO] [--origin NAME] "
        "[--dimension N=costcenter|N=project]",
        "kassasync export zreports --tenant T --from D --to D",
        "kassasync import-sie FILE --tenant T",
        "kassasync sie check FILE...",
        "kassasync ledger sync|export --tenant T [--year Y]",
    }


def _settings(shell: Shell, engine_url: str, token: str) -> set[str]:
    """The demo shop's settings beside its Fortnox's lists; a series that is not manual is
    refused with its fix, a manual one saved, and the running engine uses it at once; the
    versions, and the first one restored."""

    def series() -> str:
        answer = httpx.get(
            f"{engine_url}/ops/api/tenants/demo/settings",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        return str(answer.json()["settings"]["zreports"]["series"])

    shown = ok(shell.run("kassasync tenants settings demo"))
    assert "F Kassa (manual)" in shown.out and "B Kundfakturor (NOT manual)" in shown.out
    assert "Preflight: no problems." in shown.out, str(shown)
    refused = ok(shell.run("kassasync tenants settings demo --set zreports.series=B"), 1)
    assert "Voucher series B is not manual" in refused.out and "Not saved" in refused.out
    checked = ok(
        shell.run("kassasync tenants settings demo --set zreports.series=A --dry-run --json")
    ).json()
    assert checked["problems"] == [] and checked["saved_version"] is None
    saved = ok(shell.run('kassasync tenants settings demo --set zreports.series=A --note "A"'))
    assert "Saved as version" in saved.out
    wait_until(lambda: series() == "A", seconds=30)  # the running engine, no restart
    versions = ok(shell.run("kassasync tenants settings demo --versions"))
    assert "zreports.series: F -> A" in versions.out, str(versions)
    first = re.findall(r"^version (\d+)", versions.out, re.M)[-1]
    ok(shell.run(f"kassasync tenants settings demo --restore {first}"))
    wait_until(lambda: series() == "F", seconds=30)
    return {
        'kassasync tenants settings T [--set KEY=VALUE]... [--note "…"] [--dry-run | --force] '
        "[--json]",
        "kassasync tenants settings T --versions | --restore N",
    }


def _agent(shell: Shell, folder: Path, engine_url: str, key: str) -> set[str]:
    """The till-PC agent against the running engine: a daily file dropped in its folder is sent
    and moved to sent/ with its report (its vouchers were imported above: received before)."""
    (folder / "ingest.key").write_text(key + "\n", encoding="utf-8")
    inbox = folder / "sie-in"
    inbox.mkdir()
    with shell.background(
        f"kassasync agent watch sie-in --url {engine_url} --tenant demo --key-file ingest.key"
    ) as agent:
        today = dt.date.today().strftime("%Y%m%d")
        (inbox / f"Z{today}-agent.SI").write_bytes(
            SIE_4I.format(day=today).replace("\n", "\r\n").encode("cp437")
        )
        report = inbox / "sent" / f"Z{today}-agent.SI.report.txt"
        wait_until(report.exists, seconds=60)
        assert "received by the engine" in report.read_text(encoding="utf-8")
        assert agent.stop() == 0, str(agent)
    return {"kassasync agent watch DIR --url URL --tenant T --key-file FILE"}


def _connect(shell: Shell, credentials: dict[str, object], engine_url: str) -> set[str]:
    """A shop added with no tokens: its consent link for the dashboard's callback, and its
    state. (The consent on this machine, ``kassasync connect T`` with a browser, is driven by
    the onboarding tests.)"""
    base = str(credentials["base_url"])
    app = {
        "KASSASYNC_FORTNOX_CLIENT_ID": str(credentials["client_id"]),
        "KASSASYNC_FORTNOX_CLIENT_SECRET": str(credentials["client_secret"]),
        "KASSASYNC_FORTNOX_API_BASE": base,
        "KASSASYNC_FORTNOX_AUTH_BASE": base,
        "KASSASYNC_PUBLIC_URL": engine_url,
    }
    added = ok(
        shell.run(
            "kassasync connect shop-2 --add --name 'Shop 2' "
            "--till-endpoint http://127.0.0.1:9/kassasync/commands --link",
            **app,
        )
    )
    first, link = added.out.strip().splitlines()
    assert json.loads(first)["connection"] == "not_connected", str(added)
    assert link.startswith(base) and "state=" in link, link
    status = ok(shell.run("kassasync connect shop-2 --status", **app)).json()
    assert status["tenant"] == "shop-2" and status["state"] == "not_connected", status
    return {
        "kassasync connect T [--add] [--link|--status]",
        "kassasync connect T [--add [--name N] [--till-endpoint URL]] [--link | --status]",
    }


@pytest.mark.slow
def test_the_headless_demo_prints_its_summary(tmp_path: Path) -> None:
    """``kassasync demo --duration 30 --json``, shortened to 5 s of activity (the summary and
    the exit status are the same; the demo then waits for quiescence)."""
    shell = Shell(tmp_path, user_env())
    port = free_port()
    result = ok(shell.run(f"kassasync demo --duration 5 --json --http-port {port}", timeout=180))
    summary = result.json_lines()[-1]
    assert summary["drift"] == 0 and summary["events_in"] > 0, summary


@pytest.mark.kafka
def test_the_kafka_runtimes_documented_commands(tmp_path: Path) -> None:
    bootstrap = kafka_bootstrap()  # fails with instructions when no broker is given, never skips
    prefix = f"doc{uuid.uuid4().hex[:8]}."
    shell = Shell(
        tmp_path,
        user_env(
            KASSASYNC_SECRET_KEY=generate_key(),
            KASSASYNC_KAFKA_BOOTSTRAP=bootstrap,
            KASSASYNC_KAFKA_PREFIX=prefix,
        ),
    )
    created = ok(
        shell.run(
            "kassasync kafka init --partitions 8 --replication 1 "
            "--cleanup sync.outcomes=compact,delete"
        )
    )
    assert prefix in created.out
    (tmp_path / "tenants.yaml").write_text(
        "tenants:\n  - id: shop-1\n    name: Shop 1\n", encoding="utf-8"
    )
    added = ok(shell.run("kassasync kafka tenants add --config tenants.yaml")).json()
    assert added["tenant"] == "shop-1" and added["api_key"].startswith("ks_shop-1_")

    port = free_port()
    with (
        shell.background(f"kassasync worker --tokens {tmp_path / 'tokens.db'}") as worker,
        shell.background(f"kassasync kafka ingest --host 127.0.0.1 --port {port}") as ingest,
    ):
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), seconds=60)
        answer = httpx.post(
            f"http://127.0.0.1:{port}/v1/tenants/shop-1/events",
            headers={"Authorization": f"Bearer {added['api_key']}"},
            json=[],
            timeout=10,
        )
        assert answer.status_code < 500, answer.text
        assert ingest.stop() == 0, str(ingest)
        assert worker.stop(seconds=60) == 0, str(worker)
    for line in (
        "kassasync replay --runtime kafka --tenant shop-1 --dry-run",
        "kassasync replay --runtime kafka --tenant shop-1 --from 2026-11-01T00:00",
    ):
        assert "0 differences" in ok(shell.run(line)).out


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
