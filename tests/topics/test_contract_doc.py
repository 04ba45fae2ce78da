"""Every JSON example in docs/contract.md is a valid message of the type it claims to be."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from topics import registry

DOC = Path(__file__).resolve().parents[2] / "docs" / "contract.md"
BLOCKS = re.findall(r"```json\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)


def test_the_doc_has_examples() -> None:
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("block", BLOCKS, ids=[f"example{i}" for i in range(len(BLOCKS))])
def test_example_is_a_valid_message(block: str) -> None:
    obj = json.loads(block)
    message = registry.parse_obj(obj)
    assert message.type == obj["type"]  # type: ignore[attr-defined]
    # Round trip: what Kassasync would send back parses to the same message.
    assert registry.parse(registry.dump(message)) == message


def test_schema_export_covers_every_type(tmp_path: Path) -> None:
    written = registry.export_schemas(tmp_path)
    index = json.loads((tmp_path / "index.json").read_text())
    assert set(index) == set(registry.BY_TYPE)
    assert len(written) == len(registry.BY_TYPE) + 1
    for name in index:
        schema = json.loads((tmp_path / f"{name}.json").read_text())
        assert (
            schema["properties"]["type"]["const"] == name
            or schema["properties"]["type"].get("default") == name
        )


def test_every_till_event_is_documented() -> None:
    """A vendor learns every event a till may send from this page (``till.voucher.submitted``
    was missing)."""
    text = DOC.read_text(encoding="utf-8")
    documented = {json.loads(block)["type"] for block in BLOCKS}
    for model in registry.TILL_EVENTS:
        name = registry.type_name(model)
        assert f"`{name}`" in text, name
        assert name in documented or name in ("till.customer.deleted", "till.article.edited"), (
            f"{name} has no JSON example"
        )
