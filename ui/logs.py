"""The Logs page's pieces: its filters, the cursor-read window of lines, the view and Download log."""

from __future__ import annotations

from typing import Any

import streamlit as st

from db.models import LEVELS
from db.queries import EventRow
from db.settings import get_settings
from reports.logs import stream_log
from ui import badges, reads
from ui.app import engine

ALL = "All"


def choices(jobs: list[str]) -> tuple[str | None, int | None, str, str]:
    """The sidebar's job, run, least level and search text."""
    job = st.sidebar.selectbox("Job", [ALL, *jobs], key="logs_job")
    job_name = None if job == ALL else job
    runs = reads.recent_run_ids(get_settings().database_url, job_name)
    run = st.sidebar.selectbox(
        "Run", [ALL, *runs], key="logs_run", format_func=lambda r: r if r == ALL else f"#{r}"
    )
    level = st.sidebar.selectbox("Least level", LEVELS, index=1, key="logs_level")
    text = st.sidebar.text_input("Search messages", key="logs_text").strip()
    return job_name, run if isinstance(run, int) else None, level, text


def read_new_lines(scope: tuple[Any, ...], follow: bool) -> list[EventRow]:
    """The kept window of lines, newest first: only lines after the last seen id are read."""
    if st.session_state.get("logs_scope") != scope:
        st.session_state.update(logs_scope=scope, logs_cursor=0, logs_lines=[])
    lines: list[EventRow] = st.session_state["logs_lines"]
    if follow or not lines:
        job, run_id, level, text = scope
        new = reads.log_lines(
            get_settings().database_url,
            after_id=st.session_state["logs_cursor"],
            run_id=run_id,
            job=job,
            min_level=level,
            text=text,
        )
        if new:
            lines = (new + lines)[: reads.LOG_WINDOW]
            st.session_state.update(logs_cursor=new[0].id, logs_lines=lines)
    return lines


def show(lines: list[EventRow], newest_first: bool) -> None:
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


def view(lines: list[EventRow], scope: tuple[Any, ...], newest_first: bool) -> None:
    """The lines with their count, or why there are none."""
    if lines:
        count = f"{len(lines):,} matching line" + ("" if len(lines) == 1 else "s")
        st.caption(f"Showing the newest {count} (at most {reads.LOG_WINDOW}).")
        show(lines, newest_first)
    elif scope[3]:
        st.info(f"No log line matches “{scope[3]}” — change the search or the filters.")
    elif scope[0] or scope[1] or scope[2] != LEVELS[1]:
        st.info("No log lines match these filters — choose another job, run or level.")
    else:
        st.info("No log lines yet — start a run on the Live page (Run now).")
