from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from engine.fortnox.topics_feed import MemoryOffsetStore, TopicEvent, TopicsFeed
from engine.secrets import Secret


class FakeFeedServer:
    """Speaks the topics protocol over in-memory queues; replays offsets inclusively."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events
        self.commands: list[dict[str, Any]] = []
        self.connections = 0
        self.drop_after: int | None = None

    @asynccontextmanager
    async def connect(self, url: str) -> AsyncIterator[FakeSocket]:
        self.connections += 1
        yield FakeSocket(self)


class FakeSocket:
    def __init__(self, server: FakeFeedServer) -> None:
        self.server = server
        self.outbox: asyncio.Queue[str] = asyncio.Queue()
        self.start: dict[str, int] = {}
        self.closed = False

    async def send(self, text: str) -> None:
        msg = json.loads(text)
        self.server.commands.append(msg)
        reply: dict[str, Any] = {"response": msg["command"], "result": "ok"}
        if msg["command"] == "add-tenants-v1":
            reply["tenantIds"] = {t: 100 + i for i, t in enumerate(msg["accessTokens"])}
            reply["invalidTokens"] = []
        if msg["command"] == "add-topics-v1":
            for t in msg["topics"]:
                offsets = [e["offset"] for e in self.server.events if e["topic"] == t["topic"]]
                off = t.get("offset")
                self.start[t["topic"]] = offsets.index(off) if off in offsets else 0
        await self.outbox.put(json.dumps(reply))
        if msg["command"] == "subscribe-v1":
            sent = 0
            for topic, start in self.start.items():
                for e in [e for e in self.server.events if e["topic"] == topic][start:]:
                    await self.outbox.put(json.dumps(e))
                    await self.outbox.put(json.dumps(e))  # at-least-once: duplicates
                    sent += 1
            await self.outbox.put("__END__")

    async def recv(self) -> str:
        item = await self.outbox.get()
        if item == "__END__":
            from websockets.exceptions import ConnectionClosedOK

            raise ConnectionClosedOK(None, None)
        return item

    def __aiter__(self) -> FakeSocket:
        return self

    async def __anext__(self) -> str:
        from websockets.exceptions import ConnectionClosedOK

        try:
            return await self.recv()
        except ConnectionClosedOK:
            raise StopAsyncIteration from None

    async def close(self) -> None:
        self.closed = True


def event(offset: str, entity: str, tenant: int = 100) -> dict[str, Any]:
    return {
        "topic": "articles",
        "offset": offset,
        "type": "article-updated-v1",
        "tenantId": tenant,
        "entityId": entity,
        "timestamp": "2024-05-02T10:00:00.000+02:00",
    }


async def test_feed_dedupes_persists_after_callback_and_resumes() -> None:
    server = FakeFeedServer([event("0001", "A"), event("0002", "B"), event("0003", "C")])
    offsets = MemoryOffsetStore()
    seen: list[TopicEvent] = []
    fail_on = {"B"}

    async def on_event(e: TopicEvent) -> None:
        if e.entity_id in fail_on:
            fail_on.clear()
            raise RuntimeError("fetch failed")
        seen.append(e)

    async def tokens() -> dict[str, Secret]:
        return {"shop-1": Secret("tok-1")}

    feed = TopicsFeed(
        client_secret=Secret("cs"),
        tokens=tokens,
        offsets=offsets,
        on_event=on_event,
        topics=["articles"],
        url="ws://test/topics-v1",
        backoff_base=0.001,
        backoff_max=0.002,
        connect=server.connect,
    )
    task = asyncio.create_task(feed.run())
    for _ in range(200):
        await asyncio.sleep(0.005)
        if offsets.offsets.get("articles") == "0003" and server.connections >= 3:
            break
    await feed.stop()
    task.cancel()
    assert [e.entity_id for e in seen] == ["A", "B", "C"]
    assert all(e.tenant == "shop-1" and e.fortnox_tenant_id == 100 for e in seen)
    assert offsets.offsets == {"articles": "0003"}
    assert feed.stats.duplicates >= 3
    add_topics = [c for c in server.commands if c["command"] == "add-topics-v1"]
    assert add_topics[0]["topics"] == [{"topic": "articles"}]
    assert add_topics[1]["topics"] == [{"topic": "articles", "offset": "0001"}]
    adds = [c for c in server.commands if c["command"] == "add-tenants-v1"]
    assert adds[0]["clientSecret"] == "cs" and adds[0]["accessTokens"] == ["tok-1"]
