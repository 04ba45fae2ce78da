"""The stock executor against the sandbox Fortnox (issue 16): a write whose answer is lost or
refused is settled from its recorded intent by reading again, never sent again as it was."""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from engine.executors.fortnox import FortnoxSession
from engine.fortnox.api import FortnoxApi
from engine.fortnox.errors import FortnoxApiError, Stopping
from engine.secrets import SecretBox
from engine.store.outbox import Pending
from tests.fortnox.sandbox_env import SandboxEnv, asgi_sandbox, http_sandbox
from topics import commands as cm
from topics import fortnox as fx
from topics.envelope import Envelope
from topics.registry import Packed
from topics.settings import TenantSettings

D = Decimal


class Ports:
    """The few ports the stock executor uses, in memory."""

    def __init__(self) -> None:
        self.intents: dict[str, dict[str, Any]] = {}
        self.published: list[Envelope | Packed] = []
        self.seq = 0

    def remember_intent(self, command_id: str, intent: dict[str, Any]) -> None:
        self.intents[command_id] = intent

    def intent(self, pending: Pending) -> dict[str, Any] | None:
        return json.loads(pending.intent) if pending.intent else None

    def next_fx_seq(self, tenant: str, count: int = 1) -> int:
        self.seq += count
        return self.seq - count

    def publish(self, messages: Sequence[Envelope | Packed], **_: Any) -> None:
        self.published.extend(messages)


def _command(article: str, delta: int, n: int = 1) -> cm.ApplyFortnoxStock:
    return cm.ApplyFortnoxStock.model_validate(
        {
            "id": f"stock.fx:{article}@{n}",
            "tenant": "shop-1",
            "occurred_at": "2026-12-04T10:00:00+00:00",
            "data": {"article_number": article, "delta": str(delta)},
        }
    )


def _pending(command: cm.ApplyFortnoxStock, intent: dict[str, Any] | None = None) -> Pending:
    return Pending(
        seq=1,
        command_id=command.id,
        tenant="shop-1",
        target="fortnox",
        type=command.type,
        payload=b"",
        attempts=0 if intent is None else 1,
        next_at=0.0,
        last_error=None,
        intent=None if intent is None else json.dumps(intent),
    )


async def _session(env: SandboxEnv, tmp: Path, box: SecretBox) -> tuple[FortnoxSession, Ports]:
    store = await env.sqlite_store(tmp / "tokens.sqlite", box)
    ports = Ports()
    session = FortnoxSession("shop-1", FortnoxApi(env.client(store)), ports, TenantSettings)  # type: ignore[arg-type]
    return session, ports


async def _level(env: SandboxEnv, article: str) -> Decimal:
    rows = (await env.dump("articles"))["articles"]
    return D(str(next(r for r in rows if r["ArticleNumber"] == article)["QuantityInStock"]))


async def _audit(env: SandboxEnv) -> dict[str, Any]:
    return dict((await env.admin.get(f"/_sandbox/tenants/{env.tenant_id}/stock-audit")).json())


async def test_a_dropped_answer_is_settled_by_reading_not_by_writing_again(
    tmp_path: Path, box: SecretBox
) -> None:
    async with http_sandbox() as env:
        session, _ports = await _session(env, tmp_path, box)
        before = await _level(env, "1001")
        await env.fault("drop-after-commit", next=1, method="PUT", path_prefix="/3/articles/")
        command = _command("1001", -2)
        read, written, overlap, _watched = await session._stock_quantity(command, _pending(command))
        assert (read, written) == (before, before - 2)
        assert await _level(env, "1001") == before - 2
        assert (await _audit(env))["api_writes"] == 1  # the PUT went once
        # Arrived, but Fortnox cannot prove it was not a sale of 2: reported.
        assert overlap is not None and overlap.reason is fx.OverlapReason.OUTCOME_UNPROVEN
        assert overlap.assumed_landed
        await session.api.client.aclose()


