"""The engine's HTTP door, from outside: a real engine serving on a loopback socket, driven
by raw sockets (as a hostile client would) and httpx clients bound to other loopback source
addresses (127.0.0.2, 127.0.0.3, ... are other clients to the engine).

- bodies are capped while they are read, on every route, and the rest is never read;
- slow headers and slow bodies are cut off after the documented timeouts;
- wrong admin tokens are throttled per client address, with a lockout that backs off;
- the session cookie is ``Secure`` unless the operator says otherwise, and then every page
  works over plain HTTP on a LAN address.
"""

from __future__ import annotations

import contextlib
import re
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h11
import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send
from structlog.testing import capture_logs

from engine.embedded.runtime import EmbeddedEngine
from engine.executors.fortnox import SessionTiming
from engine.secrets import SecretBox, generate_key
from engine.web.auth import COOKIE_NAME, CookieSecure, TokenThrottle, resolve_cookie_secure
from engine.web.door import DEFAULT_BODY_BYTES, BodyTooLarge, Door, DoorSettings
from tests.ops.world import (
    ADMIN_TOKEN,
    TENANT,
    Live,
    add_tenant,
    free_port,
    live_paused_engine,
    wait_for,
)
from tests.web.test_dashboard import api_routes, concrete

#: Short timeouts so that the slow-client tests take seconds.
FAST_DOOR = DoorSettings(header_timeout=1.0, body_timeout=1.5)
BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
MB = 1024 * 1024


def engine_at(data: Path, door: DoorSettings | None = FAST_DOOR) -> EmbeddedEngine:
    return EmbeddedEngine(
        data,
        SecretBox(generate_key()),
        http_port=free_port(),
        admin_token=ADMIN_TOKEN,
        timing=SessionTiming(poll_seconds=1, masterdata_seconds=30, idle_seconds=0.05),
        door=door,
    )


#: The ingest key of each running engine's tenant, by port (the engine's database belongs to
#: its own thread once it runs, so the key is kept from when the tenant was added).
INGEST_KEYS: dict[int, str] = {}


@contextlib.contextmanager
def live_engine(data: Path, door: DoorSettings | None = FAST_DOOR) -> Iterator[Live]:
    engine = engine_at(data, door)
    INGEST_KEYS[engine.http_port] = add_tenant(engine)
    with Live(engine) as live:
        yield live


def ingest_key(live: Live) -> str:
    return INGEST_KEYS[live.engine.http_port]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_engine(tmp_path_factory.mktemp("door")) as running:
        yield running


# --- a raw HTTP/1.1 client --------------------------------------------------------------------


