"""Run statistics: the scope, duration percentiles, time to recovery and chart points."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from db import driver
from db.models import Run, RunStatus
from db.queries.history import RunFilters, filter_clause, run_binds


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
    # p90 of seconds per record of the finished runs that loaded records; per job only (None
    # for the total: jobs' records differ too much for one pace to mean anything)
    p90_per_record_s: float | None = None


NO_DURATIONS = Percentiles(0, None, None)


class RunPoint(NamedTuple):
    """One ended run as a chart point or a highlighted row (a named tuple: thousands are built
    per refresh, three times faster than a frozen dataclass)."""

    run_id: int
    job: str
    status: str
    started_at: datetime | None
    duration_s: float | None  # None for a failed run that never started
    records: int
    reason: str = ""  # why it is highlighted: failed, or slower than its job's p90


def _seconds(later: Any, earlier: Any, dialect: str) -> sa.ColumnElement[Any]:
    if dialect == "postgresql":
        return sa.extract("epoch", later - earlier)
    return (sa.func.julianday(later) - sa.func.julianday(earlier)) * 86400.0


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def read_scope(
    session: Session,
    name: str,
    scope: StatsScope,
    build: Callable[[], sa.ClauseElement],
    values: dict[str, Any] | None = None,
) -> driver.Rows:
    """The rows of statement `name` over the scope's runs, on the bare driver: `build` runs and
    compiles once per shape (which filters apply, the names of `values`); later reads only bind
    the scope's filters and `values`, so every value that varies must be a named bindparam."""
    binds = run_binds(scope.filters()) | (values or {})
    return driver.read(session, (name, *binds), build, binds)


def _finished_in(scope: StatsScope) -> sa.ColumnElement[bool]:
    return sa.and_(
        filter_clause(scope.filters()),
        col(Run.status) == RunStatus.FINISHED,
        col(Run.duration_s).is_not(None),  # started and ended
    )


def _per_record() -> sa.ColumnElement[Any]:
    """A run's seconds per record; NULL when it loaded none (percentiles skip it)."""
    return col(Run.duration_s) / sa.func.nullif(col(Run.records_loaded), 0)


def duration_percentiles(*, session: Session, scope: StatsScope) -> dict[str | None, Percentiles]:
    """p50/p90 of finished runs' durations, overall (key None) and per job, and each job's p90
    of seconds per record, in one pass."""
    if _dialect(session) == "postgresql":
        return _percentiles_postgres(session, scope)
    return _percentiles_sqlite(session, scope)


def _percentiles_postgres(session: Session, scope: StatsScope) -> dict[str | None, Percentiles]:
    def query() -> sa.Select[Any]:
        duration = col(Run.duration_s)
        return (
            sa.select(
                col(Run.job),
                sa.func.grouping(col(Run.job)),
                sa.func.count(),
                sa.func.percentile_cont(0.5).within_group(duration),
                sa.func.percentile_cont(0.9).within_group(duration),
                sa.func.percentile_cont(0.9).within_group(_per_record()),
            )
            .where(_finished_in(scope))
            .group_by(sa.func.rollup(col(Run.job)))  # one row per job plus the total (grouping 1)
        )

    rows = read_scope(session, "stats_percentiles", scope, query)
    return {
        None if total else job: Percentiles(
            int(n), _float(p50), _float(p90), None if total else _float(paced)
        )
        for job, total, n, p50, p90, paced in rows
    }


def _percentiles_sqlite(session: Session, scope: StatsScope) -> dict[str | None, Percentiles]:
    """SQLite has no percentile function. The query returns only the job, duration and seconds
    per record of the scope's finished runs, read from a covering index; sorting and interpolating
    them here, exactly as percentile_cont does, measured 10-20 times faster than SQLite's window
    functions."""

    def query() -> sa.ClauseElement:
        return sa.select(col(Run.job), col(Run.duration_s), _per_record()).where(
            _finished_in(scope)
        )

    by_job: dict[str, list[float]] = defaultdict(list)
    paces: dict[str, list[float]] = defaultdict(list)
    for job, seconds, pace in read_scope(session, "stats_durations", scope, query):
        by_job[job].append(seconds)
        if pace is not None:
            paces[job].append(pace)
    for values in chain(by_job.values(), paces.values()):
        values.sort()
    found = {job: _percentiles(values, paces.get(job)) for job, values in by_job.items()}
    # The jobs' sorted lists, joined, are a few sorted runs that sorted() merges in one pass.
    every = sorted(chain.from_iterable(by_job.values()))
    return found | ({None: _percentiles(every, None)} if every else {})


def _percentiles(ordered: list[float], paces: list[float] | None) -> Percentiles:
    return Percentiles(
        len(ordered),
        percentile_cont(ordered, 0.5),
        percentile_cont(ordered, 0.9),
        percentile_cont(paces, 0.9) if paces else None,
    )


def percentile_cont(ordered: Sequence[float], p: float) -> float:
    """PostgreSQL's percentile_cont of sorted values: linear interpolation at p * (n - 1)."""
    position = p * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _neighbours() -> tuple[sa.ScalarSelect[Any], sa.ScalarSelect[Any]]:
    """The status of the job's previous finished-or-failed run and the end of its next finished
    run, as subqueries correlated to the outer query's run (seeks on ix_run_job_ended)."""
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
    return previous, recovered


