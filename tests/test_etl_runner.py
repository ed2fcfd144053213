"""The runner and workers: real runs of the demo job on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import select

from db.models import DemoSubject, Job as JobRow, Run, RunStatus
from db.queries import (
    append_event,
    create_run,
    get_run,
    list_events,
    read_session,
    request_cancel,
    resume_run,
    save_job,
    write_session,
)
from db.settings import Settings
from etl.jobs import JOB_KINDS, Batch, Job
from etl.runner import Runner
from etl.worker import BackgroundWorker, Worker
from reports.eta import Pace


def start(engine: sa.Engine, **params: object) -> Run:
    """Create a running run of the demo job with `params`, as `runwatch run` does."""
    with write_session(engine) as session:
        return create_run(session=session, job="demo", params=params, status="running")


def subjects(engine: sa.Engine) -> list[DemoSubject]:
    with read_session(engine) as session:
        return list(session.exec(select(DemoSubject).order_by(DemoSubject.id)).all())


def test_demo_run_finishes_with_every_record(engine: sa.Engine, settings: Settings) -> None:
    run = Runner(engine, settings).execute(start(engine, total=1000, batch_size=100))
    with read_session(engine) as session:
        stored = get_run(session=session, run_id=run.id)
        events = list_events(session=session, run_id=run.id)
    assert stored.status == RunStatus.FINISHED
    assert stored.offset == stored.total_records == stored.records_loaded == 1000
    assert stored.counters == {"subjects_processed": 1000, "categories_processed": 20}
    assert [e.data["status"] for e in events if e.kind == "status"] == ["running", "finished"]
    assert len(subjects(engine)) == 1000


def test_each_checkpoint_stores_the_runs_pace_for_its_eta(
    engine: sa.Engine, settings: Settings
) -> None:
    run = Runner(engine, settings).execute(start(engine, total=1000, batch_size=100))
    with read_session(engine) as session:
        stored = get_run(session=session, run_id=run.id)
    pace = Pace.from_dict(stored.pace)
    assert (pace.batches, pace.records) == (10, 1000)
    assert stored.duration_s is not None and 0 < pace.seconds <= stored.duration_s


def test_fail_at_fails_with_message_and_last_committed_offset(
    engine: sa.Engine, settings: Settings
) -> None:
    run = Runner(engine, settings).execute(start(engine, total=1000, batch_size=100, fail_at=450))
    with read_session(engine) as session:
        stored = get_run(session=session, run_id=run.id)
    assert stored.status == RunStatus.FAILED
    assert stored.error_type == "RuntimeError"
    assert "record 450" in stored.error_message
    assert stored.offset == 400 and stored.records_loaded == 400
    assert "Traceback" in stored.error_detail["traceback"]
    assert stored.error_detail["stage"] == "transform"
    assert len(subjects(engine)) == 400


def test_resume_completes_a_failed_run_exactly_once(engine: sa.Engine, settings: Settings) -> None:
    failed = Runner(engine, settings).execute(
        start(engine, total=1000, batch_size=100, fail_at=450)
    )
    with write_session(engine) as session:
        resumed = resume_run(session=session, run_id=failed.id)
    finished = Worker(engine, settings).run_once()
    assert finished is not None and finished.id == resumed.id
    assert finished.status == RunStatus.FINISHED and finished.offset == 1000
    assert Pace.from_dict(finished.pace).records == 600  # its ETA learns from its own batches
    rows = subjects(engine)
    assert [r.id for r in rows] == list(range(1000))
    assert {r.loads for r in rows} == {1}


def test_cancel_stops_between_batches(engine: sa.Engine, settings: Settings) -> None:
    run = start(engine, total=100000, batch_size=10, delay_ms=20)
    runner = Runner(engine, settings)

    def cancel_soon(current: Run) -> None:
        # running only: a heartbeat that sees the cancel first ends the run at 50, and the runner
        # reports that end with the same offset
        if current.offset == 50 and current.status == RunStatus.RUNNING:
            with write_session(engine) as session:
                request_cancel(session=session, run_id=current.id)

    runner.on_progress = cancel_soon
    ended = runner.execute(run)
    assert ended.status == RunStatus.CANCELLED
    with read_session(engine) as session:
        # The request lands after batch 5 committed; the runner stops at the next checkpoint.
        assert get_run(session=session, run_id=run.id).offset in (50, 60)


def test_job_error_fails_the_run_with_a_clear_message(
    engine: sa.Engine, settings: Settings
) -> None:
    ended = Runner(engine, settings).execute(start(engine, total="many"))
    assert ended.status == RunStatus.FAILED and ended.error_type == "JobError"
    assert "'total' must be a whole number" in ended.error_message


def test_background_worker_executes_pending_runs(engine: sa.Engine, settings: Settings) -> None:
    background = BackgroundWorker(engine, settings).start()
    try:
        with write_session(engine) as session:
            run = create_run(session=session, job="demo", params={"total": 200, "batch_size": 50})
        background.wake()
        for _ in range(200):
            with read_session(engine) as session:
                if get_run(session=session, run_id=run.id).status == "finished":
                    break
            threading.Event().wait(0.05)
        with read_session(engine) as session:
            assert get_run(session=session, run_id=run.id).status == "finished"
    finally:
        background.stop()
    assert not background.alive


@pytest.mark.postgres_only
def test_demo_loads_each_batch_with_one_statement_on_postgres(
    engine: sa.Engine, settings: Settings
) -> None:
    sent: list[bool] = []  # executemany or not, per INSERT into demo_subject

    def count(conn: object, cursor: object, statement: str, *rest: object) -> None:
        if statement.startswith("INSERT INTO demo_subject"):
            sent.append(bool(rest[-1]))

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        Runner(engine, settings).execute(start(engine, total=1000, batch_size=100))
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert sent == [False] * 10  # psycopg's executemany would send one statement per record
    assert len(subjects(engine)) == 1000


class EventWritingJob(Job):
    """Appends an event in each batch's load, then holds the batch open until the test says."""

    kind = "test_event_writer"
    appends_events = True
    loading = threading.Event()
    release = threading.Event()

    def extract(self, params: dict[str, Any], offset: int) -> Iterator[Batch]:
        for _ in range(offset, 3):
            yield Batch(records=[1], size=1)

    def load(self, batch: Batch, session: Any) -> int:
        append_event(session=session, run_id=self.context.run_id, message="loaded")
        self.loading.set()
        self.release.wait(10)
        return 1


