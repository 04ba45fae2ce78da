"""``kassasync store`` tried from outside, as an operator would: data folders the other commands
read without trouble must read the same here, read-only, and a wrong one is one line."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import structlog

from engine.cli.main import main
from engine.logging import configure
from engine.store.db import Database
from tests.ops.world import new_engine, paused_with_dead_letters


@pytest.fixture(autouse=True)
def _keep_logging() -> object:
    saved = structlog.get_config()
    configure("WARNING")  # logs to stderr: stdout is the commands' output
    yield None
    structlog.configure(**saved)


@pytest.fixture()
async def data(tmp_path: Path) -> Path:
    folder = tmp_path / "plain"
    folder.mkdir()
    engine = new_engine(folder)
    await paused_with_dead_letters(engine, "1", "2")
    engine.db.close()
    return folder


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["--log-level", "WARNING", *argv])
    return code, capsys.readouterr().out


def rows_by_table(out: str) -> dict[str, int]:
    return {t["name"]: t["rows"] for t in json.loads(out)["tables"]}


@pytest.mark.parametrize("name", ["shop?1", "shop#1", "shop%41"])
def test_store_reads_a_data_folder_whose_name_has_uri_characters(
    data: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """A folder named ``shop?1`` (or with ``#`` or ``%``) is an ordinary folder: ``kassasync
    status`` reads it. ``kassasync store`` builds a ``file:`` URI from the path without quoting
    it, so SQLite opens the path cut at ``?``/``#`` (``shop``) read-write — creating an empty
    file there — and reports the real store as "not a Kassasync store"; with ``%41`` it opens
    ``shopA`` and ends in a traceback."""
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
