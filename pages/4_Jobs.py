"""Runwatch — Jobs: every configured job, its defaults, schedule and last run."""

from __future__ import annotations

import json

import streamlit as st

from db.queries import JobLive
from db.settings import get_settings
from etl.jobs import JOB_KINDS
from ui import badges, parameters, reads
from ui.app import database_guard, worker_banner

st.set_page_config(page_title="Runwatch — Jobs", page_icon="🗂", layout="wide")
st.title("Jobs")
worker_banner()


def row(job: JobLive) -> dict[str, object]:
    """One job as a table row: few, short columns, so the table fits a narrow window."""
    last = job.recent[0] if job.recent else None
    params = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(job.params.items()))
    return {
        "Job": f"{job.name} ({job.title})" if job.title and job.title != job.name else job.name,
        "Kind": job.kind,
        "Default parameters": params or "—",
        "Schedule": job.schedule or "manual only",
        "Enabled": "yes" if job.enabled else "no",
        "Last run": (
            f"#{last.id} · {badges.status_label(last.status)} · "
            f"{badges.local_time(last.created_at, '%Y-%m-%d %H:%M')}"
            if last
            else "never"
        ),
    }


with database_guard():
    jobs = reads.overview(get_settings().database_url)
if not jobs:
    st.info("No jobs are configured yet — `runwatch init-db` adds the built-in ones.")
else:
    # A static table wraps long cells, where a grid cut them off or scrolled sideways.
    st.table([row(job) for job in jobs], hide_index=True)
    st.caption("Start a job from the Live page with Run now.")
    st.subheader("Parameters")
    for kind in sorted({job.kind for job in jobs}):
        with st.expander(f"{kind} — {JOB_KINDS[kind].description if kind in JOB_KINDS else ''}"):
            st.markdown(parameters.parameters_markdown(kind))
