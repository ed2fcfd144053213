"""Runwatch — Health: the database, every worker (live, lost or stopped), the queue, the scheduler."""

from __future__ import annotations

import streamlit as st

from ui import auth, health, refresh
from ui.app import database_guard, worker_banner

st.set_page_config(page_title="Runwatch — Health", page_icon="🩺", layout="wide")
auth.signed_in()
st.title("Health")
worker_banner()
paused = refresh.pause_toggle("health")

with database_guard():
    report = health.read()
health.tiles(report)
health.workers_table(report)
health.alerts(report)
refresh.tick("health", active=health.busy(report), paused=paused)
