"""The engine's HTTP door: what every request on its port gets through before a route sees it.

- **Body caps while reading.** Each route has a cap (:class:`DoorSettings`: 16 KB for the
  dashboard, the ops API and everything else; 1 MB for the till ingest API). A body whose
  ``Content-Length`` is over the cap is never read: the route may still answer without it (a
  missing key is 401), and the first read is refused with 413. A body without a length is
  counted while it arrives and refused with 413 as soon as it passes the cap, so at most the
  cap plus one network read is ever held.
- **Unread bodies are not drained.** Any answer sent before the request's body was read to its
  end carries ``Connection: close``, and the connection is closed after it: a client that
  sends 100 MB to a route that refuses it costs a few kilobytes, not 100 MB of reading.
- **Header and body read timeouts.** A request's headers must be complete ``header_timeout``
  seconds after the connection opened (or after the previous answer on a kept-alive
  connection), however slowly they trickle in; its body ``body_timeout`` seconds after the
  headers. Either refusal is 408 and the connection is closed. An idle kept-alive connection is
  closed after ``keep_alive`` seconds (uvicorn), headers over ``max_header_bytes`` get 400 (h11).

:func:`server_config` builds the uvicorn configuration with these settings; :class:`Door` is the
ASGI middleware (``app.add_middleware(Door, settings=..., caps=...)``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import h11
import structlog
import uvicorn
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from engine.web.html import default_frame

log = structlog.get_logger("kassasync.web")

#: The cap on request bodies where no route-specific cap applies (dashboard forms, ops API).
DEFAULT_BODY_BYTES = 16_384


@dataclass(frozen=True, slots=True)
class DoorSettings:
    """Limits of the engine's HTTP port (seconds and bytes)."""

    #: From the connection's start (or the previous answer) to the end of the request headers.
    header_timeout: float = 10.0
    #: From the end of the headers to the end of the body.
    body_timeout: float = 30.0
    #: An idle kept-alive connection is closed after this long (uvicorn's ``timeout_keep_alive``).
    keep_alive: int = 5
    #: The request line and headers together (h11's limit; larger is 400).
    max_header_bytes: int = 16_384
    #: The body cap of every route not in ``caps``.
    body_bytes: int = DEFAULT_BODY_BYTES
    #: Body caps by path prefix (the longest matching prefix wins).
    caps: Mapping[str, int] = field(default_factory=dict)

    def cap_for(self, path: str) -> int:
        best, cap = -1, self.body_bytes
        for prefix, limit in self.caps.items():
            if path.startswith(prefix) and len(prefix) > best:
                best, cap = len(prefix), limit
        return cap


class BodyTooLarge(Exception):
    def __init__(self, cap: int, read: int, declared: int | None) -> None:
        super().__init__(f"body over {cap} bytes")
        self.cap = cap
        self.read = read
        self.declared = declared


class BodyTimeout(Exception):
    def __init__(self, seconds: float, read: int) -> None:
        super().__init__(f"body not received within {seconds:g} s")
        self.seconds = seconds
        self.read = read


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value)
    return None


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


@dataclass(slots=True)
class _Reading:
    """One request's body as the door sees it."""

    cap: int
    declared: int | None
    #: The body has been read to its end (or there is none).
    done: bool
    deadline: float
    read: int = 0
    answered: bool = False


