"""The API's request and response shapes, built on the public run record."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from db.models import JOB_NAME_MAX, Job, Run, RunEvent, RunRecord, RunRow, WorkerState
from db.queries import EventRow
from reports.health import HealthReport

NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL characters
JobName = Annotated[str, StringConstraints(min_length=1, max_length=JOB_NAME_MAX, pattern=NO_NUL)]


class PerformanceMetrics(BaseModel):
    """How fast the current run goes and what the API process uses."""

    records_per_second: float | None = Field(description="The run's own rate since it started.")
    memory_usage: float = Field(description="Resident memory of the API process, in MB.")
    cpu_usage: float = Field(description="CPU of the API process since the last status call, in %.")


class EtaRange(BaseModel):
    """When the run should end at the earliest and latest: 9 runs in 10 end in between (p5-p95)."""

    earliest: datetime
    latest: datetime


class EtlStatus(BaseModel):
    """What the ETL is doing now: the active run, or the newest one when none is active."""

    is_running: bool
    current_log_id: int | None = Field(description="Id of the run shown (the runs are the logs).")
    job: str | None
    status: str | None
    progress_percentage: float | None
    last_update: datetime | None
    estimated_completion: datetime | None = Field(
        description="When the run should end (p50), from its own pace and its job's history."
    )
    estimated_completion_range: EtaRange | None
    current_step: str | None
    performance_metrics: PerformanceMetrics


class TriggerRequest(BaseModel):
    """Start a run of `job`; `params` override the job's defaults."""

    model_config = ConfigDict(extra="forbid")

    job: JobName
    params: dict[str, Any] = Field(default_factory=dict)


class TriggerResponse(BaseModel):
    """A run was enqueued."""

    success: bool
    log_id: int = Field(description="Id of the new run.")
    message: str
    estimated_duration: float | None = Field(
        description="Seconds the run should take, from the job's past throughput (null: no history)."
    )


class ActionResponse(BaseModel):
    """The outcome of a request on an existing run."""

    success: bool
    log_id: int
    status: str
    message: str


class LogItem(BaseModel):
    """One run in the field shape of the original dashboard specification."""

    id: int
    job: str
    status: str
    trigger: str
    start_date: datetime | None
    end_date: datetime | None
    duration: float | None
    total_records: int | None
    offset: int
    created_at: datetime
    categories_processed: int | None
    subjects_processed: int | None
    error_message: str | None

    @classmethod
    def from_run(cls, run: Run | RunRow) -> LogItem:
        """The list item of `run`."""
        record = RunRecord.from_run(run).model_dump()
        counters = record["counters"]
        return cls(
            **{name: record[name] for name in cls.model_fields if name in record},
            categories_processed=_count(counters.get("categories_processed")),
            subjects_processed=_count(counters.get("subjects_processed")),
        )


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class LogPage(BaseModel):
    """One page of runs, newest first, with the size of the whole filtered set."""

    total: int
    page: int
    limit: int
    items: list[LogItem]


class RunDetail(RunRecord):
    """Everything about one run: its public record plus parameters and error detail."""

    params: dict[str, Any]
    error_detail: dict[str, Any] | None
    heartbeat_at: datetime | None
    worker_id: str | None
    cancel_requested: bool

    @classmethod
    def from_run_detail(cls, run: Run) -> RunDetail:
        """The detail of `run`."""
        return cls(
            **RunRecord.from_run(run).model_dump(),
            params=dict(run.params or {}),
            error_detail=run.error_detail,
            heartbeat_at=run.heartbeat_at,
            worker_id=run.worker_id,
            cancel_requested=run.cancel_requested,
        )


class EventItem(BaseModel):
    """One run event: a status change, a progress write or a log line."""

    id: int
    run_id: int
    ts: datetime
    kind: str
    level: str
    step: str | None
    message: str
    data: dict[str, Any]

    @classmethod
    def from_event(cls, event: RunEvent | EventRow) -> EventItem:
        """The item of `event`."""
        return cls.model_validate(event, from_attributes=True)


class EventPage(BaseModel):
    """A run's events after a cursor, oldest first; pass `next_after` as `after` for more."""

    items: list[EventItem]
    next_after: int


class Health(BaseModel):
    """Whether the API can serve: database reachable, worker alive, runs waiting."""

    status: str
    database: bool
    worker: bool | None = Field(description="null when this process runs no worker.")
    worker_restarts: int | None = Field(
        default=None, description="How often the worker thread died and was restarted."
    )
    worker_last_death: str | None = Field(
        default=None, description="When and of what the worker thread last died (UTC)."
    )
    pending: int | None
    problem: str | None = Field(
        default=None,
        description="Why the database is unusable, when the answer alone does not say.",
    )


