"""The console's SVG bar charts: events land in the right hour, stacked by category."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from control_plane.console.charts import HEIGHT, stacked_bars

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def test_bars_count_per_hour_and_stack_by_category() -> None:
    events = [
        (NOW - timedelta(minutes=10), "allow"),
        (NOW - timedelta(minutes=20), "allow"),
        (NOW - timedelta(minutes=30), "deny"),
        (NOW - timedelta(hours=5, minutes=1), "allow"),
        (NOW - timedelta(hours=30), "allow"),  # outside the window
        (NOW + timedelta(minutes=1), "deny"),  # in the future
    ]
    chart = stacked_bars("t", events, now=NOW, hours=24, categories=["allow", "deny"])
    assert chart.totals == {"allow": 3, "deny": 1}
    assert chart.peak == 3
    labels = [s.label for s in chart.segments]
    assert labels == ["1 allow, 6h to 5h ago", "2 allow, 1h to 0h ago", "1 deny, 1h to 0h ago"]
    last_hour = [s for s in chart.segments if "1h to 0h" in s.label]
    # Stacked: the full bar reaches the top margin, and segments do not overlap.
    assert abs(sum(s.height for s in last_hour) - (HEIGHT - 10)) < 1e-9
    assert last_hour[1].y + last_hour[1].height == last_hour[0].y


def test_an_empty_window_draws_nothing() -> None:
    chart = stacked_bars("t", [], now=NOW, categories=["records"])
    assert (chart.peak, chart.segments, chart.totals) == (0, [], {"records": 0})
