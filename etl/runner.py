"""The runner: executes one claimed run batch by batch, checkpointing each load with its offset."""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from db.engine import get_engine
from db.models import EventKind, Run, RunStatus, Step, utcnow
from db.queries import (
    append_event,
    checkpoint,
    end_run,
    get_job,
    get_run,
    heartbeat,
    read_session,
    run_state_event,
    write_session,
)
from db.settings import Settings, get_settings
from etl.jobs import Job, JobError, RunContext, job_class
from reports.eta import Pace

ProgressCallback = Callable[[Run], None]


class _Heartbeat(threading.Thread):
    """Beats for a run every `interval` seconds, whatever the job is doing, and notices cancels."""

    def __init__(self, engine: sa.Engine, run_id: int, interval: float) -> None:
        super().__init__(name=f"runwatch-heartbeat-{run_id}", daemon=True)
        self.engine, self.run_id, self.interval = engine, run_id, interval
        self.stopped = threading.Event()
        self.cancel_requested = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                with write_session(self.engine) as session:
                    if heartbeat(session=session, run_id=self.run_id):
                        self.cancel_requested.set()
            except sa.exc.OperationalError:
                continue  # database briefly unreachable: beat again next time


class Runner:
    """Executes runs; `bookkeeping=False` skips progress, heartbeat and events (benchmark baseline)."""

    def __init__(
        self,
        engine: sa.Engine | None = None,
        settings: Settings | None = None,
        *,
        bookkeeping: bool = True,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self.engine = engine or get_engine()
        self.settings = settings or get_settings()
        self.bookkeeping = bookkeeping
        self.on_progress = on_progress

    def log(self, run_id: int, level: str, message: str, step: str | None = None) -> None:
        """Append a log line to the run's events, in its own short transaction."""
        if self.bookkeeping:
            with write_session(self.engine) as session:
                append_event(
                    session=session, run_id=run_id, level=level, message=message, step=step
                )

    def execute(self, run: Run) -> Run:
        """Run a claimed (running) run to its end: finished, failed or cancelled."""
        assert run.id is not None
        beat = _Heartbeat(self.engine, run.id, self.settings.heartbeat_s)
        if self.bookkeeping:
            beat.start()
        try:
            return self._execute(run, beat)
        except Exception as error:  # any failure of the job or of its loads fails the run
            return self._fail(run, error)
        finally:
            beat.stopped.set()

    def _execute(self, run: Run, beat: _Heartbeat) -> Run:
        assert run.id is not None
        job = self._job(run)
        params = job.params
        if run.total_records is None:
            run.total_records = job.estimate_total(params)
        run.current_step = Step.EXTRACT
        self.log(run.id, "INFO", _start_message(run), Step.EXTRACT)
        last_batch = last_progress = time.monotonic()
        started = last_batch - _since(
            run.started_at
        )  # the pace counts from started_at, as readers do
        pace = Pace()  # this run's own: a resumed run's ETA learns from its own batches only
        for extracted in job.extract(params, run.offset):
            run.current_step = Step.TRANSFORM
            batch = job.transform(extracted)
            run.current_step = Step.LOAD
            with write_session(self.engine) as session:
                loaded = job.load(batch, session)
                run.offset += batch.size
                run.records_loaded += loaded
                run.records_rejected += len(batch.rejects)
                run.counters = dict(job.context.counters)
                now = time.monotonic()
                pace = pace.add(batch.size, now - last_batch, now - started)
                run.pace, last_batch = pace.as_dict(), now
                cancel = self.bookkeeping and checkpoint(session=session, run=run)
                if (
                    self.bookkeeping
                    and time.monotonic() - last_progress >= self.settings.progress_interval_s
                ):
                    last_progress = time.monotonic()
                    run_state_event(
                        session=session, run=run, kind=EventKind.PROGRESS, message="Progress"
                    )
            run.current_step = Step.EXTRACT
            if self.on_progress:
                self.on_progress(run)
            if cancel or beat.cancel_requested.is_set():
                return self._end(run, RunStatus.CANCELLED)
        if run.total_records is None:
            run.total_records = run.offset
        return self._end(run, RunStatus.FINISHED)

    def _job(self, run: Run) -> Job:
        assert run.id is not None
        with read_session(self.engine) as session:
            kind = get_job(session=session, name=run.job).kind
        context = RunContext(
            run_id=run.id,
            job=run.job,
            resumed_from=run.resumed_from,
            counters=dict(run.counters or {}),
            log=lambda level, message: self.log(run.id or 0, level, message, run.current_step),
        )
        return job_class(kind)(context, dict(run.params or {}))

    def _end(self, run: Run, status: str, **error: Any) -> Run:
        run.current_step = None
        with write_session(self.engine) as session:
            end_run(session=session, run=run, status=status, **error)
        if self.on_progress:
            self.on_progress(run)
        return run

    def _fail(self, run: Run, error: Exception) -> Run:
        """Fail the run with the error, keeping the offset and counts of its last committed batch."""
        assert run.id is not None
        stage = run.current_step
        with read_session(self.engine) as session:
            committed = get_run(session=session, run_id=run.id, fresh=True)
        run.offset, run.records_loaded = committed.offset, committed.records_loaded
        run.records_rejected, run.counters = committed.records_rejected, committed.counters
        run.total_records = run.total_records or committed.total_records
        expected = isinstance(error, JobError)
        detail = {
            "traceback": "".join(traceback.format_exception(error)),
            "stage": stage,
            "context": {"offset": run.offset, "job": run.job, "params": run.params},
        }
        return self._end(
            run,
            RunStatus.FAILED,
            error_type="JobError" if expected else type(error).__name__,
            error_message=str(error) or type(error).__name__,
            error_detail=detail,
        )


def _since(moment: datetime | None) -> float:
    """Seconds from `moment` to now (0 when there is none)."""
    return max((utcnow() - moment).total_seconds(), 0.0) if moment else 0.0


def _start_message(run: Run) -> str:
    total = "unknown" if run.total_records is None else f"{run.total_records:,}"
    resumed = f", resuming run #{run.resumed_from}" if run.resumed_from else ""
    return f"Extracting from offset {run.offset:,} of {total} records{resumed}"
