"""The WebSocket topics feed (``/topics-v1``): commands, events, offsets, replay, duplicates."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from sandbox.fortnox.seed import Seeded, add_client_for, mint_token, seed_empty
from sandbox.fortnox.state import SandboxState
from sandbox.fortnox.topics_feed import decode_offset
from tests.sandbox.wsclient import WebSocketClient


async def command(ws: WebSocketClient, body: dict[str, Any]) -> dict[str, Any]:
    await ws.send_json(body)
    reply: dict[str, Any] = await ws.receive_json()
    assert reply["response"] == body.get("command")
    return reply


async def subscribe(
    ws: WebSocketClient, secret: str, token: str, topics: list[dict[str, str]]
) -> None:
    added = await command(
        ws, {"command": "add-tenants-v1", "clientSecret": secret, "accessTokens": [token]}
    )
    assert added["result"] == "ok" and added["invalidTokens"] == []
    assert (await command(ws, {"command": "add-topics-v1", "topics": topics}))[
        "invalidTopics"
    ] == []
    assert await command(ws, {"command": "subscribe-v1"}) == {
        "response": "subscribe-v1",
        "result": "ok",
    }


def token_of(api: httpx.AsyncClient) -> str:
    return api.headers["Authorization"].removeprefix("Bearer ")


async def test_events_stream_for_changes_with_ordered_offsets(
    app: FastAPI, api: httpx.AsyncClient, demo: Seeded
) -> None:
    token = token_of(api)
    year = demo.tenant.fy_for_date(demo.tenant.today())
    async with WebSocketClient(app, "/topics-v1") as ws:
        reply = await command(
            ws,
            {
                "command": "add-tenants-v1",
                "clientSecret": demo.client.client_secret,
                "accessTokens": [f"Bearer {token}", "not-a-token"],
            },
        )
        assert reply["tenantIds"] == {f"Bearer {token}": demo.tenant.id}
        assert reply["invalidTokens"] == ["not-a-token"]
        topics = await command(
            ws,
            {
                "command": "add-topics-v1",
                "topics": [
                    {"topic": "articles"},
                    {"topic": "customers"},
                    {"topic": "vouchers"},
                    {"topic": "nope"},
                ],
            },
        )
        assert topics["invalidTopics"] == ["nope"]
        assert (await command(ws, {"command": "subscribe-v1"}))["result"] == "ok"
        assert await ws.nothing_within(0.1)  # no offset given: only what happens from now on

        assert (
            await api.put("/3/articles/1001", json={"Article": {"Note": "x"}})
        ).status_code == 200
        first = await ws.receive_json()
        assert set(first) == {"topic", "offset", "type", "tenantId", "entityId", "timestamp"}
        assert (first["topic"], first["type"], first["entityId"], first["tenantId"]) == (
            "articles",
            "article-updated-v1",
            "1001",
            demo.tenant.id,
        )
        assert first["timestamp"][10] == "T" and first["timestamp"][-6] in "+-"
        await api.put("/3/articles/1002", json={"Article": {"Note": "y"}})
        second = await ws.receive_json()
        assert (decode_offset(second["offset"]) or 0) > (decode_offset(first["offset"]) or 0)
        await api.post("/3/customers", json={"Customer": {"Name": "Flödeskund"}})
        customer = await ws.receive_json()
        assert (customer["topic"], customer["type"]) == ("customers", "customer-created-v1")
        await api.post(
            "/3/vouchers",
            params={"financialyear": year},
            json={
                "Voucher": {
                    "Description": "Z 1",
                    "TransactionDate": demo.tenant.today().isoformat(),
                    "VoucherSeries": "F",
                    "VoucherRows": [{"Account": 1910, "Debit": 5}, {"Account": 3001, "Credit": 5}],
                }
            },
        )
        voucher = await ws.receive_json()
        assert (voucher["type"], voucher["year"], voucher["series"], voucher["entityId"]) == (
            "voucher-created-v1",
            year,
            "F",
            "1",
        )


async def test_replay_from_offset_duplicates_and_tenant_isolation(
    app: FastAPI, api: httpx.AsyncClient, state: SandboxState, demo: Seeded
) -> None:
    other = seed_empty(state, tenant_id=4242)
    other_client = add_client_for(state, other, client_id="other")
    other_token = mint_token(state, other, other_client)["access_token"]
    for note in ("a", "b", "c"):
        await api.put("/3/articles/1001", json={"Article": {"Note": note}})
    history = state.feed.events("articles", demo.tenant.id)[-3:]
    async with WebSocketClient(app, "/topics-v1") as ws:
        await subscribe(
            ws,
            demo.client.client_secret,
            token_of(api),
            [{"topic": "articles", "offset": history[1]["offset"]}],
        )
        replayed = [await ws.receive_json(), await ws.receive_json()]
        assert [e["offset"] for e in replayed] == [h["offset"] for h in history[1:]]
        await api.post(
            "/3/articles",
            json={"Article": {"Description": "Annan"}},
            headers={"Authorization": f"Bearer {other_token}"},
        )
        assert await ws.nothing_within(0.2)  # another tenant's change is not delivered
        state.faults.set_feed_duplicates(next_n=1)
        await api.put("/3/articles/1002", json={"Article": {"Note": "d"}})
        one, two = await ws.receive_json(), await ws.receive_json()
        assert one == two and one["entityId"] == "1002"
        # revoking the consent stops delivery for that tenant
        state.revoke_consents(demo.tenant.id)
        demo.tenant.emit("articles", "article-updated-v1", "1003")
        assert await ws.nothing_within(0.2)


async def test_bad_commands_and_secret(app: FastAPI, api: httpx.AsyncClient, demo: Seeded) -> None:
    token = token_of(api)
    async with WebSocketClient(app, "/topics-v1") as ws:
        wrong = await command(
            ws, {"command": "add-tenants-v1", "clientSecret": "wrong", "accessTokens": [token]}
        )
        assert wrong["invalidTokens"] == [token]
        assert (await command(ws, {"command": "dance-v1"}))["result"] == "error"
        await ws.send_text("{nope")
        assert (await ws.receive_json())["result"] == "error"
        bad_offset = await command(
            ws,
            {
                "command": "add-topics-v1",
                "topics": [{"topic": "articles", "offset": "zzzzzzzzzzz"}],
            },
        )
        assert bad_offset["invalidTopics"] == ["articles"]
        secret = demo.client.client_secret
        await command(
            ws, {"command": "add-tenants-v1", "clientSecret": secret, "accessTokens": [token]}
        )
        assert (await command(ws, {"command": "list-tenants-v1"}))["tenantIds"] == [demo.tenant.id]
        removed = await command(ws, {"command": "remove-tenants-v1", "tenants": [demo.tenant.id]})
        assert removed["result"] == "ok"
        assert (await command(ws, {"command": "list-tenants-v1"}))["tenantIds"] == []


def test_retention_is_fourteen_days(state: SandboxState, demo: Seeded) -> None:
    first = state.feed.events("articles", demo.tenant.id)[0]
    assert state.feed.start_position("articles", first["offset"]) == decode_offset(first["offset"])
    state.clock.advance(15 * 86400)
    demo.tenant.emit("articles", "article-updated-v1", "1001")
    state.feed.prune()
    kept = state.feed.events("articles", demo.tenant.id)
    assert [e["entityId"] for e in kept] == ["1001"]
    # an offset older than the retention starts at the oldest event kept
    assert state.feed.start_position("articles", first["offset"]) == decode_offset(
        kept[0]["offset"]
    )