async def test_a_5xx_answer_is_written_again_from_a_new_read(
    tmp_path: Path, box: SecretBox
) -> None:
    async with asgi_sandbox() as env:
        session, ports = await _session(env, tmp_path, box)
        before = await _level(env, "1001")
        await env.fault("errors", status=503, next=1, method="PUT", path_prefix="/3/articles/")
        command = _command("1001", -3)
        read, written, overlap, _watched = await session._stock_quantity(command, _pending(command))
        assert (read, written, overlap) == (before, before - 3, None)
        assert await _level(env, "1001") == before - 3
        assert (await _audit(env))["api_writes"] == 1  # the refused one never ran
        assert ports.intents[command.id] == {"read": str(before), "written": str(before - 3)}


async def test_a_stop_while_the_write_waits_records_that_it_was_not_sent(
    tmp_path: Path, box: SecretBox
) -> None:
    async with asgi_sandbox() as env:
        session, ports = await _session(env, tmp_path, box)
        before = await _level(env, "1004")
        client = session.api.client
        remember = ports.remember_intent

        def stop_as_the_intent_is_recorded(command_id: str, intent: dict[str, Any]) -> None:
            remember(command_id, intent)
            if "written" in intent:
                # The engine stops right then, and a 429 elsewhere has paused the tenant: the
                # write, on its held slot, would wait out the pause.
                client.stop_waiting()
                client.limiter.penalize(30.0)

        ports.remember_intent = stop_as_the_intent_is_recorded  # type: ignore[method-assign]
        command = _command("1004", -1)
        with pytest.raises(Stopping):
            await session._stock_quantity(command, _pending(command))
        assert (await _audit(env))["api_writes"] == 0
        assert await _level(env, "1004") == before
        # Provably not sent: the next start writes from a new read, and reports nothing.
        assert ports.intents[command.id] == {"read": str(before), "applied": "no"}
        await client.aclose()


async def test_a_crash_before_the_write_arrived_writes_from_a_new_read(
    tmp_path: Path, box: SecretBox
) -> None:
    async with asgi_sandbox() as env:
        session, _ports = await _session(env, tmp_path, box)
        before = await _level(env, "1002")
        command = _command("1002", -1)
        # The last process recorded its intent and died before the PUT arrived; meanwhile the
        # webshop sold 2.
        intent = {"read": str(before), "written": str(before - 1)}
        sale = {"article": "1002", "quantity": 2}
        await env.admin.post(f"/_sandbox/tenants/{env.tenant_id}/webshop-sale", json=sale)
        read, written, overlap, _watched = await session._stock_quantity(
            command, _pending(command, intent)
        )
        # The level (before - 2) is neither value read nor value written: ambiguous, reported.
        # "Not arrived, a sale of 2" and "arrived, then a sale of 1" both explain it; the
        # smaller foreign change wins: taken as arrived, nothing written again.
        assert overlap is not None and overlap.reason is fx.OverlapReason.OUTCOME_AMBIGUOUS
        assert (overlap.level, overlap.foreign, overlap.assumed_landed) == (before - 2, -1, True)
        assert (read, written) == (before, before - 1)
        assert (await _audit(env))["api_writes"] == 0


async def test_a_crash_whose_write_did_not_arrive_is_written_again_and_reported(
    tmp_path: Path, box: SecretBox
) -> None:
    async with asgi_sandbox() as env:
        session, _ports = await _session(env, tmp_path, box)
        before = await _level(env, "1003")
        command = _command("1003", -4)
        intent = {"read": str(before), "written": str(before - 4)}
        read, written, overlap, _watched = await session._stock_quantity(
            command, _pending(command, intent)
        )
        assert (read, written) == (before, before - 4)
        assert await _level(env, "1003") == before - 4
        # The level was the one read: most likely the write never left. But no watch saw the
        # moment (the process died), and "arrived, then undone by a change of +4" reads the
        # same: taken as not arrived, written again, and reported rather than trusted.
        assert overlap is not None and overlap.reason is fx.OverlapReason.OUTCOME_UNPROVEN
        assert (overlap.level, overlap.foreign, overlap.assumed_landed) == (before, None, False)


