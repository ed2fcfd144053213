"""Runwatch — Live: every job's status, progress and ETA, with Run now and Cancel."""

from __future__ import annotations

import streamlit as st

from db.settings import get_settings
from ui import alerts, auth, live, notices, reads, refresh
from ui.app import database_guard, worker_banner

st.set_page_config(page_title="Runwatch — Live", page_icon="⏱", layout="wide")
auth.signed_in()
st.title("Runwatch — Live")
worker_banner()
paused = refresh.pause_toggle("home")

with database_guard():
    jobs = reads.overview(get_settings().database_url)
names = [job.name for job in jobs]
live.forget_removed_dialog(names)
notices.show(live.PAGE_NOTE)
live.watch_for_toasts(jobs)
with database_guard():
    feed = reads.alert_feed(get_settings().database_url)
alerts.sidebar_count(feed)
alerts.announce(feed, sound=alerts.sound_toggle())
alerts.notifications(feed)
chosen = st.sidebar.selectbox("Job", ["All jobs", *names], key="home_job")
if not jobs:
    st.info("No jobs are configured yet.")
with database_guard():
    for job in jobs:
        if chosen in ("All jobs", job.name):
            live.job_panel(job)
refresh.tick("home", active=any(job.active for job in jobs), paused=paused)
