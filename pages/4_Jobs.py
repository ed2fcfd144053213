"""Runwatch — Jobs: every configured job, its defaults, schedule, next runs and last run; Pause / Resume."""

from __future__ import annotations

import streamlit as st

from db.settings import get_settings
from ui import alerts as alerts_ui, auth, jobs as jobs_ui, reads
from ui.app import database_guard, worker_banner

st.set_page_config(page_title="Runwatch — Jobs", page_icon="🗂", layout="wide")
auth.signed_in()
st.title("Jobs")
worker_banner()

with database_guard():
    jobs = reads.overview(get_settings().database_url)
if not jobs:
    st.info("No jobs are configured yet — `runwatch init-db` adds the built-in ones.")
else:
    # A static table wraps long cells, where a grid cut them off or scrolled sideways.
    st.table([jobs_ui.row(job) for job in jobs], hide_index=True)
    st.caption(
        "Next runs are in your time zone. Start a job from the Live page with Run now; "
        "a paused job keeps its schedule but starts nothing."
    )
    st.subheader("Pause or resume")
    with database_guard():
        jobs_ui.pause_controls(jobs)
    st.subheader("Parameters")
    jobs_ui.parameter_help(jobs)
st.subheader("Alert rules")
with database_guard():
    alerts_ui.rules_section([job.name for job in jobs])