def mean_time_to_recovery(*, session: Session, scope: StatsScope) -> float | None:
    """Mean seconds from the end of a failure streak's first failed run to the end of the job's
    next finished run. A failed run starts a streak when the job's previous finished-or-failed
    run (by end time, cancelled runs ignored) finished, so a streak counts once (an outage); a
    streak not recovered yet is left out. Both neighbours are index seeks (ix_run_job_ended)."""
    dialect = _dialect(session)

    def query() -> sa.Select[Any]:
        ended = col(Run.ended_at)
        previous_status, recovered_at = _neighbours()
        # Each correlated subquery appears once (a flattened one would repeat them per use): no
        # previous run counts as finished, and AVG skips the NULL of a streak not recovered yet.
        previous = sa.func.coalesce(previous_status, RunStatus.FINISHED)
        seconds = _seconds(recovered_at, ended, dialect)
        return sa.select(sa.func.avg(sa.case((previous == RunStatus.FINISHED, seconds)))).where(
            filter_clause(scope.filters()), col(Run.status) == RunStatus.FAILED, ended.is_not(None)
        )

    return _float(read_scope(session, "stats_recovery", scope, query)[0][0])


_POINT_COLUMNS = (
    col(Run.id),
    col(Run.job),
    col(Run.status),
    col(Run.started_at),
    col(Run.records_loaded),
)


def _points(rows: Sequence[Any], reasons: dict[int, str], dialect: str) -> list[RunPoint]:
    """Points of driver rows of _POINT_COLUMNS and the duration."""
    utc = driver.timestamp(dialect == "sqlite")
    return [
        RunPoint(run_id, job, status, utc(started), seconds, records, reasons.get(run_id, ""))
        for run_id, job, status, started, records, seconds in rows
    ]


def _newest(where: Sequence[sa.ColumnElement[bool]]) -> sa.ClauseElement:
    """The points of the runs `where` selects, newest first, `stats_limit` of them."""
    return (
        sa.select(*_POINT_COLUMNS, col(Run.duration_s))
        .where(*where)
        .order_by(col(Run.created_at).desc(), col(Run.id).desc())
        .limit(sa.bindparam("stats_limit"))
    )


def duration_points(*, session: Session, scope: StatsScope, limit: int = 2000) -> list[RunPoint]:
    """The newest `limit` ended runs of the scope with their durations, oldest first (a chart)."""
    dialect = _dialect(session)

    def query() -> sa.ClauseElement:
        ended = col(Run.duration_s).is_not(None)
        return _newest([filter_clause(scope.filters()), ended])

    rows = read_scope(session, "stats_points", scope, query, {"stats_limit": limit})
    return _points(rows, {}, dialect)[::-1]


def highlighted_runs(
    *,
    session: Session,
    scope: StatsScope,
    percentiles: dict[str | None, Percentiles] | None = None,
    limit: int = 100,
) -> list[RunPoint]:
    """The scope's failed runs and its slow finished runs, newest first. A run that loaded records
    is slow when its seconds per record exceed its job's p90 of seconds per record (a big run is
    not slow for being big); one that loaded none, when its duration exceeds the job's p90."""
    if percentiles is None:
        percentiles = duration_percentiles(session=session, scope=scope)
    limits = {job: p for job, p in percentiles.items() if job and p.p90_s is not None}
    values: dict[str, Any] = {"stats_limit": limit}
    for i, (job, p) in enumerate(limits.items()):
        values |= {f"stats_job_{i}": job, f"stats_p90_{i}": p.p90_s}
        if p.p90_per_record_s is not None:
            values[f"stats_pace_{i}"] = p.p90_per_record_s

    def query() -> sa.ClauseElement:
        slow = [_slower(i, job, p) for i, (job, p) in enumerate(limits.items())]
        failed = col(Run.status) == RunStatus.FAILED
        return _newest([filter_clause(scope.filters()), sa.or_(failed, *slow)])

    rows = read_scope(session, "stats_highlights", scope, query, values)
    reasons = {row[0]: _reason(row, limits) for row in rows}
    return _points(rows, reasons, _dialect(session))


def _slower(i: int, job: str, p: Percentiles) -> sa.ColumnElement[bool]:
    """Job i's finished runs slower than its p90: per record, or in all for those without records."""
    duration = col(Run.duration_s)
    slower = [
        sa.and_(col(Run.records_loaded) == 0, duration > sa.bindparam(f"stats_p90_{i}", p.p90_s))
    ]
    if p.p90_per_record_s is not None:
        slower.append(_per_record() > sa.bindparam(f"stats_pace_{i}", p.p90_per_record_s))
    return sa.and_(
        col(Run.job) == sa.bindparam(f"stats_job_{i}", job),
        col(Run.status) == RunStatus.FINISHED,
        sa.or_(*slower),
    )


def _reason(row: Sequence[Any], limits: dict[str, Percentiles]) -> str:
    """Why a highlighted row (of _POINT_COLUMNS and the duration) is there."""
    _, job, status, _, records, seconds = row
    if status == RunStatus.FAILED:
        return "failed"
    p = limits[job]
    if records and p.p90_per_record_s is not None:
        pace = short_seconds(p.p90_per_record_s)
        return f"slower than {job}'s p90 ({pace} per record; this run {short_seconds(seconds / records)})"
    return f"slower than {job}'s p90 ({short_seconds(p.p90_s)}; this run {short_seconds(seconds)}, no records)"


def short_seconds(seconds: float | None) -> str:
    """Seconds in the unit that reads best: `76.0 s`, `2.4 ms`, `310.5 µs`."""
    value = seconds or 0.0
    if value >= 1:
        return f"{value:.1f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.1f} ms"
    return f"{value * 1e6:.1f} µs"
