"""The worker registry: a worker registers, beats (throttled), records its run, stops; old rows go."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from db.models import WorkerKind, WorkerState, utcnow
from db.queries import (
    beat_worker,
    create_run,
    list_workers,
    read_session,
    register_worker,
    stop_worker,
    write_session,
)
from db.settings import Settings
from etl.presence import Presence
from etl.worker import BackgroundWorker
from reports.health import (
    HealthReport,
    WorkerHealth,
    health_report,
)
from tests.test_etl_cli import ROOT
from tests.test_etl_fencing import stored, wait_until

pytestmark = pytest.mark.timeout(180)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def presence(engine: sa.Engine, clock: FakeClock, interval_s: float = 5.0) -> Presence:
    """A worker's presence on `clock`, beating at most every `interval_s`."""
    return Presence(
        engine, name="h:1:worker:1", kind=WorkerKind.PROCESS, interval_s=interval_s, clock=clock
    )


def report(engine: sa.Engine, settings: Settings, now: datetime | None = None) -> HealthReport:
    """The health report now (or at `now`)."""
    return health_report(engine, settings, now=now)


def the_worker(engine: sa.Engine, settings: Settings, pid: int) -> WorkerHealth | None:
    """The registered worker of process `pid`, as the health report sees it now."""
    found = [worker for worker in report(engine, settings).workers if worker.pid == pid]
    return found[0] if found else None


def test_first_beat_registers_the_worker_with_host_pid_and_kind(
    engine: sa.Engine, settings: Settings
) -> None:
    assert presence(engine, FakeClock()).beat()
    (worker,) = report(engine, settings).workers
    assert (worker.name, worker.kind, worker.pid) == ("h:1:worker:1", "worker", os.getpid())
    assert worker.host and worker.state == WorkerState.LIVE and worker.current_run_id is None
    assert worker.started_at == worker.heartbeat_at


def test_beats_are_throttled_to_the_interval_unless_the_run_changes(
    engine: sa.Engine, settings: Settings
) -> None:
    clock = FakeClock()
    beats = presence(engine, clock, interval_s=5)
    assert beats.beat()
    clock.now += 4.9
    assert not beats.beat(), "a poll within the interval writes nothing"
    with write_session(engine) as session:
        run = create_run(session=session, job="demo")
    assert beats.beat(run_id=run.id), "a new current run is written at once"
    assert report(engine, settings).workers[0].current_run_id == run.id
    assert not beats.beat(run_id=run.id)
    clock.now += 5
    assert beats.beat(run_id=run.id)
    assert beats.beat(run_id=None)
    assert report(engine, settings).workers[0].current_run_id is None


def test_a_clean_stop_shows_stopped_and_the_next_beat_registers_anew(
    engine: sa.Engine, settings: Settings
) -> None:
    beats = presence(engine, FakeClock())
    beats.beat()
    beats.stop()
    (worker,) = report(engine, settings).workers
    assert worker.state == WorkerState.STOPPED and worker.stopped_at is not None
    beats.beat()
    states = sorted(w.state for w in report(engine, settings).workers)
    assert states == [WorkerState.LIVE, WorkerState.STOPPED]


def test_registering_prunes_workers_stopped_or_lost_for_over_a_day(engine: sa.Engine) -> None:
    now = utcnow()
    with write_session(engine) as session:
        old = {"kind": "worker", "host": "h", "pid": 1, "now": now - timedelta(days=2)}
        lost = register_worker(session=session, name="lost", **old)
        stopped = register_worker(session=session, name="stopped", **old)
        stop_worker(session=session, worker_id=stopped, now=now - timedelta(hours=25))
        recent = register_worker(session=session, name="recent", **old)
        stop_worker(session=session, worker_id=recent, now=now - timedelta(hours=23))
        register_worker(session=session, name="new", kind="worker", host="h", pid=2, now=now)
    with read_session(engine) as session:
        names = {worker.name for worker in list_workers(session=session)}
    assert names == {"recent", "new"}
    with write_session(engine) as session:
        assert not beat_worker(session=session, worker_id=lost, run_id=None, scheduler_tick=None)


