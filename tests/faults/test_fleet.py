"""Item 1 of the fault suite: four worker processes, one SIGKILLed mid-run and restarted."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import select

from db.models import DemoSubject, Job, Run, RunStatus
from db.queries import create_run, read_session, resume_run, save_job, write_session
from db.settings import Settings
from tests.faults.fleet import (
    Fleet,
    active_runs,
    all_runs,
    endings,
    running_fleet,
    status_events,
    worker_pid,
)

pytestmark = [pytest.mark.faults, pytest.mark.postgres_only, pytest.mark.timeout(420)]

WORKERS = 4
RUNS_PER_JOB = 20  # 10 jobs: 200 runs, plus the orphan's resume
DEMO_JOBS = [f"fleet_demo_{n}" for n in range(5)]
CSV_JOBS = [f"fleet_csv_{n}" for n in range(5)]
DEMO_PARAMS = {"total": 100, "batch_size": 10, "delay_ms": 10, "seed": 7}
CSV_ROWS = 1000  # per file, imported 100 records a batch: 10 checkpoints per run
TARGET = "fleet_rows"
KILL_AFTER = 40  # runs ended before a worker is killed: one importing a csv if caught in time
KILL_ANY_AFTER = 100  # ... else one running any job
DRIVE_TIMEOUT_S = 300.0


def write_csv(folder: Path, job: int, run: int) -> Path:
    """The file run `run` of csv job `job` imports: keys of its own, disjoint from every other."""
    first = (job * RUNS_PER_JOB + run) * CSV_ROWS
    path = folder / f"rows_{job}_{run}.csv"
    lines = [f"{key},name {key},{key % 97}.5" for key in range(first, first + CSV_ROWS)]
    path.write_text("id,name,amount\n" + "\n".join(lines) + "\n")
    return path


def configure_jobs(engine: sa.Engine, folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Add the ten jobs; return each job's run parameters in the order its runs are enqueued."""
    plan: dict[str, list[dict[str, Any]]] = {}
    with write_session(engine) as session:
        for name in DEMO_JOBS:
            save_job(session=session, job=Job(name=name, title=name, kind="demo", params={}))
            plan[name] = [DEMO_PARAMS] * RUNS_PER_JOB
        csv_params = {"table": TARGET, "key": "id", "types": "id:int,amount:float"}
        for n, name in enumerate(CSV_JOBS):
            job = Job(
                name=name, title=name, kind="csv_import", params={**csv_params, "batch_size": 100}
            )
            save_job(session=session, job=job)
            plan[name] = [{"path": str(write_csv(folder, n, r))} for r in range(RUNS_PER_JOB)]
    return plan


