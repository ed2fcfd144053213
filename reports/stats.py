"""The Statistics page's data: time range presets and one bundle of SQL aggregates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa

from db.queries import (
    DayStats,
    RunPoint,
    RunSummary,
    StatsScope,
    daily_stats,
    duration_percentiles,
    duration_points,
    highlighted_runs,
    mean_time_to_recovery,
    read_session,
    summarise,
)

PRESETS: dict[str, timedelta] = {
    "24 h": timedelta(hours=24),
    "7 d": timedelta(days=7),
    "30 d": timedelta(days=30),
    "90 d": timedelta(days=90),
}
CUSTOM = "custom"
RANGE_CHOICES = (*PRESETS, CUSTOM)
POINT_LIMIT = 2000  # newest ended runs drawn in the duration chart; the aggregates use every run


@dataclass(frozen=True)
class Statistics:
    """Everything the Statistics page shows for one scope."""

    scope: StatsScope
    summary: RunSummary
    days: list[DayStats]
    points: list[RunPoint]
    highlights: list[RunPoint]


def preset_scope(preset: str, *, now: datetime, job: str | None = None) -> StatsScope:
    """The scope of the last `preset` (a key of PRESETS) up to `now`."""
    if preset not in PRESETS:
        raise ValueError(f"time range must be one of {', '.join(PRESETS)}")
    return StatsScope(since=now - PRESETS[preset], until=now, job=job)


def custom_scope(first: date, last: date, *, job: str | None = None) -> StatsScope:
    """The scope of whole UTC days from `first` to `last`, both included."""
    if last < first:
        raise ValueError("the range ends before it starts")
    since = datetime.combine(first, time(), tzinfo=UTC)
    until = datetime.combine(last + timedelta(days=1), time(), tzinfo=UTC)
    return StatsScope(since=since, until=until, job=job)


def load_statistics(engine: sa.Engine, scope: StatsScope) -> Statistics:
    """Every aggregate of `scope`, computed in SQL in one read session."""
    with read_session(engine) as session:
        days = daily_stats(session=session, scope=scope)
        percentiles = duration_percentiles(session=session, scope=scope)
        mttr = mean_time_to_recovery(session=session, scope=scope)
        return Statistics(
            scope=scope,
            summary=summarise(days, percentiles.get(None), mttr),
            days=days,
            points=duration_points(session=session, scope=scope, limit=POINT_LIMIT),
            highlights=highlighted_runs(session=session, scope=scope, percentiles=percentiles),
        )
