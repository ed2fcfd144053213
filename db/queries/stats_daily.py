"""Run statistics by UTC day of creation, and the summary cards built from them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlmodel import Session, col

from db.models import Run, RunStatus, UTCDateTime, utc_day
from db.queries.history import filter_clause
from db.queries.stats import (
    NO_DURATIONS,
    Percentiles,
    StatsScope,
    duration_percentiles,
    mean_time_to_recovery,
    read_scope,
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


def daily_stats(*, session: Session, scope: StatsScope) -> list[DayStats]:
    """The scope's runs grouped by UTC day of creation, oldest day first.

    SQL groups by day and status, reading ix_run_day_status in its own order (no sort and no
    per-status CASE sums); the few rows of each day are folded into its DayStats here."""

    def query() -> sa.ClauseElement:
        day, status = utc_day(col(Run.created_at)), col(Run.status)
        return (
            sa.select(
                day,
                status,
                sa.func.count(),
                sa.func.sum(col(Run.records_loaded)),
                sa.func.sum(col(Run.duration_s)),
            )
            .where(filter_clause(scope.filters()), *_days_of(day))
            .group_by(day, status)
            .order_by(day, status)
        )

    by_day: dict[date, dict[str, _StatusDay]] = {}
    ends = {"stats_since": scope.since, "stats_until": scope.until}
    for d, state, runs, records, busy in read_scope(session, "stats_daily", scope, query, ends):
        by_day.setdefault(_as_date(d), {})[state] = _StatusDay(int(runs), int(records or 0), busy)
    return [_day_stats(d, statuses) for d, statuses in by_day.items()]


def _days_of(day: sa.ColumnElement[date]) -> list[sa.ColumnElement[bool]]:
    """The UTC days of the scope's time range: redundant with it, but a range of the key of
    ix_run_day_status (bound to `stats_since` and `stats_until`)."""
    since, until = (sa.bindparam(f"stats_{end}", type_=UTCDateTime) for end in ("since", "until"))
    return [day >= utc_day(since), day <= utc_day(until)]


class _StatusDay(NamedTuple):
    """One day's runs of one status."""

    runs: int
    records: int
    busy_s: float | None


_NONE = _StatusDay(0, 0, None)


def _day_stats(day: date, statuses: dict[str, _StatusDay]) -> DayStats:
    finished = statuses.get(RunStatus.FINISHED, _NONE)
    return DayStats(
        day=day,
        runs=sum(s.runs for s in statuses.values()),
        finished=finished.runs,
        failed=statuses.get(RunStatus.FAILED, _NONE).runs,
        cancelled=statuses.get(RunStatus.CANCELLED, _NONE).runs,
        records=sum(s.records for s in statuses.values()),
        finished_records=finished.records,
        busy_s=float(finished.busy_s or 0.0),
    )


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
