"""Schedule reads and writes: which jobs are due, and taking a due tick (one worker of many)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col

from db import driver
from db.models import Job

DUE_LIMIT = 100  # due jobs one scheduler pass handles; the next poll takes the rest


def due_jobs(*, session: Session, now: datetime) -> list[tuple[str, datetime]]:
    """(name, next tick) of the enabled, unpaused jobs whose next tick is due by `now`, soonest first.

    Every worker asks this on every poll: one probe of ix_job_next_run_at on the bare driver.
    """
    with driver.reader(session) as db:
        rows = db.rows("due_jobs", _due, {"now": now})
        to_time = driver.timestamp(db.sqlite)
    return [(name, due) for name, when in rows if (due := to_time(when)) is not None]


def _due() -> sa.Select[str, datetime | None]:
    return (
        sa.select(col(Job.name), col(Job.next_run_at))
        .where(
            col(Job.next_run_at) <= sa.bindparam("now"),
            col(Job.paused).is_(False),
            col(Job.enabled).is_(True),
        )
        .order_by(col(Job.next_run_at))
        .limit(DUE_LIMIT)
    )


def take_tick(*, session: Session, job: str, seen: datetime, next_due: datetime) -> bool:
    """Move `job`'s next tick from `seen` to `next_due`; False when another worker moved it first.

    A compare-and-set: on PostgreSQL a second taker waits for the first one's row lock and then finds
    the tick moved; on SQLite write transactions take turns.
    """
    moved = session.execute(
        sa.update(Job)
        .where(col(Job.name) == job, col(Job.next_run_at) == seen)
        .values(next_run_at=next_due)
    )
    return bool(moved.rowcount)  # type: ignore[attr-defined]


def set_paused(*, session: Session, job: Job, paused: bool, next_due: datetime | None) -> Job:
    """Pause or unpause `job`, with the next tick it handles once it runs again."""
    job.paused, job.next_run_at = paused, next_due
    session.add(job)
    session.flush()
    return job
