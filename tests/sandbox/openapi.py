"""Fortnox's OpenAPI 3.0.3 document as a validator for the sandbox's requests and responses.

Where the document is known to differ from what Fortnox actually sends, the difference is
applied here, each with its source (reference/fortnox-api.md and the recorded traffic it cites):

* **null for unset fields.** Recorded responses send ``null`` for every unset field
  (accodeing/fortnox-api cassettes ``customers/save_new.yml``, ``articles/find_id_1.yml``, cited
  as [RB] in fortnox-api.md); the document marks almost nothing ``nullable``. :func:`relaxed`
  lets every typed value also be null.
* **Voucher ``Year``** is in the payload's ``required`` list, yet read-only per the C# SDK;
  fortnox-api.md §5.4: "the spec marks it required but the SDK marks it RO, so use the query
  param". Request bodies are validated without that requirement.
* **PUT bodies are partial.** The payload schemas list what a *create* requires; an update
  sends only what changes (fortnox-api.md §5.2: ``PUT /3/articles/{n}`` with
  ``{"Article":{"StockGoods":true,"QuantityInStock":X}}``, as Fortnox Hub does). PUT bodies are
  validated with ``partial=True``: no ``required`` lists.
* **"A list of ..."**: some warehouse operations describe their 200 answer as a list but give
  the item schema (``status-v1/stockbalance``, ``documenttypes-v1``); a list answer is
  validated item by item (:func:`describes_list`).

The other differences (error-key casing, the 401 body, the stock-balance list, file and SIE
downloads) are handled by the conformance test where they occur.
"""

from __future__ import annotations

import copy
import functools
import json
import os
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

OPENAPI = Path(
    os.environ.get("KASSASYNC_FORTNOX_OPENAPI", "/work/shared/reference/fortnox-openapi.json")
)
URI = "urn:fortnox-openapi"


@functools.cache
def document() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(OPENAPI.read_text())
    return data


def _allow_null(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _allow_null(v) for k, v in node.items()}
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
        if isinstance(out.get("enum"), list) and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
        return out
    if isinstance(node, list):
        return [_allow_null(v) for v in node]
    return node


@functools.cache
def relaxed() -> dict[str, Any]:
    doc = copy.deepcopy(document())
    doc["components"]["schemas"] = _allow_null(doc["components"]["schemas"])
    voucher = doc["components"]["schemas"]["fortnox_Bf_VoucherSinglePayloadItem"]
    voucher["required"] = [r for r in voucher["required"] if r != "Year"]
    return doc


def _drop_required(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _drop_required(v) for k, v in node.items() if k != "required"}
    if isinstance(node, list):
        return [_drop_required(v) for v in node]
    return node


@functools.cache
def _registry(partial: bool) -> Registry:
    doc = relaxed()
    if partial:
        doc = {
            **doc,
            "components": {
                **doc["components"],
                "schemas": _drop_required(doc["components"]["schemas"]),
            },
        }
    resource = Resource.from_contents(doc, default_specification=DRAFT4)
    return Registry().with_resource(URI, resource)


def schema_errors(name: str, instance: Any, *, partial: bool = False) -> list[str]:
    """Validation messages of ``instance`` against ``components.schemas[name]``."""
    validator = Draft4Validator(
        {"$ref": f"{URI}#/components/schemas/{name}"}, registry=_registry(partial)
    )
    return [
        f"{name} at /{'/'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in validator.iter_errors(instance)
    ]


def operation(method: str, template: str) -> dict[str, Any] | None:
    op: dict[str, Any] | None = document()["paths"].get(template, {}).get(method.lower())
    return op


def _ref_name(schema: dict[str, Any] | None) -> str | None:
    if not schema:
        return None
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[1] if isinstance(ref, str) else None


def response_schema(method: str, template: str, status: int) -> tuple[str | None, str | None]:
    """(content type, schema name) the document gives for this answer (falls back to default)."""
    op = operation(method, template)
    if op is None:
        return None, None
    responses = op.get("responses", {})
    answer = responses.get(str(status)) or responses.get("default") or {}
    content: dict[str, Any] = answer.get("content") or {}
    for ctype, body in content.items():
        return ctype, _ref_name(body.get("schema"))
    return None, None


def describes_list(method: str, template: str, status: int) -> bool:
    op = operation(method, template) or {}
    answer = op.get("responses", {}).get(str(status)) or {}
    return str(answer.get("description", "")).startswith("A list of")


def request_schema(method: str, template: str) -> str | None:
    op = operation(method, template)
    if op is None:
        return None
    content: dict[str, Any] = (op.get("requestBody") or {}).get("content") or {}
    for body in content.values():
        return _ref_name(body.get("schema"))
    return None


def inline_response_type(method: str, template: str, status: int) -> str | None:
    """The ``type`` of an answer the document describes inline (no ``$ref``)."""
    op = operation(method, template) or {}
    answer = op.get("responses", {}).get(str(status)) or {}
    for body in (answer.get("content") or {}).values():
        kind = (body.get("schema") or {}).get("type")
        return str(kind) if kind else None
    return None
