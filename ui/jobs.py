"""The Jobs page's pieces: a job as a table row (schedule in words, next runs) and Pause / Resume."""

from __future__ import annotations

import json

import streamlit as st

from db.models import utcnow
from db.queries import JobLive
from etl import commands
from etl.jobs import JOB_KINDS
from etl.schedules import Schedule, ScheduleError
from reports.schedule_words import describe
from ui import actions, badges, notices, parameters
from ui.app import engine
from ui.reads import overview

NOTICE = "jobs_notice"


def row(job: JobLive) -> dict[str, object]:
    """One job as a table row: few, short columns, so the table fits a narrow window."""
    last = job.recent[0] if job.recent else None
    params = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(job.params.items()))
    return {
        "Job": f"{job.name} ({job.title})" if job.title and job.title != job.name else job.name,
        "Kind": job.kind,
        "Default parameters": params or "—",
        "Schedule": job.schedule or "manual only",
        "When": when(job),
        "Next runs": next_runs(job),
        "Enabled": "yes" if job.enabled else "no",
        "Last run": (
            f"#{last.id} · {badges.status_label(last.status)} · "
            f"{badges.local_time(last.created_at, '%Y-%m-%d %H:%M')}"
            if last
            else "never"
        ),
    }


def parameter_help(jobs: list[JobLive]) -> None:
    """Each kind's parameters (type, default, required), one expander per kind in use."""
    for kind in sorted({job.kind for job in jobs}):
        with st.expander(f"{kind} — {JOB_KINDS[kind].description if kind in JOB_KINDS else ''}"):
            st.markdown(parameters.parameters_markdown(kind))


def when(job: JobLive) -> str:
    """The schedule in words with its time zone, or `—` for a job run by hand only."""
    if not job.schedule:
        return "—"
    return f"{describe(job.schedule)} ({job.timezone})"


def next_runs(job: JobLive) -> str:
    """The job's next three scheduled runs in the viewer's time zone (or why there are none)."""
    if not job.schedule:
        return "—"
    if job.paused or not job.enabled:
        return "paused" if job.paused else "disabled"
    try:
        ticks = Schedule.parse(job.schedule, job.timezone).upcoming(utcnow(), 3)
    except ScheduleError as error:
        return str(error)
    return ", ".join(badges.local_time(tick, "%a %Y-%m-%d %H:%M") for tick in ticks)


def pause_controls(jobs: list[JobLive]) -> None:
    """A Pause or Resume button per job; the command layer decides (and audits)."""
    notices.show(NOTICE)
    for job in jobs:
        name, state, button = st.columns([3, 2, 1], vertical_alignment="center")
        name.markdown(f"**{job.name}** · {job.title}")
        state.caption("Paused: no scheduled run, Run now refused" if job.paused else when(job))
        verb = "Resume" if job.paused else "Pause"
        may = actions.gate("unpause" if job.paused else "pause")
        button.button(
            verb,
            key=f"jobs_{verb.lower()}_{job.name}",
            on_click=actions.notify,
            args=(NOTICE, lambda job=job.name, on=not job.paused: set_paused(job, on)),
            disabled=may.disabled,
            help=may.help,
        )


def set_paused(job: str, paused: bool) -> str:
    """Pause or resume `job` and say what happened."""
    if paused:
        commands.pause(engine(), actions.caller(), job)
        overview.clear()
        return f"Job {job} paused: it starts no run until it is resumed."
    resumed = commands.unpause(engine(), actions.caller(), job)
    overview.clear()
    upcoming = f" Next run {badges.local_time(resumed.next_run_at)}." if resumed.next_run_at else ""
    return f"Job {job} resumed.{upcoming}"
