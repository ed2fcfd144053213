"""Runwatch — Live: every job's status, progress and ETA, with Run now and Cancel."""

from __future__ import annotations

import json

import streamlit as st

from db.models import TERMINAL_STATUSES, RunRow, RunStatus, utcnow
from db.queries import ActiveRunExists, JobLive, RunwatchError
from db.settings import get_settings
from reports.eta import estimate
from ui import badges, live, refresh
from ui.app import database_guard, worker_banner

st.set_page_config(page_title="Runwatch — Live", page_icon="⏱", layout="wide")
st.title("Runwatch — Live")
worker_banner()
paused = refresh.pause_toggle("home")


def already_active(job: str, run_id: int | None) -> str:
    """What a second Run now says."""
    return f"Job '{job}': a run is already active (#{run_id}). Wait for it to end or cancel it."


def close_dialog() -> None:
    """Forget the open dialog, so the next refresh does not reopen it."""
    st.session_state.pop("home_dialog", None)


@st.dialog("Run now", width="large", on_dismiss=close_dialog)
def confirm_run(job: JobLive) -> None:
    """The confirmation dialog: the job's parameters, editable, and Confirm."""
    st.write(f"Start a run of **{job.title or job.name}** (`{job.name}`) now?")
    text = st.text_area(
        "Parameters (JSON)",
        value=json.dumps(job.params, indent=2),
        key=f"home_params_{job.name}",
        height=200,
        help="The job's defaults; change any value for this run only.",
    )
    if not st.button("Confirm", key="home_confirm", type="primary"):
        return
    with database_guard():
        try:
            run_id = live.run_now(job.name, live.parse_params(text, job.name))
        except ValueError as error:
            st.error(str(error))
            return
        except ActiveRunExists as error:
            st.warning(already_active(job.name, error.run_id))
            return
    close_dialog()
    st.session_state["home_flash"] = f"Run #{run_id} of {job.name} is queued and starts shortly."
    st.rerun()


def job_state(job: JobLive) -> str:
    """The badge of a job: its active run's status, or how its last run ended, or idle."""
    latest = job.recent[0] if job.recent else None
    if latest is None or latest.status == RunStatus.FINISHED:
        return badges.IDLE
    return latest.status


def watch_for_toasts(jobs: list[JobLive]) -> None:
    """Toast once when a run this session saw active has finished, failed or been cancelled."""
    watched: dict[int, str] = st.session_state.setdefault("home_watched", {})
    by_id = {run.id: run for job in jobs for run in job.recent}
    for run_id in list(watched):
        run = by_id.get(run_id)
        if run is None or run.status in TERMINAL_STATUSES:
            del watched[run_id]
        if run is not None and run.status in TERMINAL_STATUSES:
            toast_end(run)
    for job in jobs:
        if job.active:
            watched[job.active.id] = job.name


def toast_end(run: RunRow) -> None:
    """The toast of a run that just ended."""
    icon = {"finished": ":material/check_circle:", "failed": ":material/error:"}.get(
        run.status, ":material/cancel:"
    )
    message = f"Run #{run.id} of {run.job} {badges.status_label(run.status).lower()}"
    st.toast(message + (f": {run.error_message}" if run.error_message else "."), icon=icon)


def progress(job: JobLive, run: RunRow) -> None:
    """Progress bar, elapsed, ETA range, step and rate of the active run."""
    done, total = run.offset, run.total_records
    elapsed = (utcnow() - run.started_at).total_seconds() if run.started_at else None
    if total:
        share = min(done / total, 1.0)
        st.progress(share, text=f"{done:,} / {total:,} records · {share:.0%}")
    else:
        st.progress(0.0, text=f"{done:,} records · total not known yet")
    rate = done / elapsed if elapsed and done else None
    eta = estimate(done=done, total=total, elapsed_s=elapsed, history=job.throughputs)
    cols = st.columns(4)
    cols[0].metric("Elapsed", badges.format_duration(elapsed) if elapsed else "waiting")
    cols[1].metric("ETA", eta_text(eta.low_s, eta.high_s), help="Typical to slow pace (p50–p90).")
    cols[2].metric("Step", run.current_step or "—")
    cols[3].metric("Records/s", f"{rate:,.0f}" if rate else "—")


