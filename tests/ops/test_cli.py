"""``kassasync status | deadletters | tenants``: on the database, and through a running engine."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import structlog

from engine.cli.main import main
from engine.cli.util import CliError
from engine.logging import configure
from engine.secrets import KEY_ENV, SecretBox, generate_key
from engine.store.db import Database
from engine.tenants import TenantDirectory
from tests.ops.world import (
    ADMIN_TOKEN,
    TENANT,
    live_paused_engine,
    new_engine,
    paused_with_dead_letters,
    wait_for,
)


@pytest.fixture(autouse=True)
def _keep_logging() -> object:
    saved = structlog.get_config()
    configure("WARNING")  # logs to stderr: stdout is the commands' output
    yield None
    structlog.configure(**saved)


@pytest.fixture()
async def data(tmp_path: Path) -> Path:
    """An engine's data folder, alone in its own folder (tests put others beside it)."""
    folder = tmp_path / "plain"
    folder.mkdir()
    engine = new_engine(folder)
    await paused_with_dead_letters(engine, "1", "2")
    engine.db.close()
    return folder


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["--log-level", "WARNING", *argv])
    return code, capsys.readouterr().out


def test_status_shows_lights_per_tenant_and_flow(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(capsys, "status", "--data", str(data))
    assert code == 2  # something is red
    assert "bageriet" in out and "paused" in out and "Payments" in out
    assert "Your Fortnox login has expired" in out
    code, out = run(capsys, "status", "--data", str(data), "--json")
    [tenant] = json.loads(out)["tenants"]
    assert tenant["light"] == "red" and tenant["dead_letters"] == 2
    with pytest.raises(SystemExit):
        run(capsys, "status", "--data", str(data), "--tenant", "nobody")
    with pytest.raises(SystemExit):
        run(capsys, "status", "--data", str(data / "missing"))


def test_deadletters_list_retry_and_discard_offline(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(capsys, "deadletters", "list", "--data", str(data), "--json")
    letters = json.loads(out)["dead_letters"]
    assert code == 0 and len(letters) == 2
    code, out = run(capsys, "deadletters", "list", "--data", str(data))
    assert "till.payment.register" in out
    first = letters[0]["id"]
    code, out = run(capsys, "deadletters", "retry", first, "--data", str(data), "--offline")
    assert code == 0 and f"{first}: retry done (command requeued)" in out
    code, out = run(capsys, "deadletters", "retry", first, "--data", str(data), "--offline")
    assert code == 1  # already retried
    with pytest.raises(SystemExit):
        run(capsys, "deadletters", "discard", "--data", str(data), "--offline")
    code, out = run(
        capsys, "deadletters", "discard", "--tenant", TENANT, "--data", str(data), "--offline"
    )
    assert code == 0 and letters[1]["id"] in out
    code, out = run(
        capsys, "deadletters", "list", "--data", str(data), "--status", "discarded", "--json"
    )
    assert [d["id"] for d in json.loads(out)["dead_letters"]] == [letters[1]["id"]]


def test_tenants_add_list_pause_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, generate_key())
    config = tmp_path / "tenants.yaml"
    config.write_text(
        "tenants:\n  - id: kiosken\n    name: Kiosken\n    till:\n      token: env:TILL_TOKEN\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("TILL_TOKEN", "till-token-for-kiosken")
    data = tmp_path / "data"
    code, out = run(capsys, "tenants", "add", "--config", str(config), "--data", str(data))
    added = json.loads(out)
    assert code == 0 and added["tenant"] == "kiosken" and added["api_key"].startswith("ks_kiosken_")
    code, out = run(capsys, "tenants", "list", "--data", str(data))
    assert out.split() == ["kiosken"]
    code, out = run(
        capsys,
        "tenants",
        "pause",
        "kiosken",
        "--reason",
        "new owner",
        "--data",
        str(data),
        "--offline",
    )
    assert code == 0 and "kiosken: paused" in out
    engine = new_engine(data)
    engine.processor.step()
    paused = engine.edge.paused("kiosken")
    assert paused is not None and "new owner" in paused.message
    engine.db.close()
    code, out = run(capsys, "tenants", "list", "--data", str(data), "--json")
    assert json.loads(out) == [{"tenant": "kiosken", "name": "Kiosken", "paused": True}]
    code, out = run(capsys, "tenants", "resume", "kiosken", "--data", str(data), "--offline")
    assert code == 0 and "kiosken: resumed" in out
    code, _ = run(capsys, "tenants", "resume", "nobody", "--data", str(data), "--offline")
    assert code == 1


def test_tenants_add_with_another_key_is_refused_and_the_stored_secrets_stay_readable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found from outside: `tenants add` run with a wrong (well-formed) KASSASYNC_SECRET_KEY
    exited 0 and re-sealed the tenant's secrets with it, so the engine, which has the right key,
    could no longer open them. It is refused now, in one line, and nothing is written."""
    right = generate_key()
    monkeypatch.setenv(KEY_ENV, right)
    monkeypatch.setenv("TILL_TOKEN", "till-token-for-kiosken")
    config = tmp_path / "tenants.yaml"
    config.write_text(
        "tenants:\n  - id: kiosken\n    till:\n      token: env:TILL_TOKEN\n", encoding="utf-8"
    )
    data = tmp_path / "data"
    assert run(capsys, "tenants", "add", "--config", str(config), "--data", str(data))[0] == 0
    monkeypatch.setenv(KEY_ENV, generate_key())
    with pytest.raises(CliError) as refused:
        run(capsys, "tenants", "add", "--config", str(config), "--data", str(data))
    assert "sealed with another KASSASYNC_SECRET_KEY" in refused.value.message
    assert "sealed with another KASSASYNC_SECRET_KEY" in capsys.readouterr().err
    db = Database(data / "kassasync.db")
    try:
        stored = TenantDirectory(db, SecretBox(right)).get("kiosken")
    finally:
        db.close()
    assert stored is not None and stored.till.token is not None
    assert stored.till.token.reveal() == "till-token-for-kiosken"


def test_actions_go_through_the_running_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with live_paused_engine(tmp_path / "engine") as (live, till):
        data = str(tmp_path / "engine")
        monkeypatch.delenv("KASSASYNC_ADMIN_TOKEN", raising=False)
        with pytest.raises(SystemExit, match="KASSASYNC_ADMIN_TOKEN"):
            run(capsys, "deadletters", "retry", "--all", "--data", data, "--url", live.url)
        monkeypatch.setenv("KASSASYNC_ADMIN_TOKEN", ADMIN_TOKEN)
        code, out = run(
            capsys, "deadletters", "retry", "--all", "--data", data, "--url", live.url, "--json"
        )
        [result] = json.loads(out)["results"]
        assert code == 0 and result["requeued"] is True
        wait_for(lambda: till.received)
        code, out = run(capsys, "tenants", "resume", TENANT, "--data", data, "--url", live.url)
        assert code == 0
        with live.api() as api:
            wait_for(lambda: api.get("/ops/api/overview").json()["tenants"][0]["paused"] is None)
        monkeypatch.setenv("KASSASYNC_ADMIN_TOKEN", "not-the-admin-token-at-all")
        with pytest.raises(SystemExit, match="refused the admin token"):
            run(capsys, "tenants", "pause", TENANT, "--data", data, "--url", live.url)
    with pytest.raises(SystemExit, match="no engine answers"):
        run(capsys, "tenants", "pause", TENANT, "--data", data, "--url", live.url)


def test_store_shows_what_takes_room_in_the_database(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``kassasync store``: every table's rows as the database counts them, the bytes of its
    pages and indexes, and the state by family; read-only, beside a running engine."""
    code, out = run(capsys, "store", "--data", str(data), "--json")
    assert code == 0
    found = json.loads(out)
    db = Database(data / "kassasync.db")
    try:
        tables = {t["name"]: t for t in found["tables"]}
        for name in ("state", "outbox", "dead_letters", "log_till_events", "tenants"):
            count = db.conn.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0]
            assert tables[name]["rows"] == count, name
        assert tables["dead_letters"]["rows"] == 2 and tables["state"]["rows"] > 0
        families = db.conn.execute(
            "SELECT family, COUNT(*), SUM(length(value)) FROM state GROUP BY family"
        ).fetchall()
        assert {f["family"]: (f["rows"], f["value_bytes"]) for f in found["state"]} == {
            str(family): (int(rows), int(size)) for family, rows, size in families
        }
        pages = db.conn.execute("PRAGMA page_count").fetchone()[0]
        page_size = db.conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        db.close()
    counted = sum(t["bytes"] for t in found["tables"])
    # Every table's and index's pages are counted once (SQLite's own schema page aside).
    assert pages * page_size - page_size * 4 <= counted + found["free_bytes"] <= pages * page_size
    code, out = run(capsys, "store", "--data", str(data))
    assert code == 0 and "dead_letters" in out and "State family" in out
    with pytest.raises(SystemExit, match="no engine database"):
        run(capsys, "store", "--data", str(data / "missing"))
    (data / "other").mkdir()
    (data / "other" / "kassasync.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(SystemExit, match="is not a Kassasync store"):
        run(capsys, "store", "--data", str(data / "other"))


def test_the_engine_does_not_import_sqlite_utils() -> None:
    """sqlite-utils serves ``kassasync store`` only: the engine's start does not pay its import."""
    import subprocess
    import sys

    code = (
        "import sys, engine.embedded.runtime, engine.cli.main, engine.kafka.runtime; "
        "sys.exit(1 if 'sqlite_utils' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def rows_by_table(out: str) -> dict[str, int]:
    return {t["name"]: t["rows"] for t in json.loads(out)["tables"]}


@pytest.mark.parametrize("name", ["shop?1", "shop#1", "shop%41"])
def test_store_reads_a_data_folder_whose_name_has_uri_characters(
    data: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """A folder named ``shop?1`` (or with ``#`` or ``%``) is an ordinary folder. The name is
    quoted into SQLite's URI: unquoted, SQLite opened the path cut at ``?``/``#`` (``shop``)
    read-write, creating an empty file there, and ``%41`` opened ``shopA``."""
    code, out = run(capsys, "store", "--data", str(data), "--json")
    assert code == 0
    expected = rows_by_table(out)
    odd = data.parent / name
    shutil.copytree(data, odd)
    before = sorted(p.name for p in data.parent.iterdir())
    code, out = run(capsys, "store", "--data", str(odd), "--json")
    assert code == 0
    assert rows_by_table(out) == expected
    # Read-only: nothing is created beside (or in place of) the data folder.
    assert sorted(p.name for p in data.parent.iterdir()) == before


def test_store_on_a_folder_whose_database_is_a_directory_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``kassasync.db`` that is a directory is not a Kassasync store: one line naming it (as for
    a file that is not a database), not a ``sqlite3.OperationalError`` traceback."""
    (tmp_path / "kassasync.db").mkdir()
    with pytest.raises(SystemExit, match=r"kassasync\.db"):
        run(capsys, "store", "--data", str(tmp_path))


def test_store_in_a_read_only_folder_reads_the_file_as_immutable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cleanly stopped store on a read-only mount: SQLite cannot make the WAL's shared-memory
    file, so a read-only open fails ("unable to open database file"); no engine can be writing
    there, so the file is read as immutable. (Simulated: as root, only a bind mount makes a
    folder read-only; ``unshare -m`` with ``mount -o remount,ro,bind`` shows the same.)"""
    from engine.store import footprint as module

    db = Database(tmp_path / "kassasync.db")
    db.close()
    real = sqlite3.connect
    opened: list[str] = []

    def connect(database: str, uri: bool = False) -> sqlite3.Connection:
        opened.append(database)
        if "mode=ro" in database:  # as SQLite fails there: the -shm file cannot be made
            return real(str(tmp_path / "absent" / "x.db"))
        return real(database, uri=uri)

    monkeypatch.setattr(module.sqlite3, "connect", connect)
    monkeypatch.setattr(module.os, "access", lambda path, mode: False)
    found = module.footprint(tmp_path / "kassasync.db")
    assert [t.name for t in found.tables if t.name == "state"] == ["state"]
    assert opened[-1].endswith("?immutable=1")
    monkeypatch.setattr(module.os, "access", lambda path, mode: True)
    with pytest.raises(module.NotAStore, match="cannot be read"):
        module.footprint(tmp_path / "kassasync.db")
