"""Server-rendered HTML: escaping, the page layout and small pieces the pages share.

No template engine and no build step: pages are f-strings, and every value that comes from the
store, a till, Fortnox or the request goes through :func:`esc` (or :func:`attr`/:func:`url`).
Pages carry no script; the Content-Security-Policy says so.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Iterable, Mapping
from urllib.parse import quote

from fastapi.responses import HTMLResponse

from engine.ops import Light, age_text
from topics.errors import ShopError

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

CSS = """
:root { --fg:#1d2329; --muted:#5f6b76; --line:#d8dee4; --bg:#f6f8fa; --card:#fff;
  --green:#1a7f37; --amber:#b35900; --red:#cf222e; --off:#8c959f; --link:#0550ae; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
  color:var(--fg); background:var(--bg); }
header { display:flex; gap:1.5rem; align-items:center; padding:.6rem 1.5rem;
  background:#24292f; color:#fff; }
header a { color:#fff; text-decoration:none; }
header .brand { font-weight:700; font-size:1.05rem; letter-spacing:.02em; }
header nav { display:flex; gap:1rem; flex:1; }
header form { margin:0; }
header button { background:transparent; color:#fff; border:1px solid #57606a; }
main { max-width:1280px; margin:0 auto; padding:1rem 1.5rem 3rem; }
h1 { font-size:1.4rem; margin:.6rem 0 .2rem; }
h2 { font-size:1.1rem; margin:1.6rem 0 .5rem; }
a { color:var(--link); }
.muted { color:var(--muted); }
.card { background:var(--card); border:1px solid var(--line); border-radius:6px; padding:1rem; }
table { border-collapse:collapse; width:100%; background:var(--card);
  border:1px solid var(--line); }
th, td { text-align:left; padding:.4rem .6rem; border-bottom:1px solid var(--line);
  vertical-align:top; }
th { background:#eef1f4; font-weight:600; white-space:nowrap; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size:12.5px; }
pre { white-space:pre-wrap; word-break:break-all; max-height:16rem; overflow:auto;
  background:var(--bg); padding:.5rem; border-radius:4px; }
.light { display:inline-block; min-width:4.2em; padding:.05rem .5rem; border-radius:1rem;
  color:#fff; font-size:12px; font-weight:600; text-align:center; }
.light-green { background:var(--green); } .light-amber { background:var(--amber); }
.light-red { background:var(--red); } .light-off { background:var(--off); }
.alert { border:1px solid var(--red); border-left:6px solid var(--red); background:#fff5f5;
  border-radius:6px; padding:1rem 1.2rem; margin:1rem 0; }
.alert h2 { margin-top:0; color:var(--red); }
.flash { border:1px solid var(--green); background:#f0fff4; border-radius:6px;
  padding:.6rem 1rem; margin:.8rem 0; }
.error { border-color:var(--red); background:#fff5f5; }
button, .button { font:inherit; padding:.3rem .8rem; border-radius:5px;
  border:1px solid var(--line); background:#f6f8fa; cursor:pointer; color:var(--fg); }
button.primary { background:var(--green); color:#fff; border-color:var(--green); }
button.danger { color:var(--red); }
form.inline { display:inline; margin:0; }
.grid { display:grid; grid-template-columns:repeat(auto-fit, minmax(260px, 1fr)); gap:1rem; }
.kv { display:grid; grid-template-columns:max-content 1fr; gap:.2rem 1rem; }
.kv dt { color:var(--muted); } .kv dd { margin:0; }
.bar { height:8px; background:#eaeef2; border-radius:4px; overflow:hidden; min-width:80px; }
.bar span { display:block; height:100%; background:var(--link); }
.login { max-width:380px; margin:8vh auto; }
.login input { width:100%; padding:.5rem; font:inherit; margin:.4rem 0 .8rem;
  border:1px solid var(--line); border-radius:5px; }
.legend span { margin-right:1rem; }
details summary { cursor:pointer; color:var(--link); }
"""


def esc(value: object) -> str:
    """Text for an HTML element body or a quoted attribute."""
    return html.escape("" if value is None else str(value), quote=True)


def url(path_part: str) -> str:
    """One URL path segment (ids may hold '/', '@', ':', '#' or '?')."""
    return quote(path_part, safe="")


def html_response(
    body: str, status: int = 200, headers: Mapping[str, str] | None = None
) -> HTMLResponse:
    response = HTMLResponse(body, status_code=status)
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def layout(title: str, body: str, *, csrf: str | None = None, flash: str = "") -> str:
    nav = ""
    if csrf is not None:
        nav = (
            '<nav><a href="/">Overview</a><a href="/tenants/new">Add a shop</a>'
            '<a href="/system">System</a><a href="/metrics">Metrics</a></nav>'
            f'<form method="post" action="/logout">{hidden("csrf", csrf)}'
            '<button type="submit">Log out</button></form>'
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · Kassasync</title><style>{CSS}</style></head><body>"
        f'<header><a class="brand" href="/">Kassasync</a>{nav}</header>'
        f"<main>{flash}{body}</main></body></html>"
    )


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


def light(value: Light, reasons: Iterable[str] = ()) -> str:
    why = "; ".join(reasons)
    return f'<span class="light light-{value.value}" title="{esc(why)}">{esc(value.value)}</span>'


def when(stamp: float | None, now: float) -> str:
    """A Unix time as UTC time and age."""
    if stamp is None:
        return '<span class="muted">never</span>'
    moment = dt.datetime.fromtimestamp(stamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f'{esc(moment)} <span class="muted">({esc(age_text(now - stamp))} ago)</span>'


def iso(value: object) -> str:
    if not value:
        return '<span class="muted">—</span>'
    return esc(str(value).replace("T", " ")[:19])


def shop_error(error: ShopError, *, link_text: str = "Open in Fortnox") -> str:
    link = ""
    if error.link:
        link = (
            f' <a href="{esc(error.link)}" target="_blank" rel="noopener noreferrer">'
            f"{esc(link_text)} ↗</a>"
        )
    return (
        f'<div class="shop-error"><strong>{esc(error.message)}</strong>'
        f'<div><span class="muted">How to fix:</span> {esc(error.fix)}{link}</div>'
        f'<div class="muted"><code>{esc(error.kind.value)}</code></div></div>'
    )


def pretty_json(value: object) -> str:
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return f"<pre>{esc(text)}</pre>"


def table(headers: Iterable[str], rows: Iterable[Iterable[str]], *, empty: str = "None.") -> str:
    """A table whose cells are already HTML (escape values before)."""
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    if not body:
        return f'<p class="muted">{esc(empty)}</p>'
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
