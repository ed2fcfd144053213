"""The live overview: each job with its latest runs, last success and throughput history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from db.models import ACTIVE_STATUSES, Job, Run, RunRecord, RunStatus, run_duration
from db.queries.history import get_run

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
    seconds = run_duration(started, ended) or 0.0
    return records / seconds if seconds > 0 and records > 0 else None


def recent_run_ids(*, session: Session, job: str | None = None, limit: int = 100) -> list[int]:
    """Ids of the newest runs (of one job, or all), newest first: the Logs page's run choice."""
    query = sa.select(col(Run.id)).order_by(col(Run.id).desc()).limit(limit)
    if job is not None:
        query = query.where(col(Run.job) == job)
    return [int(run_id) for run_id in session.execute(query).scalars()]
