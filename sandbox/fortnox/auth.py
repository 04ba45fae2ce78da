"""OAuth as Fortnox runs it (``/oauth-v1/...``), and bearer-token checks for the API.

* ``GET /oauth-v1/auth``: a browser (``Accept: text/html``) gets Fortnox's consent page: the
  company, the integration and the scopes it asks for, with *Godkänn* (approve) and *Avbryt*
  (refuse), posted back to ``POST /oauth-v1/auth``. A script (no ``text/html`` in ``Accept``) is
  approved at once for the tenant's seeded user, as before. Either way the answer is a redirect
  to ``redirect_uri`` with ``code`` and ``state`` (or ``error``); ``account_type=service``
  records a service-account consent. Sandbox extras: ``tenant_id=`` picks the tenant, ``deny=1``
  plays a user who says no.
* ``POST /oauth-v1/token`` (HTTP Basic client auth): ``authorization_code`` (single-use codes,
  10 minutes, ``redirect_uri`` must repeat the one given to ``/auth``), ``refresh_token``
  (single-use, rotating, 45 days; reuse gives 400 ``invalid_grant`` "Invalid refresh token"),
  ``client_credentials`` with a ``TenantId`` header (needs a service-account consent).
* ``POST /oauth-v1/revoke``: revokes a refresh token and everything issued from the same grant.

Access tokens are HS256 JWTs carrying ``tenantId``, ``userId``, ``clientId``, ``scopes`` and an
``exp`` one hour ahead; every lifetime runs on the business clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import json
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from sandbox.fortnox.errors import OAuthError
from sandbox.fortnox.listing import json_response
from sandbox.fortnox.state import Consent, OAuthClient, SandboxState
from sandbox.fortnox.topics_feed import FeedGrant, TokenCheck

#: ASGI scope keys: the caller's :class:`AuthContext`, and the tenant a request concerns.
AUTH_KEY = "fortnox.auth"
TENANT_KEY = "fortnox.tenant"

ACCESS_TOKEN_SECONDS = 3600
REFRESH_TOKEN_SECONDS = 45 * 24 * 3600
AUTH_CODE_SECONDS = 600


@dataclass(eq=False)
class AuthCode:
    code: str
    client_id: str
    consent: Consent
    redirect_uri: str | None
    expires: float
    used: bool = False


@dataclass(eq=False)
class RefreshGrant:
    token: str
    client_id: str
    consent: Consent
    family: str
    expires: float
    used: bool = False


@dataclass(eq=False)
class AccessGrant:
    jti: str
    client_id: str
    consent: Consent
    family: str
    issued: float
    expires: float
    revoked: bool = False


@dataclass(frozen=True)
class AuthContext:
    """Who is calling: put on the ASGI scope by the gateway for the handlers."""

    tenant_id: int
    client_id: str
    scopes: frozenset[str]
    user_id: str
    jti: str = field(default="")


# --- JWT (HS256) ---------------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwt_encode(key: bytes, claims: dict[str, Any]) -> str:
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = _b64(hmac.new(key, signing_input, hashlib.sha256).digest())
    return f"{header}.{payload}.{signature}"


def jwt_decode(key: bytes, token: str) -> dict[str, Any] | None:
    """The claims of a token signed with ``key`` (None: malformed or bad signature)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    signing_input = f"{parts[0]}.{parts[1]}".encode()
    expected = _b64(hmac.new(key, signing_input, hashlib.sha256).digest())
    if not hmac.compare_digest(expected, parts[2]):
        return None
    try:
        claims = json.loads(_unb64(parts[1]))
    except (ValueError, binascii.Error):
        return None
    return claims if isinstance(claims, dict) else None


