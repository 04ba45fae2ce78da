"""On both runtimes: a Fortnox article the till cannot take is reported for that article, and the
rest of the register, the customers and the payments go on syncing (the session never stops)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from engine.demo import DEMO_SETTINGS
from engine.kafka.config import KafkaConfig
from engine.secrets import SecretBox
from tests.kafka.harness import EmbeddedHarness, Harness, KafkaHarness, World, eventually, running
from tests.kafka.scenario import initial_sync
from topics.settings import TenantSettings

TENANT = "shop-odd"


def make(kind: str, tmp_path: Path, bootstrap: str, prefix: str) -> Harness:
    box = SecretBox.from_env()
    if kind == "embedded":
        return EmbeddedHarness(tmp_path / "embedded", box)
    config = KafkaConfig(bootstrap=bootstrap, prefix=prefix, data_dir=tmp_path / "kafka")
    return KafkaHarness(config, box)


@pytest.mark.parametrize("kind", ["embedded", "kafka"])
async def test_an_article_the_till_cannot_take_is_reported_and_the_rest_goes_on(
    kind: str, tmp_path: Path, bootstrap: str, prefix: str
) -> None:
    world = await World([TENANT]).start()
    harness = make(kind, tmp_path, bootstrap, prefix)
    fortnox_id = world.seeded[TENANT].tenant.id
    admin = f"{world.sandbox_url}/_sandbox/tenants/{fortnox_id}"

    async def change(method: str, path: str, body: dict[str, Any]) -> None:
        response = await world.http.request(method, f"{admin}{path}", json=body)
        assert response.status_code < 400, response.text

    settings = TenantSettings.model_validate({**DEMO_SETTINGS, "payments": {"enabled": True}})
    try:
        async with running(harness):
            await harness.add_tenant(world.config(TENANT).model_copy(update={"settings": settings}))
            await initial_sync(world, TENANT)
            till = world.tills[TENANT]
            held = dict(till.articles["1001"])
            await change("PATCH", "/records/articles/1001", {"EAN": "123 456"})
            await change("PATCH", "/records/articles/1002", {"Description": "Te grönt 20 p"})
            await change("PATCH", "/records/customers/1", {"Name": "Anna Berg"})
            invoices = (await world.http.get(f"{admin}?registers=invoices")).json()["invoices"]
            invoice = min(
                int(i["DocumentNumber"]) for i in invoices if float(i.get("Balance") or 0) >= 12
            )
            today = dt.date.today().isoformat()
            await change(
                "POST", f"/invoices/{invoice}/payments", {"Amount": 12.0, "PaymentDate": today}
            )

            async def synced() -> bool:
                return (
                    till.articles["1002"]["description"] == "Te grönt 20 p"
                    and any(c["name"] == "Anna Berg" for c in till.customers.values())
                    and any(
                        p["invoice_number"] == invoice and p["amount"] == "12.00"
                        for p in till.payments.values()
                    )
                    and ("report", "article:1001") in harness.state(TENANT)
                )

            await eventually(synced, 60, "the other changes to reach the till")
            report = harness.state(TENANT)[("report", "article:1001")]
            assert report["kind"] == "till_refuses_article"
            assert report["values"] == {"ean": "123 456"}
            assert till.articles["1001"] == held  # the till keeps the version it took
            assert till.refused == 0
    finally:
        await world.stop()