class Raw:
    """One TCP connection to the engine, spoken to byte by byte (h11 parses the answers)."""

    def __init__(self, live: Live, source: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.port = live.engine.http_port
        self.sock = socket.create_connection(
            ("127.0.0.1", self.port), timeout=timeout, source_address=(source, 0)
        )
        self.conn = h11.Connection(h11.CLIENT)

    def close(self) -> None:
        self.sock.close()

    def head(self, method: str, target: str, headers: dict[str, str]) -> None:
        """The request line and headers (the body, if any, follows with :meth:`push`)."""
        lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        data = ("\r\n".join(lines) + "\r\n\r\n").encode()
        self.sock.sendall(data)
        self.conn.send(
            h11.Request(
                method=method,
                target=target,
                headers=[("Host", f"127.0.0.1:{self.port}"), *headers.items()],
            )
        )

    def push(self, total: int, chunk: int = 64 * 1024, chunked: bool = False) -> int:
        """Send up to ``total`` body bytes; stops when the engine closes. Returns bytes sent."""
        piece = b"x" * chunk
        framed = f"{chunk:x}\r\n".encode() + piece + b"\r\n" if chunked else piece
        sent = 0
        try:
            while sent < total:
                self.sock.sendall(framed)
                sent += chunk
        except OSError:  # EPIPE / ECONNRESET: the engine closed the connection
            pass
        return sent

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        """The next answer: status, headers (lower-case names), body."""
        status, headers, body = 0, {}, bytearray()
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = self.sock.recv(65536)
                except ConnectionResetError:
                    data = b""
                self.conn.receive_data(data)
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                headers = {k.decode().lower(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return status, headers, bytes(body)

    def closed_within(self, seconds: float) -> float | None:
        """Seconds until the engine closed the connection (None: still open after
        ``seconds``). Whatever it sends before closing is read and dropped."""
        start = time.monotonic()
        self.sock.settimeout(0.05)
        while (elapsed := time.monotonic() - start) < seconds:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                return elapsed
            if not data:
                return elapsed
            self.received = getattr(self, "received", b"") + data
        return None


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def door_events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


# --- bodies are capped while they are read ------------------------------------------------------


def test_a_100_mb_login_body_is_refused_before_it_is_read(live: Live) -> None:
    """An unauthenticated client declares and sends 100 MB to /login: 413 straight after the
    headers, the connection closed, not one body byte read by the engine."""
    rss_before = max_rss_mb()
    raw = Raw(live)
    with capture_logs() as logs:
        raw.head(
            "POST",
            "/login",
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "Content-Length": str(100 * MB),
            },
        )
        sent = raw.push(100 * MB)
        status, headers, body = raw.answer()
        closed = raw.closed_within(5)
    raw.close()
    assert status == 413 and headers["connection"] == "close"
    assert b"larger than 16384 bytes" in body
    assert closed is not None, "the engine kept the connection open"
    # What the client got into the socket before the engine closed it: kernel buffers, far
    # below the 100 MB it meant to send.
    assert sent < 40 * MB, f"the client sent {sent / MB:.1f} MB before the engine closed"
    [refused] = door_events(logs, "web.door.body_too_large")
    assert refused["read"] == 0 and refused["declared"] == 100 * MB and refused["cap"] == 16_384
    assert max_rss_mb() - rss_before < 50, "the body was read into memory"


async def test_a_route_that_ignores_the_refusal_reads_no_further() -> None:
    """A route that swallows the door's refusal and reads on gets nothing more from the
    connection: the door refuses every read past the cap, and closes after its answer."""
    reads = 0

    async def client() -> Message:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"x" * 10_000, "more_body": True}

    async def careless(scope: Scope, receive: Receive, send: Send) -> None:
        for _ in range(10):
            with contextlib.suppress(BodyTooLarge):
                await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    sent: list[Message] = []

    async def server(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "path": "/login", "headers": [(b"transfer-encoding", b"chunked")]}
    await Door(careless, DoorSettings())(scope, client, server)
    assert reads == 2  # 10 KB, then 20 KB: over the 16 KB cap, and not one read more
    assert (b"connection", b"close") in sent[0]["headers"]


async def test_every_app_that_mounts_the_dashboard_has_the_door(tmp_path: Path) -> None:
    """The Kafka deployment's ops service (``create_ops_app``) builds its app with
    :func:`engine.web.mount` as the embedded engine does: the door comes with it."""
    from fastapi import FastAPI

    from engine.metrics import EngineMetrics
    from engine.web import mount
    from engine.web.auth import AdminAuth

    engine = engine_at(tmp_path)
    app = FastAPI()
    mount(app, ops=engine.ops, auth=AdminAuth(ADMIN_TOKEN), metrics=EngineMetrics())
    reads = 0

    async def client() -> Message:
        nonlocal reads
        reads += 1
        # 13 MB in all, so that an app without the door ends (and fails) rather than hangs.
        return {"type": "http.request", "body": b"x" * 65536, "more_body": reads < 200}

    sent: list[Message] = []

    async def server(message: Message) -> None:
        sent.append(message)

    for path, declared in (("/login", str(100 * MB)), ("/ops/api/tenants/x/pause", None)):
        headers = [(b"content-length", declared.encode())] if declared else []
        headers += [(b"authorization", f"Bearer {ADMIN_TOKEN}".encode())]
        if declared is None:
            headers.append((b"transfer-encoding", b"chunked"))
        scope = {
            "type": "http",
            "method": "POST",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": headers,
            "client": ("127.0.0.1", 1),
            "server": ("ops", 80),
            "scheme": "http",
            "http_version": "1.1",
        }
        reads, sent = 0, []
        await app(scope, client, server)
        assert sent[0]["status"] == 413, path
        assert (b"connection", b"close") in sent[0]["headers"]
        assert reads == (0 if declared else 1), path
    engine.db.close()


def test_a_body_without_length_is_cut_off_at_the_cap(live: Live) -> None:
    """Chunked, no length: read until it passes 16 KB, then 413 and closed."""
    raw = Raw(live)
    with capture_logs() as logs:
        raw.head("POST", "/login", {"Transfer-Encoding": "chunked"})
        sent = raw.push(100 * MB, chunk=4096, chunked=True)
        status, headers, _ = raw.answer()
        closed = raw.closed_within(5)
    raw.close()
    assert status == 413 and headers["connection"] == "close" and closed is not None
    assert sent < 40 * MB
    [refused] = door_events(logs, "web.door.body_too_large")
    # At most the cap plus what arrived in one read of the socket.
    assert DEFAULT_BODY_BYTES < refused["read"] <= DEFAULT_BODY_BYTES + 300 * 1024
    assert refused["declared"] is None


def post_routes(live: Live) -> list[str]:
    """Every POST route of the engine, made concrete."""
    return [
        concrete(route.path)
        for route in api_routes(live.engine.app.routes)
        if "POST" in route.methods
    ]


def test_every_route_caps_its_body_while_reading(live: Live) -> None:
    """Every POST route, with the right token, sent a body without a length that goes on
    past the route's cap (16 KB on the dashboard and ops API, 1 MB on the ingest API): a route
    that reads its body gets 413 once the cap is passed; one that does not read it answers and
    the connection is closed. Either way no more than the cap and one network read is read."""
    routes = post_routes(live)
    assert {"/login", "/logout", f"/tenants/{TENANT}/resume", "/deadletters/x/retry"} <= set(routes)
    assert f"/v1/tenants/{TENANT}/events" in routes and len(routes) >= 10
    refused = 0
    unread_routes = set()
    for path in routes:
        ingest = path.startswith("/v1/")
        cap = 1_000_000 if ingest else DEFAULT_BODY_BYTES
        token = {"Authorization": f"Bearer {ingest_key(live)}"} if ingest else BEARER
        raw = Raw(live)
        with capture_logs() as logs:
            raw.head("POST", path, token | {"Transfer-Encoding": "chunked"})
            raw.push(4 * cap, chunk=4096, chunked=True)
            status, headers, _ = raw.answer()
            closed = raw.closed_within(5)
        raw.close()
        assert headers["connection"] == "close" and closed is not None, path
        if status == 413:
            [too_large] = door_events(logs, "web.door.body_too_large")
            assert cap < too_large["read"] <= cap + 300 * 1024, (path, too_large)
            refused += 1
        else:
            [unread] = door_events(logs, "web.door.unread_body")
            assert unread["read"] <= cap, (path, unread)
            unread_routes.add(path)
    # The ops API's retry and discard of a dead letter, its retry-now of a command, its
    # resolve-fixed and its re-run of a document take no body; every other route reads one.
    assert unread_routes == {
        "/ops/api/deadletters/x/retry",
        "/ops/api/deadletters/x/discard",
        "/ops/api/commands/x/retry",
        "/ops/api/deadletters/resolve-fixed",
        f"/ops/api/tenants/{TENANT}/documents/payment/x/rerun",
    }
    assert refused == len(routes) - len(unread_routes)


def test_an_answer_before_the_body_is_read_closes_the_connection(live: Live) -> None:
    """A route that answers without reading (no token: 401; a page GET) does not drain the
    body: the connection is closed after the answer."""
    for method, path, headers, expected in (
        ("POST", "/ops/api/tenants/bageriet/pause", {}, 401),
        ("GET", "/", BEARER, 200),
        ("GET", "/healthz", {}, 200),
    ):
        raw = Raw(live)
        raw.head(method, path, headers | {"Content-Length": str(100 * MB)})
        sent = raw.push(100 * MB)
        status, answer_headers, _ = raw.answer()
        closed = raw.closed_within(5)
        raw.close()
        assert status == expected, (path, status)
        assert answer_headers["connection"] == "close" and closed is not None, path
        assert sent < 40 * MB, (path, sent)


def test_small_bodies_and_keep_alive_still_work(live: Live) -> None:
    """The door changes nothing for ordinary clients: one kept-alive connection carries a
    wrong login, a page and an ingest batch."""
    with httpx.Client(base_url=live.url, timeout=10) as http:
        wrong = http.post("/login", data={"token": "not-the-token-at-all"})
        assert wrong.status_code == 401 and "connection" not in wrong.headers
        assert http.get("/system", headers=BEARER).status_code == 200
        answer = http.post(
            f"/v1/tenants/{TENANT}/events",
            content=b"{" + b" " * 900_000 + b"}",
            headers={"Authorization": f"Bearer {ingest_key(live)}"},
        )
        assert answer.status_code == 422  # read to its end (under 1 MB), then refused as JSON


# --- read timeouts ----------------------------------------------------------------------------


def test_slow_headers_are_cut_off(live: Live) -> None:
    """Headers trickling in a byte every 0.1 s (each byte would reset an idle timer) are cut
    off when the header timeout (1 s here, 10 s by default) has passed: 408, closed."""
    raw = Raw(live)
    with capture_logs() as logs:
        start = time.monotonic()
        raw.sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        with contextlib.suppress(OSError):
            for byte in b"X-Slow: " + b"a" * 200:
                raw.sock.send(bytes([byte]))
                time.sleep(0.1)
        closed_after = time.monotonic() - start
        raw.closed_within(2)
    raw.close()
    # Closed at the timeout (the slack is for a loaded machine), not after the 20 s it trickles.
    assert 0.9 <= closed_after <= 4.0, closed_after
    assert getattr(raw, "received", b"").startswith(b"HTTP/1.1 408 ")
    [late] = door_events(logs, "web.door.header_timeout")
    assert late["partial"] is True


def test_a_connection_that_sends_nothing_is_closed(live: Live) -> None:
    raw = Raw(live)
    closed = raw.closed_within(5)
    raw.close()
    assert closed is not None and 0.9 <= closed <= 4.0, closed
    assert getattr(raw, "received", b"") == b""  # nothing asked, nothing answered


def test_slow_headers_on_a_kept_alive_connection_are_cut_off(live: Live) -> None:
    raw = Raw(live)
    raw.head("GET", "/healthz", {})
    raw.conn.send(h11.EndOfMessage())
    assert raw.answer()[0] == 200
    start = time.monotonic()
    raw.sock.sendall(b"GET /healthz HTTP/1.1\r\n")
    with contextlib.suppress(OSError):
        for _ in range(60):
            raw.sock.send(b"X")
            time.sleep(0.1)
    raw.closed_within(2)
    raw.close()
    assert time.monotonic() - start < 4.0  # not after the 6 s it trickles
    assert getattr(raw, "received", b"").startswith(b"HTTP/1.1 408 ")


def test_slow_bodies_are_cut_off(live: Live) -> None:
    """A body of 100 bytes arriving a byte every 0.1 s is cut off when the body timeout (1.5 s
    here, 30 s by default) has passed: 408, closed; on the login page and the ops API."""
    for path in ("/login", "/ops/api/tenants/bageriet/pause"):
        raw = Raw(live)
        with capture_logs() as logs:
            raw.head("POST", path, BEARER | {"Content-Length": "100"})
            start = time.monotonic()
            with contextlib.suppress(OSError):
                for _ in range(100):
                    raw.sock.send(b"a")
                    time.sleep(0.1)
                    if time.monotonic() - start > 6:
                        break
            raw.sock.settimeout(5)
            status, headers, _ = raw.answer()
            took = time.monotonic() - start
            closed = raw.closed_within(2)
        raw.close()
        assert status == 408 and headers["connection"] == "close", path
        assert 1.4 <= took <= 4.5 and closed is not None, (path, took)
        [slow] = door_events(logs, "web.door.body_timeout")
        assert 0 < slow["read"] < 100


def test_the_default_limits_are_the_documented_ones(tmp_path: Path) -> None:
    engine = engine_at(tmp_path, door=None)
    door = engine.door
    assert (door.header_timeout, door.body_timeout, door.keep_alive) == (10.0, 30.0, 5)
    assert door.cap_for("/login") == door.cap_for("/ops/api/overview") == 16_384
    assert door.cap_for(f"/v1/tenants/{TENANT}/events") == 1_000_000
    engine.db.close()


# --- wrong tokens are throttled per client address ---------------------------------------------


def client_from(live: Live, source: str) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=source)
    return httpx.Client(base_url=live.url, transport=transport, timeout=10)