# --- issuing and checking -----------------------------------------------------------------------
def issue_tokens(
    state: SandboxState,
    consent: Consent,
    *,
    with_refresh: bool = True,
    family: str | None = None,
) -> dict[str, Any]:
    """A token response for ``consent`` (key order as in recorded Fortnox traffic)."""
    now = state.clock.time()
    family = family or uuid.uuid4().hex
    tenant = state.tenants[consent.tenant_id]
    jti = uuid.uuid4().hex
    scopes = sorted(consent.scopes)
    claims = {
        "iss": "https://apps.fortnox.se/oauth-v1",
        "sub": tenant.user_id,
        "tenantId": consent.tenant_id,
        "userId": tenant.user_id,
        "clientId": consent.client_id,
        "scopes": scopes,
        "accountType": "service" if consent.service else "user",
        "iat": int(now),
        "exp": int(now) + ACCESS_TOKEN_SECONDS,
        "jti": jti,
    }
    state.access_tokens[jti] = AccessGrant(
        jti, consent.client_id, consent, family, now, now + ACCESS_TOKEN_SECONDS
    )
    body: dict[str, Any] = {
        "access_token": jwt_encode(state.jwt_key, claims),
        "expires_in": ACCESS_TOKEN_SECONDS,
        "token_type": "bearer",
        "scope": " ".join(scopes),
    }
    if with_refresh:
        refresh = str(uuid.uuid4())
        state.refresh_tokens[refresh] = RefreshGrant(
            refresh, consent.client_id, consent, family, now + REFRESH_TOKEN_SECONDS
        )
        body["refresh_token"] = refresh
    return body


def check_access_token(state: SandboxState, token: str) -> AccessGrant | None:
    """The live grant behind a bearer token (None: expired, revoked, invalid or unknown)."""
    claims = jwt_decode(state.jwt_key, token)
    if claims is None:
        return None
    grant = state.access_tokens.get(str(claims.get("jti")))
    if grant is None or grant.revoked or not grant.consent.active:
        return None
    if state.clock.time() >= grant.expires:
        return None
    if grant.consent.tenant_id not in state.tenants:
        return None
    return grant


def context_for(state: SandboxState, grant: AccessGrant) -> AuthContext:
    tenant = state.tenants[grant.consent.tenant_id]
    return AuthContext(
        grant.consent.tenant_id, grant.client_id, grant.consent.scopes, tenant.user_id, grant.jti
    )


def bearer_token(headers: dict[str, str]) -> str | None:
    value = headers.get("authorization", "")
    if value[:7].lower() != "bearer ":
        return None
    return value[7:].strip() or None


def expire_access_tokens(state: SandboxState, tenant_id: int | None = None) -> int:
    """Fault: every access token issued so far stops working (refresh tokens still do)."""
    n = 0
    now = state.clock.time()
    for grant in state.access_tokens.values():
        if tenant_id is not None and grant.consent.tenant_id != tenant_id:
            continue
        if grant.expires > now and not grant.revoked:
            grant.expires = now
            n += 1
    return n


def feed_token_check(state: SandboxState) -> TokenCheck:
    """The check ``add-tenants-v1`` uses: token live and the client secret right."""

    def check(token: str, client_secret: str) -> FeedGrant | None:
        grant = check_access_token(state, token)
        if grant is None:
            return None
        client = state.clients.get(grant.client_id)
        if client is None or not hmac.compare_digest(client.client_secret, client_secret):
            return None
        consent = grant.consent
        return FeedGrant(consent.tenant_id, grant.client_id, lambda: consent.active)

    return check


# --- HTTP -----------------------------------------------------------------------------------------
router = APIRouter(prefix="/oauth-v1", tags=["oauth"])


def _state(request: Request) -> SandboxState:
    state: SandboxState = request.app.state.sandbox
    return state


def _client_from_basic(state: SandboxState, request: Request) -> OAuthClient:
    header = request.headers.get("authorization", "")
    bad = OAuthError(401, "invalid_client", "The client credentials are invalid")
    if header[:6].lower() != "basic ":
        raise bad
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise bad from None
    client_id, sep, secret = decoded.partition(":")
    client = state.clients.get(client_id)
    if not sep or client is None or not hmac.compare_digest(client.client_secret, secret):
        raise bad
    return client


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", "replace")
    return dict(parse_qsl(body, keep_blank_values=True))


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


