"""Every read and write of Runwatch's tables. Functions take the session keyword-only."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from db.engine import WRITE_OPTION, get_engine
from db.models import (
    ACTIVE_STATUSES,
    LEVELS,
    AuditEvent,
    CsvReject,
    EventKind,
    Job,
    RemoteFeed,
    RemoteRun,
    Run,
    RunEvent,
    RunRecord,
    RunStatus,
    Trigger,
    utcnow,
)

EVENT_CHANNEL = "runwatch_events"  # PostgreSQL NOTIFY channel, sent when run events commit
_PG_EVENT_LOCK = 0x52554E45  # "RUNE": event inserts commit in id order, so cursors skip nothing


class RunwatchError(Exception):
    """A request Runwatch refuses; the message is meant for the user."""


class ActiveRunExists(RunwatchError):
    """The job already has a pending or running run."""

    def __init__(self, job: str, run_id: int | None) -> None:
        self.job, self.run_id = job, run_id
        super().__init__(f"Job '{job}' already has an active run (#{run_id}).")


class NotFound(RunwatchError):
    """No such job or run."""


class InvalidState(RunwatchError):
    """The run is not in a status that allows the request."""


# ---------------------------------------------------------------- sessions


@contextmanager
def write_session(engine: sa.Engine | None = None) -> Iterator[Session]:
    """A session for one short write transaction (BEGIN IMMEDIATE on SQLite), committed at exit."""
    bind = (engine or get_engine()).execution_options(**{WRITE_OPTION: True})
    with Session(bind, expire_on_commit=False) as session, session.begin():
        yield session


@contextmanager
def read_session(engine: sa.Engine | None = None) -> Iterator[Session]:
    """A session for reads; nothing it does is committed."""
    with Session(engine or get_engine(), expire_on_commit=False) as session:
        yield session


# ---------------------------------------------------------------- jobs

BUILTIN_JOBS = (
    Job(
        name="demo",
        title="Demo catalogue",
        kind="demo",
        params={"total": 20000, "batch_size": 200, "delay_ms": 100, "seed": 42},
    ),
    Job(name="csv_import", title="CSV import", kind="csv_import", params={}),
)


def ensure_builtin_jobs(*, session: Session) -> None:
    """Add the built-in jobs that are not configured yet (safe when many processes start at once)."""
    rows = [job.model_dump() for job in BUILTIN_JOBS]
    upsert(session=session, table=Job.__table__, rows=rows, key=["name"], update=False)  # type: ignore[attr-defined]


def list_jobs(*, session: Session) -> Sequence[Job]:
    """Every configured job, by name."""
    return session.exec(select(Job).order_by(Job.name)).all()


def get_job(*, session: Session, name: str) -> Job:
    """The job called `name`, or NotFound."""
    job = session.get(Job, name)
    if job is None:
        raise NotFound(f"No job named '{name}'.")
    return job


def save_job(*, session: Session, job: Job) -> Job:
    """Insert or update a job's configuration."""
    merged = session.merge(job)
    session.flush()
    return merged


# ---------------------------------------------------------------- events


def append_event(
    *,
    session: Session,
    run_id: int,
    kind: str = EventKind.LOG,
    message: str = "",
    level: str = "INFO",
    step: str | None = None,
    data: dict[str, Any] | None = None,
    ts: datetime | None = None,
) -> int:
    """Append one run event (at `ts`, default now) and return its id (the live readers' cursor)."""
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}")
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_EVENT_LOCK})
    event_id = session.execute(
        sa.insert(RunEvent)
        .values(
            run_id=run_id,
            ts=ts or utcnow(),
            kind=str(kind),
            level=level,
            step=step,
            message=message,
            data=data or {},
        )
        .returning(col(RunEvent.id))
    ).scalar_one()
    if postgres:
        session.execute(
            sa.text("SELECT pg_notify(:c, :p)"), {"c": EVENT_CHANNEL, "p": str(event_id)}
        )
    return int(event_id)


def run_state_event(
    *, session: Session, run: Run, kind: str, message: str, level: str = "INFO"
) -> int:
    """Append a status or progress event carrying the run's public record."""
    assert run.id is not None
    data = RunRecord.from_run(run).model_dump(mode="json")
    return append_event(
        session=session,
        run_id=run.id,
        kind=kind,
        message=message,
        level=level,
        step=run.current_step,
        data=data,
    )


def list_events(
    *,
    session: Session,
    run_id: int | None = None,
    job: str | None = None,
    after_id: int | None = None,
    before_id: int | None = None,
    kinds: Sequence[str] | None = None,
    min_level: str | None = None,
    text: str | None = None,
    limit: int | None = 500,
    newest_first: bool = False,
) -> Sequence[RunEvent]:
    """Run events by cursor: those after `after_id` (or before `before_id`), oldest first by default."""
    where = _event_filters(
        run_id=run_id,
        job=job,
        after_id=after_id,
        before_id=before_id,
        kinds=kinds,
        min_level=min_level,
        text=text,
    )
    order = col(RunEvent.id).desc() if newest_first else col(RunEvent.id)
    return session.exec(select(RunEvent).where(*where).order_by(order).limit(limit)).all()


def _event_filters(
    *,
    run_id: int | None = None,
    job: str | None = None,
    after_id: int | None = None,
    before_id: int | None = None,
    kinds: Sequence[str] | None = None,
    min_level: str | None = None,
    text: str | None = None,
) -> list[sa.ColumnElement[bool]]:
    """The WHERE clauses of a run event cursor read."""
    where: list[sa.ColumnElement[bool]] = []
    if run_id is not None:
        where.append(col(RunEvent.run_id) == run_id)
    if job is not None:
        where.append(col(RunEvent.run_id).in_(select(Run.id).where(Run.job == job)))
    if after_id is not None:
        where.append(col(RunEvent.id) > after_id)
    if before_id is not None:
        where.append(col(RunEvent.id) < before_id)
    if kinds:
        where.append(col(RunEvent.kind).in_(list(kinds)))
    if min_level:
        where.append(col(RunEvent.level).in_(LEVELS[LEVELS.index(min_level) :]))
    if text:
        where.append(col(RunEvent.message).ilike(f"%{_escape_like(text)}%", escape="\\"))
    return where