def test_one_clients_wrong_logins_do_not_lock_out_another(tmp_path: Path) -> None:
    with live_engine(tmp_path) as live:
        with client_from(live, "127.0.0.2") as attacker:
            for _ in range(10):
                wrong = attacker.post("/login", data={"token": "guess-guess-guess-guess"})
                assert wrong.status_code == 401
            locked = attacker.post("/login", data={"token": ADMIN_TOKEN})
            assert locked.status_code == 429 and "set-cookie" not in locked.headers
            assert 55 <= int(locked.headers["retry-after"]) <= 60
            # Claiming to be someone else does not help: 127.0.0.2 is not a trusted proxy.
            spoofed = attacker.post(
                "/login",
                data={"token": ADMIN_TOKEN},
                headers={"X-Forwarded-For": "203.0.113.9"},
            )
            assert spoofed.status_code == 429
        with client_from(live, "127.0.0.3") as operator:
            # Another address: its own count, unaffected.
            assert operator.post("/login", data={"token": "typo-typo-typo-typo"}).status_code == 401
            ok = operator.post("/login", data={"token": ADMIN_TOKEN, "next": "/system"})
            assert ok.status_code == 303 and ok.headers["location"] == "/system"
            assert operator.get("/ops/api/overview", headers=BEARER).status_code == 200


