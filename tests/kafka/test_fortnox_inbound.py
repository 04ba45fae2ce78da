"""On both runtimes: a Fortnox article the till cannot take is reported for that article, and the
rest of the register, the customers and the payments go on syncing (the session never stops);
with Fortnox's clock 10 minutes off the engine's, no change made in Fortnox is lost."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from engine.demo import DEMO_SETTINGS
from engine.kafka.config import KafkaConfig
from engine.secrets import SecretBox
from sandbox.fortnox.clock import BusinessClock
from tests.kafka.harness import EmbeddedHarness, Harness, KafkaHarness, World, eventually, running
from tests.kafka.scenario import event, initial_sync
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


@pytest.mark.parametrize("kind", ["embedded", "kafka"])
@pytest.mark.parametrize("fortnox_minutes", [-10, 10], ids=["fortnox_behind", "fortnox_ahead"])
async def test_skewed_clocks_lose_no_article_customer_or_payment(
    kind: str, fortnox_minutes: int, tmp_path: Path, bootstrap: str, prefix: str
) -> None:
    """Fortnox's clock 10 minutes behind or ahead of the engine's: every change made in Fortnox
    after the first sync reaches the till by the incremental polls."""
    start = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=fortnox_minutes)
    world = await World([TENANT], clock=BusinessClock(start=start)).start()
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
            invoices = (await world.http.get(f"{admin}?registers=invoices")).json()["invoices"]
            open_invoice = min(
                int(i["DocumentNumber"]) for i in invoices if float(i.get("Balance") or 0) >= 20
            )
            today = world.sandbox.clock.today().isoformat()
            for round_ in range(3):
                await change(
                    "PATCH", "/records/articles/1002", {"Description": f"Te runda {round_}"}
                )
                await change("PATCH", "/records/customers/1", {"Name": f"Anna {round_}"})
                amount = f"{3 + round_}.00"
                await change(
                    "POST",
                    f"/invoices/{open_invoice}/payments",
                    {"Amount": 3.0 + round_, "PaymentDate": today},
                )

                async def arrived(round_: int = round_, amount: str = amount) -> bool:
                    return (
                        till.articles["1002"]["description"] == f"Te runda {round_}"
                        and any(c["name"] == f"Anna {round_}" for c in till.customers.values())
                        and any(
                            p["invoice_number"] == open_invoice and p["amount"] == amount
                            for p in till.payments.values()
                        )
                    )

                await eventually(arrived, 30, f"round {round_} to reach the till")
    finally:
        await world.stop()


@pytest.mark.parametrize("kind", ["embedded", "kafka"])
async def test_delete_missing_takes_effect_at_the_start_up_full_pass(
    kind: str, tmp_path: Path, bootstrap: str, prefix: str
) -> None:
    """What incremental polls cannot see (a till-only article, an article and a customer deleted
    in Fortnox, no topics feed) is removed from the till by the full pass at the next start."""
    world = await World([TENANT]).start()
    fortnox_id = world.seeded[TENANT].tenant.id
    admin = f"{world.sandbox_url}/_sandbox/tenants/{fortnox_id}"
    settings = TenantSettings.model_validate(
        {
            **DEMO_SETTINGS,
            "articles": {"price_list": "A", "delete_missing": True},
            "customers": {"master": "fortnox", "delete_missing": True},
        }
    )
    till = world.tills[TENANT]
    try:
        first = make(kind, tmp_path, bootstrap, prefix)
        async with running(first):
            key = await first.add_tenant(
                world.config(TENANT).model_copy(update={"settings": settings})
            )
            await initial_sync(world, TENANT)
            assert "3005" in till.articles and "fortnox-5" in till.customers
            till.articles["T-1"] = {"article_number": "T-1", "description": "Bara i kassan"}
            edited = event(
                TENANT,
                "till.article.edited",
                {"article_number": "T-1", "changes": {"description": "Bara i kassan"}},
            )
            assert await first.ingest(TENANT, key, [edited]) == 202
            for path in ("/records/customers/5", "/records/articles/3005"):
                assert (await world.http.delete(f"{admin}{path}")).status_code == 204
            await first.wait_quiet(60)
            # Incremental polls cannot see what is gone: all three are still in the till.
            assert "T-1" in till.articles and "3005" in till.articles
            assert "fortnox-5" in till.customers

        second = make(kind, tmp_path, bootstrap, prefix)  # the same data, a new process
        async with running(second):

            async def removed() -> bool:
                return not ({"T-1", "3005"} & set(till.articles)) and (
                    "fortnox-5" not in till.customers
                )

            await eventually(removed, 60, "the start-up full pass to remove what is gone")
            assert "1001" in till.articles and "fortnox-1" in till.customers
    finally:
        await world.stop()
