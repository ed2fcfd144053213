"""The Live page (Home.py): each job's panel with status, progress, ETA, Run now and Cancel."""

from __future__ import annotations

import json

import pyarrow as pa
import streamlit as st

from db.models import TERMINAL_STATUSES, RunRow, RunStatus, utcnow
from db.queries import ActiveRunExists, BadParams, JobLive, RunwatchError
from db.settings import get_settings
from reports.durations import format_duration
from reports.eta import Eta, Pace, run_eta
from ui import actions, alerts, auth, badges, notices, parameters, reads, refresh
from ui.app import database_guard, worker_banner
from ui.reads import AlertFeed


def already_active(job: str, run_id: int | None) -> str:
    """What a second Run now says."""
    return f"Job '{job}': a run is already active (#{run_id}). Wait for it to end or cancel it."


def close_dialog() -> None:
    """Forget the open dialog and its message, so the next refresh does not reopen them."""
    st.session_state.pop("home_dialog", None)
    notices.clear(DIALOG_NOTE)


DIALOG_NOTE = "home_dialog_note"  # the dialog's error: kept until the next Confirm or closing it
PAGE_NOTE = "home_note"  # the page's last outcome: kept until dismissed or the next action


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
    with st.expander("Parameters", expanded=parameters.has_required(job.kind)):
        st.markdown(parameters.parameters_markdown(job.kind))
    if st.button("Confirm", key="home_confirm", type="primary"):
        confirm(job, text)
    notices.show(DIALOG_NOTE)


def confirm(job: JobLive, text: str) -> None:
    """Enqueue the run, or keep the reason it was refused in the dialog."""
    notices.clear(DIALOG_NOTE)
    with database_guard():
        try:
            run_id = actions.run_now(job.name, actions.parse_params(text))
        except (ValueError, BadParams) as error:
            notices.say(DIALOG_NOTE, "error", str(error))
            return
        except ActiveRunExists as error:
            notices.say(DIALOG_NOTE, "warning", already_active(job.name, error.run_id))
            return
        except RunwatchError as error:  # the job was disabled or removed since the page was drawn
            notices.say(DIALOG_NOTE, "warning", str(error))
            return
    close_dialog()
    notices.say(PAGE_NOTE, "success", f"Run #{run_id} of {job.name} is queued and starts shortly.")
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
    eta = run_eta(
        total=total,
        offset=done,
        pace=Pace.from_dict(job.pace),
        started_at=run.started_at,
        now=utcnow(),
        history=job.throughputs,
    )
    likely, spread = eta_text(eta)
    badges.metrics_row(
        [
            ("Elapsed", format_duration(elapsed) if elapsed else "waiting", None),
            ("ETA", likely, ETA_HELP),
            ("Step", run.current_step or "—", None),
            ("Records/s", f"{rate:,.0f}" if rate else "—", None),
        ]
    )
    if spread:
        st.caption(f"ETA range (9 runs in 10 end within it): {spread}")


ETA_HELP = (
    "Likely time left: the run's own pace so far, weighed against its job's recent runs by how "
    "many batches it has done and how steady they were. Below it, the range 9 runs in 10 end in."
)


def eta_text(eta: Eta) -> tuple[str, str | None]:
    """The ETA as text: the likely time left, and its range (`58s – 1m 12s`) when it differs."""
    if eta.seconds is None:
        return "unknown", None
    likely, early, late = (format_duration(s) for s in eta.seconds)
    return likely, None if early == late else f"{early} – {late}"