def test_wrong_bearer_tokens_are_throttled_per_address(tmp_path: Path) -> None:
    with live_engine(tmp_path) as live:
        with client_from(live, "127.0.0.1") as http:
            login = http.post("/login", data={"token": ADMIN_TOKEN})
            cookie = re.match(rf"{COOKIE_NAME}=([^;]+);", login.headers["set-cookie"])
            assert cookie is not None
        with client_from(live, "127.0.0.4") as guesser:
            wrong = {"Authorization": "Bearer not-the-admin-token-0000"}
            for n, path in enumerate(
                ["/ops/api/overview", "/ops/api/system", "/", "/system", "/login"] * 2
            ):
                assert guesser.get(path, headers=wrong).status_code in (401, 200), path
                if n == 4:
                    # A script behind the same address knows the token: served, and it does
                    # not reset the guesser's count.
                    assert guesser.get("/ops/api/system", headers=BEARER).status_code == 200
            answers = [guesser.get("/ops/api/overview", headers=h) for h in (wrong, BEARER)]
            for answer in answers:  # locked: not even the right token is checked
                assert answer.status_code == 429 and "Retry-After" in answer.headers
                assert answer.json()["error"].startswith("Too many wrong admin tokens")
            page = guesser.get("/system", headers=BEARER)
            assert page.status_code == 429 and "Too many wrong admin tokens" in page.text
            # The login form of that address is locked too: one count per address.
            assert guesser.post("/login", data={"token": ADMIN_TOKEN}).status_code == 429
            # A session cookie proves the token was known: it still works from there.
            session = {"Cookie": f"{COOKIE_NAME}={cookie.group(1)}"}
            assert guesser.get("/ops/api/overview", headers=session).status_code == 200
        with client_from(live, "127.0.0.5") as script:
            assert script.get("/ops/api/overview", headers=BEARER).status_code == 200


