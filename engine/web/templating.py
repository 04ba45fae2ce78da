"""Pages from Jinja2 templates (``engine/web/templates``, autoescaped) and the dashboard's
static files (``engine/web/static``: its stylesheet).

Every page extends ``base.html`` and fills two blocks, ``title`` and ``content``. The base
layout reads these context values (:meth:`Frame.respond` sets them): ``csrf`` (the session's
CSRF token; the navigation and the log-out button show only when it is given), ``flash`` (a
:class:`Flash` or None), ``banner`` (the engine's health problems), ``times`` (a :class:`Times`
for local times), ``refresh`` (seconds between automatic reloads, 0 for none) and
``refresh_off`` (the same page's URL without them).

Values from the store, a till, Fortnox or the request are escaped by Jinja2; only the few
pieces this package builds itself are marked safe. The Content-Security-Policy allows styles
and images from the app itself and no script at all.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from engine.ops import age_text, money
from engine.supervision import Health
from engine.tenants import ConfigError

log = structlog.get_logger("kassasync.web")

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

#: The operator's time zone (``KASSASYNC_DASHBOARD_TZ``) and the pages' reload interval in
#: seconds (``KASSASYNC_DASHBOARD_REFRESH``, 0 for none).
TZ_ENV = "KASSASYNC_DASHBOARD_TZ"
REFRESH_ENV = "KASSASYNC_DASHBOARD_REFRESH"
DEFAULT_ZONE = "Europe/Stockholm"
DEFAULT_REFRESH = 30


class BadDashboardSetting(ConfigError):
    """A dashboard setting from the environment that cannot be used (the CLI prints it as one
    line and exits 2)."""


@dataclass(frozen=True, slots=True)
class DashboardSettings:
    """How the dashboard shows times and how often its pages reload themselves."""

    zone: str = DEFAULT_ZONE
    refresh_seconds: int = DEFAULT_REFRESH

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.zone)
        except (ZoneInfoNotFoundError, ValueError) as missing:
            raise BadDashboardSetting(
                f"{TZ_ENV}={self.zone!r} is not a time zone (try Europe/Stockholm or UTC)"
            ) from missing
        if not 0 <= self.refresh_seconds <= 3600:
            raise BadDashboardSetting(
                f"{REFRESH_ENV}={self.refresh_seconds} must be 0 (off) to 3600 seconds"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DashboardSettings:
        values = os.environ if env is None else env
        refresh = values.get(REFRESH_ENV, "").strip()
        try:
            seconds = int(refresh) if refresh else DEFAULT_REFRESH
        except ValueError as bad:
            raise BadDashboardSetting(f"{REFRESH_ENV}={refresh!r} is not a whole number") from bad
        return cls(zone=values.get(TZ_ENV, "").strip() or DEFAULT_ZONE, refresh_seconds=seconds)


@dataclass(frozen=True, slots=True)
class Times:
    """Times as the operator reads them: in their zone, with UTC kept for the title."""

    zone: ZoneInfo
    now: float

    @staticmethod
    def stamp(value: object) -> float | None:
        """A Unix time, or an ISO 8601 text from a record, as a Unix time (None if neither)."""
        if isinstance(value, bool) or value is None:
            return None
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str) and value:
            try:
                moment = dt.datetime.fromisoformat(value)
            except ValueError:
                return None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=dt.UTC)
            return moment.timestamp()
        return None

    def local(self, value: object, *, seconds: bool = True) -> str:
        found = self.stamp(value)
        if found is None:
            return ""
        moment = dt.datetime.fromtimestamp(found, self.zone)
        return moment.strftime("%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M %Z")

    def clock(self, value: object) -> str:
        """Only the time of day (for the "updated at" line and chart axes)."""
        found = self.stamp(value)
        if found is None:
            return ""
        return dt.datetime.fromtimestamp(found, self.zone).strftime("%H:%M:%S")

    def utc(self, value: object) -> str:
        found = self.stamp(value)
        if found is None:
            return ""
        return dt.datetime.fromtimestamp(found, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    def iso(self, value: object) -> str:
        found = self.stamp(value)
        if found is None:
            return ""
        return dt.datetime.fromtimestamp(found, dt.UTC).isoformat(timespec="seconds")

    def ago(self, value: object) -> str:
        found = self.stamp(value)
        return "" if found is None else age_text(self.now - found)

    @property
    def zone_name(self) -> str:
        return self.zone.key


@dataclass(frozen=True, slots=True)
class Flash:
    text: str
    error: bool = False


def _segment(value: object) -> str:
    """One URL path segment (ids may hold '/', '@', ':', '#' or '?')."""
    return quote(str(value), safe="")


def _pretty(value: object) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(["html"], default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["segment"] = _segment
    env.filters["pretty"] = _pretty
    env.filters["money"] = money
    env.filters["age"] = age_text
    env.globals["query"] = urlencode
    return env


ENV = _environment()


def render(template: str, **context: Any) -> str:
    """A template with its context (autoescaped)."""
    return ENV.get_template(template).render(**context)


def html_response(
    body: str, status: int = 200, headers: Mapping[str, str] | None = None
) -> HTMLResponse:
    response = HTMLResponse(body, status_code=status)
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


@dataclass
class Frame:
    """What every dashboard page shares: the CSRF token, the health banner, local times and
    auto-refresh. Page routers (the dashboard's, the connection pages, a settings page) answer
    with :meth:`respond`."""

    settings: DashboardSettings = field(default_factory=DashboardSettings)
    health: Callable[[], Health] | None = None
    clock: Callable[[], float] = time.time

    def times(self) -> Times:
        return Times(ZoneInfo(self.settings.zone), self.clock())

    def refresh_for(self, request: Request | None, wanted: bool) -> tuple[int, str]:
        """(seconds until the page reloads itself, 0 for never; the URL that stops it)."""
        if request is None or not wanted or not self.settings.refresh_seconds:
            return 0, ""
        params = dict(request.query_params)
        if params.get("refresh") == "off":
            return 0, ""
        params["refresh"] = "off"
        return self.settings.refresh_seconds, f"{request.url.path}?{urlencode(params)}"

    def context(
        self,
        request: Request | None,
        *,
        csrf: str | None,
        flash: Flash | None = None,
        refresh: bool = False,
    ) -> dict[str, Any]:
        seconds, off = self.refresh_for(request, refresh)
        banner = None
        if self.health is not None:
            found = self.health()
            if not found.ok:
                banner = found
        return {
            "csrf": csrf,
            "flash": flash,
            "banner": banner,
            "monotonic": time.monotonic(),
            "times": self.times(),
            "refresh": seconds,
            "refresh_off": off,
        }

    def respond(
        self,
        request: Request | None,
        template: str,
        *,
        csrf: str | None,
        flash: Flash | None = None,
        refresh: bool = False,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        """A page: ``template`` (extending ``base.html``) with the shared context and
        ``context``. ``refresh``: the page reloads itself (the operator can stop it)."""
        shared = self.context(request, csrf=csrf, flash=flash, refresh=refresh)
        return html_response(render(template, **shared, **context), status, headers)


#: The files under /static/ and their media types (nothing else is served).
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}


def static_router() -> APIRouter:
    """``GET /static/{name}``: the dashboard's stylesheet (public: the login page needs it)."""
    route = APIRouter(include_in_schema=False)
    served = {
        path.name: (path.read_bytes(), STATIC_TYPES[path.suffix])
        for path in sorted(STATIC.iterdir())
        if path.suffix in STATIC_TYPES
    }

    @route.get("/static/{name}")
    async def static(name: str) -> Response:
        found = served.get(name)
        if found is None:
            return Response("not found", status_code=404, media_type="text/plain")
        body, media = found
        headers = {**SECURITY_HEADERS, "Cache-Control": "public, max-age=300"}
        return Response(body, media_type=media, headers=headers)

    return route
