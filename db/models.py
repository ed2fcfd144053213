"""Runwatch's tables (SQLModel). Reads and writes live in `db.queries`."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapper
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel, col

from db.enums import (  # re-exported: the tables and their readers use them from here
    ACTIVE_STATUSES as ACTIVE_STATUSES,
    JOB_NAME_MAX as JOB_NAME_MAX,
    LEVELS as LEVELS,
    MAX_ID as MAX_ID,
    TERMINAL_STATUSES as TERMINAL_STATUSES,
    AlertKind as AlertKind,
    Channel as Channel,
    EventKind as EventKind,
    Role as Role,
    RunStatus as RunStatus,
    Step as Step,
    Trigger as Trigger,
    WorkerKind as WorkerKind,
    WorkerState as WorkerState,
)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; Runwatch stores timezone-aware UTC only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def run_duration(started: datetime | None, ended: datetime | None) -> float | None:
    """Seconds from a run's start to its end; None until it has both."""
    return (ended - started).total_seconds() if started and ended else None


class utc_day(FunctionElement[date]):  # noqa: N801 (an SQL function, named as SQL names them)
    """The UTC calendar day of a timestamp column, as SQL that an index can hold."""

    type = sa.Date()
    inherit_cache = True


@compiles(utc_day)
def _utc_day_sqlite(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    return f"date({compiler.process(element.clauses, **kw)})"  # stored as UTC text already


@compiles(utc_day, "postgresql")
def _utc_day_postgres(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    return f"date(timezone('UTC', {compiler.process(element.clauses, **kw)}))"  # immutable


ACTIVE_WHERE = sa.text("status IN ('pending','running')")


def _json() -> Any:
    return Field(default_factory=dict, sa_type=sa.JSON, nullable=False)


def _ts(*, nullable: bool = True, index: bool = False) -> Any:
    if nullable:
        return Field(default=None, sa_type=UTCDateTime, nullable=True, index=index)
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False, index=index)


class Job(SQLModel, table=True):
    """A configured job: which job class runs, with which default parameters and schedule."""

    name: str = Field(primary_key=True, max_length=100)
    title: str = Field(default="", max_length=200)
    kind: str = Field(max_length=50)
    params: dict[str, Any] = _json()
    schedule: str | None = Field(default=None, max_length=100)
    timezone: str = Field(default="UTC", max_length=64)  # the schedule's wall clock (IANA name)
    catchup: str = Field(default="latest", max_length=10)  # none | latest | all (etl.schedules)
    enabled: bool = True
    paused: bool = False  # keeps its schedule, enqueues nothing and refuses Run now
    # the next scheduled tick not yet handled (UTC); NULL without a schedule. Workers compare-and-set
    # it, so one of them handles each tick; the index keeps their every-poll check one probe.
    next_run_at: datetime | None = _ts(index=True)
    created_at: datetime = _ts(nullable=False)


class Run(SQLModel, table=True):
    """One execution of a job, with its checkpoint and outcome."""

    __table_args__ = (
        sa.Index(
            "uq_run_active_job",
            "job",
            unique=True,
            sqlite_where=ACTIVE_WHERE,
            postgresql_where=ACTIVE_WHERE,
        ),
        sa.Index("ix_run_job_created", "job", "created_at"),
        # covering: the statistics read these columns from the index, not the wide rows (0012)
        sa.Index(
            "ix_run_status_created",
            *("status", "created_at", "job", "duration_s", "ended_at", "records_loaded"),
        ),
        sa.Index("ix_run_job_ended", "job", "ended_at", "status"),  # previous/next run of a job
        # one run per scheduled tick, whichever worker enqueues it (NULLs, unscheduled runs, differ)
        sa.Index("uq_run_job_scheduled", "job", "scheduled_for", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True)
    job: str = Field(max_length=100)
    status: str = Field(default=RunStatus.PENDING, max_length=20)
    trigger: str = Field(default=Trigger.MANUAL, max_length=20)
    triggered_by: str = Field(default="", max_length=200)
    params: dict[str, Any] = _json()
    created_at: datetime = _ts(nullable=False, index=True)
    started_at: datetime | None = _ts()
    ended_at: datetime | None = _ts()
    duration_s: float | None = None  # ended_at - started_at, stored with them for the statistics
    total_records: int | None = None
    offset: int = 0
    records_loaded: int = 0
    records_rejected: int = 0
    counters: dict[str, Any] = _json()
    current_step: str | None = Field(default=None, max_length=20)
    error_type: str | None = Field(default=None, max_length=200)
    error_message: str | None = Field(default=None, sa_type=sa.Text)
    error_detail: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    heartbeat_at: datetime | None = _ts()
    worker_id: str | None = Field(default=None, max_length=200)
    claim_token: str | None = Field(
        default=None, max_length=32
    )  # set by each claim; fences its writes
    resumed_from: int | None = Field(default=None, foreign_key="run.id")
    cancel_requested: bool = False
    pace: dict[str, Any] | None = Field(
        default=None, sa_type=sa.JSON
    )  # reports.eta.Pace, per batch
    scheduled_for: datetime | None = _ts()  # the schedule's tick (trigger schedule), else NULL


# covering, in GROUP BY order: the daily statistics read no row and sort nothing (0004)
sa.Index(
    "ix_run_day_status",
    utc_day(col(Run.created_at)),
    col(Run.status),
    col(Run.created_at),
    col(Run.job),
    col(Run.records_loaded),
    col(Run.duration_s),
)


@sa.event.listens_for(Run, "before_insert")
@sa.event.listens_for(Run, "before_update")
def _store_duration(mapper: Mapper[Run], connection: sa.Connection, run: Run) -> None:
    """Every ORM write of a run stores its duration beside its start and end (Core writes
    that set ended_at set duration_s themselves)."""
    run.duration_s = run_duration(run.started_at, run.ended_at)


class RunRow(NamedTuple):
    """A run as the Live and History pages list it: its columns without parameters or traceback.

    A plain tuple, not a model: those pages build dozens every refresh tick (db.driver).
    """

    id: int
    job: str
    status: str
    trigger: str
    triggered_by: str
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    total_records: int | None
    offset: int
    records_loaded: int
    records_rejected: int
    counters: dict[str, Any]
    current_step: str | None
    error_type: str | None
    error_message: str | None
    resumed_from: int | None
    cancel_requested: bool

    @property
    def duration(self) -> float | None:
        """Seconds from start to end; None until the run has ended."""
        return run_duration(self.started_at, self.ended_at)


class RunEvent(SQLModel, table=True):
    """An append-only record of a run's status change, progress or log line; its id is the cursor."""

    __tablename__ = "run_event"
    __table_args__ = (sa.Index("ix_run_event_run_id_id", "run_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id")
    ts: datetime = _ts(nullable=False)
    kind: str = Field(max_length=20)
    level: str = Field(default="INFO", max_length=10)
    step: str | None = Field(default=None, max_length=20)
    message: str = Field(default="", sa_type=sa.Text)
    data: dict[str, Any] = _json()


class AuditEvent(SQLModel, table=True):
    """Who did what, when: triggers, cancels, retries, exports, config changes; a hash chain."""

    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    ts: datetime = _ts(nullable=False, index=True)
    actor: str = Field(default="", max_length=200)
    action: str = Field(max_length=50)
    target: str = Field(default="", max_length=200)
    details: dict[str, Any] = _json()
    prev_hash: str | None = Field(default=None, max_length=64)  # the previous row's row_hash
    row_hash: str | None = Field(default=None, max_length=64)  # SHA-256 of this row and prev_hash


class AppUser(SQLModel, table=True):
    """A person who signs in to the app: a password hash (Argon2, never the password) and a role."""

    __tablename__ = "app_user"

    name: str = Field(primary_key=True, max_length=100)
    password_hash: str = Field(max_length=200)  # argon2-cffi's encoded hash, parameters included
    role: str = Field(default=Role.VIEWER, max_length=20)
    disabled: bool = False  # refuses sign-in (with the same message as a wrong password)
    failed_attempts: int = 0  # consecutive failed sign-ins since the last success or lock
    locked_until: datetime | None = _ts()  # sign-in refused until then after too many failures
    password_changed_at: datetime | None = _ts()  # app sessions signed in before it have ended
    created_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)


class ApiToken(SQLModel, table=True):
    """A bearer token of the API: only its SHA-256 is stored; revoked tokens keep their row."""

    __tablename__ = "api_token"
    __table_args__ = (
        sa.UniqueConstraint("name", name="uq_api_token_name"),
        sa.UniqueConstraint("token_hash", name="uq_api_token_hash"),  # the lookup of every request
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    token_hash: str = Field(max_length=64)  # SHA-256 hex of the token
    role: str = Field(default=Role.VIEWER, max_length=20)
    created_by: str = Field(default="", max_length=200)
    created_at: datetime = _ts(nullable=False)
    revoked_at: datetime | None = _ts()
    last_used_at: datetime | None = _ts()  # refreshed at most about once a minute


class UserInfo(NamedTuple):
    """A user as listings show it: no password hash."""

    name: str
    role: str
    disabled: bool
    locked_until: datetime | None
    created_at: datetime
    updated_at: datetime


class TokenInfo(NamedTuple):
    """An API token as listings show it: no hash, and never the token."""

    name: str
    role: str
    created_by: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class WorkerEntry(SQLModel, table=True):
    """A worker's entry in the registry: where it runs, when it last beat, what it is doing.

    Written by the worker itself (register, a throttled heartbeat, stop); rows of workers stopped
    or lost for over a day are pruned when a worker registers.
    """

    __tablename__ = "worker"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)  # the id it claims runs under (run.worker_id)
    kind: str = Field(max_length=20)  # WorkerKind
    host: str = Field(max_length=255)
    pid: int
    started_at: datetime = _ts(nullable=False)
    heartbeat_at: datetime = _ts(nullable=False)
    # the run it executes; no foreign key, so the registry never holds up a run's write or delete
    current_run_id: int | None = None
    scheduler_tick_at: datetime | None = _ts()  # when its scheduler last looked for due jobs
    stopped_at: datetime | None = _ts()  # set by a clean stop


class DemoCategory(SQLModel, table=True):
    """Target table of the demo job: one row per category of the synthetic catalogue."""

    __tablename__ = "demo_category"

    id: int = Field(primary_key=True)
    name: str = Field(max_length=100)
    loads: int = 1


class DemoSubject(SQLModel, table=True):
    """Target table of the demo job: one row per subject; `loads` counts how often it was written."""

    __tablename__ = "demo_subject"

    id: int = Field(primary_key=True)
    category_id: int
    name: str = Field(max_length=100)
    score: float
    loads: int = 1


class CsvReject(SQLModel, table=True):
    """Quarantine of the csv_import job: a row that was not loaded, with where it was and why."""

    __tablename__ = "csv_reject"
    __table_args__ = (sa.Index("ix_csv_reject_run_id", "run_id"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id")
    file: str = Field(sa_type=sa.Text)
    line: int
    reason: str = Field(sa_type=sa.Text)
    raw: str = Field(default="", sa_type=sa.Text)
    ts: datetime = _ts(nullable=False)


class RemoteRun(SQLModel, table=True):
    """Which local run mirrors which run of a followed remote feed (the sse_follow job)."""

    __tablename__ = "remote_run"
    __table_args__ = (sa.UniqueConstraint("job", "source", "remote_id", name="uq_remote_run"),)

    id: int | None = Field(default=None, primary_key=True)
    job: str = Field(max_length=100)  # the local job the remote runs are mirrored into
    source: str = Field(sa_type=sa.Text)  # the followed feed's URL
    remote_id: str = Field(max_length=100)
    run_id: int = Field(foreign_key="run.id")


class RemoteFeed(SQLModel, table=True):
    """A followed feed's checkpoint: the last remote event id mirrored into a local job."""

    __tablename__ = "remote_feed"

    job: str = Field(primary_key=True, max_length=100)
    source: str = Field(primary_key=True, sa_type=sa.Text)
    last_event_id: str | None = Field(default=None, sa_type=sa.Text)
    updated_at: datetime = _ts(nullable=False)


class AlertRule(SQLModel, table=True):
    """A rule: alert on `kind` for one job (or every job when `job` is NULL), through one channel."""

    __tablename__ = "alert_rule"

    id: int | None = Field(default=None, primary_key=True)
    job: str | None = Field(default=None, max_length=100)  # NULL: every job
    kind: str = Field(max_length=20)
    limit_value: float | None = None  # in the kind's unit; NULL: the kind's default
    channel: str = Field(max_length=10)
    target: str = Field(default="", sa_type=sa.Text)  # URL or e-mail address; empty for app
    enabled: bool = True
    created_at: datetime = _ts(nullable=False)


class Alert(SQLModel, table=True):
    """One event a rule matched, sent once: the unique dedup_key decides which worker sends it."""

    __tablename__ = "alert"

    id: int | None = Field(default=None, primary_key=True)
    rule_id: int | None = Field(default=None, index=True)  # kept when the rule is removed
    dedup_key: str = Field(max_length=300, unique=True)  # "r<rule>:<event>", e.g. r3:failed:run:12
    kind: str = Field(max_length=20)
    job: str | None = Field(default=None, max_length=100)
    run_id: int | None = None
    channel: str = Field(max_length=10)
    target: str = Field(default="", sa_type=sa.Text)
    message: str = Field(default="", sa_type=sa.Text)
    status: str = Field(default="pending", max_length=10)  # pending | sent | failed | app
    created_at: datetime = _ts(nullable=False)
    read_at: datetime | None = _ts(index=True)  # when someone marked it read in the app
    # when a worker last took its delivery on; a pending alert claimed longer ago than a delivery
    # can take lost its deliverer, and the next check takes it over (etl.alerts.delivery_lease)
    claimed_at: datetime | None = _ts()

    __table_args__ = (sa.Index("ix_alert_status_claimed", "status", "claimed_at"),)


class AlertDelivery(SQLModel, table=True):
    """One attempt to deliver an alert, kept whatever its outcome."""

    __tablename__ = "alert_delivery"

    id: int | None = Field(default=None, primary_key=True)
    alert_id: int = Field(foreign_key="alert.id", index=True)
    channel: str = Field(max_length=10)
    target: str = Field(default="", sa_type=sa.Text)
    attempt: int = 1
    ok: bool = False
    status_code: int | None = None  # HTTP status, or the SMTP reply code of a refusal
    error: str | None = Field(default=None, sa_type=sa.Text)
    duration_ms: float | None = None
    at: datetime = _ts(nullable=False, index=True)


class AlertCursor(SQLModel, table=True):
    """How far the alert checks have read the run events (ids commit in order), shared by workers."""

    __tablename__ = "alert_cursor"

    name: str = Field(primary_key=True, max_length=20)
    last_id: int = 0


class RunRecord(SQLModel):
    """The public shape of a run: CLI JSON/CSV output, exports and the API."""

    id: int
    job: str
    status: str
    trigger: str
    triggered_by: str
    start_date: datetime | None
    end_date: datetime | None
    duration: float | None  # seconds from start to end; None until the run has ended
    total_records: int | None
    offset: int
    records_loaded: int
    records_rejected: int
    counters: dict[str, Any]
    current_step: str | None
    error_type: str | None
    error_message: str | None
    created_at: datetime
    resumed_from: int | None

    @classmethod
    def from_run(cls, run: Run | RunRow) -> RunRecord:
        """The public record of `run`."""
        duration = run_duration(run.started_at, run.ended_at)
        assert run.id is not None
        return cls(
            id=run.id,
            job=run.job,
            status=run.status,
            trigger=run.trigger,
            triggered_by=run.triggered_by,
            start_date=run.started_at,
            end_date=run.ended_at,
            duration=duration,
            total_records=run.total_records,
            offset=run.offset,
            records_loaded=run.records_loaded,
            records_rejected=run.records_rejected,
            counters=dict(run.counters or {}),
            current_step=run.current_step,
            error_type=run.error_type,
            error_message=run.error_message,
            created_at=run.created_at,
            resumed_from=run.resumed_from,
        )