async def test_a_crash_whose_delivery_arrived_and_a_sale_undid_it_is_reported(
    tmp_path: Path, box: SecretBox
) -> None:
    async with asgi_sandbox() as env:
        session, _ports = await _session(env, tmp_path, box)
        before = await _level(env, "1003")
        command = _command("1003", 1)
        # The last process recorded its intent (a delivery of 1), its PUT arrived, and it died
        # before the answer; then the web shop sold 1: Fortnox is back at the value read.
        intent = {"read": str(before), "written": str(before + 1)}
        await session.api.stock.put_quantity("1003", before + 1)
        sale = {"article": "1003", "quantity": 1}
        await env.admin.post(f"/_sandbox/tenants/{env.tenant_id}/webshop-sale", json=sale)
        assert await _level(env, "1003") == before
        _read, _written, overlap, _watched = await session._stock_quantity(
            command, _pending(command, intent)
        )
        # The level cannot tell this from a write that never arrived: the delivery is written
        # again and the sale it overwrites is a possible lost sale on the article, not silence.
        assert await _level(env, "1003") == before + 1
        assert overlap is not None and overlap.reason is fx.OverlapReason.OUTCOME_UNPROVEN
        assert not overlap.assumed_landed


@pytest.mark.parametrize("quantity", [1, 3])
async def test_a_webshop_sale_is_never_overwritten_when_it_comes_before_the_read(
    tmp_path: Path, box: SecretBox, quantity: int
) -> None:
    async with asgi_sandbox() as env:
        session, _ports = await _session(env, tmp_path, box)
        before = await _level(env, "1004")
        await env.admin.post(
            f"/_sandbox/tenants/{env.tenant_id}/webshop-sale",
            json={"article": "1004", "quantity": quantity},
        )
        command = _command("1004", -1)
        read, written, _overlap, _watched = await session._stock_quantity(
            command, _pending(command)
        )
        assert (read, written) == (before - quantity, before - quantity - 1)
        assert (await _audit(env))["overwrites"] == []


def _documents() -> TenantSettings:
    return TenantSettings.model_validate(
        {"stock": {"enabled": True, "mode": "warehouse_documents"}}
    )


async def test_warehouse_mode_moves_stock_by_document_and_never_writes_the_article(
    tmp_path: Path, box: SecretBox
) -> None:
    async with asgi_sandbox(warehouse=True) as env:
        store = await env.sqlite_store(tmp_path / "tokens.sqlite", box)
        api = FortnoxApi(env.client(store), stock_documents_enabled=True)
        session = FortnoxSession("shop-1", api, Ports(), _documents)  # type: ignore[arg-type]
        before = await _level(env, "1001")
        command = _command("1001", -2)
        result, _facts = await session._stock(command, _pending(command))
        assert result == {"read": str(before), "written": str(before - 2)}
        await session._stock(command, _pending(command))  # repeated: the same document
        assert await _level(env, "1001") == before - 2
        assert (await _audit(env))["api_writes"] == 0


async def test_warehouse_mode_without_the_module_is_refused_with_a_reason(
    tmp_path: Path, box: SecretBox
) -> None:
    async with asgi_sandbox() as env:
        store = await env.sqlite_store(tmp_path / "tokens.sqlite", box)
        api = FortnoxApi(env.client(store), stock_documents_enabled=True)
        session = FortnoxSession("shop-1", api, Ports(), _documents)  # type: ignore[arg-type]
        command = _command("1001", -2)
        with pytest.raises(FortnoxApiError, match="warehouse module"):
            await session._stock(command, _pending(command))
