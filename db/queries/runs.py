"""Run writes: enqueue, claim, checkpoint, heartbeat, end, cancel, resume and orphans."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from db.models import ACTIVE_STATUSES, EventKind, Run, RunStatus, Trigger, run_duration, utcnow
from db.queries.errors import ActiveRunExists, InvalidState, RunLost
from db.queries.events import append_event, run_state_event
from db.queries.history import get_run
from db.queries.jobs import get_job


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
    total_records: int | None = None,
    scheduled_for: datetime | None = None,
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
        total_records=total_records,
        scheduled_for=scheduled_for,
    )
    if status == RunStatus.RUNNING:
        run.started_at = run.heartbeat_at = now
        run.claim_token = new_claim_token()
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
        .values(
            status=RunStatus.RUNNING,
            started_at=now,
            heartbeat_at=now,
            worker_id=worker_id,
            claim_token=new_claim_token(),
        )
        .returning(col(Run.id))
    ).scalar_one_or_none()
    if claimed is None:
        return None
    run = get_run(session=session, run_id=claimed, fresh=True)
    run_state_event(session=session, run=run, kind=EventKind.STATUS, message="Run started")
    return run


def new_claim_token() -> str:
    """A fresh claim token: every write of the claiming worker must carry it (fencing)."""
    return uuid.uuid4().hex


def _held(table: sa.Table) -> list[sa.ColumnElement[bool]]:
    """The fence of a run write: the run is still in the status and under the claim its writer read.

    A run the orphan sweep failed, or one that ended, refuses the writes of a worker that was
    silent meanwhile, so nothing it still does lands (DESIGN: exactly-once resumes).
    """
    return [
        table.c.id == sa.bindparam("run_id"),
        table.c.status == sa.bindparam("held_status"),
        table.c.claim_token.is_not_distinct_from(sa.bindparam("held_claim")),
    ]


def _held_params(run: Run) -> dict[str, Any]:
    return {"run_id": run.id, "held_status": run.status, "held_claim": run.claim_token}


def hold_run(*, session: Session, run: Run) -> None:
    """Lock the run's row for the rest of the transaction, if it is still held (RunLost if not).

    Transactions that update a run and append events take the run's row before the event lock
    (append_event); a batch whose load appends events calls this first to keep that order, or it
    would deadlock with a cancel, which updates the run and then appends its event.
    """
    table = Run.__table__  # type: ignore[attr-defined]
    held = sa.select(table.c.id).where(*_held(table)).with_for_update()
    if session.execute(held, _held_params(run)).first() is None:
        raise RunLost(run.id)


def checkpoint(
    *,
    session: Session,
    run: Run,
    heartbeat: bool = True,
) -> bool:
    """Store the run's offset, counts, counters, step and pace (its checkpoint); return cancel_requested.

    RunLost when the run is no longer held (see _held): the caller's transaction must not commit.
    """
    values: dict[str, Any] = {
        "offset": run.offset,
        "total_records": run.total_records,
        "records_loaded": run.records_loaded,
        "records_rejected": run.records_rejected,
        "counters": dict(run.counters),
        "current_step": run.current_step,
        "pace": run.pace,
    }
    if heartbeat:
        values["heartbeat_at"] = run.heartbeat_at = utcnow()
    params = {f"new_{name}": value for name, value in values.items()}
    statement = _checkpoint_statement(tuple(values))
    connection = session.connection()  # Core, not the ORM's execute: this runs after every batch
    cancel = connection.execute(statement, {**_held_params(run), **params}).scalar_one_or_none()
    if cancel is None:
        raise RunLost(run.id)
    return bool(cancel)


@lru_cache(maxsize=4)
def _checkpoint_statement(names: tuple[str, ...]) -> sa.Update:
    """The checkpoint UPDATE, built once: it runs after every batch, and building an ORM
    statement each time cost more than executing it (the runner's overhead goal is 5%)."""
    table: sa.Table = Run.__table__  # type: ignore[attr-defined]
    values = {name: sa.bindparam(f"new_{name}", type_=table.c[name].type) for name in names}
    return sa.update(table).where(*_held(table)).values(values).returning(table.c.cancel_requested)


def heartbeat(*, session: Session, run: Run) -> bool:
    """Mark the held run alive now; return whether a cancel was requested; RunLost if not held.

    A worker's event writes begin with it too, so they are fenced like its checkpoints.
    """
    table: sa.Table = Run.__table__  # type: ignore[attr-defined]
    statement = (
        sa.update(table)
        .where(*_held(table))
        .values(heartbeat_at=utcnow())
        .returning(table.c.cancel_requested)
    )
    cancel = session.execute(statement, _held_params(run)).scalar_one_or_none()
    if cancel is None:
        raise RunLost(run.id)
    return bool(cancel)


def end_run(
    *,
    session: Session,
    run: Run,
    status: str,
    error_type: str | None = None,
    error_message: str | None = None,
    error_detail: dict[str, Any] | None = None,
    final_checkpoint: bool = True,
) -> Run:
    """Move a held run to a terminal status with its final checkpoint and error, and record the
    change; RunLost when the run is no longer held (its status or claim changed since it was read)."""
    if run.status not in ACTIVE_STATUSES:
        raise RunLost(run.id)  # an ended run is never ended again, not even by its own worker
    if final_checkpoint:
        checkpoint(session=session, run=run, heartbeat=False)
    ended = utcnow()
    duration = run_duration(run.started_at, ended)
    table: sa.Table = Run.__table__  # type: ignore[attr-defined]
    values = {
        "status": status,
        "ended_at": ended,
        "duration_s": duration,
        "error_type": error_type,
        "error_message": error_message,
        "error_detail": error_detail,
    }
    done = session.connection().execute(
        sa.update(table).where(*_held(table)).values(values), _held_params(run)
    )
    if done.rowcount != 1:
        raise RunLost(run.id)
    run.status, run.ended_at, run.duration_s = status, ended, duration
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
    """Fail every running run whose heartbeat is older than `timeout_s` (error_type interrupted).

    The run keeps its last committed checkpoint; a worker that beats again meanwhile keeps its run
    (the heartbeat is part of the fence), and one that wakes up later finds its writes refused.
    """
    now = utcnow()
    cutoff = now - timedelta(seconds=timeout_s)
    stale = session.exec(
        select(Run).where(Run.status == RunStatus.RUNNING, col(Run.heartbeat_at) < cutoff)
    ).all()
    orphans = []
    for run in stale:
        try:
            with session.begin_nested():
                _fail_orphan(session, run, now, cutoff, timeout_s)
        except RunLost:
            continue  # it beat, ended or was re-claimed since it was read
        assert run.id is not None
        orphans.append(run.id)
    return orphans


def _fail_orphan(
    session: Session, run: Run, now: datetime, cutoff: datetime, timeout_s: float
) -> None:
    assert run.heartbeat_at is not None
    silent = (now - run.heartbeat_at).total_seconds()
    # Say what is known: the worker may be dead, stopped, hung or cut off from the database.
    message = (
        f"No heartbeat for {silent:.0f} s (since {run.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC; "
        f"the limit is {timeout_s:g} s) from worker {run.worker_id or 'unknown'}."
    )
    detail = {
        "stage": run.current_step,
        "worker_id": run.worker_id,
        "offset": run.offset,
        "heartbeat_at": run.heartbeat_at.isoformat(),
        "silent_s": round(silent, 1),
    }
    table: sa.Table = Run.__table__  # type: ignore[attr-defined]
    stale = session.connection().execute(
        sa.update(table)
        .where(*_held(table), table.c.heartbeat_at < cutoff)
        .values(heartbeat_at=table.c.heartbeat_at),
        _held_params(run),
    )
    if stale.rowcount != 1:  # on PostgreSQL this also waits for, and sees, a batch committing now
        raise RunLost(run.id)
    session.refresh(run)  # the event carries the checkpoint as committed
    end_run(
        session=session,
        run=run,
        status=RunStatus.FAILED,
        error_type="interrupted",
        error_message=message,
        error_detail=detail,
        final_checkpoint=False,
    )
