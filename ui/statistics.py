"""Statistics' controls, summary cards and highlight table (no SQL here)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import streamlit as st

from db.queries import RunPoint, RunSummary, StatsScope
from reports.durations import format_duration
from reports.stats import CUSTOM, custom_scope, preset_scope
from ui.badges import local_time, metrics_row, status_label

DEFAULT_RANGE = "7 d"


def scope_of(
    preset: str | None, days: Any, job: str | None, now: datetime
) -> tuple[StatsScope | None, str]:
    """The scope the controls describe, or None and what the user still has to do."""
    if preset != CUSTOM:
        return preset_scope(preset or DEFAULT_RANGE, now=now, job=job), ""
    picked = [d for d in (days or ()) if isinstance(d, date)]
    if len(picked) < 2:
        return None, "Pick the first and the last day of the range."
    try:
        return custom_scope(picked[0], picked[1], job=job), ""
    except ValueError as error:
        return None, f"{str(error).capitalize()}: pick the first day, then the last."


def _percent(rate: float | None) -> str:
    return "—" if rate is None else f"{100 * rate:.1f} %"


def summary_cards(summary: RunSummary) -> None:
    """Runs, success rate, median and p90 duration, records and mean time to recovery."""
    metrics_row(
        [
            (
                "Runs",
                f"{summary.runs:,}",
                f"{summary.failed:,} failed, {summary.cancelled:,} cancelled",
            ),
            (
                "Success rate",
                _percent(summary.success_rate),
                "Finished among finished and failed runs",
            ),
            ("Median duration", format_duration(summary.durations.p50_s), "p50 of finished runs"),
            (
                "p90 duration",
                format_duration(summary.durations.p90_s),
                "90th percentile of finished runs",
            ),
            ("Records", f"{summary.records:,}", "Records loaded by every run in the range"),
            (
                "Mean time to recovery",
                format_duration(summary.mttr_s),
                "Mean time from the first failed run of a streak to the job's next finished run",
            ),
        ]
    )


def highlights_table(highlights: Sequence[RunPoint]) -> None:
    """Failed runs and runs slower than their job's p90, newest first."""
    st.subheader("Failed and slow runs")
    if not highlights:
        st.success("No failed runs and none slower than its job's p90 in this range.")
        return
    rows = [
        {
            "Run": p.run_id,
            "Job": p.job,
            "Status": status_label(p.status),
            "Started": local_time(p.started_at),
            "Duration": format_duration(p.duration_s),
            "Records": p.records,
            "Why": p.reason,
        }
        for p in highlights
    ]
    st.table(rows, hide_index=True)  # wraps the reasons a grid cut off
    st.caption("Open a run on the History page (filter or type its number) for its details.")