def test_the_lockout_backs_off_and_is_forgotten() -> None:
    now = [0.0]
    throttle = TokenThrottle(limit=3, window=60, lockout=60, max_lockout=600, clock=lambda: now[0])
    lockouts = []
    for _ in range(6):
        for _ in range(2):
            assert throttle.failed("10.0.0.1") == 0
        lockouts.append(throttle.failed("10.0.0.1"))
        assert throttle.retry_after("10.0.0.1") == lockouts[-1]
        assert throttle.retry_after("10.0.0.2") == 0
        now[0] += lockouts[-1]
        assert throttle.retry_after("10.0.0.1") == 0
    assert lockouts == [60, 120, 240, 480, 600, 600]
    # Failures outside the window do not add up.
    for _ in range(5):
        throttle.failed("10.0.0.3")
        now[0] += 30
    assert throttle.retry_after("10.0.0.3") == 0
    # Six quiet hours and the record is gone: the next lockout is the first again.
    now[0] += 6 * 3600
    for _ in range(2):
        throttle.failed("10.0.0.1")
    assert throttle.failed("10.0.0.1") == 60


def test_the_throttle_remembers_a_bounded_number_of_addresses() -> None:
    throttle = TokenThrottle(max_addresses=100)
    for n in range(1000):
        throttle.failed(f"10.9.{n // 250}.{n % 250}")
    assert len(throttle) == 100


