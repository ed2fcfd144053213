"""Runwatch — Logs: the live stream of run events, read by cursor, filtered and downloadable."""

from __future__ import annotations

import streamlit as st

from db.settings import get_settings
from ui import auth, logs, reads, refresh
from ui.app import database_guard, worker_banner

st.set_page_config(page_title="Runwatch — Logs", page_icon="📜", layout="wide")
auth.signed_in()
st.title("Logs")
worker_banner()
paused = refresh.pause_toggle("logs")

with database_guard():
    jobs = reads.overview(get_settings().database_url)
    scope = logs.choices([job.name for job in jobs])
    follow = st.sidebar.toggle("Follow new lines", value=True, key="logs_follow")
    order = st.sidebar.radio("Order", ["Newest first", "Newest last"], key="logs_order")
    lines = logs.read_new_lines(scope, follow)
    logs.download(scope[1])
logs.view(lines, scope, order == "Newest first")
active = any(job.active for job in jobs)
refresh.tick("logs", active=active, paused=paused or not follow)
