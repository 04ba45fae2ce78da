"""HTML built in Python, for the one page not written as a template: the Kafka deployment's
shop list (:mod:`engine.kafka.ops`).

:func:`layout` puts such a body into ``base.html`` (:mod:`engine.web.templating`); every value
that comes from the store, a till, Fortnox or the request goes through :func:`esc` (or
:func:`url`) before it is part of the body.
"""

from __future__ import annotations

import html
from urllib.parse import quote

from markupsafe import Markup

from engine.web.templating import (
    SECURITY_HEADERS,
    BadDashboardSetting,
    DashboardSettings,
    Frame,
    html_response,
    render,
)

__all__ = [
    "SECURITY_HEADERS",
    "default_frame",
    "esc",
    "html_response",
    "layout",
    "url",
]


def esc(value: object) -> str:
    """Text for an HTML element body or a quoted attribute."""
    return html.escape("" if value is None else str(value), quote=True)


def url(path_part: str) -> str:
    """One URL path segment (ids may hold '/', '@', ':', '#' or '?')."""
    return quote(path_part, safe="")


def default_frame() -> Frame:
    """A frame from the environment's dashboard settings (the defaults when they are bad: the
    engine refuses to start with them anyway)."""
    try:
        return Frame(DashboardSettings.from_env())
    except BadDashboardSetting:
        return Frame()


def layout(title: str, body: str, *, csrf: str | None = None, flash: str = "") -> str:
    """A page around ``body`` (HTML, escaped by its builder): ``base.html`` with the navigation
    when ``csrf`` is given."""
    context = default_frame().context(None, csrf=csrf)
    return render("layout.html", **context, title=title, body=Markup(flash + body))