def eta_text(low: float | None, high: float | None) -> str:
    """The ETA range as text: `1m 05s – 1m 40s`, one value, or unknown."""
    if low is None or high is None:
        return "unknown"
    first, last = badges.format_duration(low), badges.format_duration(high)
    return first if first == last else f"{first} – {last}"


def actions(job: JobLive) -> None:
    """Run now and Cancel run."""
    left, right = st.columns(2)
    if left.button("Run now", key=f"home_run_{job.name}", type="primary", disabled=not job.enabled):
        if job.active:
            st.warning(already_active(job.name, job.active.id))
        else:
            st.session_state["home_dialog"] = job.name
    if st.session_state.get("home_dialog") == job.name:
        confirm_run(job)  # called on every rerun while open, so refreshes keep it and Confirm works
    active = job.active
    if active is None:
        return
    if job.cancel_requested:
        right.caption("Cancelling after the current batch…")
    elif right.button("Cancel run", key=f"home_cancel_{job.name}"):
        try:
            st.session_state["home_flash"] = live.cancel(active.id)
        except RunwatchError as error:
            st.warning(str(error))
            return
        st.rerun()


def last_runs(job: JobLive) -> None:
    """Last successful run, the last run's stats and the five latest runs."""
    ended = next((run for run in job.recent if run.status in TERMINAL_STATUSES), None)
    success = job.last_success
    st.markdown(
        "**Last successful run:** "
        + (f"#{success.id}, {badges.relative_time(success.ended_at)}" if success else "none yet")
    )
    if ended is not None:
        counters = " · ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in ended.counters.items())
        st.markdown(
            f"**Last run** #{ended.id} {badges.badge_markdown(ended.status)} "
            f"{badges.relative_time(ended.ended_at)} · {ended.records_loaded:,} loaded · "
            f"{ended.records_rejected:,} rejected · {badges.format_duration(ended.duration)}"
            + (f" · {counters}" if counters else "")
        )
        if ended.error_message:
            st.caption(f"{ended.error_type}: {ended.error_message}")
    st.dataframe(recent_rows(job.recent), hide_index=True, width="stretch")


def recent_rows(runs: list[RunRow]) -> list[dict[str, object]]:
    """The five latest runs as table rows."""
    return [
        {
            "Run": f"#{run.id}",
            "Status": badges.status_label(run.status),
            "Trigger": run.trigger,
            "Created": badges.local_time(run.created_at),
            "Duration": badges.format_duration(run.duration),
            "Records": run.offset,
            "Error": run.error_message or "",
        }
        for run in runs
    ]


def job_panel(job: JobLive) -> None:
    """Everything about one job."""
    with st.container(border=True):
        title, badge = st.columns([4, 1])
        title.subheader(job.title or job.name)
        with badge:
            badges.status_badge(job_state(job))
        actions(job)
        if job.active:
            progress(job, job.active)
        if not job.recent:
            st.info("No runs yet — click Run now.")
            return
        last_runs(job)


with database_guard():
    jobs = live.overview(get_settings().database_url)
if flash := st.session_state.pop("home_flash", None):
    st.success(flash)
watch_for_toasts(jobs)
names = [job.name for job in jobs]
chosen = st.sidebar.selectbox("Job", ["All jobs", *names], key="home_job")
if not jobs:
    st.info("No jobs are configured yet.")
with database_guard():
    for job in jobs:
        if chosen in ("All jobs", job.name):
            job_panel(job)
refresh.tick("home", active=any(job.active for job in jobs), paused=paused)
