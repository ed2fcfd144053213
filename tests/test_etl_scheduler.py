"""The scheduler with an injected clock: each due tick enqueued once, catch-up, DST, skips and pause."""

from __future__ import annotations

import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import col, select

from db.models import AuditEvent, Job, Run, RunEvent, RunStatus
from db.queries import (
    RunFilters,
    end_run,
    get_run,
    list_events,
    list_runs,
    read_session,
    write_session,
)
from db.settings import Settings
from etl import commands
from etl.commands import Caller, Source
from etl.scheduler import Scheduler
from etl.schedules import Schedule
from etl.worker import Worker
from tests.test_etl_cli import cli_process

ADMIN = Caller("admin", Source.CLI)
T0 = datetime(2030, 1, 7, 0, 0, tzinfo=UTC)  # a Monday


def add(engine: sa.Engine, name: str, schedule: str, **options: Any) -> None:
    """Add a quick demo job on `schedule`."""
    params = {"total": 5, "batch_size": 5}
    commands.add_job(
        engine, ADMIN, name=name, kind="demo", params=params, schedule=schedule, **options
    )


def set_next(engine: sa.Engine, name: str, moment: datetime | None) -> None:
    """Put a job's next unhandled tick at `moment`, as if the scheduler had last looked before it."""
    with write_session(engine) as session:
        session.execute(sa.update(Job).where(col(Job.name) == name).values(next_run_at=moment))


def scheduled(engine: sa.Engine, job: str) -> list[datetime | None]:
    """The ticks the job's runs were enqueued for, oldest first."""
    with read_session(engine) as session:
        query = select(Run.scheduled_for).where(Run.job == job).order_by(col(Run.id))
        return list(session.exec(query).all())


def skips(engine: sa.Engine) -> list[dict[str, Any]]:
    """The details of every schedule_skip audit row, oldest first."""
    with read_session(engine) as session:
        query = select(AuditEvent).where(AuditEvent.action == "schedule_skip")
        return [a.details for a in session.exec(query.order_by(col(AuditEvent.id))).all()]


def at(moment: datetime) -> Scheduler:
    """A scheduler whose clock stands at `moment`."""
    from db.engine import get_engine
    from db.settings import get_settings

    return Scheduler(get_engine(), get_settings(), clock=lambda: moment)


def finish_all(engine: sa.Engine) -> None:
    """End every active run, as a worker would."""
    with write_session(engine) as session:
        for run in session.exec(select(Run).where(col(Run.status).in_(["pending", "running"]))):
            end_run(session=session, run=run, status=RunStatus.FINISHED)


# ---------------------------------------------------------------- ticks in a time zone


def test_dst_gap_runs_after_the_gap_and_repeat_runs_once() -> None:
    daily = Schedule.parse("30 2 * * *", "Europe/Berlin")
    spring = daily.upcoming(datetime(2026, 3, 28, 12, tzinfo=UTC), 2)
    assert spring == [
        datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
        datetime(2026, 3, 30, 0, 30, tzinfo=UTC),
    ]
    half_hourly = Schedule.parse("*/30 * * * *", "Europe/Berlin")
    autumn = half_hourly.upcoming(datetime(2026, 10, 24, 23, 45, tzinfo=UTC), 3)
    # 02:00 and 02:30 happen twice that night: each runs once, at its first occurrence
    assert [f"{t:%H:%M}" for t in autumn] == ["00:00", "00:30", "02:00"]
    spring_ticks = half_hourly.upcoming(datetime(2026, 3, 28, 23, 45, tzinfo=UTC), 5)
    assert [f"{t:%H:%M}" for t in spring_ticks] == ["00:00", "00:30", "01:00", "01:30", "02:00"]


