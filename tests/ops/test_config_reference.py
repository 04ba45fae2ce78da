"""Config a person can write: docs/configuration.md is generated from the models and up to date,
its example is a valid tenants file, and every mistake in a tenants file is one or two lines
naming the file, the tenant, the key and the fix, exit status 2, no tenant added."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config_reference import DOC, EXAMPLE, EXAMPLE_ENV, keys, main, render
from engine.tenants import ConfigError, TenantConfig, load_config_file
from tests.ops.commands import Shell, user_env


def test_the_reference_in_docs_is_up_to_date() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/configuration.md is out of date: run python -m engine.config_reference"
    )
    assert main(["--check"]) == 0


def test_every_key_of_a_tenant_is_documented_with_a_meaning() -> None:
    documented = {k.path: k for k in keys()}
    wanted: set[str] = set()

    def walk(model: type, prefix: str) -> None:
        for name, field in model.model_fields.items():  # type: ignore[attr-defined]
            path = prefix + name
            wanted.add(path)
            inner = [
                a
                for a in (field.annotation, *getattr(field.annotation, "__args__", ()))
                if isinstance(a, type) and hasattr(a, "model_fields")
            ]
            if inner:
                walk(inner[0], path + ".")

    walk(TenantConfig, "")
    assert set(documented) == wanted
    assert not [p for p, k in documented.items() if not k.meaning], "keys without a meaning"
    text = DOC.read_text(encoding="utf-8")
    for path in wanted:
        assert f"`{path}`" in text, path


def test_the_example_is_a_valid_tenants_file(tmp_path: Path) -> None:
    path = tmp_path / "tenants.yaml"
    path.write_text(EXAMPLE, encoding="utf-8")
    [tenant] = load_config_file(path, environ=EXAMPLE_ENV)
    assert tenant.id == "kiosken" and tenant.fortnox is not None
    assert tenant.fortnox.fortnox_tenant_id == 1234567
    assert tenant.settings.zreports.accounts.payment_methods["swish"] == 1930
    assert tenant.till.token is not None and tenant.till.token.reveal() == "till-token"
    assert not tenant.settings.warnings()


BROKEN = {
    "bad YAML": (
        "tenants:\n  - id: kiosken\n   name: Kiosken\n",
        ["line 3", "not valid YAML", "fix: check the indentation"],
    ),
    "unknown master mode": (
        "tenants:\n  - id: kiosken\n    settings:\n      customers:\n        master: pos\n",
        ["tenant 'kiosken'", "settings.customers.master", "'pos'", "fix: write 'till' or"],
    ),
    "missing field under a section": (
        "tenants:\n  - id: kiosken\n    fortnox:\n      poll_seconds: \n",
        ["tenant 'kiosken'", "field fortnox.poll_seconds", "fix:"],
    ),
    "misspelt key": (
        "tenants:\n  - id: kiosken\n    settings:\n      zreports:\n        seires: K\n",
        ["tenant 'kiosken'", "unknown key 'seires' in settings.zreports", "'series'?"],
    ),
    "misspelt top-level section": (
        "tenants:\n  - id: kiosken\n    fortnx:\n      client_id: x\n",
        ["tenant 'kiosken'", "unknown key 'fortnx'", "did you mean 'fortnox'?"],
    ),
    "empty file": ("", ["the file is empty", "fix: start it with `tenants:`"]),
    "tenant: for tenants:": (
        "tenant:\n  - id: kiosken\n",
        ["unknown top-level key 'tenant'", "did you mean 'tenants'?"],
    ),
    "no tenants": ("tenants: []\n", ["at least one tenant", "fix:"]),
    "a tenant without id": (
        "tenants:\n  - name: Kiosken\n",
        ["tenant #1", "field id is missing", "fix: add `id: ...`"],
    ),
    "a bad account": (
        "tenants:\n  - id: kiosken\n    settings:\n      zreports:\n        accounts:\n"
        "          payment_methods: {card: 158}\n",
        ["settings.zreports.accounts.payment_methods.card", "greater than or equal to 1000"],
    ),
    "an unset env: secret": (
        "tenants:\n  - id: kiosken\n    till:\n      token: env:NOT_SET_ANYWHERE\n",
        ["tenant 'kiosken'", "till.token", "NOT_SET_ANYWHERE is not set", "fix: export"],
    ),
    "twice the same tenant": (
        "tenants:\n  - id: kiosken\n  - id: kiosken\n",
        ["tenant 'kiosken' appears twice"],
    ),
    "settings that contradict": (
        "tenants:\n  - id: kiosken\n    settings:\n      customers:\n"
        "        master: till\n        delete_missing: true\n",
        ["tenant 'kiosken'", "delete_missing applies to Fortnox-as-master only"],
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_mistake_names_file_tenant_field_and_fix(case: str, tmp_path: Path) -> None:
    text, says = BROKEN[case]
    path = tmp_path / "shops.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_config_file(path, environ={})
    message = str(raised.value)
    assert message.startswith(f"{path}"), message
    assert 1 <= len(message.splitlines()) <= 2, message
    for part in says:
        assert part in message, (part, message)


def test_a_broken_file_from_the_shell_is_two_lines_exit_2_and_adds_nothing(
    tmp_path: Path,
) -> None:
    shell = Shell(tmp_path, user_env(KASSASYNC_SECRET_KEY="x" * 43 + "="))
    good = "  - id: good-shop\n"
    (tmp_path / "shops.yaml").write_text(
        f"tenants:\n{good}  - id: kiosken\n    settings:\n      customers:\n        mastr: till\n",
        encoding="utf-8",
    )
    for line in ("kassasync tenants add --config shops.yaml", "kassasync tenants add --config x"):
        result = shell.run(line)
        assert result.code == 2, str(result)
        assert "Traceback" not in result.err and not result.out, str(result)
        assert 1 <= len(result.err.strip().splitlines()) <= 2, str(result)
    shown = shell.run("kassasync tenants add --config shops.yaml").err
    assert "shops.yaml: tenant 'kiosken', unknown key 'mastr'" in shown and "'master'?" in shown
    # Nothing was added, not even the good tenant before the broken one.
    assert not (tmp_path / "var" / "kassasync" / "kassasync.db").exists()
