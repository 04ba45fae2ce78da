"""The Fortnox HTTP client for one tenant: rate limit, auth, retries and error mapping.

Layering (outermost first)::

    FortnoxClient.request       retries, backoff, UnknownOutcome, typed errors, metrics
      httpx.AsyncClient         FortnoxAuth flow: bearer token, refresh + resend once on 401
        LimitedTransport        waits for the (client id, tenant) sliding window; the request
                                holds its slot until its answer, then for the window after it
          inner transport       real HTTP, or httpx.ASGITransport for the sandbox

The limiter sits in the transport so that every request that goes on the wire is counted, the
resend after a 401 included, from the moment it is sent until a window after its answer: Fortnox
counts it on arrival, somewhere in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Self

import httpx

from engine.fortnox.auth import FortnoxAuth, TokenManager
from engine.fortnox.errors import (
    FortnoxError,
    LoginExpired,
    RateLimited,
    ServerError,
    Stopping,
    TransportFailure,
    UnexpectedResponse,
    UnknownOutcome,
    classify,
    parse_error_body,
)
from engine.fortnox.limiter import LimiterRegistry, SlidingWindowLimiter
from engine.fortnox.observability import FortnoxMetrics, NullMetrics, log, resource_of
from engine.fortnox.retry import (
    NEVER_SENT,
    RetryPolicy,
    is_absolute_stock_write,
    is_idempotent,
)

API_BASE_URL = "https://api.fortnox.se"

Params = Mapping[str, str | int | float | None]


#: A wait of the client's that :meth:`Waits.stop` cuts short (what it waits for, by name).
Waiting = Callable[[str], contextlib.AbstractAsyncContextManager[None]]


class Waits:
    """The waits of one client's requests that a stopping engine cuts short: the rate limiter's
    before a request is sent, a retry's backoff before it is sent again.

    Once :meth:`stop` is called, a wait in progress ends at once, and so does any later one
    that would have to wait (a request the limiter lets go at once is still sent): either
    raises :class:`~engine.fortnox.errors.Stopping`. A request on the wire is not touched: its
    answer is left to come (the session bounds how long it waits for it).
    """

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.stopping = False
        self._open: set[asyncio.Timeout] = set()

    @contextlib.asynccontextmanager
    async def waiting(self, what: str) -> AsyncIterator[None]:
        cut: asyncio.Timeout | None = None
        try:
            # Stopping already: the block may still finish without waiting, never with a wait.
            async with asyncio.timeout(0.0 if self.stopping else None) as cut:
                self._open.add(cut)
                try:
                    yield
                finally:
                    self._open.discard(cut)
        except TimeoutError:
            if cut is None or not cut.expired() or not self.stopping:
                raise
            log.info("fortnox.wait.cut", tenant=self.tenant, waiting=what)
            raise Stopping(self.tenant, what) from None

    def stop(self) -> None:
        """The engine is stopping: no request waits any longer (see the class)."""
        self.stopping = True
        now = asyncio.get_running_loop().time()
        for cut in list(self._open):
            cut.reschedule(now)


class LimitedTransport(httpx.AsyncBaseTransport):
    """Waits for the rate limiter, then sends. Does not close a transport it does not own.
    ``waiting`` (the client's :meth:`Waits.waiting`) lets a stopping engine cut the wait short:
    the request is then not sent."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        limiter: SlidingWindowLimiter,
        *,
        on_wait: Callable[[float], None] | None = None,
        owns_inner: bool = True,
        waiting: Waiting | None = None,
    ) -> None:
        self.inner = inner
        self.limiter = limiter
        self._on_wait = on_wait
        self._owns_inner = owns_inner
        self._waiting = waiting

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._waiting is None:
            slot = await self.limiter.acquire_slot()
        else:
            async with self._waiting("rate_limiter"):
                slot = await self.limiter.acquire_slot()
        try:
            if self._on_wait is not None:
                self._on_wait(slot.waited)
            return await self.inner.handle_async_request(request)
        finally:
            # Fortnox received it by now at the latest: counted from here on.
            self.limiter.answered(slot)

    async def aclose(self) -> None:
        if self._owns_inner:
            await self.inner.aclose()


