"""What the engine sends Fortnox matches Fortnox's own OpenAPI document.

The sandbox is wrapped in a recorder; the whole engine runs the flows that write (customers,
orders, vouchers, stock); every request body it sent is validated against the request schema
the document gives for that path and method.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.sandbox import openapi
from tests.scenarios.conftest import Factory
from tests.scenarios.test_bookkeeping import worked_example

Recorded = list[tuple[str, str, bytes]]


def recorder(calls: Recorded) -> Any:
    def wrap(app: Any) -> Any:
        async def recording(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http" or not scope["path"].startswith(("/3/", "/api/")):
                await app(scope, receive, send)
                return
            chunks: list[bytes] = []

            async def tapped() -> Any:
                message = await receive()
                chunks.append(message.get("body", b""))
                return message

            await app(scope, tapped, send)
            calls.append((scope["method"], scope["path"], b"".join(chunks)))

        return recording

    return wrap


def template_of(path: str) -> str | None:
    for template in openapi.document()["paths"]:
        pattern = "^" + re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)) + "/?$"
        if re.match(pattern, path):
            return str(template)
    return None


async def test_every_body_the_engine_sends_fortnox_matches_the_document(runtime: Factory) -> None:
    calls: Recorded = []
    async with runtime({"customers": {"master": "till"}}, wrap_sandbox=recorder(calls)) as rt:
        await rt.settle()
        customer = rt.event(
            "till.customer.upserted",
            {"till_customer_id": "C1", "customer": {"name": "Anna", "email": "a@example.se"}},
        )
        invoice = rt.event(
            "till.invoice.created",
            {
                "invoice_id": "I1",
                "till_customer_id": "C1",
                "invoice_date": "2026-11-21",
                "rows": [
                    {
                        "article_number": "1001",
                        "description": "Kaffe",
                        "quantity": "2",
                        "unit_price": "69.00",
                        "vat_rate": "12",
                    }
                ],
            },
        )
        sale = rt.event(
            "till.stock.movement",
            {"article_number": "1001", "movement_id": "m1", "delta": "-1", "reason": "sale"},
        )
        await rt.send(customer, invoice, sale, worked_example())
        await rt.settle()
        await rt.send(
            {**customer, "id": "edit", "data": {**customer["data"], "customer": {"name": "Anna B"}}}
        )
        await rt.settle()
    writes = [(m, p, b) for m, p, b in calls if m in ("POST", "PUT") and b]
    kinds = {(m, template_of(p)) for m, p, _ in writes}
    assert ("POST", "/3/customers") in kinds and ("PUT", "/3/customers/{CustomerNumber}") in kinds
    assert ("POST", "/3/orders") in kinds and ("POST", "/3/vouchers") in kinds
    assert ("PUT", "/3/articles/{ArticleNumber}") in kinds
    problems: list[str] = []
    for method, path, body in writes:
        template = template_of(path)
        assert template is not None, f"{method} {path} is not in Fortnox's document"
        name = openapi.request_schema(method, template)
        assert name is not None, f"the document has no request body for {method} {template}"
        # A PUT changes only the fields it carries (Fortnox updates partially), so the
        # document's required fields apply to creates only.
        errors = openapi.schema_errors(name, json.loads(body), partial=method == "PUT")
        problems += [f"{method} {path}: {m}" for m in errors]
    assert problems == [], "\n".join(problems)