def test_schedule_in_a_time_zone_enqueues_at_local_time(engine: sa.Engine) -> None:
    add(engine, "berlin", "30 2 * * *", timezone="Europe/Berlin")
    set_next(engine, "berlin", datetime(2026, 3, 28, 12, tzinfo=UTC))
    assert at(datetime(2026, 3, 29, 1, 29, tzinfo=UTC)).tick() == []
    [run] = at(datetime(2026, 3, 29, 1, 31, tzinfo=UTC)).tick()  # 03:31 CEST: after the gap
    assert run.scheduled_for == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert (run.trigger, run.triggered_by) == ("schedule", "scheduler")


def test_bad_schedule_or_zone_is_refused_with_a_clear_message(engine: sa.Engine) -> None:
    with pytest.raises(commands.BadParams, match="five fields"):
        add(engine, "bad", "every minute")
    with pytest.raises(commands.BadParams, match="Time zone 'Mars/Base' is unknown"):
        add(engine, "bad", "* * * * *", timezone="Mars/Base")
    with pytest.raises(commands.BadParams, match="Catch-up policy 'some'"):
        add(engine, "bad", "* * * * *", catchup="some")


# ---------------------------------------------------------------- catch-up


@pytest.mark.parametrize(
    ("catchup", "enqueued", "skipped"),
    [
        ("none", [], ("00:00", "00:40")),
        ("latest", ["00:40"], ("00:00", "00:30")),
        ("all", ["00:20"], ("00:00", "00:10")),  # the newest 3 (the cap) are kept
    ],
)
def test_catchup_policies_after_workers_were_down(
    engine: sa.Engine,
    monkeypatch: pytest.MonkeyPatch,
    catchup: str,
    enqueued: list[str],
    skipped: tuple[str, str],
) -> None:
    monkeypatch.setattr(Scheduler, "__init__", _capped(3))
    add(engine, "tenmin", "*/10 * * * *", catchup=catchup)
    set_next(engine, "tenmin", T0)
    at(T0 + timedelta(minutes=45)).tick()  # 00:00 to 00:40 were missed
    assert [f"{t:%H:%M}" for t in scheduled(engine, "tenmin") if t] == enqueued
    [skip] = skips(engine)
    assert (skip["first"][11:16], skip["last"][11:16], skip["reason"]) == (*skipped, "missed")


def _capped(cap: int) -> Any:
    """Scheduler.__init__ with the catch-up cap set to `cap`."""
    original = Scheduler.__init__

    def init(self: Scheduler, engine: sa.Engine, settings: Settings, clock: Any) -> None:
        original(self, engine, settings.model_copy(update={"schedule_catchup_max": cap}), clock)

    return init


def test_catchup_all_runs_every_missed_tick_one_after_another(engine: sa.Engine) -> None:
    add(engine, "tenmin", "*/10 * * * *", catchup="all")
    set_next(engine, "tenmin", T0)
    now = T0 + timedelta(minutes=25)
    at(now).tick()
    at(now).tick()  # the job is busy: the backlog waits, nothing is skipped
    assert scheduled(engine, "tenmin") == [T0] and skips(engine) == []
    finish_all(engine)
    at(now).tick()
    finish_all(engine)
    at(now).tick()
    assert scheduled(engine, "tenmin") == [T0 + timedelta(minutes=m) for m in (0, 10, 20)]


def test_a_missed_run_caught_up_shows_in_history_with_trigger_schedule(engine: sa.Engine) -> None:
    add(engine, "tenmin", "*/10 * * * *")
    set_next(engine, "tenmin", T0)
    [run] = at(T0 + timedelta(hours=2, minutes=5)).tick()  # the workers were down for two hours
    with read_session(engine) as session:
        [shown] = list_runs(session=session, filters=RunFilters(triggers=("schedule",))).runs
        first = list_events(session=session, run_id=run.id)[1]  # after its status event
    assert (shown.id, shown.job, shown.triggered_by) == (run.id, "tenmin", "scheduler")
    assert (
        first.message
        == "Scheduled for 2030-01-07 02:00 UTC: missed while no worker ran, caught up (latest)."
    )


