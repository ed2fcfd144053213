"""The store: every read and write of runs, events, jobs, audit events and statistics, one module
per concern. The tables that jobs load into are the jobs' own (etl/jobs/tables.py).

Functions take the session keyword-only. Import them from here (`from db.queries import list_runs`).
"""

from __future__ import annotations

from db.queries.audit import (
    AuditFilters,
    Breach,
    ChainReport,
    ExportRecord,
    audit_actors,
    count_audit,
    find_export,
    list_audit,
    record_audit,
    verify_chain,
)
from db.queries.base import EVENT_CHANNEL, upsert
from db.queries.errors import (
    ActiveRunExists,
    BadParams,
    InvalidState,
    JobDisabled,
    NotFound,
    RunwatchError,
)
from db.queries.events import (
    EventRow,
    append_event,
    last_event_id,
    list_events,
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
    iter_runs,
    list_runs,
    order_clause,
)
from db.queries.jobs import BUILTIN_JOBS, ensure_builtin_jobs, get_job, list_jobs, save_job
from db.queries.live import HISTORY_RUNS, JobLive, live_overview, recent_run_ids
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

__all__ = [
    "ActiveRunExists",
    "AuditFilters",
    "Breach",
    "ChainReport",
    "ExportRecord",
    "audit_actors",
    "count_audit",
    "find_export",
    "verify_chain",
    "BadParams",
    "BUILTIN_JOBS",
    "DayStats",
    "EVENT_CHANNEL",
    "HISTORY_RUNS",
    "InvalidState",
    "JobDisabled",
    "JobLive",
    "EventRow",
    "NO_DURATIONS",
    "NotFound",
    "Percentiles",
    "RunFilters",
    "RunPage",
    "RunPoint",
    "RunSort",
    "RunSummary",
    "RunwatchError",
    "SORT_KEYS",
    "StatsScope",
    "active_run_id",
    "append_event",
    "checkpoint",
    "claim_next_run",
    "count_runs",
    "create_run",
    "daily_stats",
    "duration_percentiles",
    "duration_points",
    "end_run",
    "ensure_builtin_jobs",
    "filter_clause",
    "get_job",
    "get_run",
    "heartbeat",
    "highlighted_runs",
    "iter_runs",
    "last_event_id",
    "list_audit",
    "list_events",
    "list_jobs",
    "list_runs",
    "order_clause",
    "live_overview",
    "mark_orphans",
    "mean_time_to_recovery",
    "read_session",
    "recent_run_ids",
    "record_audit",
    "request_cancel",
    "resume_run",
    "run_jobs",
    "run_state_event",
    "run_summary",
    "save_job",
    "summarise",
    "upsert",
    "write_session",
]
