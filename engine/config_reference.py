"""docs/configuration.md, generated: every ``KASSASYNC_*`` variable (from
:mod:`engine.settings`) and every key of a tenants file (from the pydantic models of
:mod:`engine.tenants` and :mod:`topics.settings`, with their defaults, constraints and an
example), plus the errors a mistake gives.

``python -m engine.config_reference`` rewrites the file; ``--check`` exits 1 when it is out of
date (the suite runs the check). A key's meaning is the ``#:`` comment above its field in the
model; :data:`MEANINGS` covers the fields that have none, and every key must have one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import enum
import inspect
import re
import sys
import tempfile
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import yaml
from annotated_types import Ge, Gt, Le, Lt, MaxLen
from pydantic import BaseModel

from engine.secrets import Secret
from engine.settings import variables_table
from engine.tenants import ConfigError, TenantConfig, load_config_file
from topics import common

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"

#: A complete tenants file: every section, realistic values (it is loaded by the doc's test).
EXAMPLE = """\
tenants:
  - id: kiosken
    name: Kiosken i Hamnen AB
    till:
      endpoint: https://backoffice.example-pos.se/kassasync/commands
      token: env:KIOSKEN_TILL_TOKEN
      timeout_seconds: 10
    fortnox:
      fortnox_tenant_id: 1234567
      poll_seconds: 30
    settings:
      customers:
        master: fortnox
        delete_missing: false
      articles:
        price_list: A
        exclusion_marker: "#E#"
      stock:
        mode: quantity
      zreports:
        enabled: true
        series: K
        start_date: 2026-01-01
        cost_center: HAMN
        cost_centers: {"kassa-2": SOMMAR}
        description_template: Z-rapport {z_number} kassa {till_id} {date}
        accounts:
          payment_methods: {card: 1580, cash: 1910, swish: 1930}
          sales_by_vat: {"25": 3001, "12": 3002, "6": 3003, "0": 3004}
          vat_by_rate: {"25": 2611, "12": 2621, "6": 2631}
          product_groups: {books: 3010}
          rounding: 3740
          tips: 2890
          gift_cards: 2421
      invoices:
        enabled: true
        start_date: 2026-01-01
        terms_of_payment: "30"
      payments:
        enabled: true
        ignore_before: 2026-01-01
        ignore_invoice_below: 0
      ledger:
        enabled: true
        years: 2
      flush_window_seconds: 0
"""

#: Environment the example's ``env:NAME`` secrets read when the test loads it.
EXAMPLE_ENV = {"KIOSKEN_TILL_TOKEN": "till-token"}

#: Meanings of the keys whose model field has no ``#:`` comment.
MEANINGS: dict[str, str] = {
    "id": "The tenant's id: in the ingest URL `/v1/tenants/{id}/events`, in logs and on the "
    "dashboard. Letters, digits, `_`, `.`, `-`; at most 64 characters.",
    "name": "The shop's name as the dashboard shows it.",
    "settings": "What to sync and how (the `settings.*` keys below).",
    "till": "How Kassasync reaches the till's back office (the `till.*` keys below).",
    "fortnox": "The Fortnox company (`fortnox: {}` for a shop that connects through the "
    "installation's app with `kassasync connect`). Without it nothing is sent to or read from "
    "Fortnox.",
    "till.timeout_seconds": "How long one delivery to the till may take before it is retried.",
    "fortnox.api_base": "Fortnox's API. Change it only for a Fortnox-compatible server (the "
    "sandbox).",
    "fortnox.auth_base": "Fortnox's OAuth server (token endpoint); unset: the installation's "
    "(KASSASYNC_FORTNOX_AUTH_BASE, default https://apps.fortnox.se).",
    "fortnox.topics_url": "Fortnox's WebSocket feed of changes (optional: without it, changes "
    "are found by polling every `poll_seconds`).",
    "fortnox.client_secret": "The Fortnox app's client secret when the tenant has its own app "
    "(stored sealed with KASSASYNC_SECRET_KEY; write `env:NAME` to take it from the "
    "environment).",
    "fortnox.poll_seconds": "How often Fortnox's registers are polled for changes.",
    "settings.customers": "The customer flow.",
    "settings.customers.enabled": "Sync customers.",
    "settings.customers.master": "Which side owns the customer register: `fortnox` (changes "
    "go Fortnox to till; a customer new in the till is still created in Fortnox) or `till`.",
    "settings.articles": "The article flow (Fortnox to till).",
    "settings.articles.enabled": "Sync articles to the till.",
    "settings.articles.price_list": "The Fortnox price list whose prices the till gets.",
    "settings.articles.exclusion_marker": "Articles whose description contains this text "
    "never reach the till.",
    "settings.stock": "The stock flow (both ways).",
    "settings.stock.enabled": "Sync stock levels.",
    "settings.stock.mode": "How stock is written to Fortnox.",
    "settings.zreports": "The Z-report flow (till to Fortnox vouchers).",
    "settings.zreports.enabled": "Post one voucher per Z-report.",
    "settings.zreports.series": "The Fortnox voucher series the vouchers are posted in (a "
    "manual series).",
    "settings.zreports.start_date": "Z-reports of earlier days are not posted.",
    "settings.zreports.accounts": "The account mapping (the `settings.zreports.accounts.*` keys).",
    "settings.zreports.accounts.payment_methods": "Account per payment method the till reports "
    "(card, cash, swish…).",
    "settings.zreports.accounts.tips": "Account for tips.",
    "settings.zreports.accounts.rounding": "Account for cash rounding (öresavrundning).",
    "settings.zreports.accounts.gift_cards": "Account for gift cards sold and redeemed.",
    "settings.zreports.description_template": "The voucher's description; `{z_number}`, "
    "`{till_id}` and `{date}` are filled in.",
    "settings.invoices": "The invoice flow (till invoices to Fortnox orders).",
    "settings.invoices.enabled": "Send till invoices to Fortnox as orders.",
    "settings.invoices.start_date": "Invoices of earlier days are not sent.",
    "settings.invoices.terms_of_payment": "Fortnox terms-of-payment code for the orders "
    "(default: the customer's).",
    "settings.payments": "The payment flow (Fortnox invoice payments to the till).",
    "settings.payments.enabled": "Hand invoice payments registered in Fortnox to the till.",
    "settings.ledger": "The ledger flow (Fortnox vouchers to the till, SIE 4 export).",
    "settings.ledger.enabled": "Sync vouchers and the general ledger to the till.",
}


@dataclass(frozen=True)
class Key:
    path: str
    type: str
    default: str
    example: str
    meaning: str
    section: bool


def _comments(model: type[BaseModel]) -> dict[str, str]:
    """The ``#:`` comment lines above each field of the model's class body."""
    found: dict[str, str] = {}
    pending: list[str] = []
    for line in inspect.getsource(model).splitlines():
        stripped = line.strip()
        if stripped.startswith("#:"):
            pending.append(stripped[2:].strip())
            continue
        field = re.match(r"^\s+([a-z_][a-z0-9_]*)\s*:", line)
        if field and pending:
            found[field.group(1)] = " ".join(pending)
        pending = []
    return found