LOG_COLUMNS = ("id", "ts", "run_id", "level", "kind", "step", "message")


def list_log_lines(
    *,
    session: Session,
    run_id: int | None = None,
    job: str | None = None,
    after_id: int | None = None,
    min_level: str | None = None,
    text: str | None = None,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """The newest matching run events after `after_id`, newest first, as plain LOG_COLUMNS rows.

    The Logs page's read: the same cursor as list_events without the JSON `data`, whose decoding
    cost more than the query on every tick.
    """
    table: sa.Table = RunEvent.__table__  # type: ignore[attr-defined]
    where = _event_filters(
        run_id=run_id, job=job, after_id=after_id, min_level=min_level, text=text
    )
    query = (
        sa.select(*(table.c[name] for name in LOG_COLUMNS))
        .where(*where)
        .order_by(table.c.id.desc())
        .limit(limit)
    )
    return [dict(row) for row in session.execute(query).mappings()]


def last_event_id(*, session: Session) -> int:
    """The id of the newest run event (0 when there is none)."""
    return int(session.exec(select(sa.func.coalesce(sa.func.max(RunEvent.id), 0))).one() or 0)


def run_jobs(*, session: Session, run_ids: Iterable[int]) -> dict[int, str]:
    """The job of each of these runs (the live feed's channel filters)."""
    ids = list(run_ids)
    if not ids:
        return {}
    rows = session.exec(select(Run.id, Run.job).where(col(Run.id).in_(ids))).all()
    return {int(run_id): job for run_id, job in rows if run_id is not None}


# ---------------------------------------------------------------- runs: writes


def create_run(
    *,
    session: Session,
    job: str,
    trigger: str = Trigger.MANUAL,
    triggered_by: str = "",
    params: dict[str, Any] | None = None,
    status: str = RunStatus.PENDING,
    worker_id: str | None = None,
    resumed_from: Run | None = None,
    from_checkpoint: bool = True,
) -> Run:
    """Enqueue a run of `job` (or start it at once with status running); ActiveRunExists if one is active.

    The partial unique index on active runs decides, so concurrent callers can never both succeed.
    """
    job_row = get_job(session=session, name=job)
    now = utcnow()
    run = Run(
        job=job,
        status=status,
        trigger=trigger,
        triggered_by=triggered_by,
        params={**job_row.params, **(params or {})},
        created_at=now,
        worker_id=worker_id,
    )
    if status == RunStatus.RUNNING:
        run.started_at = run.heartbeat_at = now
    if resumed_from is not None:
        run.resumed_from = resumed_from.id
        run.params = dict(resumed_from.params)
        if from_checkpoint:
            run.offset, run.total_records = resumed_from.offset, resumed_from.total_records
            run.records_loaded = resumed_from.records_loaded
            run.records_rejected = resumed_from.records_rejected
            run.counters = dict(resumed_from.counters or {})
    try:
        with session.begin_nested():
            session.add(run)
            session.flush()
    except IntegrityError:
        raise ActiveRunExists(job, active_run_id(session=session, job=job)) from None
    run_state_event(session=session, run=run, kind=EventKind.STATUS, message=f"Run {status}")
    return run


def active_run_id(*, session: Session, job: str) -> int | None:
    """The id of the job's pending or running run, if any."""
    query = select(Run.id).where(Run.job == job, col(Run.status).in_(ACTIVE_STATUSES))
    return session.exec(query).first()


def claim_next_run(*, session: Session, worker_id: str, run_id: int | None = None) -> Run | None:
    """Atomically take the oldest pending run (or run `run_id`) and mark it running for this worker."""
    pick = select(Run.id).where(Run.status == RunStatus.PENDING)
    if run_id is not None:
        pick = pick.where(col(Run.id) == run_id)
    pick = pick.order_by(col(Run.id)).limit(1)
    if session.get_bind().dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    now = utcnow()
    claimed = session.execute(
        sa.update(Run)
        .where(col(Run.id) == pick.scalar_subquery(), col(Run.status) == RunStatus.PENDING)
        .values(status=RunStatus.RUNNING, started_at=now, heartbeat_at=now, worker_id=worker_id)
        .returning(col(Run.id))
    ).scalar_one_or_none()
    if claimed is None:
        return None
    run = get_run(session=session, run_id=claimed, fresh=True)
    run_state_event(session=session, run=run, kind=EventKind.STATUS, message="Run started")
    return run


def checkpoint(
    *,
    session: Session,
    run: Run,
    heartbeat: bool = True,
) -> bool:
    """Store the run's offset, counts, counters and step (its checkpoint); return cancel_requested."""
    values: dict[str, Any] = {
        "offset": run.offset,
        "total_records": run.total_records,
        "records_loaded": run.records_loaded,
        "records_rejected": run.records_rejected,
        "counters": dict(run.counters),
        "current_step": run.current_step,
    }
    if heartbeat:
        values["heartbeat_at"] = run.heartbeat_at = utcnow()
    params = {f"new_{name}": value for name, value in values.items()}
    statement = _checkpoint_statement(tuple(values))
    connection = session.connection()  # Core, not the ORM's execute: this runs after every batch
    cancel = connection.execute(statement, {"run_id": run.id, **params}).scalar_one()
    return bool(cancel)


@lru_cache(maxsize=4)
def _checkpoint_statement(names: tuple[str, ...]) -> sa.Update:
    """The checkpoint UPDATE, built once: it runs after every batch, and building an ORM
    statement each time cost more than executing it (the runner's overhead goal is 5%)."""
    table: sa.Table = Run.__table__  # type: ignore[attr-defined]
    values = {name: sa.bindparam(f"new_{name}", type_=table.c[name].type) for name in names}
    return (
        sa.update(table)
        .where(table.c.id == sa.bindparam("run_id"))
        .values(values)
        .returning(table.c.cancel_requested)
    )


def heartbeat(*, session: Session, run_id: int) -> bool:
    """Mark the run alive now; return whether a cancel was requested."""
    cancel = session.execute(
        sa.update(Run)
        .where(col(Run.id) == run_id)
        .values(heartbeat_at=utcnow())
        .returning(col(Run.cancel_requested))
    ).scalar_one()
    return bool(cancel)


def end_run(
    *,
    session: Session,
    run: Run,
    status: str,
    error_type: str | None = None,
    error_message: str | None = None,
    error_detail: dict[str, Any] | None = None,
) -> Run:
    """Move a run to a terminal status with its final checkpoint and error, and record the change."""
    checkpoint(session=session, run=run, heartbeat=False)
    ended = utcnow()
    session.execute(
        sa.update(Run)
        .where(col(Run.id) == run.id)
        .values(
            status=status,
            ended_at=ended,
            error_type=error_type,
            error_message=error_message,
            error_detail=error_detail,
        )
    )
    run.status, run.ended_at = status, ended
    run.error_type, run.error_message, run.error_detail = error_type, error_message, error_detail
    level = "ERROR" if status == RunStatus.FAILED else "INFO"
    message = f"Run {status}" + (f": {error_message}" if error_message else "")
    run_state_event(session=session, run=run, kind=EventKind.STATUS, message=message, level=level)
    return run


def request_cancel(*, session: Session, run_id: int, actor: str = "") -> Run:
    """Cancel a pending run at once, or ask a running one to stop after its current batch."""
    run = get_run(session=session, run_id=run_id, fresh=True)
    if run.status == RunStatus.PENDING:
        return end_run(session=session, run=run, status=RunStatus.CANCELLED)
    if run.status != RunStatus.RUNNING:
        raise InvalidState(f"Run #{run_id} is {run.status}; only an active run can be cancelled.")
    session.execute(sa.update(Run).where(col(Run.id) == run_id).values(cancel_requested=True))
    run.cancel_requested = True
    who = f" by {actor}" if actor else ""
    append_event(
        session=session, run_id=run_id, message=f"Cancel requested{who}", step=run.current_step
    )
    return run


def resume_run(
    *, session: Session, run_id: int, triggered_by: str = "", from_checkpoint: bool = True
) -> Run:
    """Enqueue a new run that continues a failed or cancelled one from its checkpoint (or restarts it)."""
    source = get_run(session=session, run_id=run_id, fresh=True)
    if source.status not in (RunStatus.FAILED, RunStatus.CANCELLED):
        raise InvalidState(
            f"Run #{run_id} is {source.status}; only failed or cancelled runs resume."
        )
    return create_run(
        session=session,
        job=source.job,
        trigger=Trigger.RETRY,
        triggered_by=triggered_by,
        resumed_from=source,
        from_checkpoint=from_checkpoint,
    )


def mark_orphans(*, session: Session, timeout_s: float) -> list[int]:
    """Fail every running run whose heartbeat is older than `timeout_s` (error_type interrupted)."""
    cutoff = utcnow() - timedelta(seconds=timeout_s)
    stale = session.exec(
        select(Run).where(Run.status == RunStatus.RUNNING, col(Run.heartbeat_at) < cutoff)
    ).all()
    orphans = []
    for run in stale:
        message = f"No heartbeat since {run.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC; worker gone."
        detail = {"stage": run.current_step, "worker_id": run.worker_id, "offset": run.offset}
        end_run(
            session=session,
            run=run,
            status=RunStatus.FAILED,
            error_type="interrupted",
            error_message=message,
            error_detail=detail,
        )
        assert run.id is not None
        orphans.append(run.id)
    return orphans


# ---------------------------------------------------------------- runs: reads


def get_run(*, session: Session, run_id: int, fresh: bool = False) -> Run:
    """The run with this id, or NotFound; `fresh` re-reads it from the database."""
    run = session.get(Run, run_id, populate_existing=fresh)
    if run is None:
        raise NotFound(f"No run #{run_id}.")
    return run


@dataclass(frozen=True)
class RunFilters:
    """What the history shows: every field narrows the set; empty means no restriction."""

    statuses: tuple[str, ...] = ()
    jobs: tuple[str, ...] = ()
    triggers: tuple[str, ...] = ()
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before
    error_text: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The filters as plain JSON values (for audit records and URLs)."""
        return {
            "statuses": list(self.statuses),
            "jobs": list(self.jobs),
            "triggers": list(self.triggers),
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "error_text": self.error_text,
        }


SORT_KEYS = ("created_at", "duration", "status", "records")


@dataclass(frozen=True)
class RunSort:
    """The history's order: a key of SORT_KEYS, newest or largest first by default."""

    key: str = "created_at"
    descending: bool = True

    def __post_init__(self) -> None:
        if self.key not in SORT_KEYS:
            raise ValueError(f"sort key must be one of {', '.join(SORT_KEYS)}")


@dataclass
class RunPage:
    """One page of the filtered history and the size of the whole filtered set."""

    runs: list[Run] = field(default_factory=list)
    total: int = 0


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def filter_clause(filters: RunFilters) -> sa.ColumnElement[bool]:
    """The WHERE clause of `filters` on the run table."""
    clauses: list[sa.ColumnElement[bool]] = []
    if filters.statuses:
        clauses.append(col(Run.status).in_(filters.statuses))
    if filters.jobs:
        clauses.append(col(Run.job).in_(filters.jobs))
    if filters.triggers:
        clauses.append(col(Run.trigger).in_(filters.triggers))
    if filters.since is not None:
        clauses.append(col(Run.created_at) >= filters.since)
    if filters.until is not None:
        clauses.append(col(Run.created_at) < filters.until)
    if filters.error_text:
        pattern = f"%{_escape_like(filters.error_text)}%"
        clauses.append(col(Run.error_message).ilike(pattern, escape="\\"))
    return sa.and_(sa.true(), *clauses)


def duration_expr(dialect: str) -> sa.ColumnElement[Any]:
    """A run's duration in seconds as SQL (NULL until it has ended)."""
    if dialect == "postgresql":
        return sa.extract("epoch", col(Run.ended_at) - col(Run.started_at))
    return (sa.func.julianday(Run.ended_at) - sa.func.julianday(Run.started_at)) * 86400.0


def _order_by(sort: RunSort, dialect: str) -> list[Any]:
    column: Any = {
        "created_at": col(Run.created_at),
        "duration": duration_expr(dialect),
        "status": col(Run.status),
        "records": col(Run.records_loaded),
    }[sort.key]
    direction = column.desc() if sort.descending else column.asc()
    tiebreak = col(Run.id).desc() if sort.descending else col(Run.id).asc()
    return [direction.nulls_last(), tiebreak]


def runs_query(filters: RunFilters, sort: RunSort, dialect: str) -> Any:
    """The SELECT of the filtered, sorted history (shared by pages, exports and the CLI)."""
    return select(Run).where(filter_clause(filters)).order_by(*_order_by(sort, dialect))


def list_runs(
    *,
    session: Session,
    filters: RunFilters | None = None,
    sort: RunSort | None = None,
    page: int = 1,
    page_size: int = 50,
) -> RunPage:
    """One page (1-based) of the filtered, sorted history, with the filtered total."""
    filters, sort = filters or RunFilters(), sort or RunSort()
    if page < 1 or page_size < 1:
        raise ValueError("page and page_size start at 1")
    query = runs_query(filters, sort, session.get_bind().dialect.name)
    runs = session.exec(query.offset((page - 1) * page_size).limit(page_size)).all()
    return RunPage(runs=list(runs), total=count_runs(session=session, filters=filters))


def count_runs(*, session: Session, filters: RunFilters | None = None) -> int:
    """How many runs the filters select."""
    where = filter_clause(filters or RunFilters())
    return int(session.exec(select(sa.func.count()).select_from(Run).where(where)).one())


def iter_runs(
    *,
    session: Session,
    filters: RunFilters | None = None,
    sort: RunSort | None = None,
    chunk: int = 2000,
) -> Iterator[Run]:
    """Every run the filters select, in order, streamed in chunks (constant memory)."""
    query = runs_query(filters or RunFilters(), sort or RunSort(), session.get_bind().dialect.name)
    result = session.exec(query.execution_options(yield_per=chunk))
    for run in result:
        yield run
        session.expunge(run)


def iter_run_rows(
    *,
    session: Session,
    columns: Sequence[Any],
    filters: RunFilters | None = None,
    sort: RunSort | None = None,
    chunk: int = 2000,
) -> Iterator[sa.Row[Any]]:
    """Some columns of every run the filters select, in order, streamed as plain rows (no ORM objects)."""
    filters, sort = filters or RunFilters(), sort or RunSort()
    dialect = session.get_bind().dialect.name
    query = sa.select(*columns).where(filter_clause(filters)).order_by(*_order_by(sort, dialect))
    yield from session.execute(query.execution_options(yield_per=chunk))


# ---------------------------------------------------------------- live overview

HISTORY_RUNS = 50  # past successful runs an ETA learns from


@dataclass(frozen=True)
class JobLive:
    """One job at a glance: its configuration, latest runs and past throughput (the Live page)."""

    name: str
    title: str
    kind: str
    params: dict[str, Any]
    schedule: str | None
    enabled: bool
    recent: list[RunRecord]  # the five latest runs, newest first
    last_success: RunRecord | None
    throughputs: list[float]  # records/s of recent successful runs that did not resume another
    cancel_requested: bool = False  # of the active run

    @property
    def active(self) -> RunRecord | None:
        """The pending or running run (always the newest: a job has at most one active run)."""
        latest = self.recent[0] if self.recent else None
        return latest if latest and latest.status in ACTIVE_STATUSES else None


def live_overview(*, session: Session, jobs: Sequence[str] = ()) -> list[JobLive]:
    """Every job (or those named) with its five latest runs, last success and throughput history."""
    query = select(Job).order_by(Job.name)
    if jobs:
        query = query.where(col(Job.name).in_(list(jobs)))
    return [_job_live(session, job) for job in session.exec(query).all()]


def _job_live(session: Session, job: Job) -> JobLive:
    recent = session.exec(
        select(Run)
        .where(Run.job == job.name)
        .order_by(col(Run.created_at).desc(), col(Run.id).desc())
        .limit(5)
    ).all()
    successes = _successes(session, job.name)
    last_success = next((r for r in recent if r.status == RunStatus.FINISHED), None)
    if last_success is None and successes:
        last_success = get_run(session=session, run_id=successes[0][0])
    return JobLive(
        name=job.name,
        title=job.title,
        kind=job.kind,
        params=dict(job.params or {}),
        schedule=job.schedule,
        enabled=job.enabled,
        recent=[RunRecord.from_run(run) for run in recent],
        last_success=RunRecord.from_run(last_success) if last_success else None,
        throughputs=[rate for *_, rate in successes if rate is not None],
        cancel_requested=bool(recent and recent[0].cancel_requested),
    )


def _successes(session: Session, job: str) -> list[tuple[int, float | None]]:
    """Id and throughput (records/s; None when unmeasurable) of the job's newest finished runs.

    Plain columns, not ORM objects: the history is 50 rows a tick and needs no JSON decoding.
    """
    rows = session.execute(
        sa.select(
            col(Run.id),
            col(Run.offset),
            col(Run.started_at),
            col(Run.ended_at),
            col(Run.resumed_from),
        )
        .where(col(Run.job) == job, col(Run.status) == RunStatus.FINISHED)
        .order_by(col(Run.created_at).desc(), col(Run.id).desc())
        .limit(HISTORY_RUNS)
    ).all()
    return [
        (run_id, _rate(offset, started, ended) if resumed is None else None)
        for run_id, offset, started, ended, resumed in rows
    ]


def _rate(records: int, started: datetime | None, ended: datetime | None) -> float | None:
    seconds = (ended - started).total_seconds() if started and ended else 0.0
    return records / seconds if seconds > 0 and records > 0 else None


def recent_run_ids(*, session: Session, job: str | None = None, limit: int = 100) -> list[int]:
    """Ids of the newest runs (of one job, or all), newest first: the Logs page's run choice."""
    query = sa.select(col(Run.id)).order_by(col(Run.id).desc()).limit(limit)
    if job is not None:
        query = query.where(col(Run.job) == job)
    return [int(run_id) for run_id in session.execute(query).scalars()]


# ---------------------------------------------------------------- remote feeds (sse_follow)


def ensure_job(*, session: Session, name: str, kind: str, title: str = "") -> Job:
    """The job called `name`, created with `kind` when it does not exist."""
    job = session.get(Job, name)
    if job is None:
        job = Job(name=name, kind=kind, title=title or name)
        session.add(job)
        session.flush()
    return job


def feed_checkpoint(*, session: Session, job: str, source: str) -> str | None:
    """The id of the last event of feed `source` mirrored into `job`, if any."""
    row = session.get(RemoteFeed, (job, source))
    return row.last_event_id if row else None


def save_feed_checkpoint(*, session: Session, job: str, source: str, last_event_id: str) -> None:
    """Store the feed's checkpoint (in the transaction of what it mirrored)."""
    row = session.get(RemoteFeed, (job, source))
    if row is None:
        session.add(RemoteFeed(job=job, source=source, last_event_id=last_event_id))
    else:
        row.last_event_id, row.updated_at = last_event_id, utcnow()
    session.flush()


def mirrored_run(*, session: Session, job: str, source: str, remote_id: str) -> Run | None:
    """The local run mirroring remote run `remote_id` of `source` in `job`, if any."""
    link = session.exec(
        select(RemoteRun).where(
            RemoteRun.job == job, RemoteRun.source == source, RemoteRun.remote_id == remote_id
        )
    ).first()
    return session.get(Run, link.run_id, populate_existing=True) if link else None


def save_mirror(
    *, session: Session, job: str, source: str, remote_id: str, values: dict[str, Any]
) -> tuple[Run, str | None, bool]:
    """Create or update the mirror of a remote run: (run, its status before or None, changed).

    A job has at most one active run: when the mirror becomes active, any other active run of the
    job is ended first as failed with error_type `superseded`; its true end applies when it arrives.
    """
    run = mirrored_run(session=session, job=job, source=source, remote_id=remote_id)
    before = run.status if run else None
    if values.get("status") in ACTIVE_STATUSES and before not in ACTIVE_STATUSES:
        _supersede_active(session, job)
    if run is None:
        run = Run(job=job, trigger=Trigger.REMOTE, **values)
        session.add(run)
        session.flush()
        assert run.id is not None
        session.add(RemoteRun(job=job, source=source, remote_id=remote_id, run_id=run.id))
        session.flush()
        return run, None, True
    changed = any(getattr(run, name) != value for name, value in values.items())
    for name, value in values.items():
        setattr(run, name, value)
    session.flush()
    return run, before, changed


def _supersede_active(session: Session, job: str) -> None:
    active = active_run_id(session=session, job=job)
    if active is not None:
        end_run(
            session=session,
            run=get_run(session=session, run_id=active, fresh=True),
            status=RunStatus.FAILED,
            error_type="superseded",
            error_message="Another remote run became active before this one's end arrived.",
        )


def touch_running(*, session: Session, job: str) -> None:
    """Mark the job's running runs alive now (mirrors have no runner of their own to heartbeat)."""
    session.execute(
        sa.update(Run)
        .where(col(Run.job) == job, col(Run.status) == RunStatus.RUNNING)
        .values(heartbeat_at=utcnow())
    )


# ---------------------------------------------------------------- target tables


def upsert(
    *,
    session: Session,
    table: sa.Table,
    rows: Sequence[dict[str, Any]],
    key: Sequence[str],
    increment: str | None = None,
    update: bool = True,
) -> None:
    """Insert rows, updating the ones whose key exists (and adding 1 to column `increment`).

    With `update=False` existing rows are left as they are.
    """
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    statement: Any = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    updates: dict[str, Any] = {
        name: statement.excluded[name]
        for name in rows[0]
        if update and name not in key and name != increment
    }
    if increment:
        updates[increment] = table.c[increment] + 1
    if updates:
        statement = statement.on_conflict_do_update(index_elements=list(key), set_=updates)
    else:
        statement = statement.on_conflict_do_nothing(index_elements=list(key))
    session.execute(statement, list(rows))


# ---------------------------------------------------------------- bulk writes (seeding)


def reserve_ids(*, session: Session, table: sa.Table, count: int) -> list[int]:
    """`count` unused ids of `table`: from its sequence on PostgreSQL, past the largest on SQLite."""
    if count <= 0:
        return []
    if session.get_bind().dialect.name == "postgresql":
        ids = session.execute(
            sa.text("SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"),
            {"t": table.name, "n": count},
        ).scalars()
        return sorted(int(i) for i in ids)
    # The write session holds SQLite's write lock, so nobody else takes these ids meanwhile.
    top = session.execute(sa.select(sa.func.coalesce(sa.func.max(table.c.id), 0))).scalar_one()
    return list(range(int(top) + 1, int(top) + 1 + count))


def bulk_insert(*, session: Session, table: sa.Table, rows: Sequence[dict[str, Any]]) -> int:
    """Insert many rows at once (COPY on PostgreSQL, one executemany on SQLite); return how many."""
    if not rows:
        return 0
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres and table.name == RunEvent.__tablename__:
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_EVENT_LOCK})
    if postgres:
        _copy_rows(session, table, rows)
    else:
        _executemany_rows(session, table, rows)
    return len(rows)


