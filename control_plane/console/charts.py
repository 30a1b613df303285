"""Server-rendered bar charts (SVG drawn by the templates from these numbers; no script).

``stacked_bars`` buckets timestamped events by hour over a window ending now and stacks them by
category; the template draws one ``<rect>`` per non-empty segment with a ``<title>`` for each, and
a text table beside the chart carries the same numbers for screen readers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from control_plane.kit.time import aware

WIDTH = 600
HEIGHT = 160
#: Colours per category, chosen to keep 3:1 contrast against the white page (WCAG 1.4.11).
COLOURS = {
    "allow": "#1a7f37",
    "deny": "#b42318",
    "require_approval": "#9a6700",
    "pending": "#9a6700",
    "records": "#1f4e9c",
}
_FALLBACK = "#57606a"


@dataclass(frozen=True)
class Segment:
    x: float
    y: float
    width: float
    height: float
    colour: str
    label: str


@dataclass
class Chart:
    title: str
    hours: int
    categories: list[str]
    totals: dict[str, int] = field(default_factory=dict)
    segments: list[Segment] = field(default_factory=list)
    peak: int = 0
    width: int = WIDTH
    height: int = HEIGHT

    def colour(self, category: str) -> str:
        return COLOURS.get(category, _FALLBACK)


def stacked_bars(
    title: str,
    events: Iterable[tuple[datetime, str]],
    *,
    now: datetime,
    hours: int = 24,
    categories: Sequence[str] = (),
) -> Chart:
    """Events (time, category) in the ``hours`` before ``now``, one bar per hour."""
    start = now - timedelta(hours=hours)
    counts: list[dict[str, int]] = [{} for _ in range(hours)]
    seen = list(categories)
    for when, category in events:
        offset = (aware(when) - start).total_seconds()
        if not 0 <= offset < hours * 3600:
            continue
        bucket = counts[int(offset // 3600)]
        bucket[category] = bucket.get(category, 0) + 1
        if category not in seen:
            seen.append(category)
    chart = Chart(title=title, hours=hours, categories=seen)
    chart.totals = {c: sum(b.get(c, 0) for b in counts) for c in seen}
    chart.peak = max((sum(b.values()) for b in counts), default=0)
    if chart.peak == 0:
        return chart
    slot = WIDTH / hours
    scale = (HEIGHT - 10) / chart.peak
    for i, bucket in enumerate(counts):
        y = float(HEIGHT)
        for category in seen:
            n = bucket.get(category, 0)
            if not n:
                continue
            h = n * scale
            y -= h
            ago = hours - i
            chart.segments.append(
                Segment(
                    x=i * slot + 1,
                    y=y,
                    width=max(slot - 2, 1),
                    height=h,
                    colour=chart.colour(category),
                    label=f"{n} {category}, {ago}h to {ago - 1}h ago",
                )
            )
    return chart
