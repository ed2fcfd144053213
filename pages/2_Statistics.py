"""Runwatch — Statistics: durations, success rate, records and throughput over a time range."""

import streamlit as st

from db.models import utcnow
from reports.stats import CUSTOM, POINT_LIMIT, RANGE_CHOICES, load_statistics
from ui import app, auth, charts, statistics

st.set_page_config(page_title="Statistics · Runwatch", page_icon="⏱", layout="wide")
auth.signed_in()
st.title("Statistics")
app.worker_banner()

with app.database_guard():
    engine = app.engine()
    jobs = app.job_names(engine)
    left, middle, right = st.columns([3, 2, 2])
    preset = left.segmented_control(
        "Time range", RANGE_CHOICES, default="7 d", key="statistics_range"
    )
    job = right.selectbox("Job", ["All jobs", *jobs], key="statistics_job")
    days = (
        middle.date_input("Days (UTC)", value=[], key="statistics_custom")
        if preset == CUSTOM
        else None
    )
    scope, problem = statistics.scope_of(preset, days, None if job == "All jobs" else job, utcnow())
    if scope is None:
        st.info(problem)
        st.stop()
    stats = load_statistics(engine, scope)
    if not stats.summary.runs:
        st.info(
            "No runs in this time range — pick a longer range, or start a run from the Home page."
        )
        st.stop()
    statistics.summary_cards(stats.summary)
    top_left, top_right = st.columns(2)
    top_left.markdown("**Run duration** (finished runs' p50 and p90 as lines)")
    top_left.altair_chart(
        charts.duration_chart(stats.points, stats.summary.durations), width="stretch"
    )
    if len(stats.points) >= POINT_LIMIT:
        top_left.caption(f"The newest {POINT_LIMIT:,} runs are drawn; the cards count every run.")
    top_right.markdown("**Success rate per day**")
    top_right.altair_chart(charts.success_chart(stats.days), width="stretch")
    low_left, low_right = st.columns(2)
    low_left.markdown("**Records loaded per day**")
    low_left.altair_chart(charts.records_chart(stats.days), width="stretch")
    low_right.markdown("**Throughput of finished runs (records/s)**")
    low_right.altair_chart(charts.throughput_chart(stats.days), width="stretch")
    statistics.highlights_table(stats.highlights)
