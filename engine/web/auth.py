"""The admin token, signed sessions, CSRF tokens and the throttle on wrong tokens.

Every dashboard page and ops API route needs the admin token (``KASSASYNC_ADMIN_TOKEN``): a
script sends it as ``Authorization: Bearer <token>``; a person enters it once on ``/login`` and
gets a session cookie (``HttpOnly; SameSite=Strict``, and ``Secure`` unless the operator turned
that off with ``KASSASYNC_COOKIE_SECURE``) that holds a signed expiry and a random nonce, never
the token. The signing key is derived from the token, so changing the token ends every session.
Forms carry a CSRF token bound to the session; POSTs with a cookie must bring it, come from the
same origin, and are refused when the browser says they are cross-site.

Wrong tokens, on ``/login`` or as a bearer token on any page or ops API route, are counted per
client address (:class:`TokenThrottle`): after ``limit`` of them that address is refused with
429 and ``Retry-After`` for a lockout that doubles with each further lockout. Other addresses,
and sessions that already hold a valid cookie, are not affected.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import math
import os
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

import structlog
from starlette.requests import Request

log = structlog.get_logger("kassasync.web")

ADMIN_TOKEN_ENV = "KASSASYNC_ADMIN_TOKEN"
COOKIE_SECURE_ENV = "KASSASYNC_COOKIE_SECURE"
COOKIE_NAME = "kassasync_session"
SESSION_SECONDS = 12 * 3600
MIN_TOKEN_LENGTH = 16


class AdminTokenTooShort(ValueError):
    pass


class CookieSecure(StrEnum):
    """When the session cookie carries ``Secure`` (``KASSASYNC_COOKIE_SECURE``)."""

    #: Always (the default): the dashboard is served over HTTPS, or on localhost.
    ALWAYS = "always"
    #: Never: the operator serves the dashboard over plain HTTP on a LAN address, where a
    #: browser refuses to store a ``Secure`` cookie.
    NEVER = "never"
    #: When the request came over HTTPS (directly, or as ``X-Forwarded-Proto`` from a proxy on
    #: an address uvicorn trusts, by default 127.0.0.1 and ::1).
    AUTO = "auto"


_COOKIE_SECURE_WORDS = {
    "": CookieSecure.ALWAYS,
    "1": CookieSecure.ALWAYS,
    "true": CookieSecure.ALWAYS,
    "yes": CookieSecure.ALWAYS,
    "always": CookieSecure.ALWAYS,
    "0": CookieSecure.NEVER,
    "false": CookieSecure.NEVER,
    "no": CookieSecure.NEVER,
    "never": CookieSecure.NEVER,
    "auto": CookieSecure.AUTO,
}


def resolve_cookie_secure(given: str | None = None) -> CookieSecure:
    """``given``, else ``KASSASYNC_COOKIE_SECURE``: 1 (default), 0 or auto."""
    text = (os.environ.get(COOKIE_SECURE_ENV, "") if given is None else given).strip().lower()
    found = _COOKIE_SECURE_WORDS.get(text)
    if found is None:
        raise ValueError(f"{COOKIE_SECURE_ENV} must be 1, 0 or auto, not {text!r}")
    return found


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


class Throttled(Exception):
    """Too many wrong tokens from this client address: 429 with ``Retry-After``."""

    def __init__(self, *, api: bool, retry_after: float) -> None:
        super().__init__("too many wrong admin tokens from this address")
        self.api = api
        #: Whole seconds until this address may try again (at least 1).
        self.retry_after = max(1, math.ceil(retry_after))


class AdminAuth:
    def __init__(
        self,
        token: str,
        *,
        session_seconds: float = SESSION_SECONDS,
        clock: Callable[[], float] = time.time,
        throttle: TokenThrottle | None = None,
        cookie_secure: CookieSecure | None = None,
    ) -> None:
        if len(token) < MIN_TOKEN_LENGTH:
            raise AdminTokenTooShort(
                f"{ADMIN_TOKEN_ENV} must be at least {MIN_TOKEN_LENGTH} characters"
            )
        self._token = token.encode()
        self._key = hmac.new(self._token, b"kassasync dashboard session v1", "sha256").digest()
        self.session_seconds = session_seconds
        self.clock = clock
        #: Wrong tokens per client address (``/login`` and bearer tokens alike).
        self.throttle = throttle or TokenThrottle()
        self.cookie_secure = cookie_secure or resolve_cookie_secure()

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

    def authenticate(self, request: Request, *, api: bool) -> Session | None:
        """The bearer token or the session cookie; None when neither is valid.

        A request that brings an ``Authorization`` header is a guess at the token: from an
        address that guessed wrong too often it raises :class:`Throttled` (unchecked), and a
        wrong one counts against its address. A valid session cookie is never throttled.
        """
        presented = request.headers.get("authorization")
        if presented:
            address = client_address(request)
            wait = self.throttle.retry_after(address)
            if wait > 0:
                log.warning("web.token.throttled", client=address, retry_after=round(wait, 1))
                raise Throttled(api=api, retry_after=wait)
            if self.bearer(presented):
                return Session("bearer")
            locked = self.throttle.failed(address)
            log.warning("web.token.wrong", client=address, path=request.url.path, locked=locked)
        return self.read_cookie(request.cookies.get(COOKIE_NAME))

    def require(self, request: Request) -> Session:
        """The request's session, or :class:`NeedLogin` (JSON for ``/ops/api/``, a login link
        for pages)."""
        api = request.url.path.startswith("/ops/api/")
        found = self.authenticate(request, api=api)
        if found is None:
            raise NeedLogin(api=api, path=request.url.path)
        return found

    def login(self, request: Request, given: str) -> bool:
        """Whether ``given`` (from the login form) is the token, throttled per address like
        :meth:`authenticate` (:class:`Throttled` while the address is locked out)."""
        address = client_address(request)
        wait = self.throttle.retry_after(address)
        if wait > 0:
            log.warning("web.login.throttled", client=address, retry_after=round(wait, 1))
            raise Throttled(api=False, retry_after=wait)
        if self.token_matches(given):
            log.info("web.login.ok", client=address)
            return True
        locked = self.throttle.failed(address)
        log.warning("web.login.failed", client=address, locked=locked)
        return False

    def secure_cookie(self, request: Request) -> bool:
        if self.cookie_secure is CookieSecure.AUTO:
            return request.url.scheme == "https"
        return self.cookie_secure is CookieSecure.ALWAYS

    def cookie_header(self, value: str, request: Request, *, max_age: float | None = None) -> str:
        age = int(self.session_seconds if max_age is None else max_age)
        secure = "; Secure" if self.secure_cookie(request) else ""
        return f"{COOKIE_NAME}={value}; Path=/; Max-Age={age}{secure}; HttpOnly; SameSite=Strict"

    def clear_cookie_header(self, request: Request) -> str:
        return self.cookie_header("", request, max_age=0)

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


def client_address(request: Request) -> str:
    """The address a client is throttled by: its IP address (as uvicorn reports it, which
    honours ``X-Forwarded-For`` only from a trusted proxy), IPv6 addresses by their /64, since
    one host usually holds a whole /64."""
    host = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


@dataclass(slots=True)
class _Record:
    failures: deque[float] = field(default_factory=deque)
    #: Lockouts so far: the next one lasts ``lockout * 2**strikes`` (capped).
    strikes: int = 0
    blocked_until: float = 0.0
    last_failure: float = 0.0


class TokenThrottle:
    """Wrong admin tokens per client address, with a lockout that backs off.

    ``limit`` wrong tokens within ``window`` seconds lock the address out for ``lockout``
    seconds; each further lockout of the same address doubles, up to ``max_lockout``. An
    address's record is forgotten after ``forget_after`` seconds without a wrong token. The
    right token clears nothing: an address shared by a script that knows the token and a
    guesser (a NAT) must not reset the guesser's count. At most ``max_addresses`` addresses
    are remembered (the ones not heard from longest are dropped first), so the memory it takes
    is bounded.
    """

    def __init__(
        self,
        limit: int = 10,
        window: float = 60.0,
        *,
        lockout: float = 60.0,
        max_lockout: float = 3600.0,
        forget_after: float = 6 * 3600.0,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.lockout = lockout
        self.max_lockout = max_lockout
        self.forget_after = forget_after
        self.max_addresses = max_addresses
        self.clock = clock
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def _record(self, address: str, now: float) -> _Record | None:
        record = self._records.get(address)
        if record is None:
            return None
        if now >= record.blocked_until and now - record.last_failure >= self.forget_after:
            del self._records[address]
            return None
        while record.failures and record.failures[0] <= now - self.window:
            record.failures.popleft()
        return record

    def retry_after(self, address: str) -> float:
        """Seconds until ``address`` may try a token again (0: it may now)."""
        now = self.clock()
        record = self._record(address, now)
        return 0.0 if record is None else max(0.0, record.blocked_until - now)

    def failed(self, address: str) -> float:
        """Count a wrong token; returns the lockout it started in seconds (0: none)."""
        now = self.clock()
        record = self._record(address, now)
        if record is None:
            record = self._records[address] = _Record()
            while len(self._records) > self.max_addresses:
                self._records.popitem(last=False)
        self._records.move_to_end(address)
        record.failures.append(now)
        record.last_failure = now
        if len(record.failures) < self.limit:
            return 0.0
        seconds = min(self.max_lockout, self.lockout * 2**record.strikes)
        record.strikes += 1
        record.blocked_until = now + seconds
        record.failures.clear()
        return seconds

    def __len__(self) -> int:
        return len(self._records)