class Door:
    """ASGI middleware: body caps while reading, a body read timeout, and ``Connection:
    close`` on answers sent before the body was read (see the module's docstring)."""

    def __init__(self, app: ASGIApp, settings: DoorSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        declared = int(length) if length is not None and length.isdigit() else None
        chunked = _header(scope, b"transfer-encoding") is not None
        loop = asyncio.get_running_loop()
        state = _Reading(
            cap=self.settings.cap_for(scope["path"]),
            declared=declared,
            done=not chunked and not declared,
            deadline=loop.time() + self.settings.body_timeout,
        )

        async def capped_receive() -> Message:
            if state.done:
                return await receive()
            # Once over the cap (declared or counted), every further read is refused too.
            if state.read > state.cap or (state.declared or 0) > state.cap:
                raise BodyTooLarge(state.cap, state.read, state.declared)
            try:
                async with asyncio.timeout_at(state.deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout(self.settings.body_timeout, state.read) from None
            if message["type"] == "http.request":
                state.read += len(message.get("body", b""))
                if state.read > state.cap:
                    raise BodyTooLarge(state.cap, state.read, state.declared)
                if not message.get("more_body", False):
                    state.done = True
            else:
                state.done = True  # http.disconnect: nothing more will come
            return message

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state.answered = True
                if not state.done:
                    # The body is not read: close after this answer rather than drain it.
                    headers = [*message.get("headers", []), (b"connection", b"close")]
                    message = {**message, "headers": headers}
                    if state.declared is None or state.declared > state.cap:
                        # Only worth a line when what is left unread may be large.
                        log.info(
                            "web.door.unread_body",
                            path=scope["path"],
                            client=_client(scope),
                            read=state.read,
                            declared=state.declared,
                        )
            await send(message)

        try:
            await self.app(scope, capped_receive, guarded_send)
        except BodyTooLarge as refused:
            log.warning(
                "web.door.body_too_large",
                path=scope["path"],
                client=_client(scope),
                cap=refused.cap,
                read=refused.read,
                declared=refused.declared,
            )
            if state.answered:
                raise
            text = f"the request body is larger than {refused.cap} bytes: send a smaller one"
            await _refusal(scope, 413, "Too large", text)(scope, receive, send)
        except BodyTimeout as slow:
            log.warning(
                "web.door.body_timeout",
                path=scope["path"],
                client=_client(scope),
                seconds=slow.seconds,
                read=slow.read,
            )
            if state.answered:
                raise
            text = f"the request body did not arrive within {slow.seconds:g} s"
            await _refusal(scope, 408, "Too slow", text)(scope, receive, send)


def _refusal(scope: Scope, status: int, title: str, text: str) -> Response:
    """The door's answer (JSON for the APIs, a page for people), closing the connection."""
    close = {"Connection": "close"}
    path = str(scope["path"])
    if path.startswith(("/v1/", "/ops/api/")):
        return Response(
            json.dumps({"error": text}),
            status_code=status,
            media_type="application/json",
            headers=close,
        )
    return default_frame().respond(
        None,
        "message.html",
        csrf=None,
        status=status,
        headers=close,
        heading=title,
        text=f"{text}.",
        link="",
    )


# --- the protocol: the header read timeout -------------------------------------------------------

_TIMEOUT_ANSWER = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 32\r\nconnection: close\r\n\r\n"
    b"request headers arrived too late"
)


class DoorProtocol(H11Protocol):
    """uvicorn's h11 protocol with a header read timeout.

    While the connection waits for a request's headers (h11's client state is ``IDLE``: a new
    connection, or one whose previous answer is complete), a timer runs that is not reset by
    arriving bytes. When it fires the connection is closed, with a 408 if part of a request had
    arrived. uvicorn's own keep-alive timer still closes connections that send nothing at all
    after an answer.
    """

    door: ClassVar[DoorSettings] = DoorSettings()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._watch_headers()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_headers()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def _watch_headers(self) -> None:
        waiting = self.conn.their_state is h11.IDLE and not self.transport.is_closing()
        if not waiting:
            self._stop_header_timer()
        elif self._header_timer is None:
            self._header_timer = self.loop.call_later(
                self.door.header_timeout, self._headers_too_late
            )

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        partial = bool(self.conn.trailing_data[0])
        log.warning(
            "web.door.header_timeout",
            client=self.client[0] if self.client else "",
            seconds=self.door.header_timeout,
            partial=partial,
        )
        if partial:
            self.transport.write(_TIMEOUT_ANSWER)
        self.transport.close()


def server_config(app: Any, *, host: str, port: int, settings: DoorSettings) -> uvicorn.Config:
    """uvicorn's configuration for the engine's port, with the door's timeouts and limits."""
    protocol = type("EngineDoorProtocol", (DoorProtocol,), {"door": settings})
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        timeout_keep_alive=settings.keep_alive,
        h11_max_incomplete_event_size=settings.max_header_bytes,
        log_level="warning",
        # No logging set-up of uvicorn's own: its warnings go through the engine's JSON log
        # (engine/logging.py) instead of plain-text lines of their own.
        log_config=None,
        lifespan="off",
    )
