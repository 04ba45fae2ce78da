"""HTML pieces built in Python for the pages not (yet) written as templates: the connection
pages (:mod:`engine.web.connect`), the door's answers and the Kafka shop list.

:func:`layout` puts such a body into ``base.html`` (:mod:`engine.web.templating`); every value
that comes from the store, a till, Fortnox or the request goes through :func:`esc` (or
:func:`url`) before it is part of the body.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
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
    "button_form",
    "esc",
    "hidden",
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


def _frame() -> Frame:
    try:
        return Frame(DashboardSettings.from_env())
    except BadDashboardSetting:
        return Frame()


def layout(title: str, body: str, *, csrf: str | None = None, flash: str = "") -> str:
    """A page around ``body`` (HTML, escaped by its builder): ``base.html`` with the navigation
    when ``csrf`` is given."""
    context = _frame().context(None, csrf=csrf)
    return render("layout.html", **context, title=title, body=Markup(flash + body))


def hidden(name: str, value: str) -> str:
    return f'<input type="hidden" name="{esc(name)}" value="{esc(value)}">'


def button_form(
    action: str,
    label: str,
    csrf: str,
    *,
    fields: Mapping[str, str] | None = None,
    css: str = "",
    title: str = "",
) -> str:
    extra = "".join(hidden(k, v) for k, v in (fields or {}).items())
    return (
        f'<form class="inline" method="post" action="{esc(action)}">{hidden("csrf", csrf)}'
        f'{extra}<button type="submit" class="{esc(css)}" title="{esc(title)}">'
        f"{esc(label)}</button></form>"
    )
