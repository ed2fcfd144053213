"""Runwatch — Live: every job's status, progress and ETA, with Run now and Cancel."""

from __future__ import annotations

import streamlit as st

from db.settings import get_settings
from ui import alerts, auth, live, reads, refresh
from ui.app import database_guard

st.set_page_config(page_title="Runwatch — Live", page_icon="⏱", layout="wide")
auth.signed_in()
st.title("Runwatch — Live")
paused = refresh.pause_toggle("home")

with database_guard():
    jobs = reads.overview(get_settings().database_url)
    feed = reads.alert_feed(get_settings().database_url)
alerts.sidebar_count(feed)
alerts.announce(feed, sound=alerts.sound_toggle())
chosen = st.sidebar.selectbox("Job", ["All jobs", *(job.name for job in jobs)], key="home_job")
alerts.notifications(feed)
live.board(live.drawn(jobs, feed), chosen, paused=paused)  # each tick reruns only the board
