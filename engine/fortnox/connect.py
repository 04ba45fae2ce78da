"""``kassasync connect TENANT`` on a single machine: approve Kassasync in Fortnox from a browser
on the Kassasync machine itself, and store the tokens.

A tiny HTTP server on 127.0.0.1 catches Fortnox's redirect (the app must have
``http://127.0.0.1:<port>/callback`` registered as a redirect URI). Everything else is
:class:`~engine.fortnox.onboarding.Onboarding`'s, the same as the dashboard's callback: the
``state`` is sealed (tenant, redirect URI, expiry; an answer that does not carry one of ours is
answered with an error page and ignored, so a stale tab cannot complete someone else's consent),
the code is exchanged at once (codes live 10 minutes and are single use), and the tokens are
sealed into the token store. For shops whose administrator is elsewhere, send the dashboard's
consent link instead (``kassasync connect TENANT --link``).
"""

from __future__ import annotations

import asyncio
import sys
import webbrowser
from collections.abc import Callable, Sequence
from html import escape
from urllib.parse import parse_qs, urlsplit

import httpx

from engine.fortnox.auth import DEFAULT_SCOPES, OAUTH_BASE_URL
from engine.fortnox.client import API_BASE_URL
from engine.fortnox.errors import ConsentError, FortnoxError
from engine.fortnox.observability import log
from engine.fortnox.onboarding import Connected, FortnoxApp, Onboarding
from engine.fortnox.tokens import AppCredentials, TokenSet, TokenStore
from engine.secrets import SecretBox, generate_key
from topics.settings import TenantSettings

DEFAULT_PORT = 8765
CALLBACK_PATH = "/callback"

_PAGE = (
    "<!doctype html><html><head><meta charset='utf-8'><title>Kassasync</title></head>"
    "<body style='font-family:sans-serif;margin:3em'><h1>{title}</h1><p>{text}</p></body></html>"
)


def _show(url: str) -> None:
    print(f"Open this address to connect Fortnox:\n{url}", file=sys.stderr)


async def _respond(writer: asyncio.StreamWriter, status: str, title: str, text: str) -> None:
    body = _PAGE.format(title=escape(title), text=escape(text)).encode("utf-8")
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode("ascii")
    writer.write(head + body)
    try:
        await writer.drain()
    finally:
        writer.close()


async def connect_here(
    onboarding: Onboarding,
    tenant: str,
    settings: TenantSettings,
    *,
    service_account: bool | None = None,
    scopes: Sequence[str] | None = None,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    open_browser: Callable[[str], object] | None = webbrowser.open,
    show_url: Callable[[str], None] = _show,
    timeout: float = 600.0,
) -> Connected:
    """Run the consent flow for ``tenant`` with the callback on this machine's loopback."""
    loop = asyncio.get_running_loop()
    result: asyncio.Future[Connected] = loop.create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), timeout=10)
            while (await asyncio.wait_for(reader.readline(), timeout=10)) not in (b"\r\n", b""):
                pass
        except (TimeoutError, ConnectionError):
            writer.close()
            return
        parts = request_line.decode("latin-1").split()
        target = urlsplit(parts[1] if len(parts) > 1 else "/")
        if target.path != CALLBACK_PATH:
            await _respond(writer, "404 Not Found", "Not found", "This is Kassasync's login page.")
            return
        query = {k: v[0] for k, v in parse_qs(target.query).items()}
        try:
            payload = onboarding.open_state(query.get("state", ""))
        except ConsentError:
            log.warning("fortnox.connect.state_mismatch", tenant=tenant)
            await _respond(
                writer,
                "400 Bad Request",
                "Wrong or stale link",
                "This answer does not belong to the connection being set up. Start again from "
                "the newest link.",
            )
            return
        if payload.tenant != tenant:
            await _respond(
                writer, "400 Bad Request", "Wrong link", "This answer is for another shop."
            )
            return
        try:
            connected = await onboarding.complete(query)
        except (ConsentError, FortnoxError) as failed:
            await _respond(writer, "200 OK", "Fortnox was not connected", failed.message)
            if not result.done():
                result.set_exception(failed)
            return
        await _respond(
            writer,
            "200 OK",
            "Fortnox is connected",
            "Kassasync can now sync this shop with Fortnox. You can close this window.",
        )
        if not result.done():
            result.set_result(connected)

    server = await asyncio.start_server(handle, host, port)
    bound = server.sockets[0].getsockname()[1]
    redirect_uri = f"http://{host}:{bound}{CALLBACK_PATH}"
    try:
        url = onboarding.link(
            tenant,
            settings,
            redirect_uri=redirect_uri,
            service_account=service_account,
            scopes=scopes,
        )
        show_url(url)
        if open_browser is not None:
            await asyncio.to_thread(open_browser, url)
        log.info("fortnox.connect.waiting", tenant=tenant, redirect_uri=redirect_uri)
        try:
            return await asyncio.wait_for(result, timeout=timeout)
        except TimeoutError:
            raise ConsentError("no answer from Fortnox in time", tenant=tenant) from None
    finally:
        server.close()
        await server.wait_closed()


async def connect(
    tenant: str,
    *,
    app: AppCredentials,
    store: TokenStore,
    scopes: Sequence[str] = DEFAULT_SCOPES,
    service_account: bool = False,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    oauth_base_url: str = OAUTH_BASE_URL,
    api_base_url: str = API_BASE_URL,
    transport: httpx.AsyncBaseTransport | None = None,
    open_browser: Callable[[str], object] | None = webbrowser.open,
    show_url: Callable[[str], None] = _show,
    timeout: float = 600.0,
) -> TokenSet:
    """:func:`connect_here` for callers without an installation key or tenant settings: the
    state is sealed with a key that lives only as long as this call."""
    onboarding = Onboarding(
        FortnoxApp(
            client_id=app.client_id,
            client_secret=app.client_secret,
            auth_base=oauth_base_url,
            api_base=api_base_url,
        ),
        store,
        SecretBox(generate_key()),
        transport=transport,
    )
    connected = await connect_here(
        onboarding,
        tenant,
        TenantSettings(),
        service_account=service_account,
        scopes=scopes,
        host=host,
        port=port,
        open_browser=open_browser,
        show_url=show_url,
        timeout=timeout,
    )
    return connected.tokens
