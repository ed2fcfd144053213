"""Statistics aggregates against hand-computed values on a small seeded history (both backends)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from db.models import Run, RunStatus, utcnow
from db.queries import (
    StatsScope,
    daily_stats,
    duration_percentiles,
    duration_points,
    end_run,
    highlighted_runs,
    mean_time_to_recovery,
    read_session,
    run_summary,
    write_session,
)
from reports.stats import custom_scope, load_statistics, preset_scope
from tests.factories import make_run

DAY0 = (utcnow() - timedelta(days=3)).replace(hour=0, minute=0, second=0, microsecond=0)
DAY1 = DAY0 + timedelta(days=1)
ALL = StatsScope(since=DAY0, until=DAY0 + timedelta(days=2))

# (job, status, created/started at, duration in seconds, records loaded), ids 1..11 in this order
HISTORY = [
    ("demo", "finished", DAY0 + timedelta(hours=1), 10, 100),
    ("demo", "finished", DAY0 + timedelta(hours=2), 20, 200),
    ("demo", "failed", DAY0 + timedelta(hours=3), 5, 50),  # outage starts, ends 03:00:05
    ("demo", "failed", DAY0 + timedelta(hours=4), 5, 0),  # same outage
    ("demo", "finished", DAY0 + timedelta(hours=5), 30, 300),  # recovered 05:00:30: 7225 s
    ("demo", "finished", DAY1 + timedelta(hours=1), 40, 400),
    ("demo", "cancelled", DAY1 + timedelta(hours=2), 1, 0),
    ("demo", "failed", DAY1 + timedelta(hours=3), 10, 0),  # outage starts, ends 03:00:10
    ("demo", "finished", DAY1 + timedelta(hours=6), 100, 1000),  # recovered 06:01:40: 10890 s
    ("csv_import", "finished", DAY1 + timedelta(hours=1, minutes=30), 60, 1200),
    ("csv_import", "failed", DAY1 + timedelta(hours=2, minutes=30), 20, 0),  # never recovered
]


@pytest.fixture
def history(engine: sa.Engine) -> list[int]:
    """The eleven runs of HISTORY; returns their ids in order."""
    ids = []
    with write_session(engine) as session:
        for job, status, started, seconds, records in HISTORY:
            run = make_run(
                session,
                job=job,
                status=status,
                started_at=started,
                ended_at=started + timedelta(seconds=seconds),
                records_loaded=records,
            )
            ids.append(run.id)
    return ids


def test_summary_counts_records_percentiles_and_recovery(engine: sa.Engine, history) -> None:
    with read_session(engine) as session:
        summary = run_summary(session=session, scope=ALL)
    assert (summary.runs, summary.finished, summary.failed, summary.cancelled) == (11, 6, 4, 1)
    assert summary.records == 3250
    assert summary.success_rate == pytest.approx(0.6)
    # finished durations 10, 20, 30, 40, 60, 100: p50 at rank 2.5, p90 at rank 4.5
    assert summary.durations.count == 6
    assert summary.durations.p50_s == pytest.approx(35.0)
    assert summary.durations.p90_s == pytest.approx(80.0)
    assert summary.mttr_s == pytest.approx((7225 + 10890) / 2)


def test_percentiles_per_job_interpolate_like_percentile_cont(engine: sa.Engine, history) -> None:
    with read_session(engine) as session:
        per_job = duration_percentiles(session=session, scope=ALL)
    # demo 10, 20, 30, 40, 100: p50 = 30, p90 at rank 3.6 = 40 + 0.6 * 60
    assert per_job["demo"].count == 5
    assert per_job["demo"].p50_s == pytest.approx(30.0)
    assert per_job["demo"].p90_s == pytest.approx(76.0)
    assert per_job["csv_import"].p50_s == pytest.approx(60.0)
    assert per_job["csv_import"].p90_s == pytest.approx(60.0)
    assert per_job[None].count == 6 and per_job[None].p90_s == pytest.approx(80.0)
    # every finished demo run took 0.1 s per record; csv_import's one 60 s for 1,200
    assert per_job["demo"].p90_per_record_s == pytest.approx(0.1)
    assert per_job["csv_import"].p90_per_record_s == pytest.approx(0.05)
    assert per_job[None].p90_per_record_s is None  # a pace is a job's own


def test_one_job_scope(engine: sa.Engine, history) -> None:
    scope = StatsScope(since=ALL.since, until=ALL.until, job="demo")
    with read_session(engine) as session:
        summary = run_summary(session=session, scope=scope)
    assert (summary.runs, summary.finished, summary.failed) == (9, 5, 3)
    assert summary.durations.p90_s == pytest.approx(76.0)
    assert summary.mttr_s == pytest.approx((7225 + 10890) / 2)


def test_daily_stats_group_by_utc_day(engine: sa.Engine, history) -> None:
    with read_session(engine) as session:
        days = daily_stats(session=session, scope=ALL)
    assert [d.day for d in days] == [DAY0.date(), DAY1.date()]
    first, second = days
    assert (first.runs, first.finished, first.failed, first.records) == (5, 3, 2, 650)
    assert (first.cancelled, second.cancelled) == (0, 1)
    assert first.busy_s == pytest.approx(60.0) and first.throughput == pytest.approx(10.0)
    assert first.success_rate == pytest.approx(0.6)
    assert (second.runs, second.finished, second.failed, second.records) == (6, 3, 2, 2600)
    assert second.busy_s == pytest.approx(200.0) and second.throughput == pytest.approx(13.0)


def test_highlights_are_failed_and_not_a_big_run_at_its_jobs_pace(
    engine: sa.Engine, history
) -> None:
    with read_session(engine) as session:
        found = highlighted_runs(session=session, scope=ALL)
    # run 9 took longest (100 s, over demo's p90 of 76 s) but loaded 1,000 records at 0.1 s each
    assert [p.run_id for p in found] == [history[i - 1] for i in (8, 11, 4, 3)]
    assert {p.reason for p in found} == {"failed"}


def _add_finished(engine: sa.Engine, job: str, at: datetime, seconds: float, records: int) -> int:
    with write_session(engine) as session:
        ended = at + timedelta(seconds=seconds)
        run = make_run(session, job=job, started_at=at, ended_at=ended, records_loaded=records)
        assert run.id is not None
        return run.id


def test_a_small_run_at_a_slow_pace_is_slower_than_p90(engine: sa.Engine, history) -> None:
    small = _add_finished(engine, "demo", DAY1 + timedelta(hours=7), 5, 10)  # 0.5 s per record
    with read_session(engine) as session:
        per_job = duration_percentiles(session=session, scope=ALL)
        found = highlighted_runs(session=session, scope=ALL)
    # demo's paces 0.1 (five runs) and 0.5: p90 at rank 4.5 = 0.1 + 0.5 * 0.4
    assert per_job["demo"].p90_per_record_s == pytest.approx(0.3)
    slow = [p for p in found if p.reason != "failed"]
    assert [p.run_id for p in slow] == [small]
    assert slow[0].reason == "slower than demo's p90 (300.0 ms per record; this run 500.0 ms)"


def test_a_run_without_records_is_slow_when_longer_than_its_jobs_p90(
    engine: sa.Engine, history
) -> None:
    long = _add_finished(engine, "demo", DAY1 + timedelta(hours=7), 200, 0)
    _add_finished(engine, "demo", DAY1 + timedelta(hours=8), 1, 0)
    feed = [
        _add_finished(engine, "feed", DAY1 + timedelta(hours=h), s, 0)
        for h, s in ((7, 10), (8, 50))
    ]
    with read_session(engine) as session:
        per_job = duration_percentiles(session=session, scope=ALL)
        found = highlighted_runs(session=session, scope=ALL)
    # demo 1, 10, 20, 30, 40, 100, 200 s: p90 at rank 5.4 = 100 + 0.4 * 100; paces stay 0.1
    assert per_job["demo"].p90_s == pytest.approx(140.0)
    assert per_job["demo"].p90_per_record_s == pytest.approx(0.1)
    assert per_job["feed"].p90_s == pytest.approx(46.0) and per_job["feed"].p90_per_record_s is None
    slow = {p.run_id: p.reason for p in found if p.reason != "failed"}
    assert slow == {
        feed[1]: "slower than feed's p90 (46.0 s; this run 50.0 s, no records)",
        long: "slower than demo's p90 (140.0 s; this run 200.0 s, no records)",
    }


def test_duration_points_are_the_newest_oldest_first(engine: sa.Engine, history) -> None:
    with read_session(engine) as session:
        every = duration_points(session=session, scope=ALL)
        newest = duration_points(session=session, scope=ALL, limit=3)
    assert len(every) == 11
    assert [p.run_id for p in newest] == [history[i - 1] for i in (11, 8, 9)]
    assert newest[-1].duration_s == pytest.approx(100.0) and newest[-1].records == 1000


def test_scope_limits_the_runs(engine: sa.Engine, history) -> None:
    scope = StatsScope(since=DAY1, until=DAY1 + timedelta(days=1))
    with read_session(engine) as session:
        summary = run_summary(session=session, scope=scope)
        mttr = mean_time_to_recovery(session=session, scope=scope)
    assert summary.runs == 6
    assert mttr == pytest.approx(10890.0)


def test_empty_scope_has_no_rates(engine: sa.Engine) -> None:
    stats = load_statistics(engine, ALL)
    assert stats.summary.runs == 0 and stats.summary.records == 0
    assert stats.summary.success_rate is None and stats.summary.mttr_s is None
    assert stats.summary.durations.p50_s is None
    assert stats.days == [] and stats.points == [] and stats.highlights == []


def test_every_write_that_ends_a_run_stores_its_duration(engine: sa.Engine) -> None:
    with write_session(engine) as session:
        ended = end_run(
            session=session,
            run=make_run(session, status="running", ended_at=None),
            status=RunStatus.FINISHED,
        )
        inserted = make_run(session, job="csv_import")  # an ORM insert, ended 30 s after start
        updated = make_run(session, job="other", status="running", ended_at=None)
        updated.ended_at = updated.started_at + timedelta(seconds=45)  # an ORM update
        ids = [ended.id, inserted.id, updated.id]
    with read_session(engine) as session:
        stored = [session.get_one(Run, run_id) for run_id in ids]
    expected = [(r.ended_at - r.started_at).total_seconds() for r in stored]
    assert [r.duration_s for r in stored] == pytest.approx(expected, abs=1e-6)
    assert expected[1:] == [30.0, 45.0]


def test_range_presets_and_custom_days() -> None:
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    assert preset_scope("7 d", now=now).since == datetime(2026, 11, 23, 12, tzinfo=UTC)
    scope = custom_scope(now.date(), now.date(), job="demo")
    assert (scope.since, scope.until) == (
        datetime(2026, 11, 30, tzinfo=UTC),
        datetime(2026, 12, 1, tzinfo=UTC),
    )
    with pytest.raises(ValueError, match="ends before it starts"):
        custom_scope(now.date(), now.date() - timedelta(days=1))
    with pytest.raises(ValueError, match="time range"):
        preset_scope("1 y", now=now)