_CONSENT_PAGE = """<!doctype html><html lang="sv"><head><meta charset="utf-8">
<title>Fortnox (sandbox) - Godkänn integration</title>
<style>body{{font-family:sans-serif;margin:3em auto;max-width:36em;color:#222}}
.box{{border:1px solid #ccc;border-radius:8px;padding:1.5em}}button{{font:inherit;
padding:.5em 1.4em;margin-right:1em}}#approve{{background:#0a7d3b;color:#fff;border:0}}
li{{font-family:monospace}}</style></head><body><div class="box">
<p>Fortnox sandbox</p><h1>Godkänn integration</h1>
<p><strong id="client">{client}</strong> vill få tillgång till
<strong id="company">{company}</strong> ({tenant_id}){service}.</p>
<p>Behörigheter:</p><ul id="scopes">{scopes}</ul>
<form method="post" action="/oauth-v1/auth">{fields}
<button id="approve" name="decision" value="approve" type="submit">Godkänn</button>
<button id="deny" name="decision" value="deny" type="submit">Avbryt</button>
</form></div></body></html>"""


def _consent_page(
    state: SandboxState, client: OAuthClient, tenant_id: int, q: dict[str, str]
) -> Response:
    """Fortnox's consent page, as a person in a browser sees it (sandbox look)."""
    tenant = state.tenants[tenant_id]
    scopes = "".join(f"<li>{html.escape(s)}</li>" for s in sorted(q.get("scope", "").split()))
    fields = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in q.items()
        if k != "decision"
    )
    service = " som servicekonto" if q.get("account_type") == "service" else ""
    page = _CONSENT_PAGE.format(
        client=html.escape(client.name),
        company=html.escape(str(tenant.company["CompanyName"])),
        tenant_id=tenant_id,
        service=service,
        scopes=scopes,
        fields=fields,
    )
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