def test_ipv6_clients_are_counted_by_their_64() -> None:
    from starlette.requests import Request

    from engine.web.auth import client_address

    def address(host: str) -> str:
        return client_address(Request({"type": "http", "client": (host, 1), "headers": []}))

    assert address("2001:db8:1:2:aaaa::1") == address("2001:db8:1:2:bbbb::7") == "2001:db8:1:2::/64"
    assert address("2001:db8:1:3::1") != address("2001:db8:1:2::1")
    assert address("::ffff:192.0.2.7") == "192.0.2.7"
    assert address("127.0.0.2") == "127.0.0.2"


# --- the session cookie -----------------------------------------------------------------------

LAN_HOST = "192.168.1.20"


class LanTransport(httpx.BaseTransport):
    """A browser on the LAN that reaches the engine at http://192.168.1.20:<port>/: the URL,
    the Host header and the cookie jar say 192.168.1.20; the bytes go to 127.0.0.1."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert request.url.host == LAN_HOST and request.headers["host"].startswith(LAN_HOST)
        # A copy goes out: the client files the answer's cookies under the request it made.
        out = httpx.Request(
            request.method,
            request.url.copy_with(host="127.0.0.1"),
            headers=request.headers,
            stream=request.stream,
        )
        return self.inner.handle_request(out)

    def close(self) -> None:
        self.inner.close()


def lan_browser(live: Live) -> httpx.Client:
    origin = f"http://{LAN_HOST}:{live.engine.http_port}"
    # A browser sends Origin with its form posts; the engine checks it against Host.
    return httpx.Client(
        base_url=origin, transport=LanTransport(), headers={"Origin": origin}, timeout=10
    )


def test_every_page_works_over_plain_http_on_a_lan_address_when_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KASSASYNC_COOKIE_SECURE", "0")
    with live_paused_engine(tmp_path) as (live, till), lan_browser(live) as lan:
        first = lan.get(f"/tenants/{TENANT}")
        assert first.status_code == 401 and "/login?next=/tenants/bageriet" in first.text
        login = lan.post("/login", data={"token": ADMIN_TOKEN, "next": f"/tenants/{TENANT}"})
        assert login.status_code == 303
        flags = [f.strip() for f in login.headers["set-cookie"].split(";")]
        assert "Secure" not in flags and "HttpOnly" in flags and "SameSite=Strict" in flags
        assert COOKIE_NAME in lan.cookies  # the jar keeps it for http://192.168.1.20
        # Every page, with the cookie only (no bearer token anywhere on this client).
        for path in ("/", "/?only=problems", f"/tenants/{TENANT}", "/system", "/metrics"):
            page = lan.get(path)
            assert page.status_code == 200, path
        tenant_page = lan.get(f"/tenants/{TENANT}").text
        assert "Your Fortnox login has expired" in tenant_page
        csrf = re.search(r'name="csrf" value="([^"]+)"', tenant_page)
        assert csrf is not None
        retry = re.search(r'action="(/deadletters/[^"]+/retry)"', tenant_page)
        assert retry is not None
        done = lan.post(retry.group(1), data={"csrf": csrf.group(1), "next": "/"})
        assert done.status_code == 303 and "done=requeued" in done.headers["location"]
        assert "retried" in lan.get(done.headers["location"]).text
        wait_for(lambda: [c for c in till.received if c["type"] == "till.payment.register"])
        resumed = lan.post(f"/tenants/{TENANT}/resume", data={"csrf": csrf.group(1)})
        assert resumed.status_code == 303 and "done=resumed" in resumed.headers["location"]
        # The ops API takes the session with its CSRF header.
        api = lan.get("/ops/api/overview")
        assert api.status_code == 200 and api.json()["tenants"][0]["tenant"] == TENANT
        out = lan.post("/logout", data={"csrf": csrf.group(1)})
        assert out.status_code == 303
        assert COOKIE_NAME not in lan.cookies
        assert lan.get("/system").status_code == 401


def test_by_default_the_cookie_is_secure_and_not_sent_over_plain_http(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KASSASYNC_COOKIE_SECURE", raising=False)
    with live_engine(tmp_path) as live, lan_browser(live) as lan:
        login = lan.post("/login", data={"token": ADMIN_TOKEN})
        assert login.status_code == 303
        assert "Secure" in [f.strip() for f in login.headers["set-cookie"].split(";")]
        # The client keeps a Secure cookie for https only, as a browser does: over plain
        # HTTP on the LAN the pages stay closed (hence KASSASYNC_COOKIE_SECURE=0 for that).
        assert lan.get("/system").status_code == 401


def test_auto_marks_the_cookie_secure_when_the_request_came_over_https(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KASSASYNC_COOKIE_SECURE", "auto")
    with live_engine(tmp_path) as live, httpx.Client(base_url=live.url, timeout=10) as http:
        # A TLS-terminating proxy on this host says so (uvicorn trusts 127.0.0.1 by default).
        proxied = http.post(
            "/login",
            data={"token": ADMIN_TOKEN},
            headers={"X-Forwarded-Proto": "https", "Origin": live.url.replace("http", "https")},
        )
        assert proxied.status_code == 303 and "; Secure" in proxied.headers["set-cookie"]
        plain = http.post("/login", data={"token": ADMIN_TOKEN})
        assert plain.status_code == 303 and "; Secure" not in plain.headers["set-cookie"]
    with (
        live_engine(tmp_path / "2") as live,
        client_from(live, "127.0.0.6") as far,
    ):
        # From an address that is not a trusted proxy, the header is ignored: plain HTTP.
        answer = far.post(
            "/login", data={"token": ADMIN_TOKEN}, headers={"X-Forwarded-Proto": "https"}
        )
        assert answer.status_code == 303 and "; Secure" not in answer.headers["set-cookie"]


def test_the_cookie_setting_is_read_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KASSASYNC_COOKIE_SECURE", raising=False)
    assert resolve_cookie_secure() is CookieSecure.ALWAYS
    for word, expected in (
        ("1", CookieSecure.ALWAYS),
        ("true", CookieSecure.ALWAYS),
        ("0", CookieSecure.NEVER),
        ("no", CookieSecure.NEVER),
        (" Auto ", CookieSecure.AUTO),
    ):
        monkeypatch.setenv("KASSASYNC_COOKIE_SECURE", word)
        assert resolve_cookie_secure() is expected
    monkeypatch.setenv("KASSASYNC_COOKIE_SECURE", "maybe")
    with pytest.raises(ValueError, match="KASSASYNC_COOKIE_SECURE must be 1, 0 or auto"):
        resolve_cookie_secure()
