"""The runner: executes one claimed run batch by batch, checkpointing each load with its offset."""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from db.engine import get_engine
from db.models import EventKind, Run, RunStatus, Step, utcnow
from db.queries import (
    RunLost,
    append_event,
    checkpoint,
    end_run,
    get_job,
    get_run,
    heartbeat,
    hold_run,
    read_session,
    run_state_event,
    write_session,
)
from db.settings import Settings, get_settings
from etl.jobs import Job, JobError, RunContext, job_class
from reports.eta import Pace

ProgressCallback = Callable[[Run], None]
HeartbeatHook = Callable[[Session, Run], None]  # also written in each heartbeat's transaction
log = logging.getLogger(__name__)


class _Heartbeat(threading.Thread):
    """Beats for a held run every `interval` seconds, whatever the job is doing; notices cancels
    and a lost run (failed as an orphan meanwhile), after which it stops beating."""

    def __init__(
        self, engine: sa.Engine, run: Run, interval: float, also: HeartbeatHook | None = None
    ) -> None:
        super().__init__(name=f"runwatch-heartbeat-{run.id}", daemon=True)
        self.engine, self.interval, self.also = engine, interval, also
        # its own copy: the runner changes the run's status when it ends it
        self.held = Run(id=run.id, job=run.job, status=run.status, claim_token=run.claim_token)
        self.stopped = threading.Event()
        self.cancel_requested = threading.Event()
        self.lost = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                with write_session(self.engine) as session:
                    if heartbeat(session=session, run=self.held):
                        self.cancel_requested.set()
                    if self.also is not None:
                        self.also(session, self.held)
            except RunLost:
                self.lost.set()
                return
            except Exception as error:  # database unreachable or refusing: beat again next time
                log.debug("heartbeat of run #%s failed: %s", self.held.id, error)


class Runner:
    """Executes runs; `bookkeeping=False` skips progress, heartbeat and events (benchmark baseline)."""

    def __init__(
        self,
        engine: sa.Engine | None = None,
        settings: Settings | None = None,
        *,
        bookkeeping: bool = True,
        on_progress: ProgressCallback | None = None,
        on_heartbeat: HeartbeatHook | None = None,
    ) -> None:
        self.engine = engine or get_engine()
        self.settings = settings or get_settings()
        self.bookkeeping = bookkeeping
        self.on_progress = on_progress
        self.on_heartbeat = on_heartbeat  # e.g. the worker's registry beat (etl.presence)

    def log(self, run: Run, level: str, message: str, step: str | None = None) -> None:
        """Append a log line to the held run's events, in its own short, fenced transaction."""
        if self.bookkeeping:
            assert run.id is not None
            with write_session(self.engine) as session:
                heartbeat(session=session, run=run)
                append_event(
                    session=session, run_id=run.id, level=level, message=message, step=step
                )

    def execute(self, run: Run) -> Run:
        """Run a claimed (running) run to its end: finished, failed or cancelled.

        Whatever the job raises fails the run with that error; a run lost to the orphan sweep
        (see db.queries.runs._held) is left as the sweep ended it, and nothing more is written.
        """
        assert run.id is not None
        beat = _Heartbeat(self.engine, run, self.settings.heartbeat_s, self.on_heartbeat)
        if self.bookkeeping:
            beat.start()
        try:
            return self._execute(run, beat)
        except RunLost:
            return self._lost(run)
        except Exception as error:  # any failure of the job or of its loads fails the run
            try:
                return self.fail(run, error)
            except RunLost:
                return self._lost(run)
        finally:
            beat.stopped.set()

    def _execute(self, run: Run, beat: _Heartbeat) -> Run:
        assert run.id is not None
        job = self._job(run)
        params = job.params
        if run.total_records is None:
            run.total_records = job.estimate_total(params)
        run.current_step = Step.EXTRACT
        self.log(run, "INFO", _start_message(run), Step.EXTRACT)
        last_batch = last_progress = time.monotonic()
        started = last_batch - _since(
            run.started_at
        )  # the pace counts from started_at, as readers do
        pace = Pace()  # this run's own: a resumed run's ETA learns from its own batches only
        for extracted in job.extract(params, run.offset):
            if beat.lost.is_set():
                raise RunLost(run.id)
            run.current_step = Step.TRANSFORM
            batch = job.transform(extracted)
            run.current_step = Step.LOAD
            with write_session(self.engine) as session:
                if job.appends_events and self.bookkeeping:
                    hold_run(session=session, run=run)  # its row before the event lock
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
            log=lambda level, message: self.log(run, level, message, run.current_step),
        )
        return job_class(kind)(context, dict(run.params or {}))

    def _end(self, run: Run, status: str, **error: Any) -> Run:
        run.current_step = None
        with write_session(self.engine) as session:
            end_run(session=session, run=run, status=status, **error)
        if self.on_progress:
            self.on_progress(run)
        return run

    def fail(self, run: Run, error: BaseException) -> Run:
        """Fail the run with the error, keeping the offset and counts of its last committed batch."""
        assert run.id is not None
        stage = run.current_step
        with read_session(self.engine) as session:
            committed = get_run(session=session, run_id=run.id, fresh=True)
        run.offset, run.records_loaded = committed.offset, committed.records_loaded
        run.records_rejected, run.counters = committed.records_rejected, committed.counters
        run.total_records = run.total_records or committed.total_records
        failure = _failure(error, stage, run)
        try:
            return self._end(run, RunStatus.FAILED, **failure)
        except (RunLost, sa.exc.OperationalError):
            raise
        except Exception as refused:  # the run's own values cannot be stored (a total out of range)
            log.warning("run #%s: its failure could not be stored as is: %r", run.id, refused)
            run.total_records = committed.total_records
            return self._end(run, RunStatus.FAILED, **_storable(failure, refused))

    def _lost(self, run: Run) -> Run:
        """Stop quietly: the run was failed or taken over while this worker was silent."""
        log.warning(
            "run #%s was ended by another process (no heartbeat reached the database in time);"
            " this worker lost it and stopped without writing",
            run.id,
        )
        try:
            with read_session(self.engine) as session:
                return get_run(session=session, run_id=run.id or 0, fresh=True)
        except Exception:  # only a courtesy to the caller: the run is not ours any more
            return run


