"""``kassasync connect TENANT``: approve Kassasync in Fortnox and store the tokens.

A tiny HTTP server on 127.0.0.1 catches Fortnox's redirect after the administrator approved
access in the browser. The ``state`` parameter must match the one we sent (a mismatch is
answered with an error page and ignored, so a stale tab cannot complete someone else's consent).
The code is exchanged for tokens at once (codes live 10 minutes and are single use) and the
tokens are sealed into the token store, together with the app's client secret.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import webbrowser
from collections.abc import Callable, Sequence
from html import escape
from urllib.parse import parse_qs, urlsplit

import httpx

from engine.fortnox.auth import DEFAULT_SCOPES, OAUTH_BASE_URL, OAuthClient
from engine.fortnox.client import API_BASE_URL
from engine.fortnox.errors import ConsentError
from engine.fortnox.observability import log
from engine.fortnox.tokens import AppCredentials, GrantKind, TokenSet, TokenStore

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
    """Run the consent flow for ``tenant`` and store its tokens; returns them.

    ``port`` must match the redirect URI registered for the app in Fortnox's developer portal
    (``http://127.0.0.1:<port>/callback``); 0 picks a free port (tests). With
    ``service_account`` the consent creates a Fortnox service account and later tokens are
    fetched with client credentials instead of a refresh token.
    """
    state = secrets.token_urlsafe(32)
    loop = asyncio.get_running_loop()
    result: asyncio.Future[str] = loop.create_future()

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
        if not secrets.compare_digest(query.get("state", ""), state):
            log.warning("fortnox.connect.state_mismatch", tenant=tenant)
            await _respond(
                writer,
                "400 Bad Request",
                "Wrong or stale link",
                "This answer does not belong to the connection being set up. Start again from "
                "the newest link.",
            )
            return
        if "error" in query:
            await _respond(
                writer,
                "200 OK",
                "Fortnox was not connected",
                f"Fortnox answered: {query.get('error_description') or query['error']}",
            )
            if not result.done():
                result.set_exception(
                    ConsentError(f"consent not given: {query['error']}", tenant=tenant)
                )
            return
        code = query.get("code")
        if not code:
            await _respond(writer, "400 Bad Request", "No code", "Fortnox sent no code.")
            return
        await _respond(
            writer,
            "200 OK",
            "Fortnox is connected",
            "Kassasync can now sync this shop with Fortnox. You can close this window.",
        )
        if not result.done():
            result.set_result(code)

    server = await asyncio.start_server(handle, host, port)
    bound = server.sockets[0].getsockname()[1]
    redirect_uri = f"http://{host}:{bound}{CALLBACK_PATH}"
    oauth = OAuthClient(app, base_url=oauth_base_url, transport=transport)
    try:
        url = oauth.consent_url(
            redirect_uri=redirect_uri,
            scopes=scopes,
            state=state,
            service_account=service_account,
        )
        show_url(url)
        if open_browser is not None:
            await asyncio.to_thread(open_browser, url)
        log.info("fortnox.connect.waiting", tenant=tenant, redirect_uri=redirect_uri)
        try:
            code = await asyncio.wait_for(result, timeout=timeout)
        except TimeoutError:
            raise ConsentError("no answer from Fortnox in time", tenant=tenant) from None
        tokens = await oauth.exchange_code(code, redirect_uri, tenant=tenant)
    finally:
        server.close()
        await server.wait_closed()
        await oauth.aclose()
    if service_account:
        tenant_id = tokens.fortnox_tenant_id or await _database_number(
            tokens, api_base_url, transport
        )
        tokens = tokens.model_copy(
            update={"kind": GrantKind.SERVICE, "fortnox_tenant_id": tenant_id}
        )
    await store.save_app(app)
    await store.save(tenant, tokens)
    log.info(
        "fortnox.connect.done",
        tenant=tenant,
        kind=tokens.kind.value,
        fortnox_tenant_id=tokens.fortnox_tenant_id,
        scope=tokens.scope,
    )
    return tokens


async def _database_number(
    tokens: TokenSet, api_base_url: str, transport: httpx.AsyncBaseTransport | None
) -> int:
    """The company's DatabaseNumber (= TenantId), needed for client-credentials tokens."""
    async with httpx.AsyncClient(base_url=api_base_url, transport=transport) as http:
        response = await http.get(
            "/3/companyinformation",
            headers={
                "Authorization": f"Bearer {tokens.access_token.reveal()}",
                "Accept": "application/json",
            },
        )
    try:
        number = response.json()["CompanyInformation"]["DatabaseNumber"]
        return int(number)
    except (ValueError, KeyError, TypeError):
        raise ConsentError(
            "could not read the company's TenantId for the service account"
        ) from None
