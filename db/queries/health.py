"""Health reads: a database round trip, the worker registry, the queue and the runs' totals.

Read on the bare driver (db.driver), like the other reads behind a refresh tick: the Health page
re-reads every few seconds and Prometheus scrapes /metrics on its own clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlmodel import Session, col

from db import driver
from db.models import Run, RunStatus, WorkerEntry

WORKERS_SHOWN = 200  # registry rows read, newest heartbeat first (live workers come first)


class WorkerRow(NamedTuple):
    """A worker's registry row, with the job of the run it holds."""

    id: int
    name: str
    kind: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    current_run_id: int | None
    current_job: str | None
    scheduler_tick_at: datetime | None
    stopped_at: datetime | None


class Queue(NamedTuple):
    """The pending runs: how many, and when the oldest was enqueued."""

    depth: int
    oldest_at: datetime | None


class RunTotals(NamedTuple):
    """One job's runs of one status, all time: count, records loaded and, for finished runs,
    their durations (sum, count, and how many took at most each bucket's seconds)."""

    job: str
    status: str
    runs: int
    records_loaded: int
    duration_sum: float
    durations: int
    buckets: tuple[int, ...]  # cumulative, one per bound asked for


def round_trip(*, session: Session) -> None:
    """One trivial statement on a kept read connection: raises when the database is unreachable."""
    driver.read(session, "health_ping", lambda: sa.select(sa.literal(1)))


def list_workers(*, session: Session, limit: int = WORKERS_SHOWN) -> list[WorkerRow]:
    """The registered workers, newest heartbeat first."""
    with driver.reader(session) as db:
        rows = db.rows(("health_workers", limit), lambda: _workers(limit))
        to_time = driver.timestamp(db.sqlite)
    return [_worker_row(row, to_time) for row in rows]


def _worker_row(row: tuple[Any, ...], to_time: Any) -> WorkerRow:
    worker_id, name, kind, host, pid, started, beat, run_id, job, tick, stopped = row
    times = (to_time(started), to_time(beat))
    return WorkerRow(
        worker_id, name, kind, host, pid, *times, run_id, job, to_time(tick), to_time(stopped)
    )


def _workers(limit: int) -> sa.Select[Any]:
    w = WorkerEntry.__table__.c  # type: ignore[attr-defined]
    run = Run.__table__.c  # type: ignore[attr-defined]
    columns = (w.id, w.name, w.kind, w.host, w.pid, w.started_at, w.heartbeat_at)
    return (
        sa.select(*columns, w.current_run_id, run.job, w.scheduler_tick_at, w.stopped_at)
        .select_from(WorkerEntry.__table__.outerjoin(Run.__table__, run.id == w.current_run_id))  # type: ignore[attr-defined]
        .order_by(w.heartbeat_at.desc(), w.id.desc())
        .limit(limit)
    )


def queue_state(*, session: Session) -> Queue:
    """How many runs are pending and when the oldest of them was enqueued (one index probe)."""
    with driver.reader(session) as db:
        depth, oldest = db.rows("health_queue", _queue, {"pending": RunStatus.PENDING})[0]
        return Queue(int(depth), driver.timestamp(db.sqlite)(oldest))


def _queue() -> sa.Select[int, datetime]:
    return sa.select(sa.func.count(), sa.func.min(col(Run.created_at))).where(
        col(Run.status) == sa.bindparam("pending")
    )


def run_totals(*, session: Session, bounds: Sequence[float]) -> list[RunTotals]:
    """Every job's runs per status with their records loaded and duration histogram (the bounds
    in seconds, ascending): one aggregate over a covering index, a row per job and status."""
    key = ("health_totals", tuple(bounds))
    with driver.reader(session) as db:
        rows = db.rows(key, lambda: _totals(bounds))
    return [
        RunTotals(job, status, runs, int(loaded or 0), float(total or 0), durations, tuple(buckets))
        for job, status, runs, loaded, total, durations, *buckets in rows
    ]


def _totals(bounds: Sequence[float]) -> sa.Select[Any]:
    duration = col(Run.duration_s)
    columns: list[Any] = [
        col(Run.job),
        col(Run.status),
        sa.func.count(),
        sa.func.sum(col(Run.records_loaded)),
        sa.func.sum(duration),
        sa.func.count(duration),
    ]
    columns += [sa.func.sum(sa.case((duration <= bound, 1), else_=0)) for bound in bounds]
    return sa.select(*columns).group_by(col(Run.job), col(Run.status))