def _failure(error: BaseException, stage: str | None, run: Run) -> dict[str, Any]:
    """The error fields of a run failed by `error`: type, message and detail with the traceback."""
    expected = isinstance(error, JobError)
    detail = {
        "traceback": "".join(traceback.format_exception(error)),
        "stage": stage,
        "context": {"offset": run.offset, "job": run.job, "params": run.params},
    }
    return {
        "error_type": "JobError" if expected else _error_type(error),
        "error_message": str(error) or type(error).__name__,
        "error_detail": detail,
    }


def _error_type(error: BaseException) -> str:
    """`interrupted` for a database connection lost mid-batch (a server restart: the batch rolled
    back, so the run resumes from its checkpoint, as after a dead worker), else the error's class."""
    lost = isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated
    return "interrupted" if lost else type(error).__name__


def _storable(failure: dict[str, Any], refused: Exception) -> dict[str, Any]:
    """The failure with only text a database stores, and why the run's own values were dropped."""

    def text(value: Any) -> str:
        return str(value).replace("\x00", "\\x00")[:100_000]  # PostgreSQL refuses NUL in text

    detail = failure["error_detail"]
    return {
        "error_type": text(failure["error_type"])[:200],
        "error_message": text(failure["error_message"]),
        "error_detail": {
            "traceback": text(detail["traceback"]),
            "stage": detail["stage"],
            "context": text(detail["context"]),
            "not_stored": f"{type(refused).__name__}: {text(refused)[:2000]}",
        },
    }


def _since(moment: datetime | None) -> float:
    """Seconds from `moment` to now (0 when there is none)."""
    return max((utcnow() - moment).total_seconds(), 0.0) if moment else 0.0


def _start_message(run: Run) -> str:
    total = "unknown" if run.total_records is None else f"{run.total_records:,}"
    resumed = f", resuming run #{run.resumed_from}" if run.resumed_from else ""
    return f"Extracting from offset {run.offset:,} of {total} records{resumed}"