_ALIASES: list[tuple[object, str]] = [
    (common.TenantId, "id"),
    (common.Ident, "text (1–100 characters)"),
    (common.ShortText, "text (≤ 200 characters)"),
    (common.AccountNumber, "account number (1000–9999)"),
]


def _constraints(metadata: list[object]) -> str:
    parts: list[str] = []
    for item in metadata:
        if isinstance(item, Gt):
            parts.append(f"> {item.gt}")
        elif isinstance(item, Ge):
            parts.append(f"≥ {item.ge}")
        elif isinstance(item, Lt):
            parts.append(f"< {item.lt}")
        elif isinstance(item, Le):
            parts.append(f"≤ {item.le}")
        elif isinstance(item, MaxLen):
            parts.append(f"≤ {item.max_length} characters")
    return f" ({', '.join(parts)})" if parts else ""


def _type_text(annotation: object) -> str:
    for alias, text in _ALIASES:
        if annotation == alias:
            return text
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_text(args[0]) + _constraints(list(args[1:]))
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return " or ".join(_type_text(a) for a in inner) + (
            ", optional" if len(inner) < len(args) else ""
        )
    if origin is dict:
        return f"mapping of {_type_text(args[0])} to {_type_text(args[1])}"
    if isinstance(annotation, type):
        if issubclass(annotation, enum.Enum):
            return "one of " + ", ".join(f"`{m.value}`" for m in annotation)
        if issubclass(annotation, BaseModel):
            return "section"
        if annotation is bool:
            return "`true` or `false`"
        if annotation is int:
            return "whole number"
        if annotation in (float, Decimal):
            return "number"
        if annotation is str:
            return "text"
        if annotation is dt.date:
            return "date (YYYY-MM-DD)"
        if annotation is Secret:
            return "secret text or `env:NAME`"
    return str(annotation)


def _value_text(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, BaseModel):
        return ""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, dict | list) and not value:
        return "(none)"
    if value == "":
        return "(empty)"
    if isinstance(value, dict):
        return "`" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def _example_at(example: object, path: list[str]) -> object:
    node = example
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def keys() -> Iterator[Key]:
    """Every key of a tenant entry, depth first, sections before their keys."""
    example = yaml.safe_load(EXAMPLE)["tenants"][0]

    def walk(model: type[BaseModel], prefix: list[str]) -> Iterator[Key]:
        comments = _comments(model)
        hints = typing.get_type_hints(model, include_extras=True)
        for name, field in model.model_fields.items():
            path = [*prefix, name]
            dotted = ".".join(path)
            annotation = hints.get(name, field.annotation)
            base = field.annotation
            inner = next(
                (
                    a
                    for a in (base, *typing.get_args(base))
                    if isinstance(a, type) and issubclass(a, BaseModel)
                ),
                None,
            )
            meaning = (comments.get(name) or MEANINGS.get(dotted, "")).replace("``", "`")
            if field.is_required():
                default = "required"
            else:
                value = field.get_default(call_default_factory=True)
                default = "" if inner is not None else _value_text(value)
            type_text = _type_text(annotation) + _constraints(list(field.metadata))
            shown = _example_at(example, path)
            yield Key(
                path=dotted,
                type="section" + (", optional" if type(None) in typing.get_args(base) else "")
                if inner is not None
                else type_text,
                default=default,
                example="" if inner is not None else _value_text(shown),
                meaning=meaning,
                section=inner is not None,
            )
            if inner is not None:
                yield from walk(inner, path)

    return walk(TenantConfig, [])