def _wants_page(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


@router.post("/auth")
async def decide(request: Request) -> Response:
    """The consent page's answer: approve or refuse."""
    form = await _form(request)
    decision = form.pop("decision", "")
    if decision != "approve":
        form["deny"] = "1"
    return _authorize(_state(request), form, page=False)


@router.get("/auth")
async def authorize(request: Request) -> Response:
    return _authorize(_state(request), dict(request.query_params), page=_wants_page(request))


def _authorize(state: SandboxState, q: dict[str, str], *, page: bool) -> Response:
    client = state.clients.get(q.get("client_id", ""))
    if client is None:
        return json_response(
            {"error": "invalid_client", "error_description": "Unknown client"}, 400
        )
    redirect_uri = q.get("redirect_uri")
    if redirect_uri is not None and not client.redirect_allowed(redirect_uri):
        return json_response(
            {"error": "invalid_request", "error_description": "redirect_uri mismatch"}, 400
        )
    target = redirect_uri or client.redirect_uris[0]
    st = q.get("state", "")

    def fail(error: str, description: str) -> Response:
        params = {"error": error, "error_description": description}
        if st:
            params["state"] = st
        return RedirectResponse(_with_query(target, params), status_code=302)

    if q.get("response_type") != "code":
        return fail("unsupported_response_type", "response_type must be code")
    if not st:
        return fail("invalid_request", "state is required")
    scopes = frozenset(q.get("scope", "").split())
    if not scopes or not scopes <= client.scopes:
        return fail("invalid_scope", "The requested scope is invalid")
    account_type = q.get("account_type")
    if account_type not in (None, "service"):
        return fail("invalid_request", "account_type must be service")
    if account_type == "service" and not client.service_accounts:
        return fail("unauthorized_client", "Client does not allow service account")
    if q.get("deny") in ("1", "true"):
        return fail("access_denied", "The user denied the request")
    tenant_id = _pick_tenant(state, client, q.get("tenant_id"))
    if tenant_id is None:
        return json_response(
            {"error": "invalid_request", "error_description": "no tenant to consent for"}, 400
        )
    if page:
        return _consent_page(state, client, tenant_id, q)
    consent = state.grant_consent(
        client.client_id, tenant_id, scopes, service=account_type == "service"
    )
    code = secrets.token_urlsafe(24)
    state.auth_codes[code] = AuthCode(
        code, client.client_id, consent, redirect_uri, state.clock.time() + AUTH_CODE_SECONDS
    )
    return RedirectResponse(_with_query(target, {"code": code, "state": st}), status_code=302)


def _pick_tenant(state: SandboxState, client: OAuthClient, wanted: str | None) -> int | None:
    if wanted:
        try:
            tid = int(wanted)
        except ValueError:
            return None
        return tid if tid in state.tenants else None
    if client.default_tenant in state.tenants:
        return client.default_tenant
    if len(state.tenants) == 1:
        return next(iter(state.tenants))
    return None


@router.post("/token")
async def token(request: Request) -> Response:
    state = _state(request)
    try:
        client = _client_from_basic(state, request)
        form = await _form(request)
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            body = _exchange_code(state, client, form)
        elif grant_type == "refresh_token":
            body = _refresh(state, client, form)
        elif grant_type == "client_credentials":
            body = _client_credentials(state, client, request.headers.get("tenantid"))
        else:
            raise OAuthError(400, "unsupported_grant_type", "Unsupported grant type")
    except OAuthError as exc:
        return exc.response()
    claims = jwt_decode(state.jwt_key, str(body["access_token"]))
    if claims is not None:
        request.scope[TENANT_KEY] = claims.get("tenantId")
    return json_response(body)


def _exchange_code(
    state: SandboxState, client: OAuthClient, form: dict[str, str]
) -> dict[str, Any]:
    code = state.auth_codes.get(form.get("code", ""))
    bad = OAuthError(400, "invalid_grant", "Invalid authorization code")
    if code is None or code.used or code.client_id != client.client_id:
        raise bad
    if state.clock.time() >= code.expires or not code.consent.active:
        raise bad
    if code.redirect_uri is not None and form.get("redirect_uri") != code.redirect_uri:
        raise OAuthError(400, "invalid_grant", "redirect_uri does not match")
    code.used = True
    return issue_tokens(state, code.consent)


def _refresh(state: SandboxState, client: OAuthClient, form: dict[str, str]) -> dict[str, Any]:
    grant = state.refresh_tokens.get(form.get("refresh_token", ""))
    bad = OAuthError(400, "invalid_grant", "Invalid refresh token")
    if grant is None or grant.used or grant.client_id != client.client_id:
        raise bad
    if state.clock.time() >= grant.expires or not grant.consent.active:
        raise bad
    grant.used = True
    return issue_tokens(state, grant.consent, family=grant.family)


def _client_credentials(
    state: SandboxState, client: OAuthClient, tenant_header: str | None
) -> dict[str, Any]:
    if not tenant_header:
        raise OAuthError(400, "invalid_request", "TenantId header is required")
    try:
        tenant_id = int(tenant_header)
    except ValueError:
        raise OAuthError(400, "invalid_request", "TenantId must be a number") from None
    consent = state.consents.get((client.client_id, tenant_id))
    if consent is None or not consent.active or not consent.service:
        raise OAuthError(400, "invalid_grant", "No service account consent for this tenant")
    return issue_tokens(state, consent, with_refresh=False)


@router.post("/revoke")
async def revoke(request: Request) -> Response:
    state = _state(request)
    try:
        client = _client_from_basic(state, request)
    except OAuthError as exc:
        return exc.response()
    form = await _form(request)
    value = form.get("token", "")
    family: str | None = None
    refresh = state.refresh_tokens.get(value)
    if refresh is not None and refresh.client_id == client.client_id:
        family = refresh.family
    else:
        claims = jwt_decode(state.jwt_key, value)
        access = state.access_tokens.get(str(claims.get("jti"))) if claims else None
        if access is not None and access.client_id == client.client_id:
            family = access.family
    if family is None:
        return json_response({"Revoked": False})
    for r in state.refresh_tokens.values():
        if r.family == family:
            r.used = True
    for a in state.access_tokens.values():
        if a.family == family:
            a.revoked = True
    return json_response({"Revoked": True})