def job_actions(job: JobLive) -> None:
    """Run now and Cancel run."""
    left, right = st.columns(2)
    may_run = actions.gate("trigger")
    if left.button(
        "Run now",
        key=f"home_run_{job.name}",
        type="primary",
        disabled=may_run.disabled or not job.enabled,
        help=may_run.help,
    ):
        notices.clear(PAGE_NOTE)
        if job.active:
            notices.say(PAGE_NOTE, "warning", already_active(job.name, job.active.id))
            st.rerun()
        else:
            st.session_state["home_dialog"] = job.name
    if job.paused:
        left.caption("Paused: no scheduled run, Run now refused. Resume it on the Jobs page.")
    if st.session_state.get("home_dialog") == job.name:
        confirm_run(job)  # called on every rerun while open, so refreshes keep it and Confirm works
    active = job.active
    if active is None:
        return
    if job.cancel_requested:
        right.caption("Cancelling after the current batch…")
    else:
        may_cancel = actions.gate("cancel")
        right.button(
            "Cancel run",
            key=f"home_cancel_{job.name}",
            on_click=actions.notify,
            args=(PAGE_NOTE, lambda: actions.cancel(active.id)),
            disabled=may_cancel.disabled,
            help=may_cancel.help,
        )


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
            f"{ended.records_rejected:,} rejected · {format_duration(ended.duration)}"
            + (f" · {counters}" if counters else "")
        )
        if ended.error_message:
            st.caption(f"{ended.error_type}: {ended.error_message}")
    st.dataframe(  # an Arrow table goes out as it is; rows would pass through pandas each tick
        pa.Table.from_pylist(recent_rows(job.recent)),
        hide_index=True,
        width="stretch",
        column_config=RECENT_COLUMNS,
    )


# Fixed widths, so the recent-runs tables of every card line up column for column.
RECENT_COLUMNS = {
    "Run": st.column_config.TextColumn(width=65),
    "Status": st.column_config.TextColumn(width=85),
    "Trigger": st.column_config.TextColumn(width=75),
    "Created": st.column_config.TextColumn(width=105),
    "Duration": st.column_config.TextColumn(width=75),
    "Records": st.column_config.TextColumn(width=85, alignment="right"),
    "Error": st.column_config.TextColumn(width="large"),
}


def recent_rows(runs: list[RunRow]) -> list[dict[str, object]]:
    """The five latest runs as table rows."""
    return [
        {
            "Run": f"#{run.id}",
            "Status": badges.status_label(run.status),
            "Trigger": run.trigger,
            "Created": badges.local_time(run.created_at, "%m-%d %H:%M"),  # fits a narrow card
            "Duration": format_duration(run.duration),
            "Records": f"{run.offset:,}",
            "Error": run.error_message or "",
        }
        for run in runs
    ]


def job_panel(job: JobLive) -> None:
    """Everything about one job."""
    with st.container(border=True):
        title, badge = st.columns([4, 1], vertical_alignment="center")
        title.subheader(job.title or job.name)
        with badge.container(horizontal_alignment="right"):  # at the card's right edge
            badges.status_badge(job_state(job))
        job_actions(job)
        if job.active:
            progress(job, job.active)
        if not job.recent:
            st.info("No runs yet — click Run now.")
            return
        last_runs(job)


def forget_removed_dialog(names: list[str]) -> None:
    """Close a Run now dialog whose job was removed meanwhile, and say that nothing started."""
    if (gone := st.session_state.get("home_dialog")) and gone not in names:
        close_dialog()
        notices.say(PAGE_NOTE, "warning", f"Job '{gone}' no longer exists; nothing was started.")


def drawn(jobs: list[JobLive], feed: AlertFeed) -> tuple[object, ...]:
    """What a full rerun draws outside the board: the sidebar's job choice and the alerts."""
    return tuple(job.name for job in jobs), alerts.drawn(feed)


@st.fragment
def board(shown: tuple[object, ...], chosen: str, *, paused: bool) -> None:
    """The page's live part: the job panels and the refresh tick. The tick's autorefresh is in
    here, so a tick reruns only this part; the title, sidebar and notifications go out again
    only when what they show changed (`shown`, from the last full rerun), by rerunning the page."""
    auth.still_signed_in()
    worker_banner()
    url = get_settings().database_url
    with database_guard():
        jobs = reads.overview(url)
        feed = reads.alert_feed(url)
    if drawn(jobs, feed) != shown:
        st.rerun(scope="app")
    forget_removed_dialog([job.name for job in jobs])
    notices.show(PAGE_NOTE)
    watch_for_toasts(jobs)
    if not jobs:
        st.info("No jobs are configured yet.")
    with database_guard():
        for job in jobs:
            if chosen in ("All jobs", job.name):
                job_panel(job)
    refresh.tick("home", active=any(job.active for job in jobs), paused=paused)