class JobItem(BaseModel):
    """A configured job: its kind, defaults, schedule and whether it is paused."""

    name: str
    title: str
    kind: str
    params: dict[str, Any]
    schedule: str | None = Field(
        description="Cron expression, read in `timezone`; null: manual only."
    )
    timezone: str
    catchup: str = Field(description="Missed ticks when workers come back: none, latest or all.")
    enabled: bool
    paused: bool = Field(description="A paused job keeps its schedule but starts no run.")
    next_run_at: datetime | None = Field(description="Its next scheduled tick (null: none).")

    @classmethod
    def from_job(cls, job: Job) -> JobItem:
        """The item of `job`."""
        return cls.model_validate(job, from_attributes=True)


class JobResponse(BaseModel):
    """The outcome of a request on a job."""

    success: bool
    job: JobItem
    message: str


class ErrorBody(BaseModel):
    """Why a request was refused."""

    detail: str
    run_id: int | None = None


class DatabaseStatus(BaseModel):
    """Whether the database answered the health check, and how fast."""

    reachable: bool
    round_trip_ms: float | None = Field(description="One trivial statement's round trip, in ms.")
    error: str | None = Field(description="The driver's error when it did not answer.")


class WorkerStatus(BaseModel):
    """A registered worker: where it runs, its last heartbeat, its run and its state."""

    name: str = Field(description="The id its runs record as their worker.")
    kind: str = Field(description="worker (a `runwatch worker` process), app or api (a thread).")
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    silent_s: float = Field(description="Seconds since its last heartbeat.")
    state: Literal["live", "lost", "stopped"] = Field(
        description="lost: no heartbeat for `lost_after_s`; stopped: it stopped cleanly."
    )
    current_run_id: int | None = Field(description="The run it executes (a lost one: held).")
    current_job: str | None
    scheduler_tick_at: datetime | None = Field(description="When its scheduler last looked.")
    stopped_at: datetime | None


class QueueStatus(BaseModel):
    """The pending runs."""

    depth: int = Field(description="Runs pending, waiting for a worker.")
    oldest_queued_at: datetime | None
    oldest_age_s: float | None = Field(description="Seconds the oldest pending run has waited.")


class AlertChannelStatus(BaseModel):
    """An alert channel and its deliveries so far."""

    name: str
    ok: bool
    detail: str
    delivered: int
    failed: int


class AlertsStatus(BaseModel):
    """The alert channels (none until alerts are configured)."""

    summary: str
    channels: list[AlertChannelStatus]


class HealthDetails(BaseModel):
    """The deployment's health: database, workers, queue, scheduler and alert channels."""

    model_config = ConfigDict(from_attributes=True)

    status: Literal["ok", "degraded", "unavailable"] = Field(
        description="unavailable: no database; degraded: runs wait with no live worker, or an "
        "alert channel fails; else ok. Lost workers are counted in `workers_lost`."
    )
    checked_at: datetime
    database: DatabaseStatus
    lost_after_s: float = Field(description="A worker silent this long is lost.")
    workers_live: int
    workers_lost: int
    workers_stopped: int
    workers: list[WorkerStatus] = Field(description="Newest heartbeat first.")
    queue: QueueStatus | None = Field(description="null while the database cannot be reached.")
    scheduler_last_tick: datetime | None = Field(
        description="When any worker's scheduler last looked for due jobs."
    )
    alerts: AlertsStatus

    @classmethod
    def from_report(cls, report: HealthReport) -> HealthDetails:
        """The details of a health snapshot."""
        channels = [
            AlertChannelStatus.model_validate(c, from_attributes=True)
            for c in report.alert_channels
        ]
        return cls(
            status=report.status,
            checked_at=report.checked_at,
            database=DatabaseStatus.model_validate(report.database, from_attributes=True),
            lost_after_s=report.lost_after_s,
            workers_live=report.count(WorkerState.LIVE),
            workers_lost=report.count(WorkerState.LOST),
            workers_stopped=report.count(WorkerState.STOPPED),
            workers=[WorkerStatus.model_validate(w, from_attributes=True) for w in report.workers],
            queue=QueueStatus.model_validate(report.queue, from_attributes=True)
            if report.queue
            else None,
            scheduler_last_tick=report.scheduler_last_tick,
            alerts=AlertsStatus(summary=report.alerts_summary, channels=channels),
        )
