"""Fixtures for the Fortnox sandbox tests: a seeded state, the app, and httpx clients on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from sandbox.fortnox.app import create_app
from sandbox.fortnox.seed import Seeded, mint_token, seed_demo
from sandbox.fortnox.state import SandboxState

BASE = "http://sandbox.test"


@pytest.fixture
def state() -> SandboxState:
    s = SandboxState()
    # most tests are not about the rate limit; test_ratelimit.py sets its own
    s.rate_limiter.configure(limit=100_000)
    return s


@pytest.fixture
def demo(state: SandboxState) -> Seeded:
    return seed_demo(state)


@pytest.fixture
def app(state: SandboxState, demo: Seeded) -> FastAPI:
    return create_app(state)


def bearer(state: SandboxState, demo: Seeded) -> str:
    return str(mint_token(state, demo.tenant, demo.client)["access_token"])


@pytest.fixture
async def api(app: FastAPI, state: SandboxState, demo: Seeded) -> AsyncIterator[httpx.AsyncClient]:
    """An API client for the demo tenant with a valid bearer token."""
    headers = {"Authorization": f"Bearer {bearer(state, demo)}", "Accept": "application/json"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE, headers=headers) as client:
        yield client


@pytest.fixture
async def admin(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client for ``/_sandbox`` (and for calls that bring their own auth)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield client


def error_info(response: httpx.Response) -> tuple[int, str]:
    """(code, message) of an ErrorInformation body, whatever its casing."""
    inner = response.json()["ErrorInformation"]
    lowered = {k.lower(): v for k, v in inner.items()}
    return int(lowered["code"]), str(lowered["message"])


def reauth(client: httpx.AsyncClient, state: SandboxState, demo: Seeded) -> None:
    """A fresh token on ``client`` (after a test moved the business clock far ahead)."""
    client.headers["Authorization"] = f"Bearer {bearer(state, demo)}"
