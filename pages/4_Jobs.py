"""Runwatch — Jobs: every configured job, its defaults, schedule and last run."""

from __future__ import annotations

import json

import streamlit as st

from db.queries import JobLive
from db.settings import get_settings
from ui import badges, live
from ui.app import database_guard, worker_banner

st.set_page_config(page_title="Runwatch — Jobs", page_icon="🗂", layout="wide")
st.title("Jobs")
worker_banner()


def row(job: JobLive) -> dict[str, object]:
    """One job as a table row."""
    last = job.recent[0] if job.recent else None
    return {
        "Job": job.name,
        "Title": job.title,
        "Kind": job.kind,
        "Default parameters": json.dumps(job.params, sort_keys=True),
        "Schedule": job.schedule or "manual only",
        "Enabled": job.enabled,
        "Last run": f"#{last.id} · {badges.local_time(last.created_at)}" if last else "never",
        "Last status": badges.status_label(last.status) if last else "—",
    }


with database_guard():
    jobs = live.overview(get_settings().database_url)
if not jobs:
    st.info("No jobs are configured yet — `runwatch init-db` adds the built-in ones.")
else:
    st.dataframe([row(job) for job in jobs], hide_index=True, width="stretch", key="jobs_table")
    st.caption("Start a job from the Live page with Run now.")