def without_flush_waits(engine: sa.Engine) -> None:
    """Commits on the test database stop waiting for the WAL flush: the shared server's disk would
    otherwise set the pace of 2,000 small commits, and no server crashes in this test."""
    with engine.connect() as connection:
        name = connection.exec_driver_sql("SELECT current_database()").scalar_one()
        connection.exec_driver_sql(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
        connection.commit()
    engine.dispose()  # connections opened from now on take the setting


class Driver:
    """Keeps every job's next run queued (one active run per job) and resumes interrupted runs."""

    def __init__(self, engine: sa.Engine, plan: dict[str, list[dict[str, Any]]]) -> None:
        self.engine, self.plan = engine, plan
        self.queued = Counter[str]()
        self.resumed: list[int] = []

    def step(self) -> bool:
        """Enqueue what is due; True once every planned run has ended and nothing is active."""
        latest: dict[str, Run] = {run.job: run for run in all_runs(self.engine)}
        done = True
        for job, params in self.plan.items():
            run = latest.get(job)
            if run is not None and run.status in (RunStatus.PENDING, RunStatus.RUNNING):
                done = False
            elif run is not None and run.error_type == "interrupted":
                self._resume(run)
                done = False
            elif self.queued[job] < len(params):
                self._enqueue(job, params[self.queued[job]])
                done = False
        return done

    def _enqueue(self, job: str, params: dict[str, Any]) -> None:
        with write_session(self.engine) as session:
            create_run(session=session, job=job, params=params, triggered_by="fleet test")
        self.queued[job] += 1

    def _resume(self, run: Run) -> None:
        assert run.id is not None
        with write_session(self.engine) as session:
            resume_run(session=session, run_id=run.id, triggered_by="fleet test")
        self.resumed.append(run.id)


def kill_mid_run(engine: sa.Engine, fleet: Fleet, jobs: list[str]) -> Run | None:
    """SIGKILL the worker of a run of `jobs` that is half-way through, if there is one now."""
    running = [r for r in active_runs(engine) if r.status == RunStatus.RUNNING and r.job in jobs]
    for run in (r for r in running if 0 < r.offset < (r.total_records or 0)):
        pid = worker_pid(run)
        if pid is not None:
            fleet.kill(fleet.by_pid(pid))
            fleet.start(1)  # the fleet is four again
            return run
    return None


def test_fleet_survives_a_killed_worker_with_every_run_ended_once(
    engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    # heartbeats roomy enough that a live worker on a busy machine is never taken for dead
    env = {
        "RUNWATCH_HEARTBEAT_S": "0.5",
        "RUNWATCH_ORPHAN_TIMEOUT_S": "5",
        "RUNWATCH_PROGRESS_INTERVAL_S": "0.2",
    }
    without_flush_waits(engine)
    plan = configure_jobs(engine, tmp_path)
    driver = Driver(engine, plan)
    killed: Run | None = None
    deadline = time.monotonic() + DRIVE_TIMEOUT_S
    with running_fleet(settings.database_url, tmp_path / "logs", WORKERS, env) as fleet:
        while not driver.step():
            assert time.monotonic() < deadline, f"runs stuck: {active_runs(engine)}"
            ended = sum(endings(engine).values())
            if killed is None and ended >= KILL_AFTER:
                targets = CSV_JOBS if ended < KILL_ANY_AFTER else CSV_JOBS + DEMO_JOBS
                killed = kill_mid_run(engine, fleet, targets)
            time.sleep(0.02 if killed is None else 0.1)
        output = fleet.output()
    assert killed is not None, "no run was caught mid-way to kill its worker"
    check_runs(engine, killed, driver)
    check_targets(engine)
    assert "Traceback" not in output, output


def check_runs(engine: sa.Engine, killed: Run, driver: Driver) -> None:
    """Every run ended exactly once; the killed one as interrupted, resumed to the end once."""
    runs = all_runs(engine)
    assert len(runs) == len(DEMO_JOBS + CSV_JOBS) * RUNS_PER_JOB + 1
    assert not [r for r in runs if r.status in (RunStatus.PENDING, RunStatus.RUNNING)]
    twice = {run_id: n for run_id, n in endings(engine).items() if n != 1}
    assert not twice, [status_events(engine, run_id) for run_id in twice]
    assert set(endings(engine)) == {r.id for r in runs}
    orphan = next(r for r in runs if r.id == killed.id)
    assert orphan.status == RunStatus.FAILED and orphan.error_type == "interrupted", orphan
    assert driver.resumed == [orphan.id]
    [resume] = [r for r in runs if r.resumed_from == orphan.id]
    assert resume.status == RunStatus.FINISHED and resume.offset == orphan.total_records
    others = [r for r in runs if r.id != orphan.id]
    failed = [(r.id, r.job, r.error_type, r.error_message) for r in others if r.error_type]
    assert {r.status for r in others} == {RunStatus.FINISHED}, failed


def check_targets(engine: sa.Engine) -> None:
    """Every csv key once in the target table; every demo subject loaded once per demo run."""
    expected = len(CSV_JOBS) * RUNS_PER_JOB * CSV_ROWS
    with engine.connect() as connection:
        keys = connection.execute(sa.text(f"SELECT id, count(*) FROM {TARGET} GROUP BY id"))
        counts = dict(keys.tuples().all())
    assert counts == dict.fromkeys(range(expected), 1)
    with read_session(engine) as session:
        loads = dict(session.exec(select(DemoSubject.id, DemoSubject.loads)).all())
    demo_runs = len(DEMO_JOBS) * RUNS_PER_JOB
    assert loads == dict.fromkeys(range(DEMO_PARAMS["total"]), demo_runs)
