"""Remote feeds (sse_follow): feed checkpoints and the local mirrors of remote runs."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from db.models import ACTIVE_STATUSES, Job, RemoteFeed, RemoteRun, Run, RunStatus, Trigger, utcnow
from db.queries.history import get_run
from db.queries.runs import active_run_id, end_run


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