def _error_examples() -> list[tuple[str, str]]:
    """(what was wrong, the error it gives): produced by the loader itself."""
    cases = [
        ("An empty file", ""),
        ("`tenant:` for `tenants:`", "tenant:\n  - id: kiosken\n"),
        (
            "A misspelt key",
            "tenants:\n  - id: kiosken\n    settings:\n      customers:\n        mastr: till\n",
        ),
        (
            "An unknown master mode",
            "tenants:\n  - id: kiosken\n    settings:\n      customers:\n        master: pos\n",
        ),
        ("A missing field", "tenants:\n  - name: Kiosken i Hamnen AB\n"),
        ("Bad YAML", "tenants:\n  - id: kiosken\n   name: Kiosken\n"),
    ]
    out: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tenants.yaml"
        for title, text in cases:
            path.write_text(text, encoding="utf-8")
            try:
                load_config_file(path, environ={"SECRET": "x"})
            except ConfigError as error:
                shown = str(error).replace(str(path), "tenants.yaml")
                out.append((title, f"kassasync: {shown}"))
            else:
                raise AssertionError(f"{title}: the loader accepted it")
    return out


def render() -> str:
    rows = list(keys())
    lines = [
        "# Configuration",
        "",
        "<!-- Generated by `python -m engine.config_reference` from engine/settings.py and",
        "     the tenant models; do not edit by hand (tests/ops/test_config_reference.py",
        "     checks it). -->",
        "",
        "Kassasync is configured in two places: the process's environment (or the flags that",
        "override it), and a tenants file per deployment that `kassasync tenants add --config",
        "FILE` (embedded) or `kassasync kafka tenants add --config FILE` (Kafka) reads.",
        "",
        "## Environment variables",
        "",
        "Every command reads these once, at start (`engine/settings.py`); a flag, where there is",
        "one, wins over its variable.",
        "",
        variables_table().rstrip("\n"),
        "",
        "## The tenants file",
        "",
        "YAML (or JSON) with one top-level key, `tenants:`, holding a list of tenants. Adding a",
        "tenant that exists updates it; the ingest key of a new tenant is printed once. A secret",
        "(`till.token`, `fortnox.client_secret`) may be written as `env:NAME` to take it from",
        "the environment variable NAME. Every tenant in the file is checked before any is added.",
        "",
        "A complete example:",
        "",
        "```yaml",
        EXAMPLE.rstrip("\n"),
        "```",
        "",
        "## Every key",
        "",
        "| Key | Type | Default | Example | Meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key in rows:
        name = f"**`{key.path}`**" if key.section else f"`{key.path}`"
        lines.append(f"| {name} | {key.type} | {key.default} | {key.example} | {key.meaning} |")
    lines += [
        "",
        "`settings` is also checked as a whole: `customers.import_fortnox_register` needs",
        "`customers.master: till`, and `customers.delete_missing` needs `customers.master:",
        "fortnox`.",
        "",
        "## Changing settings later, from the shop's Fortnox",
        "",
        "A tenant's settings can also be picked from its own Fortnox's lists (voucher series with",
        "whether each is manual, accounts, cost centres, terms of payment, price lists): on the",
        "dashboard's settings page, `/tenants/{tenant}/settings`, or with `kassasync tenants",
        "settings T --set KEY=VALUE` (docs/operations.md). `KEY` is a key of the table above",
        "without `settings.`, a mapping's entry included",
        "(`zreports.accounts.payment_methods.card`); an empty value removes an entry or clears",
        "an optional key. Both check a change with the",
        "same models as this file, run the Z-report flow's preflight against Fortnox, and keep",
        "every change as a numbered version with who made it and why (the table",
        "`tenant_settings_versions` in the engine's database; deleting a shop's data keeps it).",
        "Adding the tenants file again is a change too: its settings become a new version when",
        "they differ from the last one. A running engine applies a new version at once, without",
        "a restart (also one saved by the command line on its data folder), and tries the",
        "Z-reports that wait for a fix again.",
        "",
        "## When the file is wrong",
        "",
        "The command prints one or two lines naming the file, the tenant, the key and the fix,",
        "exits with status 2 and adds no tenant. For example:",
        "",
    ]
    for title, error in _error_examples():
        lines += [f"{title}:", "", "```", error, "```", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m engine.config_reference", description="write docs/configuration.md"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is not up to date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
        if current != text:
            print(f"{DOC} is out of date: run python -m engine.config_reference", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text, encoding="utf-8")
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
