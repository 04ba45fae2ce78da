"""The admin token, signed sessions, CSRF tokens and the login throttle.

Every dashboard page and ops API route needs the admin token (``KASSASYNC_ADMIN_TOKEN``): a
script sends it as ``Authorization: Bearer <token>``; a person enters it once on ``/login`` and
gets a session cookie (``Secure; HttpOnly; SameSite=Strict``) that holds a signed expiry and a
random nonce, never the token. The signing key is derived from the token, so changing the token
ends every session. Forms carry a CSRF token bound to the session; POSTs with a cookie must
bring it, come from the same origin, and are refused when the browser says they are cross-site.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from starlette.requests import Request

ADMIN_TOKEN_ENV = "KASSASYNC_ADMIN_TOKEN"
COOKIE_NAME = "kassasync_session"
SESSION_SECONDS = 12 * 3600
MIN_TOKEN_LENGTH = 16


class AdminTokenTooShort(ValueError):
    pass


def resolve_admin_token(given: str | None = None) -> tuple[str, bool]:
    """The admin token to use and whether it was generated (no token given, env var unset)."""
    token = (given or os.environ.get(ADMIN_TOKEN_ENV, "")).strip()
    if token:
        return token, False
    return secrets.token_urlsafe(32), True


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class Session:
    """Who is asking: a person with a session cookie, or a script with the bearer token."""

    via: Literal["cookie", "bearer"]
    nonce: str = ""
    expires: float = 0.0


class NeedLogin(Exception):
    """No valid token or session: 401 (JSON for the API, a login link for pages)."""

    def __init__(self, *, api: bool, path: str = "/") -> None:
        super().__init__("authentication required")
        self.api = api
        self.path = path


class Forbidden(Exception):
    """A POST that may be cross-site (origin, fetch metadata or CSRF token wrong): 403."""


class AdminAuth:
    def __init__(
        self,
        token: str,
        *,
        session_seconds: float = SESSION_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(token) < MIN_TOKEN_LENGTH:
            raise AdminTokenTooShort(
                f"{ADMIN_TOKEN_ENV} must be at least {MIN_TOKEN_LENGTH} characters"
            )
        self._token = token.encode()
        self._key = hmac.new(self._token, b"kassasync dashboard session v1", "sha256").digest()
        self.session_seconds = session_seconds
        self.clock = clock

    # -- the token ---------------------------------------------------------------------------

    def token_matches(self, given: str) -> bool:
        return hmac.compare_digest(
            hashlib.sha256(given.encode()).digest(), hashlib.sha256(self._token).digest()
        )

    def bearer(self, authorization: str | None) -> bool:
        if not authorization:
            return False
        scheme, _, value = authorization.partition(" ")
        return scheme.lower() == "bearer" and self.token_matches(value.strip())

    # -- sessions ----------------------------------------------------------------------------

    def _sign(self, payload: bytes) -> str:
        return _b64(hmac.new(self._key, payload, "sha256").digest())

    def new_session(self) -> tuple[Session, str]:
        """A new session and its cookie value."""
        session = Session(
            "cookie", secrets.token_urlsafe(18), round(self.clock() + self.session_seconds)
        )
        payload = json.dumps({"n": session.nonce, "exp": session.expires}).encode()
        return session, f"v1.{_b64(payload)}.{self._sign(payload)}"

    def read_cookie(self, value: str | None) -> Session | None:
        if not value:
            return None
        parts = value.split(".")
        if len(parts) != 3 or parts[0] != "v1":
            return None
        try:
            payload = _unb64(parts[1])
        except ValueError:
            return None
        if not hmac.compare_digest(self._sign(payload), parts[2]):
            return None
        try:
            data = json.loads(payload)
            nonce, expires = str(data["n"]), float(data["exp"])
        except (ValueError, KeyError, TypeError):
            return None
        if expires <= self.clock():
            return None
        return Session("cookie", nonce, expires)

    def authenticate(self, request: Request) -> Session | None:
        if self.bearer(request.headers.get("authorization")):
            return Session("bearer")
        return self.read_cookie(request.cookies.get(COOKIE_NAME))

    def cookie_header(self, value: str, *, max_age: float | None = None) -> str:
        age = int(self.session_seconds if max_age is None else max_age)
        return f"{COOKIE_NAME}={value}; Path=/; Max-Age={age}; Secure; HttpOnly; SameSite=Strict"

    def clear_cookie_header(self) -> str:
        return self.cookie_header("", max_age=0)

    # -- CSRF --------------------------------------------------------------------------------

    def csrf_token(self, session: Session) -> str:
        if session.via != "cookie":
            return ""
        return self._sign(b"csrf:" + session.nonce.encode())

    def check_post(self, request: Request, session: Session, form: Mapping[str, str]) -> None:
        """Refuse a state-changing POST that may not come from our own page."""
        if session.via == "bearer":
            return  # a browser never adds our Authorization header on its own
        check_same_origin(request)
        expected = self.csrf_token(session)
        if not hmac.compare_digest(expected, form.get("csrf", "")):
            raise Forbidden("the form is stale or came from another site: reload and try again")


def check_same_origin(request: Request) -> None:
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise Forbidden("cross-site request refused")
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        expected = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if origin != expected:
            raise Forbidden("cross-origin request refused")
    elif origin == "null":
        raise Forbidden("request from an opaque origin refused")


class LoginThrottle:
    """At most ``limit`` failed logins per ``window`` seconds (then 429 until the oldest ages)."""

    def __init__(
        self, limit: int = 10, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._failures: deque[float] = deque()

    def _trim(self) -> None:
        now = self.clock()
        while self._failures and self._failures[0] <= now - self.window:
            self._failures.popleft()

    def blocked(self) -> bool:
        self._trim()
        return len(self._failures) >= self.limit

    def failed(self) -> None:
        self._failures.append(self.clock())
        self._trim()
