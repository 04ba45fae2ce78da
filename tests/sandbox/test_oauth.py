"""OAuth as Fortnox runs it: authorization code, rotating refresh tokens, client credentials."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs, urlsplit

import httpx

from sandbox.fortnox.auth import jwt_decode
from sandbox.fortnox.seed import Seeded
from sandbox.fortnox.state import SandboxState

REDIRECT = "http://127.0.0.1/callback"


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


async def authorize(
    admin: httpx.AsyncClient, demo: Seeded, **extra: str
) -> tuple[int, dict[str, list[str]]]:
    params = {
        "client_id": demo.client.client_id,
        "redirect_uri": REDIRECT,
        "scope": "article customer bookkeeping",
        "state": "xyz",
        "access_type": "offline",
        "response_type": "code",
        **extra,
    }
    r = await admin.get("/oauth-v1/auth", params=params)
    return r.status_code, parse_qs(urlsplit(r.headers.get("location", "")).query)


async def token(admin: httpx.AsyncClient, demo: Seeded, **form: str) -> httpx.Response:
    return await admin.post(
        "/oauth-v1/token",
        data=form,
        headers=basic(demo.client.client_id, demo.client.client_secret),
    )


async def test_authorization_code_flow_gives_working_tokens(
    admin: httpx.AsyncClient, demo: Seeded, state: SandboxState
) -> None:
    status, query = await authorize(admin, demo)
    assert status == 302
    assert query["state"] == ["xyz"]
    r = await token(
        admin, demo, grant_type="authorization_code", code=query["code"][0], redirect_uri=REDIRECT
    )
    assert r.status_code == 200
    body = r.json()
    assert list(body) == ["access_token", "expires_in", "token_type", "scope", "refresh_token"]
    assert body["expires_in"] == 3600 and body["token_type"] == "bearer"
    assert body["scope"] == "article bookkeeping customer" or set(body["scope"].split()) == {
        "article",
        "customer",
        "bookkeeping",
    }
    claims = jwt_decode(state.jwt_key, body["access_token"])
    assert claims is not None
    assert claims["tenantId"] == demo.tenant.id
    assert claims["clientId"] == demo.client.client_id
    assert set(claims["scopes"]) == {"article", "customer", "bookkeeping"}
    assert claims["exp"] - claims["iat"] == 3600
    assert len(body["access_token"].split(".")) == 3
    api = await admin.get(
        "/3/articles", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert api.status_code == 200
    # the token lacks the "order" scope
    orders = await admin.get(
        "/3/orders", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert orders.status_code == 403
    assert orders.json() == {
        "ErrorInformation": {
            "error": 1,
            "message": "Har inte behörighet för scope",
            "code": 2000663,
        }
    }


async def test_code_is_single_use_and_needs_the_same_redirect_uri(
    admin: httpx.AsyncClient, demo: Seeded
) -> None:
    _, query = await authorize(admin, demo)
    code = query["code"][0]
    wrong = await token(
        admin, demo, grant_type="authorization_code", code=code, redirect_uri="http://x/cb"
    )
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    ok = await token(admin, demo, grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    assert ok.status_code == 200
    again = await token(
        admin, demo, grant_type="authorization_code", code=code, redirect_uri=REDIRECT
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


async def test_code_expires_after_ten_minutes(
    admin: httpx.AsyncClient, demo: Seeded, state: SandboxState
) -> None:
    _, query = await authorize(admin, demo)
    state.clock.advance(601)
    r = await token(
        admin, demo, grant_type="authorization_code", code=query["code"][0], redirect_uri=REDIRECT
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


async def test_refresh_rotates_and_reuse_is_invalid_grant(
    admin: httpx.AsyncClient, demo: Seeded
) -> None:
    _, query = await authorize(admin, demo)
    first = (
        await token(
            admin,
            demo,
            grant_type="authorization_code",
            code=query["code"][0],
            redirect_uri=REDIRECT,
        )
    ).json()
    second = await token(
        admin, demo, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert second.status_code == 200
    assert second.json()["refresh_token"] != first["refresh_token"]
    reuse = await token(
        admin, demo, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert reuse.status_code == 400
    assert reuse.json() == {"error": "invalid_grant", "error_description": "Invalid refresh token"}
    third = await token(
        admin, demo, grant_type="refresh_token", refresh_token=second.json()["refresh_token"]
    )
    assert third.status_code == 200


async def test_refresh_token_lives_45_days(
    admin: httpx.AsyncClient, demo: Seeded, state: SandboxState
) -> None:
    _, query = await authorize(admin, demo)
    first = (
        await token(
            admin,
            demo,
            grant_type="authorization_code",
            code=query["code"][0],
            redirect_uri=REDIRECT,
        )
    ).json()
    state.clock.advance(44 * 86400)
    second = await token(
        admin, demo, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert second.status_code == 200
    state.clock.advance(45 * 86400 + 1)
    late = await token(
        admin, demo, grant_type="refresh_token", refresh_token=second.json()["refresh_token"]
    )
    assert late.status_code == 400 and late.json()["error"] == "invalid_grant"


async def test_bad_client_credentials_are_invalid_client(
    admin: httpx.AsyncClient, demo: Seeded
) -> None:
    r = await admin.post(
        "/oauth-v1/token",
        data={"grant_type": "refresh_token", "refresh_token": "x"},
        headers=basic(demo.client.client_id, "wrong"),
    )
    assert r.status_code == 401
    assert r.json() == {
        "error": "invalid_client",
        "error_description": "The client credentials are invalid",
    }
    missing = await admin.post("/oauth-v1/token", data={"grant_type": "client_credentials"})
    assert missing.status_code == 401


async def test_client_credentials_need_tenant_and_service_consent(
    admin: httpx.AsyncClient, demo: Seeded, state: SandboxState
) -> None:
    ok = await admin.post(
        "/oauth-v1/token",
        data={"grant_type": "client_credentials"},
        headers={
            **basic(demo.client.client_id, demo.client.client_secret),
            "TenantId": str(demo.tenant.id),
        },
    )
    assert ok.status_code == 200
    assert "refresh_token" not in ok.json()
    no_tenant = await token(admin, demo, grant_type="client_credentials")
    assert no_tenant.status_code == 400 and no_tenant.json()["error"] == "invalid_request"
    # a user (non-service) consent does not allow client credentials
    await authorize(admin, demo)  # replaces the seeded service consent with a user consent
    user_only = await admin.post(
        "/oauth-v1/token",
        data={"grant_type": "client_credentials"},
        headers={
            **basic(demo.client.client_id, demo.client.client_secret),
            "TenantId": str(demo.tenant.id),
        },
    )
    assert user_only.status_code == 400 and user_only.json()["error"] == "invalid_grant"
    _, query = await authorize(admin, demo, account_type="service")
    assert "code" in query
    again = await admin.post(
        "/oauth-v1/token",
        data={"grant_type": "client_credentials"},
        headers={
            **basic(demo.client.client_id, demo.client.client_secret),
            "TenantId": str(demo.tenant.id),
        },
    )
    assert again.status_code == 200
    assert state.consents[(demo.client.client_id, demo.tenant.id)].service


async def test_expired_token_answers_exact_unauthorized_body(
    api: httpx.AsyncClient, state: SandboxState
) -> None:
    assert (await api.get("/3/customers")).status_code == 200
    state.clock.advance(3600)
    r = await api.get("/3/customers")
    assert r.status_code == 401
    assert r.content == b'{"message":"unauthorized"}'
    assert r.headers["content-length"] == "26"


async def test_garbage_and_missing_bearer_are_unauthorized(admin: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer a.b.c"}, {"Access-Token": "legacy"}):
        r = await admin.get("/3/articles", headers=headers)
        assert r.status_code == 401
        assert r.json() == {"message": "unauthorized"}


async def test_revoke_kills_the_grant(admin: httpx.AsyncClient, demo: Seeded) -> None:
    _, query = await authorize(admin, demo)
    tokens = (
        await token(
            admin,
            demo,
            grant_type="authorization_code",
            code=query["code"][0],
            redirect_uri=REDIRECT,
        )
    ).json()
    r = await admin.post(
        "/oauth-v1/revoke",
        data={"token_type_hint": "refresh_token", "token": tokens["refresh_token"]},
        headers=basic(demo.client.client_id, demo.client.client_secret),
    )
    assert r.json() == {"Revoked": True}
    refresh = await token(
        admin, demo, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert refresh.status_code == 400
    api = await admin.get(
        "/3/articles", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert api.status_code == 401


async def test_authorize_rejections(
    admin: httpx.AsyncClient, demo: Seeded, state: SandboxState
) -> None:
    _, denied = await authorize(admin, demo, deny="1")
    assert denied["error"] == ["access_denied"]
    _, bad_scope = await authorize(admin, demo, scope="article nosuchscope")
    assert bad_scope["error"] == ["invalid_scope"]
    status, _ = await authorize(admin, demo, redirect_uri="https://evil.example/cb")
    assert status == 400
    demo.client.service_accounts = False
    _, service = await authorize(admin, demo, account_type="service")
    assert service["error_description"] == ["Client does not allow service account"]
    unknown = await admin.get("/oauth-v1/auth", params={"client_id": "nobody"})
    assert unknown.status_code == 400
    assert json.loads(unknown.content)["error"] == "invalid_client"


async def test_missing_licence_is_2001101(api: httpx.AsyncClient, demo: Seeded) -> None:
    demo.tenant.licences.discard("bookkeeping")
    r = await api.get("/3/accounts")
    assert r.status_code == 403
    assert r.json()["ErrorInformation"]["code"] == 2001101
