"""A minimal in-process ASGI WebSocket client (the feed tests drive the app without a socket)."""

from __future__ import annotations

import asyncio
import json
from types import TracebackType
from typing import Any

from starlette.types import ASGIApp, Message


class WebSocketClient:
    def __init__(self, app: ASGIApp, path: str) -> None:
        self.app = app
        self.path = path
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> WebSocketClient:
        scope = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "scheme": "ws",
            "path": self.path,
            "raw_path": self.path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [],
            "client": ("127.0.0.1", 5000),
            "server": ("sandbox.test", 80),
            "subprotocols": [],
        }

        async def run() -> None:
            await self.app(scope, self._to_app.get, self._from_app.put)

        self._task = asyncio.create_task(run())
        await self._to_app.put({"type": "websocket.connect"})
        accepted = await asyncio.wait_for(self._from_app.get(), 2)
        assert accepted["type"] == "websocket.accept", accepted
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._to_app.put({"type": "websocket.disconnect", "code": 1000})
        if self._task is not None:
            await asyncio.wait_for(self._task, 2)

    async def send_text(self, text: str) -> None:
        await self._to_app.put({"type": "websocket.receive", "text": text})

    async def send_json(self, data: Any) -> None:
        await self.send_text(json.dumps(data))

    async def receive_json(self, timeout: float = 2.0) -> Any:
        message = await asyncio.wait_for(self._from_app.get(), timeout)
        assert message["type"] == "websocket.send", message
        return json.loads(message["text"])

    async def nothing_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._from_app.get(), seconds)
        except TimeoutError:
            return True
        return False
