"""Every read and write of Runwatch's tables. Functions take the session keyword-only."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from db.engine import WRITE_OPTION, get_engine
from db.models import (
    ACTIVE_STATUSES,
    LEVELS,
    AuditEvent,
    EventKind,
    Job,
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
) -> int:
    """Append one run event and return its id (the live readers' cursor)."""
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}")
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_EVENT_LOCK})
    event_id = session.execute(
        sa.insert(RunEvent)
        .values(
            run_id=run_id,
            ts=utcnow(),
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
    query = select(RunEvent)
    if run_id is not None:
        query = query.where(RunEvent.run_id == run_id)
    if job is not None:
        query = query.where(col(RunEvent.run_id).in_(select(Run.id).where(Run.job == job)))
    if after_id is not None:
        query = query.where(col(RunEvent.id) > after_id)
    if before_id is not None:
        query = query.where(col(RunEvent.id) < before_id)
    if kinds:
        query = query.where(col(RunEvent.kind).in_(list(kinds)))
    if min_level:
        query = query.where(col(RunEvent.level).in_(LEVELS[LEVELS.index(min_level) :]))
    if text:
        query = query.where(col(RunEvent.message).ilike(f"%{_escape_like(text)}%", escape="\\"))
    order = col(RunEvent.id).desc() if newest_first else col(RunEvent.id)
    return session.exec(query.order_by(order).limit(limit)).all()


def last_event_id(*, session: Session) -> int:
    """The id of the newest run event (0 when there is none)."""
    return int(session.exec(select(sa.func.coalesce(sa.func.max(RunEvent.id), 0))).one() or 0)


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
    cancel = session.execute(
        sa.update(Run)
        .where(col(Run.id) == run.id)
        .values(**values)
        .returning(col(Run.cancel_requested))
    ).scalar_one()
    return bool(cancel)


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
