"""Server-side SVG charts: no CDN, no script, readable by screen readers (role=img + label)."""

from collections.abc import Sequence
from datetime import datetime, timedelta

from markupsafe import Markup, escape

from cloud.console.fmt import iso_utc

WIDTH = 720
HEIGHT = 180
PAD_LEFT = 44
PAD_BOTTOM = 28
PAD_TOP = 12
SPARK_WIDTH = 160
SPARK_HEIGHT = 28


HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
HOUR_TICK_EVERY = 3  # 24 hourly bars: a label every third keeps them from overlapping


def hourly_bars(
    series: Sequence[tuple[str, dict[datetime, int]]],
    start: datetime,
    hours: int,
    label: str,
) -> Markup:
    """Stacked bars, one per hour from `start`; `series` is (css class, {hour: count}) bottom-up.

    Hour labels are `<text data-hour="ISO">` in UTC; console.js rewrites them to local time.
    """
    return stacked_bars(series, start, hours, label, HOUR)


def stacked_bars(
    series: Sequence[tuple[str, dict[datetime, int]]],
    start: datetime,
    slots: int,
    label: str,
    step: timedelta,
) -> Markup:
    """Stacked bars, one per `step` (an hour or a UTC day) from `start`; see `hourly_bars`."""
    times = [start + step * i for i in range(slots)]
    totals = [sum(values.get(slot, 0) for _, values in series) for slot in times]
    peak = max(totals, default=0) or 1
    plot_w = WIDTH - PAD_LEFT
    plot_h = HEIGHT - PAD_BOTTOM - PAD_TOP
    bar_w = plot_w / slots
    parts: list[str] = []
    for fraction in (0.5, 1.0):
        y = PAD_TOP + plot_h * (1 - fraction)
        parts.append(
            f'<line class="grid" x1="{PAD_LEFT}" x2="{WIDTH}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{PAD_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{round(peak * fraction)}</text>"
        )
    for i, slot in enumerate(times):
        x = PAD_LEFT + i * bar_w
        base: float = PAD_TOP + plot_h
        tips = []
        for css, values in series:
            count = values.get(slot, 0)
            if count:
                h = plot_h * count / peak
                base -= h
                parts.append(
                    f'<rect class="{escape(css)}" x="{x + 1:.1f}" y="{base:.1f}"'
                    f' width="{max(bar_w - 2, 1):.1f}" height="{h:.1f}"/>'
                )
                tips.append(f"{css} {count}")
        if tips:
            parts.append(
                f'<rect class="hit" x="{x:.1f}" y="{PAD_TOP}" width="{bar_w:.1f}"'
                f' height="{plot_h}"><title>{escape(iso_utc(slot))}: {escape(", ".join(tips))}'
                "</title></rect>"
            )
        parts.append(_tick(i, slot, x + bar_w / 2, step))
    body = "".join(parts)
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img"'
        f' aria-label="{escape(label)}" preserveAspectRatio="none">{body}</svg>'
    )


def _tick(i: int, slot: datetime, x: float, step: timedelta) -> str:
    where = f'class="axis" x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="middle"'
    if step >= DAY:  # UTC days: the page says so, no local rewrite that would shift them
        return f"<text {where}>{slot:%a %d}</text>"
    if i % HOUR_TICK_EVERY:
        return ""
    return f'<text {where} data-hour="{iso_utc(slot)}">{slot:%H}:00</text>'


def sparkline(points: Sequence[int], label: str) -> Markup:
    """A small line of counts, oldest left, for tables."""
    if not points:
        return Markup("")
    peak = max(points) or 1
    step = SPARK_WIDTH / max(len(points) - 1, 1)
    coords = " ".join(
        f"{i * step:.1f},{SPARK_HEIGHT - 2 - (SPARK_HEIGHT - 4) * v / peak:.1f}"
        for i, v in enumerate(points)
    )
    return Markup(
        f'<svg class="spark" viewBox="0 0 {SPARK_WIDTH} {SPARK_HEIGHT}" role="img"'
        f' aria-label="{escape(label)}"><polyline points="{coords}"/></svg>'
    )