def _executemany_rows(session: Session, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """One driver-level executemany, with each column's own bind processing (3x less overhead)."""
    dialect = session.get_bind().dialect
    names = list(rows[0])
    values: list[Any] = [tuple(row[name] for name in names) for row in rows]
    convert = [
        (i, process)
        for i, name in enumerate(names)
        if (process := table.c[name].type.dialect_impl(dialect).bind_processor(dialect))
    ]
    if convert:  # column by column, only the columns whose type converts values
        columns = list(zip(*values, strict=True))
        for i, process in convert:
            columns[i] = tuple(map(process, columns[i]))
        values = list(zip(*columns, strict=True))
    columns_sql = ", ".join(f'"{name}"' for name in names)
    sql = f'INSERT INTO "{table.name}" ({columns_sql}) VALUES ({", ".join("?" * len(names))})'
    session.connection().exec_driver_sql(sql, values)


def _copy_rows(session: Session, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """COPY the rows into `table` through the session's own psycopg connection."""
    names = list(rows[0])
    json_at = [i for i, name in enumerate(names) if isinstance(table.c[name].type, sa.JSON)]
    columns = ", ".join(f'"{name}"' for name in names)
    copy_sql = f'COPY "{table.name}" ({columns}) FROM STDIN'
    driver: Any = session.connection().connection.driver_connection
    with driver.cursor() as cursor, cursor.copy(copy_sql) as copy:
        for row in rows:
            values = [row[name] for name in names]
            for i in json_at:
                if values[i] is not None:
                    values[i] = json.dumps(values[i])
            copy.write_row(values)


# ---------------------------------------------------------------- target tables of csv_import

_PG_BATCH_TABLE = "runwatch_csv_batch"  # temporary table of one upsert on PostgreSQL


@dataclass(frozen=True)
class TableLayout:
    """An existing table's column names and the column sets it keeps unique."""

    columns: frozenset[str]
    unique_keys: tuple[frozenset[str], ...]


def table_layout(*, session: Session, name: str) -> TableLayout | None:
    """The layout of table `name`, or None when there is no such table."""
    inspector = sa.inspect(session.connection())
    if not inspector.has_table(name):
        return None
    keys: list[Sequence[Any]] = [inspector.get_pk_constraint(name)["constrained_columns"]]
    keys += [u["column_names"] for u in inspector.get_unique_constraints(name)]
    keys += [i["column_names"] for i in inspector.get_indexes(name) if i["unique"]]
    columns = frozenset(c["name"] for c in inspector.get_columns(name))
    return TableLayout(columns, tuple(frozenset(k) for k in keys if k))


def create_table(*, session: Session, table: sa.Table) -> None:
    """Create `table` in the session's transaction."""
    table.create(session.connection())


def upsert_rows(
    *, session: Session, table: sa.Table, key: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Write rows (tuples in `table`'s column order) by `key`; rows equal to stored ones stay as they are.

    The bulk path of csv_import: one driver-level executemany on SQLite; on PostgreSQL a COPY
    straight into the table when none of the rows' keys exists yet, else a COPY into a temporary
    table and one INSERT ... ON CONFLICT from it.
    """
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        _upsert_rows_postgres(session, table, key, rows)
    else:
        _upsert_rows_sqlite(session, table, key, rows)


def _on_conflict(statement: Any, table: sa.Table, key: Sequence[str]) -> Any:
    """`statement` updating an existing key's other columns, only where one of them differs."""
    names = [c.name for c in table.columns if c.name not in key]
    if not names:
        return statement.on_conflict_do_nothing(index_elements=list(key))
    new = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=list(key),
        set_={name: new[name] for name in names},
        where=sa.or_(*(table.c[name].is_distinct_from(new[name]) for name in names)),
    )


def _upsert_rows_sqlite(
    session: Session, table: sa.Table, key: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """One driver-level executemany; only columns whose type converts values are touched."""
    dialect = session.get_bind().dialect
    sql = _sqlite_upsert_sql(table, tuple(key))
    processors = [
        (i, process)
        for i, column in enumerate(table.columns)
        if (process := _sqlite_processor(column.type, dialect)) is not None
    ]
    if processors:
        columns = list(zip(*rows, strict=True))
        for i, process in processors:
            columns[i] = tuple(map(process, columns[i]))
        rows = list(zip(*columns, strict=True))
    session.connection().exec_driver_sql(sql, list(rows))


# Python's documented adapter recipe: a date binds as the ISO text SQLAlchemy stores in SQLite
# (registering it also spares the deprecated default adapter). It applies only where sqlite3 gets
# a date object itself, since SQLAlchemy converts dates before binding them.
sqlite3.register_adapter(date, date.isoformat)


@lru_cache(maxsize=64)
def _sqlite_upsert_sql(table: sa.Table, key: tuple[str, ...]) -> str:
    """The upsert statement of `table` for SQLite (compiled once: a batch costs 1 ms less)."""
    return str(_on_conflict(sqlite.insert(table), table, key).compile(dialect=sqlite.dialect()))


def _sqlite_processor(kind: Any, dialect: sa.Dialect) -> Callable[[Any], Any] | None:
    """What turns a value of type `kind` into what SQLAlchemy stores for it in SQLite, if needed."""
    if isinstance(kind, sa.Integer | sa.Float | sa.String | sa.Boolean | sa.Date):
        return None  # sqlite3 binds these Python values as SQLAlchemy would store them
    process: Callable[[Any], Any] | None = kind.dialect_impl(dialect).bind_processor(dialect)
    return process


def _upsert_rows_postgres(
    session: Session, table: sa.Table, key: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """COPY straight into the table when every key is new (2x faster than upserting), else upsert."""
    try:
        with session.begin_nested():
            _copy_tuples(session, table, rows)
        return
    except psycopg.errors.UniqueViolation:
        pass  # a key exists already: the savepoint undid the COPY
    columns = [sa.Column(c.name, c.type) for c in table.columns]
    batch = sa.Table(_PG_BATCH_TABLE, sa.MetaData(), *columns, prefixes=["TEMPORARY"])
    batch.create(session.connection())
    _copy_tuples(session, batch, rows)
    insert = postgresql.insert(table).from_select([c.name for c in columns], sa.select(batch))
    session.execute(_on_conflict(insert, table, key))
    batch.drop(session.connection())


def _copy_tuples(session: Session, table: sa.Table, rows: Sequence[Sequence[Any]]) -> None:
    """COPY tuples (in `table`'s column order) through the session's own psycopg connection."""
    preparer = session.get_bind().dialect.identifier_preparer
    columns = ", ".join(preparer.quote(c.name) for c in table.columns)
    copy_sql = f"COPY {preparer.format_table(table)} ({columns}) FROM STDIN"
    driver: Any = session.connection().connection.driver_connection
    with driver.cursor() as cursor, cursor.copy(copy_sql) as copy:
        for row in rows:
            copy.write_row(row)


def list_rejects(*, session: Session, run_id: int, limit: int | None = None) -> Sequence[CsvReject]:
    """The rows a csv_import run quarantined, in the order it met them."""
    query = select(CsvReject).where(CsvReject.run_id == run_id).order_by(col(CsvReject.id))
    return session.exec(query.limit(limit)).all()


# ---------------------------------------------------------------- audit


def record_audit(
    *,
    session: Session,
    actor: str,
    action: str,
    target: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one audit event."""
    event = AuditEvent(actor=actor, action=action, target=target, details=details or {})
    session.add(event)
    session.flush()
    return event


def list_audit(
    *, session: Session, action: str | None = None, limit: int = 100
) -> Sequence[AuditEvent]:
    """The newest audit events, optionally of one action."""
    query = select(AuditEvent)
    if action:
        query = query.where(AuditEvent.action == action)
    return session.exec(query.order_by(col(AuditEvent.id).desc()).limit(limit)).all()


# ---------------------------------------------------------------- statistics


@dataclass(frozen=True)
class StatsScope:
    """The runs statistics cover: created in [since, until), of one job or of all."""

    since: datetime
    until: datetime
    job: str | None = None

    def filters(self) -> RunFilters:
        """The same runs as history filters."""
        return RunFilters(jobs=(self.job,) if self.job else (), since=self.since, until=self.until)


@dataclass(frozen=True)
class Percentiles:
    """Continuous percentiles (as PostgreSQL's percentile_cont) of finished runs' durations."""

    count: int
    p50_s: float | None
    p90_s: float | None


NO_DURATIONS = Percentiles(0, None, None)


@dataclass(frozen=True)
class DayStats:
    """One UTC day of runs (by creation time)."""

    day: date
    runs: int
    finished: int
    failed: int
    cancelled: int
    records: int  # records loaded by every run of the day
    finished_records: int  # records loaded by the day's finished runs
    busy_s: float  # summed duration of the day's finished runs

    @property
    def success_rate(self) -> float | None:
        """Finished runs among the day's finished and failed ones."""
        ended = self.finished + self.failed
        return self.finished / ended if ended else None

    @property
    def throughput(self) -> float | None:
        """Records per second of the day's finished runs."""
        return self.finished_records / self.busy_s if self.busy_s > 0 else None


@dataclass(frozen=True)
class RunSummary:
    """The summary cards: counts, records, duration percentiles and mean time to recovery."""

    runs: int
    finished: int
    failed: int
    cancelled: int
    records: int
    durations: Percentiles
    mttr_s: float | None  # mean seconds from a failure streak's first failure to the next finish

    @property
    def success_rate(self) -> float | None:
        """Finished runs among finished and failed ones (cancelled runs are a choice, not a failure)."""
        ended = self.finished + self.failed
        return self.finished / ended if ended else None


@dataclass(frozen=True)
class RunPoint:
    """One ended run as a chart point or a highlighted row."""

    run_id: int
    job: str
    status: str
    started_at: datetime | None
    duration_s: float | None  # None for a failed run that never started
    records: int
    reason: str = ""  # why it is highlighted: failed, or slower than its job's p90


def _count_if(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[Any]:
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)


def _seconds(later: Any, earlier: Any, dialect: str) -> sa.ColumnElement[Any]:
    if dialect == "postgresql":
        return sa.extract("epoch", later - earlier)
    return (sa.func.julianday(later) - sa.func.julianday(earlier)) * 86400.0


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _finished_in(scope: StatsScope) -> sa.ColumnElement[bool]:
    return sa.and_(
        filter_clause(scope.filters()),
        col(Run.status) == RunStatus.FINISHED,
        col(Run.started_at).is_not(None),
        col(Run.ended_at).is_not(None),
    )


def duration_percentiles(*, session: Session, scope: StatsScope) -> dict[str | None, Percentiles]:
    """p50/p90 of finished runs' durations: overall (key None) and per job, in one pass."""
    if _dialect(session) == "postgresql":
        return _percentiles_postgres(session, scope)
    return _percentiles_sqlite(session, scope)


def _percentiles_postgres(session: Session, scope: StatsScope) -> dict[str | None, Percentiles]:
    duration = duration_expr("postgresql")
    query = (
        sa.select(
            col(Run.job),
            sa.func.grouping(col(Run.job)),
            sa.func.count(),
            sa.func.percentile_cont(0.5).within_group(duration),
            sa.func.percentile_cont(0.9).within_group(duration),
        )
        .where(_finished_in(scope))
        .group_by(sa.func.rollup(col(Run.job)))  # one row per job plus the total (grouping 1)
    )
    return {
        None if total else job: Percentiles(int(n), _float(p50), _float(p90))
        for job, total, n, p50, p90 in session.execute(query).all()
    }


def _percentiles_sqlite(session: Session, scope: StatsScope) -> dict[str | None, Percentiles]:
    """SQLite has no percentile function. The query returns only the (job, duration) column pair
    of the scope's finished runs, read from a covering index; sorting and interpolating them here,
    exactly as percentile_cont does, measured 10-20 times faster than SQLite's window functions."""
    query = sa.select(col(Run.job), duration_expr("sqlite")).where(_finished_in(scope))
    result = session.connection().execute(query)
    try:
        # Tens of thousands of (text, float) pairs that need no type conversion: reading them
        # from the DBAPI cursor skips building a Row each, which was most of the time.
        rows: Sequence[Any] = result.cursor.fetchall()
    finally:
        result.close()
    by_job: dict[str | None, list[float]] = {None: [seconds for _, seconds in rows]}
    for job, seconds in rows:
        by_job.setdefault(job, []).append(seconds)
    return {job: _percentiles(values) for job, values in by_job.items() if values}


def _percentiles(values: list[float]) -> Percentiles:
    ordered = sorted(values)
    return Percentiles(len(ordered), _cont(ordered, 0.5), _cont(ordered, 0.9))


def _cont(ordered: list[float], p: float) -> float:
    """percentile_cont: linear interpolation at position p * (n - 1) of the sorted values."""
    position = p * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def mean_time_to_recovery(*, session: Session, scope: StatsScope) -> float | None:
    """Mean seconds from the end of a failure streak's first failed run to the end of the job's
    next finished run. A failed run starts a streak when the job's previous finished-or-failed
    run (by end time, cancelled runs ignored) finished, so a streak counts once (an outage); a
    streak not recovered yet is left out. Both neighbours are index seeks (ix_run_job_ended)."""
    before, after = aliased(Run), aliased(Run)
    ended = col(Run.ended_at)
    previous = (
        sa.select(col(before.status))
        .where(
            col(before.job) == col(Run.job),
            col(before.ended_at) < ended,
            col(before.status).in_((RunStatus.FINISHED, RunStatus.FAILED)),
        )
        .order_by(col(before.ended_at).desc())
        .limit(1)
        .scalar_subquery()
    )
    recovered = (
        sa.select(col(after.ended_at))
        .where(
            col(after.job) == col(Run.job),
            col(after.ended_at) > ended,
            col(after.status) == RunStatus.FINISHED,
        )
        .order_by(col(after.ended_at))
        .limit(1)
        .scalar_subquery()
    )
    # Each correlated subquery appears once (a flattened subquery would repeat them per use):
    # no previous run counts as finished, and AVG skips the NULL of a streak not recovered yet.
    starts_streak = sa.func.coalesce(previous, RunStatus.FINISHED) == RunStatus.FINISHED
    seconds = _seconds(recovered, ended, _dialect(session))
    query = sa.select(sa.func.avg(sa.case((starts_streak, seconds)))).where(
        filter_clause(scope.filters()), col(Run.status) == RunStatus.FAILED, ended.is_not(None)
    )
    return _float(session.execute(query).scalar_one())


def _day_expr(dialect: str) -> sa.ColumnElement[Any]:
    if dialect == "postgresql":
        return sa.func.date(sa.func.timezone(sa.literal_column("'UTC'"), Run.created_at))
    return sa.func.date(Run.created_at)


def daily_stats(*, session: Session, scope: StatsScope) -> list[DayStats]:
    """The scope's runs grouped by UTC day of creation, oldest day first."""
    dialect = _dialect(session)
    day = _day_expr(dialect).label("day")
    status = col(Run.status)
    finished = status == RunStatus.FINISHED
    query = (
        sa.select(
            day,
            sa.func.count(),
            _count_if(finished),
            _count_if(status == RunStatus.FAILED),
            _count_if(status == RunStatus.CANCELLED),
            sa.func.coalesce(sa.func.sum(Run.records_loaded), 0),
            sa.func.coalesce(sa.func.sum(sa.case((finished, Run.records_loaded), else_=0)), 0),
            sa.func.coalesce(sa.func.sum(sa.case((finished, duration_expr(dialect)), else_=0)), 0),
        )
        .where(filter_clause(scope.filters()))
        .group_by(day)
        .order_by(day)
    )
    return [
        DayStats(_as_date(d), int(n), int(ok), int(bad), int(off), int(rec), int(fin), float(busy))
        for d, n, ok, bad, off, rec, fin, busy in session.execute(query).all()
    ]


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def summarise(
    days: Sequence[DayStats], durations: Percentiles | None, mttr_s: float | None
) -> RunSummary:
    """The summary cards of a scope from its daily rows (no second pass over the runs)."""
    return RunSummary(
        runs=sum(d.runs for d in days),
        finished=sum(d.finished for d in days),
        failed=sum(d.failed for d in days),
        cancelled=sum(d.cancelled for d in days),
        records=sum(d.records for d in days),
        durations=durations or NO_DURATIONS,
        mttr_s=mttr_s,
    )


def run_summary(*, session: Session, scope: StatsScope) -> RunSummary:
    """Counts, records, duration percentiles and mean time to recovery of the scope's runs."""
    return summarise(
        daily_stats(session=session, scope=scope),
        duration_percentiles(session=session, scope=scope).get(None),
        mean_time_to_recovery(session=session, scope=scope),
    )


_POINT_COLUMNS = (
    col(Run.id),
    col(Run.job),
    col(Run.status),
    col(Run.started_at),
    col(Run.records_loaded),
)


def _points(rows: Sequence[Any], reasons: dict[int, str]) -> list[RunPoint]:
    return [
        RunPoint(
            run_id, job, status, started, _float(duration), int(records), reasons.get(run_id, "")
        )
        for run_id, job, status, started, records, duration in rows
    ]


def duration_points(*, session: Session, scope: StatsScope, limit: int = 2000) -> list[RunPoint]:
    """The newest `limit` ended runs of the scope with their durations, oldest first (a chart)."""
    duration = duration_expr(_dialect(session))
    query = (
        sa.select(*_POINT_COLUMNS, duration)
        .where(filter_clause(scope.filters()), duration.is_not(None))
        .order_by(col(Run.created_at).desc(), col(Run.id).desc())
        .limit(limit)
    )
    return _points(session.execute(query).all(), {})[::-1]


def highlighted_runs(
    *,
    session: Session,
    scope: StatsScope,
    percentiles: dict[str | None, Percentiles] | None = None,
    limit: int = 100,
) -> list[RunPoint]:
    """The scope's failed runs and finished runs slower than their job's p90, newest first."""
    if percentiles is None:
        percentiles = duration_percentiles(session=session, scope=scope)
    p90s = {job: p.p90_s for job, p in percentiles.items() if job and p.p90_s is not None}
    duration = duration_expr(_dialect(session))
    finished = col(Run.status) == RunStatus.FINISHED
    slow = [sa.and_(col(Run.job) == job, finished, duration > p90) for job, p90 in p90s.items()]
    query = (
        sa.select(*_POINT_COLUMNS, duration)
        .where(filter_clause(scope.filters()))
        .where(sa.or_(col(Run.status) == RunStatus.FAILED, *slow))
        .order_by(col(Run.created_at).desc(), col(Run.id).desc())
        .limit(limit)
    )
    rows = session.execute(query).all()
    reasons = {
        row[0]: "failed"
        if row[2] == RunStatus.FAILED
        else f"slower than {row[1]}'s p90 ({p90s[row[1]]:.1f} s)"
        for row in rows
    }
    return _points(rows, reasons)
