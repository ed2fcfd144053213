"""The Health page's pieces: the status tiles, the workers table and the alert channels."""

from __future__ import annotations

import streamlit as st

from db.models import WorkerKind, WorkerState
from db.settings import get_settings
from reports.durations import format_duration
from reports.health import HealthReport, WorkerHealth
from ui import reads
from ui.app import database_down
from ui.badges import ago, local_time, metrics_row

STATE_BADGES = {
    WorkerState.LIVE: ":green-badge[:material/favorite: Live]",
    WorkerState.LOST: ":red-badge[:material/heart_broken: Lost]",
    WorkerState.STOPPED: ":gray-badge[:material/stop_circle: Stopped]",
}
KINDS = {
    WorkerKind.PROCESS: "runwatch worker",
    WorkerKind.APP: "app thread",
    WorkerKind.API: "serve-api thread",
}


def read() -> HealthReport:
    """The health snapshot; the database-down banner, and a stop, when the database is silent."""
    report = reads.health(get_settings().database_url)
    if not report.database.reachable:
        database_down(report.database.error or "no answer")
    return report


def busy(report: HealthReport) -> bool:
    """Whether runs wait or a live worker executes one: refresh at the fast pace then."""
    running = any(w.current_run_id and w.state == WorkerState.LIVE for w in report.workers)
    return running or bool(report.queue and report.queue.depth)


def tiles(report: HealthReport) -> None:
    """Database, workers, queue and scheduler at a glance."""
    assert report.database.round_trip_ms is not None and report.queue is not None
    queue = report.queue
    oldest = f" · oldest {format_duration(queue.oldest_age_s)}" if queue.depth else ""
    live, lost = report.count(WorkerState.LIVE), report.count(WorkerState.LOST)
    metrics_row(
        [
            ("Database", f"OK · {report.database.round_trip_ms:.1f} ms", DATABASE_HELP),
            ("Workers", f"{live} live · {lost} lost", lost_help(report)),
            ("Queue", f"{queue.depth:,} queued{oldest}", "Pending runs waiting for a worker."),
            ("Scheduler last tick", ago(report.scheduler_last_tick, report.checked_at), TICK_HELP),
        ]
    )


DATABASE_HELP = "The round trip of one trivial statement from this app to the database."
TICK_HELP = (
    "When any worker's scheduler last looked for due scheduled runs. A worker busy with a run "
    "does not look until it ends."
)


def lost_help(report: HealthReport) -> str:
    """The lost-worker rule, with its setting."""
    return (
        f"A worker with no heartbeat for {report.lost_after_s:g} s is lost "
        "(RUNWATCH_WORKER_LOST_AFTER_S): killed, hung or cut off from the database."
    )


def row(worker: WorkerHealth, report: HealthReport) -> dict[str, object]:
    """One worker as a table row."""
    held = f"#{worker.current_run_id} ({worker.current_job or '?'})"
    return {
        "State": STATE_BADGES[worker.state],
        "Host": worker.host,
        "PID": worker.pid,
        "Kind": KINDS.get(WorkerKind(worker.kind), worker.kind),
        "Started": local_time(worker.started_at),
        "Last heartbeat": ago(worker.heartbeat_at, report.checked_at),
        "Current run": held if worker.current_run_id else "—",
    }


def workers_table(report: HealthReport) -> None:
    """Every registered worker, live ones first, or how to start one."""
    st.subheader("Workers")
    if not report.workers:
        st.info(
            "No worker has registered yet. The app starts its own with the first page view "
            "(unless RUNWATCH_WORKER_ENABLED=false); `runwatch worker` starts another."
        )
        return
    st.table([row(worker, report) for worker in report.workers], hide_index=True)
    st.caption(
        f"{lost_help(report)} A lost worker's run is failed as interrupted by the next orphan "
        "sweep and can be resumed; stopped and lost workers are forgotten after a day."
    )


def alerts(report: HealthReport) -> None:
    """The alert channels' states."""
    st.subheader("Alert channels")
    if not report.alert_channels:
        st.caption(report.alerts_summary)
        return
    rows = [
        {"Channel": c.name, "OK": "yes" if c.ok else "no", "Detail": c.detail or "—"}
        for c in report.alert_channels
    ]
    st.table(rows, hide_index=True)
