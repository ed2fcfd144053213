"""Runwatch — Logs: the live stream of run events, read by cursor, filtered and downloadable."""

from __future__ import annotations

from typing import Any

import streamlit as st

from db.models import LEVELS
from db.queries import LogLine
from db.settings import get_settings
from reports.logs import stream_log
from ui import badges, live, refresh
from ui.app import database_guard, engine, worker_banner

ALL = "All"

st.set_page_config(page_title="Runwatch — Logs", page_icon="📜", layout="wide")
st.title("Logs")
worker_banner()
paused = refresh.pause_toggle("logs")
url = get_settings().database_url


def choices(jobs: list[str]) -> tuple[str | None, int | None, str, str]:
    """The sidebar's job, run, least level and search text."""
    job = st.sidebar.selectbox("Job", [ALL, *jobs], key="logs_job")
    job_name = None if job == ALL else job
    runs = live.recent_run_ids(url, job_name)
    run = st.sidebar.selectbox(
        "Run", [ALL, *runs], key="logs_run", format_func=lambda r: r if r == ALL else f"#{r}"
    )
    level = st.sidebar.selectbox("Least level", LEVELS, index=1, key="logs_level")
    text = st.sidebar.text_input("Search messages", key="logs_text").strip()
    return job_name, None if run == ALL else int(run), level, text


def read_new_lines(scope: tuple[Any, ...], follow: bool) -> list[LogLine]:
    """The kept window of lines, newest first: only lines after the last seen id are read."""
    if st.session_state.get("logs_scope") != scope:
        st.session_state.update(logs_scope=scope, logs_cursor=0, logs_lines=[])
    lines: list[LogLine] = st.session_state["logs_lines"]
    if follow or not lines:
        job, run_id, level, text = scope
        new = live.log_lines(
            url,
            after_id=st.session_state["logs_cursor"],
            run_id=run_id,
            job=job,
            min_level=level,
            text=text,
        )
        if new:
            lines = (new + lines)[: live.LOG_WINDOW]
            st.session_state.update(logs_cursor=new[0].id, logs_lines=lines)
    return lines


def show(lines: list[LogLine], newest_first: bool) -> None:
    """The lines as a scrollable table coloured by level."""
    rows = lines if newest_first else lines[::-1]
    with st.container(height=600, key="logs_view"):
        st.html(badges.log_html(rows))


def download(run_id: int | None) -> None:
    """Download log: the chosen run's full log, streamed by reports.logs when clicked."""
    if run_id is None:
        st.caption("Choose a run to download its full log.")
        return
    st.download_button(
        "Download log",
        data=lambda: b"".join(stream_log(engine(), run_id=run_id)),
        file_name=f"runwatch-run-{run_id}.log",
        mime="text/plain",
        key="logs_download",
        on_click="ignore",
    )


with database_guard():
    jobs = live.overview(url)
    scope = choices([job.name for job in jobs])
    follow = st.sidebar.toggle("Follow new lines", value=True, key="logs_follow")
    order = st.sidebar.radio("Order", ["Newest first", "Newest last"], key="logs_order")
    lines = read_new_lines(scope, follow)
    download(scope[1])
if lines:
    st.caption(f"Showing the newest {len(lines)} matching lines (at most {live.LOG_WINDOW}).")
    show(lines, order == "Newest first")
else:
    st.info("No log lines yet — start a run on the Live page (Run now).")
active = any(job.active for job in jobs)
refresh.tick("logs", active=active, paused=paused or not follow)
