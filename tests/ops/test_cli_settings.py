"""``kassasync tenants settings TENANT``: the settings beside the shop's Fortnox lists (the
sandbox over HTTP, with the tenant's stored tokens), the preflight, ``--set`` validated and
versioned, ``--versions``, ``--restore``; and a change made by the command reaches an engine that
runs on the same data folder without a restart."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import structlog

from engine.cli.main import main
from engine.embedded.runtime import EmbeddedEngine
from engine.executors.fortnox import SessionTiming
from engine.logging import configure
from engine.secrets import KEY_ENV, Secret, SecretBox, generate_key
from engine.tenants import FortnoxConnection
from tests.fortnox.sandbox_env import SandboxEnv, http_sandbox
from tests.ops.world import ADMIN_TOKEN, TENANT, add_tenant
from tests.web.test_settings_page import shop_settings


@pytest.fixture(autouse=True)
def _keep_logging() -> object:
    saved = structlog.get_config()
    configure("WARNING")  # logs to stderr: stdout is the commands' output
    yield None
    structlog.configure(**saved)


@pytest.fixture()
async def shop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[EmbeddedEngine, SandboxEnv]]:
    async with http_sandbox() as env:
        key = generate_key()
        monkeypatch.setenv(KEY_ENV, key)
        engine = EmbeddedEngine(
            tmp_path, SecretBox(key), admin_token=ADMIN_TOKEN, timing=SessionTiming()
        )
        add_tenant(
            engine,
            fortnox=FortnoxConnection(
                api_base=env.base_url,
                auth_base=env.base_url,
                client_id=env.client_id,
                client_secret=Secret(env.client_secret),
            ),
        )
        config = engine.tenants.get(TENANT)
        assert config is not None
        engine.tenants.upsert(config.model_copy(update={"settings": shop_settings("B")}))
        await engine.token_store.save(TENANT, await env.mint())
        yield engine, env


async def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """The command as a user runs it (its own event loop: in a thread beside the test's)."""
    code = await asyncio.to_thread(main, ["--log-level", "WARNING", *argv])
    return code, capsys.readouterr().out


async def test_settings_show_the_lists_and_every_problem(
    shop: tuple[EmbeddedEngine, SandboxEnv], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(tmp_path)
    code, out = await run(capsys, "tenants", "settings", TENANT, "--data", data)
    assert code == 0
    assert "voucher series: A Redovisning (manual), B Kundfakturor (NOT manual)" in out
    assert "cost centres: 100 Butik City, 999 Nedlagd butik (inactive)" in out
    assert "terms of payment: 0 Kontant, 10 10 dagar netto, 30 30 dagar netto" in out
    assert "price lists: A Standard, B Återförsäljare" in out
    assert "Preflight: 2 problem(s)" in out
    assert "[zreports.series] Voucher series B is not manual" in out
    assert "Or choose a manual series Fortnox has here: A, F." in out
    assert (
        "[zreports.accounts.tips] The bookkeeping could not be exported because account 3900" in out
    )
    code, out = await run(capsys, "tenants", "settings", TENANT, "--data", data, "--json")
    shown = json.loads(out)
    assert [p["kind"] for p in shown["problems"]] == ["series_not_manual", "account_inactive"]
    assert shown["saved_version"] is None and shown["fortnox_error"] is None


async def test_set_is_validated_checked_versioned_and_restorable(
    shop: tuple[EmbeddedEngine, SandboxEnv], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine, _ = shop
    data = str(tmp_path)
    first = engine.tenants.versions(TENANT)[0].version

    def series() -> str:
        config = engine.tenants.get(TENANT)
        assert config is not None
        return config.settings.zreports.series

    # Not valid: one line, exit 2, nothing saved.
    for bad, said in (
        ("zreports.serie=A", "there is no setting 'zreports.serie'"),
        ("zreports.accounts.payment_methods.card=12", "greater than or equal to 1000"),
        ("ledger.years=zero", "ledger.years: Input should be a valid integer"),
        ("zreports.series", "write KEY=VALUE"),
    ):
        with pytest.raises(SystemExit) as refused:
            await run(capsys, "tenants", "settings", TENANT, "--data", data, "--set", bad)
        assert refused.value.code == 2 and said in str(refused.value), str(refused.value)
    # Valid but the preflight finds a problem (tips still on an inactive account): not saved.
    code, out = await run(
        capsys, "tenants", "settings", TENANT, "--data", data, "--set", "zreports.series=F"
    )
    assert code == 1 and "Not saved: problems found" in out
    assert series() == "B"
    # --dry-run never saves; a clean change is saved as the next version.
    change = ("--set", "zreports.series=F", "--set", "zreports.accounts.tips=")
    code, out = await run(
        capsys, "tenants", "settings", TENANT, "--data", data, *change, "--dry-run"
    )
    assert code == 0 and "Preflight: no problems." in out and "Not saved (--dry-run)" in out
    assert series() == "B"
    code, out = await run(
        capsys, "tenants", "settings", TENANT, "--data", data, *change, "--note", "manual series"
    )
    assert code == 0 and f"Saved as version {first + 1}" in out
    # The engine's directory (another connection, its cache warm) sees it without a restart.
    assert series() == "F"
    # --force saves despite problems.
    code, out = await run(
        capsys,
        "tenants",
        "settings",
        TENANT,
        "--data",
        data,
        "--set",
        "zreports.series=C",
        "--force",
    )
    assert code == 0 and f"Saved as version {first + 2}" in out and series() == "C"
    code, out = await run(capsys, "tenants", "settings", TENANT, "--data", data, "--versions")
    assert code == 0
    assert f"version {first + 2} (current):" in out and "by cli" in out
    assert "zreports.series: F -> C" in out
    assert f"version {first + 1}:" in out and "manual series" in out
    assert "zreports.accounts.tips: 3900 -> None" in out
    code, out = await run(
        capsys, "tenants", "settings", TENANT, "--data", data, "--restore", str(first + 1)
    )
    assert code == 0 and f"Saved as version {first + 3}" in out and series() == "F"
    latest = engine.tenants.versions(TENANT)[0]
    assert (latest.source, latest.note) == ("restore", f"restored version {first + 1}")
    with pytest.raises(SystemExit) as missing:
        await run(capsys, "tenants", "settings", TENANT, "--data", data, "--restore", "99")
    assert "has no settings version 99" in str(missing.value)
    with pytest.raises(SystemExit) as nobody:
        await run(capsys, "tenants", "settings", "nobody", "--data", data)
    assert "no tenant 'nobody'" in str(nobody.value)


async def test_without_tokens_it_says_why_and_saves_only_with_force(
    shop: tuple[EmbeddedEngine, SandboxEnv], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine, _ = shop
    await engine.token_store.delete(TENANT)
    data = str(tmp_path)
    code, out = await run(capsys, "tenants", "settings", TENANT, "--data", data)
    assert code == 0 and "Fortnox's lists could not be read:" in out
    assert "The preflight did not run." in out
    code, out = await run(
        capsys, "tenants", "settings", TENANT, "--data", data, "--set", "zreports.series=F"
    )
    assert code == 1 and "Not saved: Fortnox's lists could not be read" in out


async def test_a_kafka_deployment_is_told_where_its_settings_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as refused:
        await run(capsys, "tenants", "settings", TENANT, "--runtime", "kafka")
    assert refused.value.code == 2
    assert "kassasync kafka tenants add --config FILE" in str(refused.value)
