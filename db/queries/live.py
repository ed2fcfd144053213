"""The live overview: each job with its latest runs, last success and throughput history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from db import driver
from db.models import ACTIVE_STATUSES, Job, Run, RunRow, RunStatus
from db.queries.history import RUN_ROW_COLUMNS, run_rows

HISTORY_RUNS = 50  # past successful runs an ETA learns from


@dataclass(frozen=True)
class JobLive:
    """One job at a glance: its configuration, latest runs and past throughput (the Live page)."""

    name: str
    title: str
    kind: str
    params: dict[str, Any]
    schedule: str | None
    timezone: str  # the schedule's wall clock
    enabled: bool
    paused: bool
    recent: list[RunRow]  # the five latest runs, newest first
    last_success: RunRow | None
    throughputs: list[float]  # records/s of recent successful runs that did not resume another
    pace: dict[str, Any] | None = None  # the active run's stored pace (reports.eta.Pace)

    @property
    def active(self) -> RunRow | None:
        """The pending or running run (always the newest: a job has at most one active run)."""
        latest = self.recent[0] if self.recent else None
        return latest if latest and latest.status in ACTIVE_STATUSES else None

    @property
    def cancel_requested(self) -> bool:
        """Whether the active run was asked to stop."""
        return self.active is not None and self.active.cancel_requested


def live_overview(*, session: Session, jobs: Sequence[str] = ()) -> list[JobLive]:
    """Every job (or those named) with its five latest runs, last success and throughput history.

    Read on the bare driver (db.driver): every open Live page asks every refresh tick.
    """
    names = {f"job_{i}": name for i, name in enumerate(jobs)}
    with driver.reader(session) as db:
        found = db.rows(("live_jobs", *names), lambda: _jobs(names), names)
        return [_job_live(db, row) for row in found]


def _jobs(names: dict[str, str]) -> sa.Select[Any]:
    query = sa.select(*(col(getattr(Job, name)) for name in _JOB_COLUMNS)).order_by(col(Job.name))
    if names:
        query = query.where(col(Job.name).in_([sa.bindparam(key, v) for key, v in names.items()]))
    return query


_JOB_COLUMNS = ("name", "title", "kind", "params", "schedule", "timezone", "enabled", "paused")


def _job_live(db: driver.Reader, job: tuple[Any, ...]) -> JobLive:
    name, title, kind, params, schedule, timezone, enabled, paused = job
    values = {"job": name, "finished": RunStatus.FINISHED}
    recent = run_rows(db.rows("live_recent", _recent, values), db.sqlite)
    successes = db.rows("live_successes", _successes, values)
    last_success = next((run for run in recent if run.status == RunStatus.FINISHED), None)
    active = recent[0] if recent and recent[0].status in ACTIVE_STATUSES else None
    if last_success is None and successes:
        by_id = {"run_id": successes[0][0]}
        last_success = run_rows(db.rows("live_run", _run, by_id), db.sqlite)[0]
    return JobLive(
        name=name,
        title=title,
        kind=kind,
        params=dict(driver.json_value(db.sqlite)(params) or {}),
        schedule=schedule,
        timezone=timezone,
        enabled=bool(enabled),
        paused=bool(paused),
        recent=recent,
        last_success=last_success,
        throughputs=_throughputs(successes),
        pace=_pace(db, active.id) if active else None,
    )


def _pace(db: driver.Reader, run_id: int) -> dict[str, Any] | None:
    """The stored pace of the active run (only it needs one: a page asks every tick)."""
    rows = db.rows("live_pace", _pace_query, {"run_id": run_id})
    return driver.json_value(db.sqlite)(rows[0][0]) if rows else None


def _pace_query() -> sa.Select[Any]:
    return sa.select(col(Run.pace)).where(col(Run.id) == sa.bindparam("run_id"))


def job_throughputs(*, session: Session, job: str) -> list[float]:
    """Records/s of the job's recent successful runs: the history every ETA learns from."""
    with driver.reader(session) as db:
        values = {"job": job, "finished": RunStatus.FINISHED}
        return _throughputs(db.rows("live_successes", _successes, values))


def _throughputs(successes: driver.Rows) -> list[float]:
    return [rate for _, rate in successes if rate is not None]


def _recent() -> sa.Select[Any]:
    return (
        sa.select(*RUN_ROW_COLUMNS)
        .where(col(Run.job) == sa.bindparam("job"))
        .order_by(col(Run.created_at).desc(), col(Run.id).desc())
        .limit(5)
    )


def _run() -> sa.Select[Any]:
    return sa.select(*RUN_ROW_COLUMNS).where(col(Run.id) == sa.bindparam("run_id"))


def _successes() -> sa.Select[Any]:
    """Id and throughput (records/s; NULL when unmeasurable or resumed) of the job's newest
    finished runs: computed in SQL, so the tick converts no timestamps."""
    duration = col(Run.duration_s)
    measurable = sa.and_(col(Run.resumed_from).is_(None), col(Run.offset) > 0, duration > 0)
    rate = sa.case((measurable, sa.cast(col(Run.offset), sa.Float) / duration))
    return (
        sa.select(col(Run.id), rate)
        .where(col(Run.job) == sa.bindparam("job"), col(Run.status) == sa.bindparam("finished"))
        .order_by(col(Run.created_at).desc(), col(Run.id).desc())
        .limit(HISTORY_RUNS)
    )


def recent_run_ids(*, session: Session, job: str | None = None, limit: int = 100) -> list[int]:
    """Ids of the newest runs (of one job, or all), newest first: the Logs page's run choice."""
    query = sa.select(col(Run.id)).order_by(col(Run.id).desc()).limit(limit)
    if job is not None:
        query = query.where(col(Run.job) == job)
    return [int(run_id) for run_id in session.execute(query).scalars()]