@pytest.mark.postgres_only  # SQLite's one write lock orders its writers; PostgreSQL's row locks can cross
def test_a_cancel_during_a_load_that_appends_events_waits_for_the_batch_instead_of_deadlocking(
    engine: sa.Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(JOB_KINDS, EventWritingJob.kind, EventWritingJob)
    monkeypatch.setattr(EventWritingJob, "loading", threading.Event())
    monkeypatch.setattr(EventWritingJob, "release", threading.Event())
    with write_session(engine) as session:
        save_job(session=session, job=JobRow(name=EventWritingJob.kind, kind=EventWritingJob.kind))
    with write_session(engine) as session:
        run = create_run(session=session, job=EventWritingJob.kind, params={}, status="running")
    ended: list[Run] = []
    runner = threading.Thread(target=lambda: ended.append(Runner(engine, settings).execute(run)))
    runner.start()
    assert EventWritingJob.loading.wait(10)
    refused: list[Exception] = []

    def cancel() -> None:
        try:
            with write_session(engine) as session:
                request_cancel(session=session, run_id=run.id or 0)
        except Exception as error:  # the deadlock this guards against
            refused.append(error)

    canceller = threading.Thread(target=cancel)
    canceller.start()
    canceller.join(2)  # longer than PostgreSQL's deadlock_timeout (1 s)
    EventWritingJob.release.set()
    canceller.join(20)
    runner.join(20)
    assert refused == []
    assert [run.status for run in ended] == [RunStatus.CANCELLED]