def test_none_runs_a_tick_that_is_on_time(engine: sa.Engine) -> None:
    add(engine, "tenmin", "*/10 * * * *", catchup="none")
    set_next(engine, "tenmin", T0)
    at(T0 + timedelta(seconds=5)).tick()
    assert scheduled(engine, "tenmin") == [T0] and skips(engine) == []


# ---------------------------------------------------------------- skipped ticks and pause


def test_tick_while_active_is_recorded_as_skipped(engine: sa.Engine) -> None:
    add(engine, "tenmin", "*/10 * * * *")
    active = commands.trigger(engine, ADMIN, "tenmin")
    set_next(engine, "tenmin", T0)
    assert at(T0 + timedelta(seconds=1)).tick() == []
    assert scheduled(engine, "tenmin") == [None]
    [skip] = skips(engine)
    assert (skip["reason"], skip["active_run"], skip["first"]) == (
        "active",
        active.id,
        T0.isoformat(),
    )
    with read_session(engine) as session:
        warning = session.exec(select(RunEvent).where(RunEvent.level == "WARNING")).one()
        assert (
            warning.run_id == active.id and "skipped: this run was still active" in warning.message
        )
        assert get_run(session=session, run_id=active.id).status == RunStatus.PENDING
    finish_all(engine)
    [run] = at(T0 + timedelta(minutes=10, seconds=1)).tick()  # free again: the next tick runs
    assert run.scheduled_for == T0 + timedelta(minutes=10)


def test_paused_job_enqueues_nothing_and_resumes_from_its_next_tick(engine: sa.Engine) -> None:
    add(engine, "tenmin", "*/10 * * * *")
    set_next(engine, "tenmin", T0)
    commands.pause(engine, ADMIN, "tenmin")
    set_next(engine, "tenmin", T0)  # even with a tick due, a paused job is not looked at
    assert at(T0 + timedelta(minutes=30)).tick() == []
    assert scheduled(engine, "tenmin") == [] and skips(engine) == []
    with pytest.raises(commands.JobPaused, match="is paused"):
        commands.trigger(engine, ADMIN, "tenmin")
    job = commands.unpause(engine, ADMIN, "tenmin")
    assert job.next_run_at is not None and job.next_run_at > datetime.now(UTC)


# ---------------------------------------------------------------- several workers


JOBS = 8


def test_due_ticks_are_enqueued_once_by_three_workers_and_a_process(
    engine: sa.Engine, settings: Settings
) -> None:
    tick = datetime.now(UTC).replace(second=0, microsecond=0)
    names = [f"every{i}" for i in range(JOBS)]
    for name in names:
        add(engine, name, "* * * * *", catchup="all")  # the process's real clock may be a minute on
        set_next(engine, name, tick)
    process = cli_process("worker")
    workers = [
        Worker(engine, settings, clock=lambda: tick + timedelta(seconds=1)) for _ in range(3)
    ]
    threads = [threading.Thread(target=w.run_forever) for w in workers]
    for thread in threads:
        thread.start()
    try:
        _wait_until(lambda: all(tick in scheduled(engine, name) for name in names))
    finally:
        for worker in workers:
            worker.stop()
        process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(timeout=300)
        process.wait(timeout=300)
    for name in names:
        assert scheduled(engine, name).count(tick) == 1
    with read_session(engine) as session:
        triggers = session.exec(
            select(AuditEvent).where(
                AuditEvent.action == "trigger", AuditEvent.actor == "scheduler"
            )
        ).all()
    assert (
        sorted(a.details["job"] for a in triggers if a.details["scheduled_for"] == tick.isoformat())
        == names
    )
    assert skips(engine) == []


def _wait_until(done: Any, deadline_s: float = 240) -> None:
    """Poll `done()` until it holds; fail after a generous deadline (a hang, not a timing check)."""
    deadline = time.monotonic() + deadline_s
    while not done():
        assert time.monotonic() < deadline, "the workers never enqueued the due ticks"
        time.sleep(0.2)
