"""Every read and write of Runwatch's tables lives in this package, one module per concern.

Functions take the session keyword-only. Import them from here (`from db.queries import list_runs`).
"""

from __future__ import annotations

from db.queries import driver
from db.queries.audit import list_audit, record_audit
from db.queries.base import EVENT_CHANNEL
from db.queries.bulk import bulk_insert, reserve_ids
from db.queries.errors import ActiveRunExists, InvalidState, NotFound, RunLost, RunwatchError
from db.queries.events import (
    LogLine,
    append_event,
    last_event_id,
    list_events,
    list_log_lines,
    run_jobs,
    run_state_event,
)
from db.queries.history import (
    SORT_KEYS,
    RunFilters,
    RunPage,
    RunSort,
    count_runs,
    filter_clause,
    get_run,
    iter_run_rows,
    iter_runs,
    list_run_rows,
    list_runs,
    runs_query,
)
from db.queries.jobs import BUILTIN_JOBS, ensure_builtin_jobs, get_job, list_jobs, save_job
from db.queries.live import HISTORY_RUNS, JobLive, live_overview, recent_run_ids
from db.queries.remote import (
    ensure_job,
    feed_checkpoint,
    mirrored_run,
    save_feed_checkpoint,
    save_mirror,
    touch_running,
)
from db.queries.runs import (
    active_run_id,
    checkpoint,
    claim_next_run,
    create_run,
    end_run,
    heartbeat,
    mark_orphans,
    request_cancel,
    resume_run,
)
from db.queries.sessions import read_session, write_session
from db.queries.stats import (
    NO_DURATIONS,
    Percentiles,
    RunPoint,
    StatsScope,
    duration_percentiles,
    duration_points,
    highlighted_runs,
    mean_time_to_recovery,
)
from db.queries.stats_daily import DayStats, RunSummary, daily_stats, run_summary, summarise
from db.queries.tables import (
    TableLayout,
    copy_rows,
    create_table,
    list_rejects,
    lock_table_name,
    table_layout,
    upsert,
    upsert_rows,
)

__all__ = [
    "ActiveRunExists",
    "BUILTIN_JOBS",
    "DayStats",
    "EVENT_CHANNEL",
    "driver",
    "HISTORY_RUNS",
    "InvalidState",
    "JobLive",
    "LogLine",
    "NO_DURATIONS",
    "NotFound",
    "Percentiles",
    "RunFilters",
    "RunLost",
    "RunPage",
    "RunPoint",
    "RunSort",
    "RunSummary",
    "RunwatchError",
    "SORT_KEYS",
    "StatsScope",
    "TableLayout",
    "active_run_id",
    "append_event",
    "bulk_insert",
    "checkpoint",
    "claim_next_run",
    "count_runs",
    "create_run",
    "copy_rows",
    "create_table",
    "daily_stats",
    "duration_percentiles",
    "duration_points",
    "end_run",
    "ensure_builtin_jobs",
    "ensure_job",
    "feed_checkpoint",
    "filter_clause",
    "get_job",
    "get_run",
    "heartbeat",
    "highlighted_runs",
    "iter_run_rows",
    "iter_runs",
    "last_event_id",
    "list_audit",
    "list_events",
    "list_jobs",
    "list_log_lines",
    "list_rejects",
    "lock_table_name",
    "list_run_rows",
    "list_runs",
    "live_overview",
    "mark_orphans",
    "mean_time_to_recovery",
    "mirrored_run",
    "read_session",
    "recent_run_ids",
    "record_audit",
    "request_cancel",
    "reserve_ids",
    "resume_run",
    "run_jobs",
    "run_state_event",
    "run_summary",
    "runs_query",
    "save_feed_checkpoint",
    "save_job",
    "save_mirror",
    "summarise",
    "table_layout",
    "touch_running",
    "upsert",
    "upsert_rows",
    "write_session",
]
