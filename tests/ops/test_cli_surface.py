"""The command line a newcomer reads: ``--version``, help on every option with no leaked markup,
one-line errors with exit status 2, and the settings every command reads once."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from engine.cli.main import build_parser, main, package_version
from engine.cli.util import CliError, resolve, settings_of
from engine.logging import configure
from engine.settings import Settings, SettingsError, all_variable_names
from tests.ops.commands import REPO, Shell, user_env


@pytest.fixture(autouse=True)
def _keep_logging() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def parsers(
    parser: argparse.ArgumentParser | None = None,
) -> Iterator[argparse.ArgumentParser]:
    """The parser and every subcommand's, depth first."""
    parser = parser or build_parser()
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from parsers(sub)


def test_every_option_and_argument_has_help() -> None:
    missing = [
        f"{p.prog} {a.option_strings or a.dest}"
        for p in parsers()
        for a in p._actions
        if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)
        and not (a.help or "").strip()
    ]
    assert not missing, missing


def test_every_subcommand_has_help() -> None:
    for parser in parsers():
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {c.dest: (c.help or "").strip() for c in action._choices_actions}
                assert set(helps) == set(action.choices), parser.prog
                assert all(helps.values()), (parser.prog, helps)


def test_help_shows_no_markup() -> None:
    for parser in parsers():
        text = parser.format_help()
        assert "``" not in text and ":func:" not in text and ":class:" not in text, parser.prog


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"kassasync {package_version()}"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", package_version())


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["connectt"], "invalid choice: 'connectt'"),
        (["status", "--colour"], "unrecognized arguments: --colour"),
        (["tenants", "ad"], "tenants: argument action: invalid choice: 'ad'"),
        (["import-sie", "z.si"], "the following arguments are required: --tenant"),
        (["run", "--http-port", "eighty"], "invalid int value: 'eighty'"),
        (["--log-level", "loud", "status"], "KASSASYNC_LOG_LEVEL (flags): 'loud' is not one of"),
        (["status", "--data", "/nonexistent/kassasync"], "no engine database at"),
        (["deadletters", "retry", "--data", "/tmp"], "give a dead letter id, --tenant or --all"),
        (
            ["export", "zreports", "--tenant", "t", "--from", "x", "--to", "2026-01-01"],
            "argument --from: not a date (YYYY-MM-DD): 'x'",
        ),
        (["replay", "--tenant", "t", "--from", "yesterday"], "not an offset or an ISO time"),
        (["schema", "--out", "/proc/no/such/folder"], "/proc/no: No such file or directory"),
    ],
)
def test_a_cli_mistake_is_one_line_and_exit_2(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(CliError) as raised:
        main(argv)
    assert raised.value.code == 2
    captured = capsys.readouterr()
    [line] = captured.err.strip().splitlines()
    assert line.startswith("kassasync: ") and says in line, line
    assert not captured.out


def test_a_cli_mistake_from_the_shell_is_one_line_and_exit_2(tmp_path: Path) -> None:
    shell = Shell(tmp_path, user_env())
    for line, says in (
        ("kassasync connectt demo", "invalid choice: 'connectt'"),
        ("kassasync tenants add", "tenants add needs --config FILE"),
        ("kassasync ledger sync --tenant demo", "KASSASYNC_SECRET_KEY is not set"),
        ("kassasync sie check", "the following arguments are required: FILE"),
    ):
        result = shell.run(line)
        assert result.code == 2, str(result)
        [shown] = result.err.strip().splitlines()
        assert shown.startswith("kassasync: ") and says in shown, shown
    missing_key = shell.run("kassasync tenants add --config t.yaml", KASSASYNC_DATA="d")
    assert missing_key.code == 2 and "Traceback" not in missing_key.err, str(missing_key)
    bad_env = shell.run("kassasync status", KASSASYNC_KAFKA_PARTITIONS="eight")
    assert bad_env.code == 2, str(bad_env)
    [shown] = bad_env.err.strip().splitlines()
    assert "KASSASYNC_KAFKA_PARTITIONS (environment)" in shown, shown


def test_the_sandbox_keeps_its_own_log_level() -> None:
    """``kassasync sandbox --port 9000 --seed demo`` died with ``Unknown level: 'warning'``: the
    subcommand's ``--log-level`` (uvicorn's, lower case) overwrote the engine's."""
    args = build_parser().parse_args(
        ["--log-level", "debug", "sandbox", "--port", "0", "--seed", "demo"]
    )
    settings = resolve(args, Settings())
    assert settings.log_level == "DEBUG" and args.log_level == "warning"
    args = build_parser().parse_args(["sandbox", "--port", "0"])
    assert resolve(args, Settings()).log_level == "INFO"
    configure(resolve(args, Settings()).log_level)


def test_settings_come_from_the_environment_once_and_flags_win() -> None:
    env = {
        "KASSASYNC_DATA": "/srv/kassasync",
        "KASSASYNC_LOG_LEVEL": "warning",
        "KASSASYNC_KAFKA_PARTITIONS": "12",
        "KASSASYNC_SECRET_KEY_PREVIOUS": "a, b",
        "KASSASYNC_URL": "",
    }
    settings = Settings.from_env(env)
    assert settings.data == Path("/srv/kassasync") and settings.log_level == "WARNING"
    assert settings.kafka_partitions == 12 and settings.url is None
    assert [k.get_secret_value() for k in settings.secret_key_previous] == ["a", "b"]
    flagged = settings.with_flags(data="elsewhere", kafka_partitions=None, url="http://x:1")
    assert flagged.data == Path("elsewhere") and flagged.kafka_partitions == 12
    assert flagged.url == "http://x:1"
    with pytest.raises(SettingsError, match=r"^KASSASYNC_KAFKA_REPLICATION \(environment\)"):
        Settings.from_env({"KASSASYNC_KAFKA_REPLICATION": "0"})
    assert "s3cr3t-value" not in repr(Settings.from_env({"KASSASYNC_SECRET_KEY": "s3cr3t-value"}))


def test_every_command_resolves_its_data_folder_from_one_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``KASSASYNC_DATA`` had three defaults and ``replay`` ignored it: now every command with a
    data folder gets it from the settings (flag, else the variable, else var/kassasync)."""
    monkeypatch.setenv("KASSASYNC_DATA", "/from/env")
    commands = {
        "status": [],
        "deadletters": ["list"],
        "tenants": ["list"],
        "export": ["zreports", "--tenant", "t", "--from", "2026-01-01", "--to", "2026-01-02"],
        "import-sie": ["f.si", "--tenant", "t"],
        "ledger": ["sync", "--tenant", "t"],
        "replay": ["--tenant", "t"],
        "run": [],
        "worker": [],
    }
    for command, rest in commands.items():
        args = build_parser().parse_args([command, *rest])
        assert settings_of(args).data == Path("/from/env"), command
        assert args.data == "/from/env", command
        args = build_parser().parse_args([command, *rest, "--data", "flag"])
        assert settings_of(args).data == Path("flag"), command
    demo = build_parser().parse_args(["demo"])
    assert demo.demo_data is None  # the demo makes a fresh folder; it never uses an engine's


def _variables(text: str) -> set[str]:
    """``KASSASYNC_*`` names in a text (a family such as ``KASSASYNC_FORTNOX_*`` is no name)."""
    found = re.findall(r"KASSASYNC_[A-Z0-9_]*\*?", text)
    return {name for name in found if not name.endswith(("*", "_"))}


def test_every_kassasync_variable_in_the_repository_is_documented() -> None:
    used: set[str] = set()
    for folder in ("engine", "sandbox", "topics", "reconcilers", "deploy", "chaos", "bench"):
        for path in (REPO / folder).rglob("*.py"):
            used |= _variables(path.read_text(encoding="utf-8"))
    for name in ("docker-compose.yml", "Makefile", "scripts/test-with-kafka.sh"):
        path = REPO / name
        if path.exists():
            used |= _variables(path.read_text(encoding="utf-8"))
    documented = all_variable_names()
    assert used - documented == set(), "undocumented: add them to engine/settings.py"
    assert documented - used == set(), "documented but read nowhere"


def test_the_status_command_reads_the_data_folder_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KASSASYNC_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(CliError, match=re.escape(str(tmp_path / "nowhere"))):
        main(["status", "--json"])
    capsys.readouterr()
    from tests.ops.world import add_tenant, new_engine

    engine = new_engine(tmp_path / "engine")
    add_tenant(engine)
    engine.db.close()
    monkeypatch.setenv("KASSASYNC_DATA", str(tmp_path / "engine"))
    assert main(["--log-level", "WARNING", "status", "--json"]) == 0
    assert [t["tenant"] for t in json.loads(capsys.readouterr().out)["tenants"]] == ["bageriet"]