def test_a_worker_whose_row_was_pruned_registers_again(
    engine: sa.Engine, settings: Settings
) -> None:
    clock = FakeClock()
    beats = presence(engine, clock)
    beats.beat()
    with write_session(engine) as session:
        session.execute(sa.text("DELETE FROM worker"))
    clock.now += 5
    assert beats.beat()
    assert [w.state for w in report(engine, settings).workers] == [WorkerState.LIVE]


@pytest.fixture
def background(engine: sa.Engine, settings: Settings) -> Iterator[BackgroundWorker]:
    """The app's in-process worker on the test database, stopped afterwards."""
    worker = BackgroundWorker(engine, settings).start()
    yield worker
    worker.stop()


def test_a_background_worker_records_its_run_and_scheduler_tick_and_stops_cleanly(
    engine: sa.Engine, settings: Settings, background: BackgroundWorker
) -> None:
    with write_session(engine) as session:
        run = create_run(
            session=session, job="demo", params={"total": 300, "delay_ms": 150, "batch_size": 20}
        )
    mine = os.getpid()
    wait_until(
        lambda: getattr(the_worker(engine, settings, mine), "current_run_id", None) == run.id,
        "it holds the run",
    )
    worker = the_worker(engine, settings, mine)
    assert worker and worker.kind == "app" and worker.current_job == "demo"
    assert worker.scheduler_tick_at is not None
    # the loop does not poll during the run: the run's heartbeat keeps the worker live
    time.sleep(settings.worker_lost_after_s + 0.5)
    assert the_worker(engine, settings, mine).state == WorkerState.LIVE
    wait_until(lambda: stored(engine, run.id).status == "finished", "the run finished")
    wait_until(lambda: the_worker(engine, settings, mine).current_run_id is None, "it is idle")
    background.stop()
    assert the_worker(engine, settings, mine).state == WorkerState.STOPPED


@pytest.mark.sqlite_only  # SQLite's one write lock is what the two threads could deadlock on
def test_a_due_beat_and_a_runs_heartbeat_at_once_do_not_deadlock(engine: sa.Engine) -> None:
    clock = FakeClock()
    beats = presence(engine, clock)
    beats.beat()
    clock.now += 5  # the poll loop's next beat is due
    with write_session(engine) as session:
        run = create_run(session=session, job="demo")
    wrote: list[bool] = []
    poll = threading.Thread(target=lambda: wrote.append(beats.beat()))
    with write_session(engine) as session:  # a run's heartbeat: its transaction holds the lock
        session.execute(sa.text("UPDATE run SET heartbeat_at = heartbeat_at"))
        poll.start()  # the poll loop's beat now waits for that transaction
        time.sleep(0.3)
        beats.beat_in(session, run)  # the heartbeat's worker beat, inside its transaction
    poll.join(10)
    assert wrote == [True], "the poll loop's beat deadlocked with the heartbeat's transaction"


def test_a_process_exiting_with_its_app_worker_running_marks_it_stopped(
    engine: sa.Engine, settings: Settings
) -> None:
    script = (
        "import time\n"
        "from db.queries import list_workers, read_session\n"
        "from etl.worker import BackgroundWorker\n"
        "worker = BackgroundWorker().start()\n"
        "while True:\n"
        "    with read_session(worker.worker.engine) as session:\n"
        "        if list_workers(session=session):\n"
        "            break\n"
        "    time.sleep(0.05)\n"
    )  # exits as the Streamlit app does: without stopping its worker thread
    exited = subprocess.run([sys.executable, "-c", script], cwd=ROOT, timeout=120)
    assert exited.returncode == 0
    (worker,) = report(engine, settings).workers
    assert worker.kind == "app" and worker.state == WorkerState.STOPPED
