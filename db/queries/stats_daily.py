"""Run statistics by UTC day of creation, and the summary cards built from them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from db.models import Run, RunStatus
from db.queries.history import duration_expr, filter_clause
from db.queries.stats import (
    NO_DURATIONS,
    Percentiles,
    StatsScope,
    _dialect,
    duration_percentiles,
    mean_time_to_recovery,
)


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


def _count_if(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[Any]:
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)


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
