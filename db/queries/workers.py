"""The worker registry's writes: a worker registers, beats, stops; old rows are pruned."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col

from db.models import WorkerEntry, utcnow

KEEP_FOR = timedelta(days=1)  # rows of workers stopped or lost this long ago are pruned

_TABLE: sa.Table = WorkerEntry.__table__  # type: ignore[attr-defined]
# Built once: a worker sends it every heartbeat_s for as long as it lives.
_BEAT = (
    sa.update(_TABLE)
    .where(_TABLE.c.id == sa.bindparam("worker_id"))
    .values(
        heartbeat_at=sa.bindparam("now", type_=_TABLE.c.heartbeat_at.type),
        current_run_id=sa.bindparam("run_id", type_=sa.Integer()),
        scheduler_tick_at=sa.bindparam("tick", type_=_TABLE.c.scheduler_tick_at.type),
        stopped_at=None,
    )
)


def register_worker(
    *, session: Session, name: str, kind: str, host: str, pid: int, now: datetime | None = None
) -> int:
    """Add a worker's row (alive from now) and prune rows over a day stale; its registry id."""
    now = now or utcnow()
    prune_workers(session=session, before=now - KEEP_FOR)
    entry = WorkerEntry(name=name, kind=kind, host=host, pid=pid, started_at=now, heartbeat_at=now)
    session.add(entry)
    session.flush()
    assert entry.id is not None
    return entry.id


def beat_worker(
    *,
    session: Session,
    worker_id: int,
    run_id: int | None,
    scheduler_tick: datetime | None,
    now: datetime | None = None,
) -> bool:
    """Mark the worker alive now, with its current run and scheduler tick; False if its row is gone
    (pruned while the worker was stopped for over a day: it registers again)."""
    values = {"worker_id": worker_id, "now": now or utcnow(), "run_id": run_id}
    beat = session.connection().execute(_BEAT, {**values, "tick": scheduler_tick})
    return bool(beat.rowcount)


def stop_worker(*, session: Session, worker_id: int, now: datetime | None = None) -> None:
    """Record a clean stop: the worker holds no run and is no longer expected to beat."""
    session.execute(
        sa.update(WorkerEntry)
        .where(col(WorkerEntry.id) == worker_id)
        .values(stopped_at=now or utcnow(), current_run_id=None)
    )


def prune_workers(*, session: Session, before: datetime) -> int:
    """Delete the rows of workers stopped, or silent, since before `before`; how many."""
    stale = sa.func.coalesce(col(WorkerEntry.stopped_at), col(WorkerEntry.heartbeat_at)) < before
    pruned = session.execute(sa.delete(WorkerEntry).where(stale))
    return int(pruned.rowcount)  # type: ignore[attr-defined]
