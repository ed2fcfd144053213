"""Altair charts of the Statistics page, drawn from reports.stats' small aggregates."""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

from db.queries import DayStats, Percentiles, RunPoint

STATUS_COLOURS = alt.Scale(
    domain=["finished", "failed", "cancelled"], range=["#2e7d32", "#c62828", "#ef6c00"]
)
HEIGHT = 260
# One date format on every axis (Vega-Lite would mix "Wed 25", "Nov 29" and "December").
DAY_AXIS = alt.Axis(format="%d %b", labelOverlap=True)


def points_frame(points: Sequence[RunPoint]) -> pd.DataFrame:
    """One row per ended run: start time, duration, status, records, job."""
    return pd.DataFrame(
        {
            "run": [p.run_id for p in points],
            "job": [p.job for p in points],
            "status": [p.status for p in points],
            "started": pd.to_datetime([p.started_at for p in points], utc=True),
            "duration_s": [p.duration_s for p in points],
            "records": [p.records for p in points],
        }
    )


def days_frame(days: Sequence[DayStats]) -> pd.DataFrame:
    """One row per UTC day: runs, success rate (%), records and throughput."""
    return pd.DataFrame(
        {
            "day": pd.to_datetime([d.day for d in days]),
            "runs": [d.runs for d in days],
            "success_pct": [None if d.success_rate is None else 100 * d.success_rate for d in days],
            "records": [d.records for d in days],
            "throughput": [d.throughput for d in days],
        }
    )


def duration_chart(points: Sequence[RunPoint], durations: Percentiles) -> alt.LayerChart:
    """Each run's duration over time, coloured by status, with the p50 and p90 lines."""
    dots = (
        alt.Chart(points_frame(points))
        .mark_circle(size=40, opacity=0.7)
        .encode(
            x=alt.X("started:T", title="Started", axis=DAY_AXIS),
            y=alt.Y("duration_s:Q", title="Duration (s)"),
            color=alt.Color("status:N", scale=STATUS_COLOURS, title="Status"),
            tooltip=["run", "job", "status", "started:T", "duration_s", "records"],
        )
    )
    lines = pd.DataFrame(
        [
            {"label": f"{name} {value:.1f} s", "value": value}
            for name, value in (("p50", durations.p50_s), ("p90", durations.p90_s))
            if value is not None
        ],
        columns=["label", "value"],
    )
    rules = alt.Chart(lines).mark_rule(strokeDash=[6, 4], color="#555").encode(y="value:Q")
    # The labels sit at the right edge on a white halo, drawn after the points, so none hides them.
    halo = alt.Chart(lines).mark_text(
        align="right", dx=-2, dy=-7, stroke="white", strokeWidth=4, fontWeight="bold"
    )
    text = alt.Chart(lines).mark_text(align="right", dx=-2, dy=-7, color="#333", fontWeight="bold")
    labels = [
        layer.encode(y="value:Q", text="label:N", x=alt.value("width")) for layer in (halo, text)
    ]
    return alt.LayerChart(layer=[dots, rules, *labels], height=HEIGHT)


def success_chart(days: Sequence[DayStats]) -> alt.Chart:
    """The share of finished runs among finished and failed ones, per day (area)."""
    chart: alt.Chart = (
        alt.Chart(days_frame(days))
        .mark_area(opacity=0.5, line=True, point=True)
        .encode(
            x=alt.X("day:T", title="Day (UTC)", axis=DAY_AXIS),
            y=alt.Y("success_pct:Q", title="Success rate (%)", scale=alt.Scale(domain=[0, 100])),
            tooltip=["day:T", "runs", alt.Tooltip("success_pct:Q", format=".1f")],
        )
        .properties(height=HEIGHT)
    )
    return chart


def records_chart(days: Sequence[DayStats]) -> alt.Chart:
    """Records loaded per day (bars)."""
    chart: alt.Chart = (
        alt.Chart(days_frame(days))
        .mark_bar(width={"band": 0.8})  # a day's band, not a hairline
        .encode(
            x=alt.X("day:T", title="Day (UTC)", axis=DAY_AXIS, timeUnit="utcyearmonthdate"),
            y=alt.Y("records:Q", title="Records"),
            tooltip=["day:T", "records", "runs"],
        )
        .properties(height=HEIGHT)
    )
    return chart


def throughput_chart(days: Sequence[DayStats]) -> alt.Chart:
    """Records per second of the finished runs, per day."""
    chart: alt.Chart = (
        alt.Chart(days_frame(days))
        .mark_line(point=True)
        .encode(
            x=alt.X("day:T", title="Day (UTC)", axis=DAY_AXIS),
            y=alt.Y("throughput:Q", title="Records / s"),
            tooltip=["day:T", alt.Tooltip("throughput:Q", format=",.1f")],
        )
        .properties(height=HEIGHT)
    )
    return chart