class FortnoxClient:
    """Async client for one tenant's Fortnox company.

    Share one :class:`LimiterRegistry` (and optionally one inner transport) between all
    clients of a process so that two client objects for the same tenant share a window.
    """

    def __init__(
        self,
        tenant: str,
        tokens: TokenManager,
        *,
        base_url: str = API_BASE_URL,
        transport: httpx.AsyncBaseTransport | None = None,
        owns_transport: bool | None = None,
        limiters: LimiterRegistry | None = None,
        limiter: SlidingWindowLimiter | None = None,
        rate_window: float | None = None,
        retry: RetryPolicy | None = None,
        metrics: FortnoxMetrics | None = None,
        timeout: float | httpx.Timeout = httpx.Timeout(30.0, connect=10.0),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.tenant = tenant
        self.tokens = tokens
        self.base_url = base_url.rstrip("/")
        self.metrics: FortnoxMetrics = metrics or NullMetrics()
        self.retry = retry or RetryPolicy()
        self.limiter = limiter or (limiters or _DEFAULT_LIMITERS).get(
            tokens.client_id, tenant, rate_window
        )
        self._sleep = sleep
        #: The waits a stopping engine cuts short (:meth:`stop_waiting`).
        self.waits = Waits(tenant)
        inner = transport or httpx.AsyncHTTPTransport(retries=0)
        limited = LimitedTransport(
            inner,
            self.limiter,
            on_wait=self._limiter_waited,
            owns_inner=(transport is None) if owns_transport is None else owns_transport,
            waiting=self.waits.waiting,
        )
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            transport=limited,
            auth=FortnoxAuth(tenant, tokens),
            headers={"Accept": "application/json"},
            timeout=timeout,
        )

    def __repr__(self) -> str:
        return f"FortnoxClient(tenant={self.tenant!r}, base_url={self.base_url!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def stop_waiting(self) -> None:
        """The engine is stopping: a request waiting for the rate limiter or for its retry's
        backoff (after a 429, say) gives up at once with
        :class:`~engine.fortnox.errors.Stopping` instead of being sent (again); so does any later
        one that would have to wait. Requests on the wire get their answers."""
        self.waits.stop()

    def _limiter_waited(self, seconds: float) -> None:
        self.metrics.limiter_waited(tenant=self.tenant, seconds=seconds)
        if seconds > 0.5:
            log.debug("fortnox.limiter.waited", tenant=self.tenant, seconds=round(seconds, 3))

    # --- the request pipeline ---------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json: Any = None,
        idempotent: bool | None = None,
        context: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | None = None,
        repeat: bool | None = None,
    ) -> httpx.Response:
        """Send one logical request; retry where safe; raise a typed error otherwise.

        ``idempotent`` overrides the default (GET/PUT/DELETE yes, POST no). ``context`` fills
        the shop-facing error text (series, date, account ...). ``repeat=False`` sends the
        request exactly once (the default for absolute stock writes): any failure is raised at
        once, as :class:`UnknownOutcome` when the request may have reached Fortnox.
        """
        method = method.upper()
        if repeat is None:
            repeat = not is_absolute_stock_write(method, path, json)
        idem = (is_idempotent(method, path) if idempotent is None else idempotent) and repeat
        query = {k: v for k, v in (params or {}).items() if v is not None}
        resource = resource_of(path)
        attempt = 0
        while True:
            attempt += 1
            started = time.monotonic()
            try:
                response = await self._http.request(
                    method, path, params=query, json=json, headers=headers
                )
            except NEVER_SENT as exc:
                self._finished(method, resource, type(exc).__name__, started)
                await self._retry_or_raise(
                    attempt,
                    repeat=repeat,
                    reason="connect",
                    error=TransportFailure(
                        f"could not connect to Fortnox ({type(exc).__name__})",
                        tenant=self.tenant,
                        method=method,
                        path=path,
                    ),
                )
                continue
            except httpx.TransportError as exc:
                self._finished(method, resource, type(exc).__name__, started)
                if not idem:
                    raise self._unknown_outcome(method, path, query, json, exc, context) from exc
                reason = "timeout" if isinstance(exc, httpx.TimeoutException) else "transport"
                await self._retry_or_raise(
                    attempt,
                    reason=reason,
                    error=TransportFailure(
                        f"Fortnox request failed ({type(exc).__name__})",
                        tenant=self.tenant,
                        method=method,
                        path=path,
                    ),
                )
                continue
            status = response.status_code
            self._finished(method, resource, str(status), started)
            if status < 400:
                return response
            info = parse_error_body(status, response.content)
            if status == 429:
                pause = self.retry.rate_limit_pause or self.limiter.period
                self.limiter.penalize(pause)
                log.warning(
                    "fortnox.rate_limited",
                    tenant=self.tenant,
                    method=method,
                    resource=resource,
                    attempt=attempt,
                    pause=pause,
                )
                await self._retry_or_raise(
                    attempt,
                    repeat=repeat,
                    reason="429",
                    rate_limited=True,
                    error=RateLimited(
                        "Fortnox kept answering 429 (rate limited)",
                        tenant=self.tenant,
                        info=info,
                        method=method,
                        path=path,
                    ),
                )
                continue
            if status >= 500:
                if not idem:
                    raise self._unknown_outcome(
                        method, path, query, json, f"HTTP {status}", context
                    )
                await self._retry_or_raise(
                    attempt,
                    reason="5xx",
                    error=ServerError(
                        info.message or f"Fortnox server error {status}",
                        tenant=self.tenant,
                        info=info,
                        method=method,
                        path=path,
                    ),
                )
                continue
            if status == 401:
                raise LoginExpired(
                    "Fortnox rejected the access token even after a refresh",
                    tenant=self.tenant,
                    info=info,
                    method=method,
                    path=path,
                )
            error = classify(info, tenant=self.tenant, method=method, path=path, context=context)
            log.info(
                "fortnox.rejected",
                tenant=self.tenant,
                method=method,
                resource=resource,
                status=status,
                code=info.code,
                error=type(error).__name__,
            )
            raise error

    def _finished(self, method: str, resource: str, status: str, started: float) -> None:
        self.metrics.request_finished(
            tenant=self.tenant,
            method=method,
            resource=resource,
            status=status,
            seconds=time.monotonic() - started,
        )

    async def _retry_or_raise(
        self,
        attempt: int,
        *,
        reason: str,
        error: FortnoxError,
        rate_limited: bool = False,
        repeat: bool = True,
    ) -> None:
        if not repeat:
            # Fortnox provably did not apply it (never sent, or refused with 429): the caller
            # reads again before it writes anything.
            log.warning(
                "fortnox.not_repeated",
                tenant=self.tenant,
                reason=reason,
                method=error.method,
                resource=resource_of(error.path or ""),
                error=type(error).__name__,
            )
            raise error
        if not self.retry.allows(attempt, rate_limited=rate_limited):
            log.warning(
                "fortnox.retry.gave_up",
                tenant=self.tenant,
                reason=reason,
                attempts=attempt,
                error=type(error).__name__,
            )
            raise error
        delay = self.retry.backoff(attempt, rate_limited=rate_limited)
        self.metrics.retried(tenant=self.tenant, reason=reason)
        log.info(
            "fortnox.retry",
            tenant=self.tenant,
            reason=reason,
            attempt=attempt,
            backoff=round(delay, 3),
            method=error.method,
            resource=resource_of(error.path or ""),
        )
        async with self.waits.waiting(f"retry after {reason}"):
            await self._sleep(delay)

    def _unknown_outcome(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any],
        payload: Any,
        cause: Exception | str,
        context: Mapping[str, object] | None,
    ) -> UnknownOutcome:
        cause_text = cause if isinstance(cause, str) else type(cause).__name__
        log.warning(
            "fortnox.unknown_outcome",
            tenant=self.tenant,
            method=method,
            resource=resource_of(path),
            cause=cause_text,
            action="caller_must_look_before_retrying",
        )
        self.metrics.retried(tenant=self.tenant, reason="unknown_outcome")
        return UnknownOutcome(
            f"{method} {path} may or may not have taken effect at Fortnox ({cause_text}); "
            "look it up before trying again",
            tenant=self.tenant,
            method=method,
            path=path,
            params=params,
            payload=payload,
            cause=cause_text,
            details={"detail": f"no answer to {method} {resource_of(path)}", **(context or {})},
        )

    # --- conveniences -----------------------------------------------------------------------

    async def get_json(
        self,
        path: str,
        params: Params | None = None,
        *,
        context: Mapping[str, object] | None = None,
    ) -> dict[str, Any]:
        response = await self.request("GET", path, params=params, context=context)
        return self._json(response, path)

    async def get_json_dated(
        self, path: str, params: Params | None = None
    ) -> tuple[dict[str, Any], datetime | None]:
        """``get_json``, with Fortnox's own clock at the answer (its ``Date`` header)."""
        response = await self.request("GET", path, params=params)
        return self._json(response, path), server_time(response)

    async def send_json(
        self,
        method: str,
        path: str,
        body: Any,
        *,
        params: Params | None = None,
        idempotent: bool | None = None,
        context: Mapping[str, object] | None = None,
        repeat: bool | None = None,
    ) -> dict[str, Any]:
        response = await self.request(
            method,
            path,
            params=params,
            json=body,
            idempotent=idempotent,
            context=context,
            repeat=repeat,
        )
        if not response.content:
            return {}
        return self._json(response, path)

    async def delete(self, path: str, params: Params | None = None) -> None:
        await self.request("DELETE", path, params=params)

    async def get_bytes(self, path: str, params: Params | None = None) -> bytes:
        response = await self.request("GET", path, params=params, headers={"Accept": "*/*"})
        return response.content

    def _json(self, response: httpx.Response, path: str) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            raise UnexpectedResponse(
                f"Fortnox answered {response.status_code} with a body that is not JSON",
                tenant=self.tenant,
                path=path,
            ) from None
        if not isinstance(data, dict):
            raise UnexpectedResponse(
                "Fortnox answered with JSON that is not an object", tenant=self.tenant, path=path
            )
        return data


def server_time(response: httpx.Response) -> datetime | None:
    """The server's clock when it answered (the HTTP ``Date`` header, aware UTC), or None.

    Of several ``Date`` headers the last is taken: a server in front of the application may put
    its own first."""
    values = response.headers.get_list("date")
    if not values:
        return None
    try:
        moment = parsedate_to_datetime(values[-1])
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


_DEFAULT_LIMITERS = LimiterRegistry()
