"""Line charts as server-rendered SVG: the geometry of a series, for ``charts.html`` to draw.

No script and no library: the page gets an ``<svg>`` with a path whose coordinates are worked out
here, styled by the stylesheet (the CSP allows no inline style)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine.ops.history import READINGS, History, Metric

WIDTH = 300
HEIGHT = 80
#: Room at the left for the scale's labels, and at the bottom for the times.
LEFT = 34
BOTTOM = 14


@dataclass(frozen=True, slots=True)
class Chart:
    metric: str
    title: str
    unit: str
    #: SVG path of the line and of the area under it ("" with fewer than two samples).
    line: str
    area: str
    #: The scale's top (the highest value, rounded up) and the latest value, as text.
    top: str
    latest: str
    #: The first and last sample's times (Unix), for the axis labels.
    start: float | None
    end: float | None
    samples: int
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    bottom: int = BOTTOM

    @property
    def empty(self) -> bool:
        return self.samples < 2


def nice_top(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten at or above ``value`` (1 for 0)."""
    if value <= 0:
        return 1.0
    scale = 1.0
    while scale * 10 <= value:
        scale *= 10
    while scale > value:
        scale /= 10
    for step in (1, 2, 2.5, 5, 10):
        if step * scale >= value:
            return step * scale
    return 10 * scale


def number(value: float) -> str:
    if value >= 100 or value == int(value):
        return f"{value:.0f}"
    return f"{value:.2f}".rstrip("0").rstrip(".")


def chart(metric: str, title: str, unit: str, series: Sequence[tuple[float, float]]) -> Chart:
    """The geometry of ``series`` ((time, value), oldest first) in a WIDTH x HEIGHT box."""
    if not series:
        return Chart(metric, title, unit, "", "", "1", "—", None, None, 0)
    start, end = series[0][0], series[-1][0]
    top = nice_top(max(value for _, value in series))
    span = max(end - start, 1e-9)
    plot_w, plot_h = WIDTH - LEFT, HEIGHT - BOTTOM
    points = [
        (LEFT + (at - start) / span * plot_w, plot_h - min(value, top) / top * plot_h)
        for at, value in series
    ]
    line = area = ""
    if len(points) >= 2:
        line = "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in points)
        area = f"{line} L{points[-1][0]:.1f},{plot_h} L{points[0][0]:.1f},{plot_h} Z"
    return Chart(
        metric,
        title,
        unit,
        line,
        area,
        number(top),
        number(series[-1][1]),
        start,
        end,
        len(series),
    )


def charts(history: History, tenant: str | None = None) -> list[Chart]:
    """Lag, throughput, Fortnox budget and errors, overall or for one tenant."""
    out = []
    for metric in Metric:
        title, unit, _overall, _per_tenant = READINGS[metric]
        if tenant is not None:
            unit = TENANT_UNITS[metric]
        out.append(chart(metric.value, title, unit, history.series(metric, tenant)))
    return out


#: What each chart shows for one tenant.
TENANT_UNITS: dict[Metric, str] = {
    Metric.LAG: "age of its oldest waiting command (s)",
    Metric.THROUGHPUT: "commands settled per sample",
    Metric.BUDGET: "% of its Fortnox request window",
    Metric.ERRORS: "dead letters + commands being retried",
}
